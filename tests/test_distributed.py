"""torchrun on the CPU (gloo, 2 processes) on tiny synthetic data: both loops complete, the ranks' cluster
memories and pseudo-labels stay bit-identical, SyncBN with the same global batch gives the single-process
loss, and a run resumed under torchrun continues from its last.pt."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "data.synthetic_size=tiny", "--set", "data.height=32", "--set", "data.width=16",
        "--set", "train.iters=2", "--set", "train.num_ids=4", "--set", "train.num_instances=4",
        "--set", "test.batch_size=64", "--device", "cpu"]
UNSUP = ["--config", "demo", *TINY, "--set", "cluster.k1=10", "--set", "cluster.eps=0.6", "--set", "test.eval_every=1"]
SUP = ["--config", "bot_market1501", "--dataset", "synthetic", *TINY, "--set", "model.name=resnet18",
       "--set", "model.pretrained=none", "--set", "train.warmup_epochs=1", "--set", "train.sync_bn=true"]


def launch(*args, procs=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}", "--standalone",
           str(ROOT / "main.py"), *args] if procs > 1 else [sys.executable, str(ROOT / "main.py"), *args]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def records(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_unsupervised_epochs_and_resume_under_torchrun(tmp_path, tiny_root):
    where = ["--data-root", str(tiny_root), "--output", str(tmp_path), "--name", "u"]
    launch(*UNSUP, *where, "--epochs", "1")
    first = records(tmp_path / "u")
    assert [r["epoch"] for r in first] == [0, 1]
    assert first[-1]["ranks_agree"] == 2 and first[-1]["num_clusters"] > 0    # memories and labels identical
    launch("--resume", str(tmp_path / "u"), "--epochs", "2", "--data-root", str(tiny_root))
    resumed = records(tmp_path / "u")
    assert [r["epoch"] for r in resumed] == [0, 1, 2] and resumed[-1]["ranks_agree"] == 2
    assert "resumed from" in (tmp_path / "u" / "log.txt").read_text()
    assert resumed[1] == first[1]


def test_sync_bn_gives_the_single_process_loss(tmp_path, tiny_root):
    where = ["--data-root", str(tiny_root), "--output", str(tmp_path), "--epochs", "1"]
    launch(*SUP, *where, "--name", "single", procs=1)
    launch(*SUP, *where, "--name", "multi")
    one, two = records(tmp_path / "single")[-1], records(tmp_path / "multi")[-1]
    for key in ("loss", "id", "triplet", "center"):
        assert two[key] == pytest.approx(one[key], abs=1e-4), key
    assert two["mAP"] == pytest.approx(one["mAP"], abs=0.02)


def test_p_must_split_into_the_processes(tmp_path, tiny_root):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(ROOT / "main.py"), *UNSUP, "--set", "train.num_ids=3", "--data-root", str(tiny_root),
           "--output", str(tmp_path)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "multiple of 2" in p.stdout + p.stderr
