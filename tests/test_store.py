"""Datasets beyond the memory budget: images read from a disk store give the same run, and the process
does not hold them."""
import json
import subprocess
import sys
from pathlib import Path

import torch

import main
from tests.test_unsup import TINY

ROOT = Path(__file__).resolve().parents[1]


def test_disk_store_gives_the_same_pseudo_labels_and_run(tmp_path, tiny_root):
    runs = {}
    for name, budget in (("memory", "0"), ("disk", "0.000001")):
        assert main.main([*TINY, "--data-root", str(tiny_root), "--output", str(tmp_path), "--name", name,
                          "--epochs", "2", "--set", "train.iters=2", "--set", f"data.memory_budget={budget}"]) == 0
        runs[name] = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    keys = ("epoch", "num_clusters", "num_outliers", "loss", "mAP")
    assert [[r.get(k) for k in keys] for r in runs["disk"]] == [[r.get(k) for k in keys] for r in runs["memory"]]
    assert list((tiny_root / "synthetic-tiny" / ".store").glob("train-32x16-*.u8"))


def test_disk_store_holds_the_same_bytes_and_stays_out_of_memory(tmp_path, tiny_root):
    from reidlab.data import build_dataset
    from reidlab.data.store import load_dataset_images
    from reidlab.data.store import DiskStore, gather
    ds = build_dataset("synthetic", tiny_root, synthetic_size="tiny")
    disk = load_dataset_images(ds, 40, 20, 2, "cpu", budget_gb=1e-6)
    memory = load_dataset_images(ds, 40, 20, 2, "cpu")
    assert all(isinstance(d, DiskStore) for d in disk)
    for d, m in zip(disk, memory):
        assert torch.equal(d[:], m) and torch.equal(gather(d, torch.tensor([5, 0, 17]), "cpu"), m[[5, 0, 17]])
    # a 190 MB store (412 images at 512 x 256, upscaled): built, then read through twice in batches
    script = ("import resource, torch\n"
              "from reidlab.data import build_dataset\n"
              "from reidlab.data.store import load_dataset_images\n"
              f"ds = build_dataset('synthetic', {str(tiny_root)!r}, synthetic_size='tiny')\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "stores = load_dataset_images(ds, 512, 256, 2, 'cpu', budget_gb=1e-6)\n"
              "total = 0\n"
              "for s in stores:\n"
              "    for _ in range(2):\n"
              "        for i in range(0, s.shape[0], 64):\n"
              "            total += int(s[i:i + 64].float().mean() > 0)\n"
              "size = sum(s.shape[0] for s in stores) * 3 * 512 * 256 / 2 ** 20\n"
              "print(size, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n")
    p = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    size_mb, grown_mb = map(float, p.stdout.split()[-2:])
    assert size_mb > 150 and grown_mb < 0.5 * size_mb, (size_mb, grown_mb)
