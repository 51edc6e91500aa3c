"""Your own data, end to end and at its edges: a small folder of 12 persons with a few labels trains, evaluates
on its labelled images, sweeps and searches with the demo recipe unchanged; where data lives (a read-only
dataset, a full disk), grids and paths typed by hand, the Python API at its edges, messages that point the
right way."""
import csv
import errno
import sys

import numpy as np
import pytest
import torch

import main
from reidlab.errors import ConfigError, ReIDError
from reidlab.runs.config import build_config
from reidlab.use.cluster_sweep import parse_grid
from tests.conftest import run_in_process
from tests.test_small_data import person_folder
from tests.test_use import trained  # noqa: F401  (the module's trained run)


def test_a_small_folder_with_some_labels_trains_evaluates_sweeps_and_searches(tmp_path, tiny_root):
    """60 crops of 12 persons in 4 camera folders, a spreadsheet's CSV naming the persons of half of them: the
    demo recipe trains (its own values; 2 iterations an epoch), evaluates on the labelled half each epoch, says
    what a dataset this small should try (from the third epoch: eps to try); the sweep scores its clusterings
    on the labelled images; search runs."""
    folder = person_folder(tiny_root / "synthetic-tiny", tmp_path / "crops")
    files = sorted(folder.rglob("*.jpg"))
    source = sorted((tiny_root / "synthetic-tiny" / "bounding_box_train").glob("*.jpg"))
    pid_of = {}                               # person_folder takes 5 images of each of the first 12 persons
    by_pid: dict[str, list] = {}
    for f in source:
        by_pid.setdefault(f.name[:4], []).append(f)
    n = 0
    for pid in sorted(by_pid)[:12]:
        for _ in by_pid[pid][:5]:
            pid_of[f"frame_{n:04d}.jpg"] = int(pid)
            n += 1
    with open(tmp_path / "labels.csv", "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "pid"])
        w.writerows((f.relative_to(folder).as_posix(), pid_of[f.name] if i % 2 == 0 else "")
                    for i, f in enumerate(files))
    args = ["--config", "demo", "--dataset", f"folder:{folder}", "--set", "data.camera_from=folder",
            "--set", f"data.labels_csv={tmp_path / 'labels.csv'}", "--set", "train.iters=2", "--epochs", "3",
            "--set", "test.eval_every=1", "--device", "cpu", "--output", tmp_path, "--name", "mine"]
    assert main.main([str(a) for a in args]) == 0
    import json
    records = [json.loads(x) for x in (tmp_path / "mine" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3] and all(0 < r["mAP"] <= 1 for r in records)
    log = (tmp_path / "mine" / "log.txt").read_text()
    assert "transductive" in log and "fewer than one batch" in log
    code, out, err = run_in_process("--mode", "cluster-sweep", "--checkpoint", tmp_path / "mine", "--eps",
                                    "0.3:0.6:0.1", "--output", tmp_path / "sweep.png")
    assert code == 0, err
    rows = json.loads((tmp_path / "sweep.json").read_text())["rows"]
    assert [r["eps"] for r in rows] == [0.3, 0.4, 0.5, 0.6] and all("ami" in r for r in rows)
    code, out, err = run_in_process("--mode", "search", "--checkpoint", tmp_path / "mine", "--query", files[0],
                                    "--gallery", folder, "--topk", "3", "--output", tmp_path / "s.png")
    assert code == 0 and "top 3 of 60" in out, err


def test_grids_typed_by_hand():
    assert parse_grid("0.2:0.55:0.1", "--eps", float, 1e-6, 1.0) == [0.2, 0.3, 0.4, 0.5]      # never past stop
    assert parse_grid("0.2:0.7:0.05", "--eps", float, 1e-6, 1.0)[-1] == 0.7                # stop when reached
    for text, words in (("0.2:0.7:1e-9", "at most 200"), ("0.2:inf:0.1", "give a comma list"),
                        ("nan,0.3", "give a comma list")):
        with pytest.raises(ReIDError, match=words):
            parse_grid(text, "--eps", float, 1e-6, 1.0)


def test_paths_and_names_typed_by_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert build_config("demo", [{"output": "~/runs", "data": {"root": "~/data"}}]).output == str(tmp_path / "runs")
    code, out, err = run_in_process("--config", "demo", "--output", "~/runs", "--print-config")
    assert code == 0 and f"output: {tmp_path / 'runs'}" in out
    monkeypatch.setattr(sys, "getfilesystemencoding", lambda: "ascii")      # the C locale without UTF-8 mode
    with pytest.raises(ConfigError, match="file-system encoding"):
        build_config("demo", [{"name": "r\udcc3\udca9seau"}])            # b'r\xc3\xa9seau' read as ASCII
    code, out, err = run_in_process("--dataset", "market:", "--epochs", "1")
    assert code == 2 and "market:PATH needs the folder" in err
    assert run_in_process("--config", "demo", "--name", "no", "--print-config")[1].count("name: 'no'") == 1


def test_a_read_only_dataset_stores_its_images_in_the_users_cache(tmp_path, tiny_root, monkeypatch):
    """Beyond the memory budget the images go to a disk store beside the dataset; where that cannot be written
    (here: its .store is a file), to $REID_CACHE, and the run says where."""
    import shutil
    shutil.copytree(tiny_root / "synthetic-tiny", tmp_path / "data" / "synthetic-tiny")
    (tmp_path / "data" / "synthetic-tiny" / ".store").write_text("in the way")
    monkeypatch.setenv("REID_CACHE", str(tmp_path / "cache"))
    from tests.test_unsup import TINY
    args = [*TINY, "--epochs", "1", "--set", "data.memory_budget=0.0001", "--data-root", tmp_path / "data",
            "--output", tmp_path / "out", "--name", "ro"]
    assert main.main([str(a) for a in args]) == 0
    assert list((tmp_path / "cache" / "stores").glob("*/train-*.u8"))
    assert "the disk image store goes to" in (tmp_path / "out" / "ro" / "log.txt").read_text()


def test_a_full_disk_while_generating_leaves_nothing_and_says_so(tmp_path, monkeypatch):
    import importlib
    gen = importlib.import_module("reidlab.data.synthetic.generate")

    def full(out, *a, **k):
        out.mkdir(parents=True)
        (out / "half.jpg").write_bytes(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(gen, "generate", full)
    with pytest.raises(ReIDError, match="the disk is full"):
        gen.ensure_synthetic(tmp_path, "tiny")
    assert [p.name for p in tmp_path.iterdir()] == [".synthetic-tiny.lock"]


def test_the_python_api_at_its_edges(trained, tmp_path):  # noqa: F811
    from reidlab import TrainedModel
    from reidlab.use.api import Features
    model = TrainedModel.load(trained)
    for bad, words in ((torch.zeros(0, 3, 64, 32, dtype=torch.uint8), "no images"), ("", "an empty path"),
                       ("   ", "an empty path")):
        with pytest.raises(ReIDError, match=words):
            model.extract(bad)
    images = torch.randint(0, 256, (3, 3, 64, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    gallery = model.extract(images)
    assert len(model.search(images[:1], gallery, topk=np.int64(2))[0]) == 2
    gallery.save(tmp_path / "g.npz")
    (tmp_path / "g.npz").rename(tmp_path / "G.NPZ")
    assert len(model.search(images[:1], str(tmp_path / "G.NPZ"), topk=1)[0]) == 1
    empty = Features(gallery.features[:0], [], size=gallery.size, digest=gallery.digest)
    with pytest.raises(ReIDError, match="no images"):
        model.search(images[:1], empty)
    for topk in (True, 0, 2.5, "3"):
        with pytest.raises(ReIDError, match="topk"):
            model.search(images[:1], gallery, topk=topk)


def test_evaluating_a_run_without_a_query_says_so(trained, tmp_path, tiny_root):  # noqa: F811
    folder = person_folder(tiny_root / "synthetic-tiny", tmp_path / "crops")
    code, out, err = run_in_process("--mode", "evaluate", "--checkpoint", trained, "--dataset", f"folder:{folder}")
    assert code == 2 and "has no query to evaluate on" in err and "--test-dataset" in err


def test_what_a_small_or_badly_clustered_dataset_is_told():
    from reidlab.unsup.label_free import clustering_advice
    said = clustering_advice(np.zeros(60, dtype=int), 0.4, 4, (16, 4), "outputs/mine")
    assert set(said) == {"small", "merged"} and "cluster-sweep --checkpoint outputs/mine" in said["merged"]
    assert set(clustering_advice(np.full(100, -1), 0.4, 4, (4, 4), "r")) == {"none"}
    mostly_out = np.r_[np.zeros(10, dtype=int), np.ones(10, dtype=int), np.full(80, -1)]
    assert "outliers" in clustering_advice(mostly_out, 0.4, 4, (4, 4), "r")
    assert "tiny" in clustering_advice(np.arange(200) // 4, 0.4, 4, (4, 4), "r")
    assert clustering_advice(np.arange(200) // 20, 0.4, 4, (4, 4), "r") == {}
