"""--mode teachers: the part-parsing derivation, the detectors' plumbing (random weights: nothing is
downloaded), resuming a killed run, weight files, check-data's coverage, and DAAF on written annotations."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import main
from reidlab.data.parsing import (FEET, HEAD, LOWER_ARM, LOWER_LEG, TORSO, UPPER_ARM, UPPER_LEG,
                          agreement_with_ground_truth, derive_parsing)

ROOT = Path(__file__).resolve().parents[1]
RANDOM = ["--set", "teacher.pose_weights=random", "--set", "teacher.mask_weights=random", "--set",
          "teacher.score_threshold=0", "--set", "teacher.min_size=64", "--set", "teacher.batch_size=2",
          "--device", "cpu"]


def standing_person():
    """A hand-made skeleton of a person facing the camera in a 64 x 32 image, and a mask around it."""
    k = np.zeros((17, 3))
    pts = {0: (16, 6), 1: (15, 5), 2: (17, 5), 3: (13, 6), 4: (19, 6), 5: (10, 14), 6: (22, 14), 7: (8, 22),
           8: (24, 22), 9: (7, 30), 10: (25, 30), 11: (12, 32), 12: (20, 32), 13: (12, 44), 14: (20, 44),
           15: (12, 56), 16: (20, 56)}
    for i, (x, y) in pts.items():
        k[i] = (x, y, 2)
    mask = np.zeros((64, 32), np.uint8)
    mask[2:62, 5:28] = 1
    return k, mask


def test_parsing_derivation_on_a_hand_made_skeleton():
    k, mask = standing_person()
    p = derive_parsing(k, mask)
    assert p[0, 0] == 0 and p[63, 16] == 0                        # outside the mask: background
    expect = {(6, 16): HEAD, (22, 16): TORSO, (18, 9): UPPER_ARM, (27, 7): LOWER_ARM, (38, 12): UPPER_LEG,
              (50, 20): LOWER_LEG, (60, 12): FEET, (60, 20): FEET}
    for (y, x), part in expect.items():
        assert p[y, x] == part, (y, x, p[y, x], part)
    # keypoints not found: their segments are left out; no keypoint at all: cut by height
    k2 = k.copy()
    k2[[7, 9], 2] = 0                                             # the left arm is not found
    assert derive_parsing(k2, mask)[27, 7] != LOWER_ARM
    none = derive_parsing(np.zeros((17, 3)), mask)
    assert none[3, 16] == HEAD and none[61, 16] == FEET and none[25, 16] == TORSO


def test_ground_truth_keypoints_give_the_ground_truth_parsing(tiny_root, capsys):
    root = tiny_root / "synthetic-tiny"
    table = json.loads((root / "annotations" / "keypoints.json").read_text())["images"]
    agree = fg = 0
    for name in sorted(n for n in table if n.startswith("bounding_box_train")):
        truth = np.array(Image.open(root / "annotations" / "parsing" / (name[:-4] + ".png")))
        derived = derive_parsing(np.array(table[name]), truth > 0)
        n = int((truth > 0).sum())
        agree += agreement_with_ground_truth(derived, truth) * n
        fg += n
    with capsys.disabled():
        print(f"\nparsing derived from ground-truth keypoints agrees with the ground truth on {agree / fg:.1%} of "
              f"the foreground pixels of synthetic-tiny's training persons")
    assert agree / fg >= 0.80


def copy_tree(tiny_root, dst, n=8):
    """A Market-format tree of n training images, 4 queries and 4 gallery images of their identities from
    the synthetic benchmark, without its annotations."""
    src = tiny_root / "synthetic-tiny"
    root = dst / "market1501"
    query = sorted((src / "query").glob("0[0-9]*.jpg"))[:4]
    ids = {f.name[:4] for f in query}
    picks = {"bounding_box_train": sorted((src / "bounding_box_train").glob("0[0-9]*.jpg"))[:n], "query": query,
             "bounding_box_test": [f for f in sorted((src / "bounding_box_test").glob("0[0-9]*.jpg"))
                                   if f.name[:4] in ids][:4]}
    for folder, chosen in picks.items():
        (root / folder).mkdir(parents=True)
        for f in chosen:
            (root / folder / f.name).write_bytes(f.read_bytes())
    return root


def teachers_cli(data_root, *extra):
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--mode", "teachers", "--dataset", "market1501",
                             "--data-root", str(data_root), *RANDOM, *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "annotations").rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


def test_plumbing_end_to_end_and_resume_after_a_kill(tiny_root, tmp_path):
    from reidlab.data import build_dataset
    from reidlab.data.annotations import load_teacher
    full = copy_tree(tiny_root, tmp_path / "a")
    p = teachers_cli(tmp_path / "a")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    ds = build_dataset("market1501", tmp_path / "a")
    t = load_teacher(ds, ds.train, 64, 32, ("mask", "keypoints"))
    assert t["keypoints"].shape == (8, 17, 3) and t["mask"].shape == (8, 1, 64, 32)
    assert len(json.loads((full / "annotations" / "keypoints.json").read_text())["images"]) == 16
    assert len(list((full / "annotations" / "parsing").rglob("*.png"))) == 16
    # killed half-way, then started again: the same files, each finished image file written once
    part = copy_tree(tiny_root, tmp_path / "b")
    p = teachers_cli(tmp_path / "b")
    end = time.time() + 300
    while time.time() < end and not (part / "annotations" / "keypoints.json").is_file():
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = {f: f.stat().st_mtime_ns for f in (part / "annotations").rglob("*.png")}
    assert 0 < len(before) < 32
    p = teachers_cli(tmp_path / "b")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert all(f.stat().st_mtime_ns == t for f, t in before.items())
    assert files(part) == files(full)
    assert not [f for f in (part / "annotations").rglob("*.tmp")]
    # check-data reports the coverage
    code = main.main(["--mode", "check-data", "--dataset", "market1501", "--data-root", str(tmp_path / "b")])
    assert code == 1                                   # its counts are not Market-1501's; the annotations fit


def test_daaf_trains_on_annotations_written_by_teachers(tiny_root, tmp_path):
    copy_tree(tiny_root, tmp_path, n=16)
    p = teachers_cli(tmp_path, "--set", "teacher.splits=[train]")
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    from tests.test_supervised import TINY_SUP
    args = [*TINY_SUP, "--config", "daaf_bot_market1501", "--dataset", "market1501",
            "--set", "model.args.base=resnet18", "--data-root", str(tmp_path), "--output", str(tmp_path / "out"),
            "--name", "d", "--epochs", "1",
            "--set", "train.num_ids=2", "--set", "train.num_instances=2"]
    assert main.main(args) == 0
    last = json.loads((tmp_path / "out" / "d" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["hab"] > 0 and last["pab"] >= 0


@pytest.mark.parametrize("kind,builder", [("pose", "keypointrcnn_resnet50_fpn"), ("mask", "maskrcnn_resnet50_fpn_v2")])
def test_a_saved_state_dict_loads_and_a_missing_file_is_exit_2(tmp_path, kind, builder, monkeypatch):
    import torchvision.models.detection as det

    from reidlab.data.teachers import build_detector
    from reidlab.errors import ConfigError
    torch.manual_seed(3)
    ref = getattr(det, builder)(weights=None, weights_backbone=None)
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    name = "keypointrcnn" if kind == "pose" else "maskrcnn"
    m = build_detector(kind, name, str(tmp_path / "w.pth"), 64, torch.device("cpu"))
    assert torch.equal(m.backbone.body.conv1.weight, ref.backbone.body.conv1.weight)
    (tmp_path / "w.pth").unlink()
    p = subprocess.run([sys.executable, str(ROOT / "main.py"), "--mode", "teachers", "--dataset", "synthetic",
                        "--set", "data.synthetic_size=tiny", "--data-root", str(tmp_path),
                        "--set", f"teacher.{kind}_weights={tmp_path / 'w.pth'}",
                        "--set", f"teacher.{'mask' if kind == 'pose' else 'pose'}_weights=random"], cwd=ROOT,
                       capture_output=True,
                       text=True)
    assert p.returncode == 2 and "w.pth" in p.stderr and "Traceback" not in p.stderr
    # no network and no file: the error names the file and the folder it goes in

    def offline(self, *a, **k):
        raise OSError("no network")
    import torchvision
    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(ConfigError, match=r"Download https://download.pytorch.org/models/.*\.pth into .*checkpoints"):
        build_detector(kind, name, "", 64, torch.device("cpu"))


def test_keypoints_of_a_sideways_phone_crop_are_scaled_by_its_upright_size(tmp_path):
    """A JPEG stored 128 wide x 64 high with EXIF orientation 6 is shown (and read by the stores and teachers)
    64 wide x 128 high; its keypoints are in that upright frame, so at 128 x 64 they must not move. They were
    scaled by the stored size: x halved, y doubled."""
    import json

    from PIL import Image

    from reidlab.data.annotations import load_teacher
    from reidlab.data.datasets import ReIDDataset, Sample
    root = tmp_path / "d"
    (root / "bounding_box_train").mkdir(parents=True)
    (root / "annotations").mkdir()
    path = root / "bounding_box_train" / "0001_c1s1_000001_00.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (128, 64), (90, 90, 90)).save(path, exif=exif)
    kps = [[31.5, 63.5, 2.0]] + [[10.0, 100.0, 2.0]] * 16
    (root / "annotations" / "keypoints.json").write_text(json.dumps(
        {"keypoint_names": [str(i) for i in range(17)], "images": {"bounding_box_train/" + path.name: kps}}))
    ds = ReIDDataset("d", root, [Sample(str(path), 0, 0)], [], [], annotations=root / "annotations")
    got = load_teacher(ds, ds.train, 128, 64, ("keypoints",))["keypoints"][0]
    assert got[0, :2].tolist() == [31.5, 63.5] and got[1, :2].tolist() == [10.0, 100.0]
