"""Each public benchmark's parser on a small tree in its real naming and layout; check-data; a+b; cross-domain."""
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import main
from reidlab.data import DATASETS, build_dataset, dataset_from_config
from reidlab.data.check import check_dataset
from reidlab.errors import DatasetError


def touch(path, size=(32, 64), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, tuple(int(x) for x in np.random.default_rng(hash(path.name) % 2**32).integers(0, 255, 3))
              ).save(path, format=fmt)


def market_like_tree(root, names):
    for folder, files in names.items():
        for n in files:
            touch(root / folder / n)


DUKE = {"bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg", "0005_c8_f0091003.jpg"],
        "query": ["0002_c1_f0044158.jpg", "0007_c8_f0015603.jpg"],
        "bounding_box_test": ["0002_c3_f0049172.jpg", "0007_c2_f0021045.jpg", "0009_c6_f0103416.jpg"]}


@pytest.mark.parametrize("name,folder", [("dukemtmcreid", "dukemtmcreid/DukeMTMC-reID"),
                                         ("dukemtmcreid", "DukeMTMC-reID"),
                                         ("occluded_duke", "occluded_duke/Occluded_Duke"),
                                         ("personx", "personx")])
def test_market_format_benchmarks(tmp_path, name, folder):
    market_like_tree(tmp_path / folder, DUKE)
    ds = build_dataset(name, tmp_path)
    assert [(s.pid, s.camid) for s in ds.train] == [(0, 1), (0, 4), (1, 7)]     # relabelled, 0-based cameras
    assert [(s.pid, s.camid) for s in ds.query] == [(2, 0), (7, 7)]
    assert sorted(s.pid for s in ds.gallery) == [2, 7, 9]                       # gallery-only distractor 9 kept


def test_cuhk03_np_folders(tmp_path):
    names = {"bounding_box_train": ["0001_c1_1.png", "0001_c2_6.png", "0003_c1_2.png"],
             "query": ["0010_c1_1.png"], "bounding_box_test": ["0010_c2_7.png", "0011_c1_3.png"]}
    market_like_tree(tmp_path / "cuhk03-np" / "detected", names)
    ds = build_dataset("cuhk03-detected", tmp_path)
    assert [(s.pid, s.camid) for s in ds.train] == [(0, 0), (0, 1), (1, 0)]
    with pytest.raises(DatasetError, match="cuhk03-np/labeled"):
        build_dataset("cuhk03-labeled", tmp_path)


def test_cuhk03_release_with_the_new_protocol_split(tmp_path):
    from scipy.io import savemat
    files = ["1_001_1_01.png", "1_001_2_06.png", "1_002_1_01.png", "1_002_2_07.png", "3_017_1_02.png",
             "3_017_2_08.png", "3_020_1_01.png", "3_020_2_09.png"]
    for f in files:
        touch(tmp_path / "cuhk03" / "images_labeled" / f)
    labels = np.array([[1], [1], [2], [2], [517], [517], [520], [520]])
    cams = np.array([[1], [2], [1], [2], [1], [2], [1], [2]])
    filelist = np.empty((len(files), 1), dtype=object)
    for i, f in enumerate(files):
        filelist[i, 0] = np.array([f])
    savemat(tmp_path / "cuhk03" / "cuhk03_new_protocol_config_labeled.mat",
            {"train_idx": np.array([[1], [2], [3], [4]]), "query_idx": np.array([[5], [7]]),
             "gallery_idx": np.array([[6], [8]]), "labels": labels, "filelist": filelist, "camId": cams})
    ds = build_dataset("cuhk03-labeled", tmp_path)
    assert [(s.pid, s.camid) for s in ds.train] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [(s.pid, s.camid) for s in ds.query] == [(517, 0), (520, 0)]
    assert [s.path.endswith(f) for s, f in zip(ds.gallery, ["3_017_2_08.png", "3_020_2_09.png"])] == [True, True]
    (tmp_path / "cuhk03" / "images_labeled" / files[6]).unlink()
    with pytest.raises(DatasetError, match="missing"):
        build_dataset("cuhk03-labeled", tmp_path)


@pytest.mark.parametrize("version,train_dir,test_dir", [("MSMT17_V1", "train", "test"),
                                                         ("MSMT17_V2", "mask_train_v2", "mask_test_v2")])
def test_msmt17_list_files(tmp_path, version, train_dir, test_dir):
    root = tmp_path / "msmt17" / version
    lists = {"train": ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0000/0000_001_05_0303noon_0920_1.jpg 0"],
             "val": ["0002/0002_000_14_0303afternoon_0404_0.jpg 2"],
             "query": ["0000/0000_000_03_0113morning_0010_0.jpg 0"],
             "gallery": ["0000/0000_004_15_0113noon_0034_1.jpg 0", "0001/0001_000_02_0113morning_0110_0.jpg 1"]}
    for split, lines in lists.items():
        folder = root / (train_dir if split in ("train", "val") else test_dir)
        for line in lines:
            touch(folder / line.split()[0])
        (root / f"list_{split}.txt").write_text("\n".join(lines) + "\n")
    ds = build_dataset("msmt17", tmp_path)
    assert [(s.pid, s.camid) for s in ds.train] == [(0, 0), (0, 4), (1, 13)]     # train + val, relabelled
    assert [(s.pid, s.camid) for s in ds.gallery] == [(0, 14), (1, 1)]
    (root / "list_query.txt").unlink()
    with pytest.raises(DatasetError, match="list_query.txt"):
        build_dataset("msmt17", tmp_path)


@pytest.mark.parametrize("name,qdir,gdir,qnames,gnames", [
    ("occluded_reid", "Occluded_REID/occluded_body_images", "Occluded_REID/whole_body_images",
     ["001/001_01.tif", "001/001_02.tif", "002/002_01.tif"], ["001/001_01.tif", "002/002_01.tif"]),
    ("partial_reid", "Partial_REID/partial_body_images", "Partial_REID/whole_body_images",
     ["001_01.jpg", "001_02.jpg", "002_01.jpg"], ["001_01.jpg", "002_01.jpg"]),
    ("partial_ilids", "Partial_iLIDS/Probe", "Partial_iLIDS/Gallery",
     ["001.jpg", "001.png", "002.jpg"], ["001.jpg", "002.jpg"]),
])
def test_test_only_partial_datasets(tmp_path, name, qdir, gdir, qnames, gnames):
    for n in qnames:
        touch(tmp_path / qdir / n, fmt="TIFF" if n.endswith(".tif") else None)
    for n in gnames:
        touch(tmp_path / gdir / n, fmt="TIFF" if n.endswith(".tif") else None)
    ds = build_dataset(name, tmp_path)
    assert ds.train == [] and DATASETS.info(name).test_only
    assert [s.pid for s in ds.query] == [1, 1, 2] and [s.pid for s in ds.gallery] == [1, 2]
    # query cam 0, gallery cam 1: the same-camera removal of the evaluation never drops a gallery image
    assert {s.camid for s in ds.query} == {0} and {s.camid for s in ds.gallery} == {1}
    from reidlab.evaluation.metrics import evaluate
    dist = np.array([[0.1, 0.9], [0.2, 0.8], [0.9, 0.1]])
    r = evaluate(dist, [s.pid for s in ds.query], [s.pid for s in ds.gallery],
                 [s.camid for s in ds.query], [s.camid for s in ds.gallery])
    assert r["mAP"] == pytest.approx(1.0)
    from reidlab.data.datasets import require_training_split
    with pytest.raises(DatasetError, match="test-only"):
        require_training_split(ds)
    assert main.main(["--mode", "supervised", "--dataset", name, "--data-root", str(tmp_path), "--device", "cpu",
                      "--output", str(tmp_path / "out")]) == 2


def copy_tiny(tiny_root, tmp_path):
    dst = tmp_path / "synthetic-tiny"
    shutil.copytree(tiny_root / "synthetic-tiny", dst)
    return tmp_path


def test_check_data_passes_an_intact_copy(tiny_root):
    assert main.main(["--mode", "check-data", "--dataset", "synthetic", "--set", "data.synthetic_size=tiny",
                      "--data-root", str(tiny_root)]) == 0


def test_check_data_reports_truncated_copy_corrupt_image_and_duplicates(tiny_root, tmp_path):
    root = copy_tiny(tiny_root, tmp_path)
    train = sorted((root / "synthetic-tiny" / "bounding_box_train").glob("*.jpg"))
    for p in train[:5]:
        p.unlink()                                               # a truncated copy: 5 images missing
    bad = train[10]
    bad.write_bytes(bad.read_bytes()[:300])                      # a file cut short
    q = sorted((root / "synthetic-tiny" / "query").glob("*.jpg"))[0]
    shutil.copy(train[20], q)                                    # the same image in train and query
    ds = build_dataset("synthetic", root, synthetic_size="tiny")
    from reidlab.data.check import published_counts
    report = check_dataset(ds, published_counts("synthetic", {"synthetic_size": "tiny"}))
    assert not report.ok
    assert "train: 195 images, published 200" in report.mismatches
    assert [p for p, _ in report.bad_images] == [str(bad)]
    assert any(str(q) in pair for pair in report.duplicates)
    assert main.main(["--mode", "check-data", "--dataset", "synthetic", "--set", "data.synthetic_size=tiny",
                      "--data-root", str(root)]) == 1


def test_two_datasets_train_together_with_ids_kept_apart(tiny_root):
    a = build_dataset("synthetic", tiny_root, synthetic_size="tiny")
    both = build_dataset("synthetic+synthetic-occluded", tiny_root, synthetic_size="tiny")
    assert len(both.train) == 2 * len(a.train) and both.num_train_pids == 2 * a.num_train_pids
    second = both.train[len(a.train):]
    assert min(s.pid for s in second) == a.num_train_pids                # shifted past the first's ids
    assert min(s.camid for s in second) > max(s.camid for s in a.train)  # and past its cameras
    assert both.query == a.query


def test_cross_domain_evaluation(tiny_root, tmp_path):
    cfg = SimpleNamespace(data=SimpleNamespace(dataset="synthetic", test_dataset="synthetic-occluded",
                                               synthetic_size="tiny", synthetic_seed=0), data_root=str(tiny_root))
    ds = dataset_from_config(cfg)
    assert "synthetic-occluded-tiny" in ds.query[0].path and "synthetic-tiny" in ds.train[0].path
    from tests.test_supervised import TINY_SUP
    from tests.test_unsup import TINY
    common = ["--test-dataset", "synthetic-occluded", "--data-root", str(tiny_root), "--output", str(tmp_path),
              "--epochs", "1"]
    assert main.main([*TINY, *common, "--name", "u"]) == 0
    assert main.main([*TINY_SUP, "--config", "bot_market1501", "--set", "model.name=resnet18", *common,
                      "--dataset", "synthetic+synthetic-occluded", "--name", "s"]) == 0
    for run in ("u", "s"):
        last = json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[-1])
        assert 0 <= last["mAP"] <= 1


@pytest.mark.parametrize("folder", ["Occluded_REID", "occluded_reid", "occluded_reid/Occluded_REID"])
def test_test_only_layouts_as_every_other_dataset(tmp_path, folder):
    for sub in ("occluded_body_images", "whole_body_images"):
        touch(tmp_path / folder / sub / "001" / "001_01.tif", fmt="TIFF")
    ds = build_dataset("occluded_reid", tmp_path)
    assert len(ds.query) == 1 and len(ds.gallery) == 1
