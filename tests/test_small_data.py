"""The shipped recipes with their own values on small data: shrink the data, not the recipe.

Each run keeps its recipe's batch (P x K), BatchNorm slices and sampler; only the data (a tiny set, or a
folder of 12 persons), the input size, the pretrained start (no download here) and the number of iterations
are small. Fewer clusters or identities than P make short batches, which train (models.sliced_bn)."""
import json
import shutil
from pathlib import Path

import pytest

import main

SMALL = ["--set", "data.synthetic_size=tiny", "--set", "train.iters=2", "--device", "cpu"]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def train(*args) -> int:
    return main.main([str(a) for a in args])


def person_folder(source: Path, out: Path, persons: int = 12, per_person: int = 5) -> Path:
    """A folder of ``persons`` x ``per_person`` crops from the tiny benchmark's training images, in camera
    sub-folders, names scrambled, no labels (what a detector leaves): ``cam<k>/frame_<n>.jpg``."""
    by_pid: dict[str, list[Path]] = {}
    for f in sorted((source / "bounding_box_train").glob("*.jpg")):
        by_pid.setdefault(f.name[:4], []).append(f)
    n = 0
    for pid in sorted(by_pid)[:persons]:
        for f in by_pid[pid][:per_person]:
            cam = out / f"cam{f.name.split('_c')[1][0]}"
            cam.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, cam / f"frame_{n:04d}.jpg")
            n += 1
    return out


def test_the_demo_recipe_trains_and_resumes_on_the_tiny_set(tmp_path, tiny_root):
    """demo.yaml unchanged (16 x 4, bn_images 16, its 64 x 32 input) on 16 persons: DBSCAN finds fewer
    clusters than P, the batches are short, the log says how they are sliced, and --resume goes on."""
    where = ["--data-root", tiny_root, "--output", tmp_path, "--name", "d"]
    assert train("--config", "demo", *SMALL, "--epochs", "1", *where) == 0
    assert train("--resume", tmp_path / "d", "--epochs", "2", "--data-root", tiny_root) == 0
    r = records(tmp_path / "d")
    assert [x["epoch"] for x in r] == [0, 1, 2] and all(0 < x["num_clusters"] < 16 for x in r[1:])
    log = (tmp_path / "d" / "log.txt").read_text()
    assert "fewer than train.num_ids=16 clusters" in log and "devices' shares (train.bn_images)" in log
    assert "DataParallel" not in log                  # what our slicing does, not what DataParallel would


def test_the_ca_jaccard_demo_trains_on_the_tiny_set(tmp_path, tiny_root):
    """demo_cajaccard.yaml unchanged on 16 persons and 4 cameras: CLQE's first-epoch warm-up, then its own k2,
    the camera gap in every record; on a folder of one camera it stops before any folder is made."""
    where = ["--data-root", tiny_root, "--output", tmp_path, "--name", "ca"]
    assert train("--config", "demo_cajaccard", *SMALL, "--epochs", "2", *where) == 0
    r = records(tmp_path / "ca")
    assert [x["epoch"] for x in r] == [0, 1, 2] and all(0 < x["num_clusters"] and "camera_gap" in x for x in r[1:])
    log = (tmp_path / "ca" / "log.txt").read_text()
    assert "CA-Jaccard distances over 4 cameras: CKRNNs k1_intra 5 / k1_inter 20, CLQE k2_intra 2 / k2_inter 4 " \
           "(3 / 3 at the first epoch)" in log
    folder = person_folder(tiny_root / "synthetic-tiny", tmp_path / "crops")
    assert train("--config", "demo_cajaccard", "--dataset", f"folder:{folder}", "--set", "data.camera_from=none",
                 "--device", "cpu", "--output", tmp_path / "one", "--name", "x") == 2
    assert not (tmp_path / "one" / "x").exists()


def test_the_demo_recipe_on_a_folder_of_12_persons(tmp_path, tiny_root):
    folder = person_folder(tiny_root / "synthetic-tiny", tmp_path / "crops")
    assert len(list(folder.rglob("*.jpg"))) == 60
    assert train("--config", "demo", "--dataset", f"folder:{folder}", "--set", "data.camera_from=folder",
                 "--set", "train.iters=2", "--epochs", "2", "--device", "cpu", "--output", tmp_path,
                 "--name", "mine") == 0
    r = records(tmp_path / "mine")
    assert [x["epoch"] for x in r] == [1, 2] and (tmp_path / "mine" / "last.pt").is_file()


def labelled_tree(source: Path, out: Path, persons: int = 12) -> Path:
    """A Market-format tree (with its teacher annotations) whose training split holds ``persons`` identities."""
    shutil.copytree(source, out)
    keep = sorted({f.name[:4] for f in (out / "bounding_box_train").glob("*.jpg")})[:persons]
    for f in (out / "bounding_box_train").glob("*.jpg"):
        if f.name[:4] not in keep:
            f.unlink()
    (out / ".complete").unlink(missing_ok=True)
    return out


@pytest.mark.parametrize("recipe,overrides", [
    ("pirt_occluded_duke", []),                                   # 16 x 4, bn_images 32, on 12 persons
    ("bot_market1501", ["--set", "train.num_ids=32"]),            # BoT's identity sampler, P 32 on 12
    ("bot_market1501", ["--set", "train.num_ids=32", "--set", "train.sampler=pk"]),
])
def test_supervised_recipes_with_fewer_identities_than_p(tmp_path, tiny_root, recipe, overrides):
    tree = labelled_tree(tiny_root / "synthetic-occluded-tiny", tmp_path / "twelve")
    args = ["--config", recipe, "--dataset", f"market:{tree}", "--set", "data.height=64", "--set", "data.width=32",
            "--set", "model.pretrained=none", "--set", "train.iters=2", "--epochs", "1", "--device", "cpu",
            *overrides, "--output", tmp_path, "--name", "s"]
    assert train(*args) == 0
    r = records(tmp_path / "s")[-1]
    assert r["epoch"] == 1 and r["skipped_steps"] == 0 and 0 <= r["mAP"] <= 1
    log = (tmp_path / "s" / "log.txt").read_text()
    assert "12 training identities, fewer than train.num_ids" in log
