"""``--dataset folder:PATH``: a user's own crops (scrambled names, nested folders, mixed formats and sizes, no
labels) train the unsupervised loop, with cameras from each source or none, and record what is known
without labels; a labelled set given with --test-dataset evaluates it."""
import csv
import re
from pathlib import Path
import json

import numpy as np
import pytest
import torch
from PIL import Image

import main
from benchmarks.own_data import scrambled_copy
from reidlab.evaluation.visualize import grid_size
from reidlab.data.datasets import build_dataset
from reidlab.errors import ConfigError, DatasetError
from reidlab.runs.config import build_config
from tests.test_unsup import TINY
from reidlab.unsup.label_free import changed_labels, intra_cluster_similarity, label_free_metrics


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
    from reidlab.data.images import load_images
    from reidlab.data.store import build_disk_store
    from reidlab.unsup.label_free import pool_queries, pool_rank_lists
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


def small_folder(tmp_path, names=("cam1/a.png", "cam1/b.png", "cam2/c.png", "cam2/d.png", "cam3/e.png")):
    for n in names:
        (tmp_path / "f" / n).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 16), (len(n), 0, 0)).save(tmp_path / "f" / n)
    return tmp_path / "f"


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return str(path)


def test_a_spreadsheets_csv_with_partial_pids_and_windows_paths(tmp_path):
    """A CSV as a spreadsheet on Windows saves it (byte-order mark, semicolons, backslashes, CRLF, 3.0 for 3): its
    cameras are used under auto, its pids where given; -1 is junk; the labelled images give a query and gallery."""
    folder = small_folder(tmp_path)
    labels = write(tmp_path / "l.csv", "\ufeffPath;Camera;PID\r\ncam1\\a.png;1;3.0\r\ncam1\\b.png;1;\r\n"
                   "cam2\\c.png;2;3\r\ncam2\\d.png;2;-1\r\n.\\cam3\\e.png;3;7\r\n")
    ds = build_dataset(f"folder:{folder}", "unused", labels_csv=labels)
    assert len(ds.train) == 4 and ds.skipped["junk images (pid -1 in data.labels_csv)"] == 1
    assert not ds.labelled and ds.query_from_train                       # b has no pid: partly labelled
    assert sorted(Path(s.path).name for s in ds.query) == ["a.png", "c.png"]          # person 3, two cameras
    assert sorted(Path(s.path).name for s in ds.gallery) == ["a.png", "c.png", "e.png"]
    assert len({s.camid for s in ds.train}) == 3


def test_the_csvs_pids_are_used_with_any_camera_source(tmp_path):
    folder = small_folder(tmp_path)
    labels = write(tmp_path / "l.csv", "path,pid\n" + "".join(f"{n},{i % 2}\n" for i, n in enumerate(
        ("cam1/a.png", "cam1/b.png", "cam2/c.png", "cam2/d.png", "cam3/e.png"))))
    for opts in ({"camera_from": "folder"}, {"camera_pattern": r"^cam(\d)"}):
        ds = build_dataset(f"folder:{folder}", "unused", labels_csv=labels, **opts)
        assert ds.labelled and ds.num_train_pids == 2 and len({s.camid for s in ds.train}) == 3, opts
    both = write(tmp_path / "both.csv", "path,camera\n" + "".join(f"{n},x\n" for n in ("cam1/a.png", "cam2/c.png")))
    ds = build_dataset(f"folder:{folder}", "unused", labels_csv=both, camera_pattern=r"^cam(\d)")
    assert len(ds.train) == 2 and len({s.camid for s in ds.train}) == 1      # auto: the CSV's cameras


@pytest.mark.parametrize("text,words", [
    ("path,camera,pid\ncam1/a.png,1,--3\n", "line 2: pid '--3' is not a whole number"),
    ("path,camera,pid\ncam1/a.png,1,x\n", "line 2: pid 'x'"),
    ("path,camera,pid\ncam1/a.png,1,-2\n", "line 2: pid -2 is not allowed"),
    ("path,camera,pid\ncam1/a.png,1,1\n\ncam1/a.png,1,2\n", "lines 2 and 4 give cam1/a.png two labels"),
    ("path,camera\n,1\n", "line 2: no path"),
    ("name,camera\ncam1/a.png,1\n", "header line of path,camera,pid"),
])
def test_a_csv_that_cannot_be_used_says_the_line_and_the_fix(tmp_path, text, words):
    folder = small_folder(tmp_path)
    with pytest.raises(DatasetError, match=re.escape(words)):
        build_dataset(f"folder:{folder}", "unused", labels_csv=write(tmp_path / "l.csv", text))


def test_csv_lines_for_missing_images_and_a_pattern_with_an_empty_group(tmp_path):
    folder = small_folder(tmp_path, ("cam1/a_c1.png", "cam1/b.png"))
    labels = write(tmp_path / "l.csv", "path,camera\ncam1/a_c1.png,1\ncam1/b.png,1\ncam9/gone.png,2\n")
    ds = build_dataset(f"folder:{folder}", "unused", labels_csv=labels)
    assert ds.skipped["lines of data.labels_csv that name no image under the folder"] == 1
    ds = build_dataset(f"folder:{folder}", "unused", camera_pattern=r"(?:_c(\d))?\.png")   # optional group
    assert len(ds.train) == 1 and sum(v for k, v in ds.skipped.items() if "group is empty" in k) == 1


def test_a_folder_whose_name_holds_a_plus(tmp_path):
    folder = small_folder(tmp_path)
    plus = folder.rename(tmp_path / "lobby+street")
    assert len(build_dataset(f"folder:{plus}", "unused").train) == 5


def test_labels_moved_and_agreement_on_constructed_cases():
    """By hand: a split of one cluster of 100 into ten moves 90; a merge of two 50s moves 50; ten outliers that
    become a cluster move 9; a relabelling moves none. ARI and AMI, by scikit-learn with outliers as singletons:
    1 for a relabelling, 0 for all outliers, about 0 for two unrelated clusterings that are 60% outliers."""
    from sklearn.metrics import adjusted_rand_score

    from reidlab.clustering.sweep import agreement, describe, with_singletons
    one = np.zeros(100, dtype=int)
    assert changed_labels(one, np.arange(100) // 10) == 90
    assert changed_labels(np.arange(100) // 50, one) == 50
    assert changed_labels(np.full(10, -1), np.zeros(10, dtype=int)) == 9
    assert changed_labels(np.full(10, -1), np.full(10, -1)) == 0
    assert changed_labels(np.arange(100) // 10, (np.arange(100) // 10 + 3) % 10) == 0
    rng = np.random.default_rng(0)
    noise = rng.random(1000) < 0.6                         # the same 60% outliers, the rest clustered at random
    a = np.where(noise, -1, rng.integers(0, 40, 1000))
    b = np.where(noise, -1, rng.integers(0, 40, 1000))
    got = agreement(a, b)
    assert got["ari"] == pytest.approx(adjusted_rand_score(with_singletons(a), with_singletons(b)), abs=1e-4)
    assert abs(got["ari"]) < 0.05 and abs(got["ami"]) < 0.1     # (the shared outliers agree, as singletons)
    assert adjusted_rand_score(a, b) > 0.5                    # what -1 as one cluster read
    truth = np.arange(1000) // 10
    assert describe(np.full(1000, -1), truth)["ami"] == pytest.approx(0, abs=1e-6)
    assert describe(np.full(1000, -1), truth)["ari"] == pytest.approx(0, abs=1e-6)
    assert describe((truth + 5) % 100, truth)["ami"] == pytest.approx(1) == describe((truth + 5) % 100, truth)["ari"]
    m = label_free_metrics(torch.nn.functional.normalize(torch.randn(1000, 4), dim=1), b, a)
    assert m["labels_ari_prev"] == got["ari"]


def test_absolute_paths_in_the_csv(tmp_path):
    folder = small_folder(tmp_path)
    labels = write(tmp_path / "l.csv", "path,camera\n" + "".join(f"{folder / n},{n[:4]}\n" for n in (
        "cam1/a.png", "cam2/c.png")))
    assert len(build_dataset(f"folder:{folder}", "unused", labels_csv=labels).train) == 2


def test_pids_beyond_two_to_the_53_stay_apart(tmp_path):
    """A pid read through float merged 2^53 and 2^53 + 1 into one person (a spreadsheet's 64-bit ids)."""
    from reidlab.data.folder_dataset import read_labels_csv
    big = 2 ** 53
    labels = write(tmp_path / "l.csv", f"path,pid\na.png,{big}\nb.png,{big + 1}\nc.png,{big + 1}.0\nd.png,+7\n")
    got, _ = read_labels_csv(Path(labels))
    assert [got[n][1] for n in ("a.png", "b.png", "c.png", "d.png")] == [big, big + 1, big + 1, 7]


def test_check_data_on_a_fully_labelled_folder_and_on_a_linked_camera(crops, tmp_path, main_in_process):
    """A CSV that labels every image makes the query and gallery of the training images (by design): check-data
    said '60 duplicates across splits' and exited 1. And a camera folder that is a link (to another disk) was left
    out of check-data, training and extract alike, without a word: it is followed, a loop read once."""
    import shutil

    from reidlab.use.extract import image_files
    folder = tmp_path / "crops"
    shutil.copytree(crops, folder)
    cams = sorted(p.name for p in folder.iterdir() if p.is_dir())
    linked = folder / cams[-1]
    away = tmp_path / "other_disk" / cams[-1]
    away.parent.mkdir()
    shutil.move(str(linked), str(away))
    linked.symlink_to(away, target_is_directory=True)
    (away / "loop").symlink_to(folder, target_is_directory=True)        # a link back up: read once
    everything = sorted(p for p in crops.rglob("*") if p.suffix in (".jpg", ".png"))
    labels = tmp_path / "all.csv"
    labels.write_text("path,pid\n" + "".join(f"{p.relative_to(crops).as_posix()},{i % 7}\n"
                                             for i, p in enumerate(everything)))
    ds = build_dataset(f"folder:{folder}", "unused", camera_from="folder", labels_csv=str(labels))
    assert len(ds.train) == len(everything) and ds.labelled and ds.query_from_train
    assert ds.skipped["folders reached a second time through a link (their images read once)"] == 1
    assert len(image_files(folder)[1]) == len(everything)
    code, out, err = main_in_process("--mode", "check-data", "--dataset", f"folder:{folder}",
                                     "--set", "data.camera_from=folder", "--set", f"data.labels_csv={labels}")
    assert code == 0, out + err
    assert "duplicates across splits" not in out and "OK" in out and f"{len(everything)}" in out


def test_check_data_checks_the_hard_tree_it_is_given(tiny_root, main_in_process):
    code, out, err = main_in_process("--mode", "check-data", "--dataset", "synthetic", "--set",
                                     "data.synthetic_size=tiny", "--set", "data.synthetic_hard=[camera]",
                                     "--data-root", str(tiny_root))
    assert code == 0, err
    assert "synthetic-tiny-hard-camera" in out and (tiny_root / "synthetic-tiny-hard-camera").is_dir()
