"""``--dataset folder:PATH``: a user's own crops (scrambled names, nested folders, mixed formats and sizes, no
labels) train the unsupervised loop, with cameras from each source or none, and record what is known
without labels; a labelled set given with --test-dataset evaluates it."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import main
from benchmarks.own_data import scrambled_copy
from reid.evaluation.visualize import grid_size
from reid.data.datasets import build_dataset
from reid.errors import ConfigError, DatasetError
from reid.runs.config import build_config
from tests.test_unsup import TINY
from reid.unsup.label_free import changed_labels, intra_cluster_similarity, label_free_metrics


@pytest.fixture(scope="module")
def crops(tiny_root, tmp_path_factory):
    """The tiny benchmark's training images as a detector would leave them (benchmarks.own_data's scrambled
    copy: cam<k>/day<d>/frame_<random>_det<j> in .jpg and .png, each resized by a few pixels), a stray text
    file, and a CSV of path,camera missing five images."""
    out = tmp_path_factory.mktemp("crops") / "my crops"
    rows = scrambled_copy(tiny_root / "synthetic-tiny" / "bounding_box_train", out, vary_sizes=True)
    (out / "notes.txt").write_text("not an image")
    with open(out.parent / "cams.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "camera"])
        w.writerows((rel, cam) for rel, cam, _ in rows[:-5])
    return out


def test_cameras_from_each_source_and_none(crops):
    csv_path = str(crops.parent / "cams.csv")
    for opts, images, cams in (({"camera_from": "folder"}, 200, 4), ({"camera_pattern": r"^cam(\d)/"}, 200, 4),
                               ({"labels_csv": csv_path}, 195, 4), ({}, 200, 1)):
        ds = build_dataset(f"folder:{crops}", "unused", **opts)
        assert (len(ds.train), len({s.camid for s in ds.train}), ds.labelled) == (images, cams, False), opts
        assert not ds.query and not ds.gallery and ds.skipped["non-image files"] == 1
    ds = build_dataset(f"folder:{crops}", "unused", camera_pattern=r"det(\d)")     # the pattern searches the path
    assert len({s.camid for s in ds.train}) == 5


def test_mistakes_in_a_folder_dataset(crops, tmp_path):
    with pytest.raises(DatasetError, match="not a folder"):
        build_dataset(f"folder:{tmp_path / 'nowhere'}", "unused")
    with pytest.raises(DatasetError, match="no image files"):
        build_dataset(f"folder:{tmp_path}", "unused")
    with pytest.raises(DatasetError, match="none of the"):
        build_dataset(f"folder:{crops}", "unused", camera_pattern=r"^zzz(\d)")
    (tmp_path / "bad.csv").write_text("file,cam\na.jpg,1\n")
    with pytest.raises(DatasetError, match="path,camera"):
        build_dataset(f"folder:{crops}", "unused", labels_csv=str(tmp_path / "bad.csv"))
    for sets, words in (({"camera_pattern": "cam(\\d"}, "not a regular expression"),
                        ({"camera_pattern": "cam\\d"}, "no group"), ({"camera_from": "csv"}, "needs data.labels_csv"),
                        ({"labels_csv": str(tmp_path / "missing.csv")}, "no file")):
        with pytest.raises(ConfigError, match=words):
            build_config("demo", [{"data": sets}])


def test_a_folder_trains_without_labels_and_evaluates_on_a_labelled_set(crops, tiny_root, tmp_path):
    base = [*TINY, "--dataset", f"folder:{crops}", "--data-root", str(tiny_root), "--output", str(tmp_path)]
    assert main.main([*base, "--epochs", "2", "--set", r"data.camera_pattern=^cam(\d)/", "--name", "own",
                      "--set", "test.pool_ranklists=4", "--set", "test.pool_ranklists_every=1"]) == 0
    records = [json.loads(x) for x in (tmp_path / "own" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and not any("mAP" in r for r in records)
    for key in ("num_clusters", "cluster_size_median", "largest_cluster_share", "cluster_size_hist",
                "intra_sim_mean", "intra_sim_std"):
        assert key in records[0] and key in records[1]
    assert "labels_changed" in records[1] and "labels_changed" not in records[0]
    assert (tmp_path / "own" / "last.pt").is_file() and not (tmp_path / "own" / "best.pt").exists()
    pictures = sorted(p.name for p in (tmp_path / "own" / "pool_ranklists").iterdir())
    assert pictures == ["epoch_000.png", "epoch_001.png"]           # the models after 0 and 1 epochs
    with Image.open(tmp_path / "own" / "pool_ranklists" / "epoch_001.png") as im:
        assert im.size == grid_size(4, 8, 32, 16)
    tree = f"market:{tiny_root / 'synthetic-tiny'}"
    assert main.main([*base, "--epochs", "1", "--test-dataset", tree, "--name", "eval"]) == 0
    last = json.loads((tmp_path / "eval" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= last["mAP"] <= 1 and (tmp_path / "eval" / "best.pt").is_file()
    assert main.main([*base, "--mode", "supervised", "--config", "bot_market1501", "--set", "model.name=resnet18",
                      "--set", "model.pretrained=none", "--name", "sup"]) == 2


def test_label_free_numbers_against_loops():
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(30, 8, generator=g), dim=1)
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2 + [-1] * 13)
    mean, spread = intra_cluster_similarity(feats, labels)
    per = []
    for c in range(3):
        f = feats[labels == c]
        s = f @ f.T
        n = len(f)
        per.append(float((s.sum() - n) / (n * (n - 1))))
    assert mean == pytest.approx(np.mean(per), abs=1e-5) and spread == pytest.approx(np.std(per), abs=1e-5)
    moved = labels.copy()
    moved[[0, 1, 20]] = [1, 2, 0]                     # two members left cluster 0, one outlier joined it
    assert changed_labels(labels, moved) == 3 and changed_labels(labels, labels) == 0
    m = label_free_metrics(feats, moved, labels)
    assert m["labels_changed"] == 3 and m["largest_cluster_share"] == pytest.approx(9 / 30, abs=1e-4)
    assert sum(m["cluster_size_hist"]) == 3


def test_check_data_counts_a_folder_without_a_published_benchmark(crops, main_in_process):
    code, out, err = main_in_process("--mode", "check-data", "--dataset", f"folder:{crops}",
                                     "--set", "data.camera_from=folder")
    assert code == 0, err
    assert "unlabelled" in out and "not compared with a published benchmark" in out and "published (" not in out
    assert "│ train │ unlabelled │    200 │       4 │" in out


def test_pool_rank_lists_read_a_disk_store_as_a_tensor(crops, tmp_path):
    from reid.data.images import load_images
    from reid.data.store import build_disk_store
    from reid.unsup.label_free import pool_queries, pool_rank_lists
    paths = [str(p) for p in sorted(crops.rglob("*")) if p.suffix in (".jpg", ".png")][:40]
    memory = load_images(paths, 32, 16)
    disk = build_disk_store(paths, 32, 16, tmp_path / "store", "train", 1)
    feats = torch.nn.functional.normalize(torch.randn(40, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    labels, queries = np.arange(40) % 5 - 1, pool_queries(40, 3)
    assert queries.tolist() == [0, 20, 39]
    pictures = [pool_rank_lists(tmp_path / f"{n}.png", feats, labels, images, queries, topk=4)
                for n, images in (("memory", memory), ("disk", disk))]
    a, b = (np.array(Image.open(p)) for p in pictures)
    assert a.shape[:2] == grid_size(3, 4, 32, 16)[::-1] and np.array_equal(a, b)


@pytest.mark.parametrize("source", [["--set", "data.camera_from=folder"], ["--set", "labels_csv"]])
def test_a_folder_trains_an_epoch_with_cameras_from_the_folder_or_a_csv(crops, tiny_root, tmp_path, source):
    """The two camera sources the test above does not train with (it trains with a pattern, then with none)."""
    if source[1] == "labels_csv":
        source = ["--set", f"data.labels_csv={crops.parent / 'cams.csv'}"]
    assert main.main([*TINY, "--dataset", f"folder:{crops}", "--data-root", str(tiny_root), "--output",
                      str(tmp_path), "--name", "cams", "--epochs", "1", *source]) == 0
    record = json.loads((tmp_path / "cams" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["epoch"] == 1 and record["num_clusters"] >= 0 and "intra_sim_mean" in record
    log = (tmp_path / "cams" / "log.txt").read_text()
    assert "4 cams" in log and "one camera in the training images" not in log
