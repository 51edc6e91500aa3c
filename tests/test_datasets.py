import json

import numpy as np
import pytest

from reidlab.data import build_dataset
from reidlab.data.synthetic import SIZES, ensure_synthetic
from reidlab.errors import DatasetError

MARKET_NAMES = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s3_077419_03.jpg",
                           "0007_c6s3_094337_02.jpg", "0010_c1s1_002301_00.jpg"],
    "query": ["0002_c3s1_000551_00.jpg", "0007_c2s3_070952_00.jpg"],
    "bounding_box_test": ["-1_c1s1_000401_03.jpg", "0000_c1s1_000151_01.jpg", "0002_c1s1_000776_01.jpg",
                          "0007_c6s3_085567_03.jpg", "0007_c2s3_071052_02.jpg"],
}


def market_tree(base, inner=True):
    from PIL import Image
    root = base / "market1501" / ("Market-1501-v15.09.15" if inner else "")
    for folder, names in MARKET_NAMES.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for n in names:
            Image.new("RGB", (64, 128), (120, 30, 30)).save(root / folder / n)
    (root / "bounding_box_train" / "Thumbs.db").write_text("x")
    return root


@pytest.mark.parametrize("inner", [True, False])
def test_market_parser(tmp_path, inner):
    market_tree(tmp_path, inner)
    ds = build_dataset("market1501", tmp_path)
    assert [s.pid for s in ds.train] == [0, 0, 1, 1, 2]               # relabelled 0..N-1
    assert [s.camid for s in ds.train] == [0, 1, 2, 5, 0]             # 0-based
    assert sorted(s.pid for s in ds.gallery) == [0, 2, 7, 7]         # junk dropped, distractor 0 kept
    assert [(s.pid, s.camid) for s in ds.query] == [(2, 2), (7, 1)]  # query ids are not relabelled
    assert ds.skipped["non-image files"] == 1 and ds.skipped["junk images (pid -1)"] == 1


def test_missing_dataset_folder_shows_layout(tmp_path):
    with pytest.raises(DatasetError, match="bounding_box_train"):
        build_dataset("market1501", tmp_path)


def test_unknown_dataset_suggests():
    with pytest.raises(DatasetError, match="market1501"):
        build_dataset("market1510", "data")


def test_tiny_synthetic_benchmark(tiny_root):
    ds = build_dataset("synthetic", tiny_root, synthetic_size="tiny")
    spec = SIZES["tiny"]
    assert ds.num_train_pids == spec.train_ids and len(ds.train) == spec.train_images
    assert len(ds.query) == spec.query_images
    assert len(ds.gallery) == spec.gallery_images - spec.junk      # junk dropped by the parser
    assert ds.skipped["junk images (pid -1)"] == spec.junk
    # one query per identity and camera; every query has a gallery match in another camera
    pairs = [(s.pid, s.camid) for s in ds.query]
    assert len(pairs) == len(set(pairs))
    gal = {(s.pid, s.camid) for s in ds.gallery}
    assert all(any(p == q and c != cq for p, c in gal) for q, cq in pairs)
    kps = json.loads((ds.root / "annotations" / "keypoints.json").read_text())
    assert len(kps["keypoint_names"]) == 17
    name = "query/" + ds.query[0].path.split("/")[-1]
    arr = np.array(kps["images"][name])
    assert arr.shape == (17, 3) and set(arr[:, 2]) <= {0, 1, 2}
    from PIL import Image
    stem = name.split("/")[1][:-4]
    parsing = np.array(Image.open(ds.root / "annotations" / "parsing" / "query" / f"{stem}.png"))
    mask = np.array(Image.open(ds.root / "annotations" / "masks" / "query" / f"{stem}.png"))
    assert parsing.shape == (spec.height, spec.width) and parsing.max() <= 6 and parsing.max() >= 4
    assert np.array_equal(mask > 0, parsing > 0)


def test_synthetic_is_deterministic_and_reused(tmp_path):
    a = ensure_synthetic(tmp_path / "a", "tiny", seed=3, workers=1)
    b = ensure_synthetic(tmp_path / "b", "tiny", seed=3, workers=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.jpg"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files[:50])
    mtime = (a / ".complete").stat().st_mtime
    ensure_synthetic(tmp_path / "a", "tiny", seed=3)
    assert (a / ".complete").stat().st_mtime == mtime                 # reused, not generated again


def test_occluded_variant_hides_keypoints(tiny_root):
    ds = build_dataset("synthetic-occluded", tiny_root, synthetic_size="tiny")
    kps = json.loads((ds.root / "annotations" / "keypoints.json").read_text())["images"]
    hidden = [np.sum(np.array(v)[:, 2] == 1) for k, v in kps.items() if k.startswith("query/")]
    assert np.mean(hidden) > 2


def test_market_size_plan_has_market_counts():
    from collections import Counter

    from reidlab.data.synthetic.generate import _plan
    _, jobs = _plan(SIZES["market"], occluded=False, seed=0)
    folders = Counter(j.folder for j in jobs)
    assert folders == {"bounding_box_train": 12936, "query": 3368, "bounding_box_test": 19732}
    assert len({j.ident for j in jobs if j.folder == "bounding_box_train"}) == 751
    assert len({j.ident for j in jobs if j.folder == "query"}) == 750
    assert len({j.name for j in jobs}) == len(jobs)


def test_a_market_tree_at_any_path_trains_and_evaluates(tmp_path, tiny_root, capsys):
    """``--dataset market:PATH``: a Market-format tree under any name (a space in it, nested anywhere) is
    checked without published counts, trains, names its run folder by its own folder, and evaluates."""
    import shutil

    import main
    from reidlab.data.datasets import build_dataset
    from tests.test_unsup import TINY
    tree = tmp_path / "site A" / "cams 2024"
    shutil.copytree(tiny_root / "synthetic-tiny", tree)
    ds = build_dataset(f"market:{tree}", tmp_path / "unused")
    assert ds.name == "cams_2024" and len(ds.train) == 200
    assert main.main(["--mode", "check-data", "--dataset", f"market:{tree}"]) == 0
    assert "not compared with" in " ".join(capsys.readouterr().out.split())
    assert main.main([*TINY, "--dataset", f"market:{tree}", "--epochs", "1", "--output", str(tmp_path / "runs")]) == 0
    assert main.main(["--mode", "evaluate", "--checkpoint", str(tmp_path / "runs" / "demo")]) == 0
    assert main.main(["--config", "demo", "--dataset", f"market:{tmp_path / 'nowhere'}", "--device", "cpu"]) == 2
    assert "--dataset market:PATH" in capsys.readouterr().err
