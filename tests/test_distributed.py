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


def test_every_rank_evaluates_one_model_and_short_batches_split_unevenly(tmp_path, tiny_root):
    """The demo recipe's own batch (16 x 4, bn_images 16) on 16 persons under 2 gloo ranks without SyncBN: the
    short batches (fewer clusters than P) split into unequal shares of whole identities, the loss sees every
    row, the same weights and loss as one process (its four BatchNorm slices are the two ranks' two each;
    one epoch: a later clustering may flip a pair at eps on the last bits that the two differ by),
    and the logged mAP is --mode evaluate's of the saved last.pt: after each epoch every rank holds rank 0's
    BatchNorm statistics, so the evaluation, the pseudo-labels and the checkpoint are one model's."""
    demo = ["--config", "demo", "--set", "data.synthetic_size=tiny", "--set", "train.iters=3", "--device", "cpu",
            "--set", "test.eval_every=1", "--set", "test.eval_initial=false",
            "--data-root", str(tiny_root), "--output", str(tmp_path), "--epochs", "1"]
    launch(*demo, "--name", "single", procs=1)
    launch(*demo, "--name", "multi")
    one, two = records(tmp_path / "single"), records(tmp_path / "multi")
    assert all(r["num_clusters"] < 16 for r in two) and [r["ranks_agree"] for r in two] == [2]
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-3) and b["num_clusters"] == a["num_clusters"]
    import torch
    wa = torch.load(tmp_path / "single" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "multi" / "last.pt", weights_only=True)["model"]
    # Adam's step is about lr whatever the gradient's size: a near-zero gradient whose sign the two summation
    # orders flip moves a weight by up to 2 lr per step (3 steps at 3.5e-4)
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=6 * 3.5e-4) for k in wa)
    p = subprocess.run([sys.executable, str(ROOT / "main.py"), "--mode", "evaluate", "--checkpoint",
                        str(tmp_path / "multi" / "last.pt"), "--data-root", str(tiny_root)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    evaluated = json.loads(p.stdout.strip().splitlines()[-1])
    assert evaluated["mAP"] == pytest.approx(two[-1]["mAP"], abs=1e-6)


def test_a_nan_on_one_rank_stops_every_rank(tmp_path, tiny_root):
    """NaN from step 2 on rank 0 alone: every rank skips the same steps and stops at the same one (exit 2, no
    rank left waiting in a collective)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
           str(ROOT / "main.py"), *UNSUP, "--set", "model.attention=tests.faults:NaNAtStep",
           "--set", "model.attention_placement=after", "--set", "model.attention_args.count=0",
           "--set", "model.attention_args.rank=0", "--set", "train.max_nonfinite_steps=2", "--epochs", "2",
           "--data-root", str(tiny_root), "--output", str(tmp_path), "--name", "nan"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "2 training steps in a row had a non-finite" in p.stdout + p.stderr
    assert "exitcode  : 2" in p.stdout + p.stderr or p.returncode == 2
    assert (tmp_path / "nan" / "FAILED.txt").is_file()


def test_a_checkpoint_of_another_device_loads_on_this_one(tmp_path, tiny_root):
    """A torchrun or GPU run records its device; on a machine without it, --mode evaluate and the Python API
    load the checkpoint on what this machine has."""
    import torch

    from reidlab import TrainedModel
    launch(*SUP, "--data-root", str(tiny_root), "--output", str(tmp_path), "--epochs", "1", "--name", "g",
           "--set", "train.sync_bn=false", procs=1)
    ckpt = torch.load(tmp_path / "g" / "best.pt", weights_only=True)
    ckpt["config"]["device"] = f"cuda:{torch.cuda.device_count()}"          # a device this machine lacks
    torch.save(ckpt, tmp_path / "elsewhere.pt")
    model = TrainedModel.load(tmp_path / "elsewhere.pt")
    assert model.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    p = subprocess.run([sys.executable, str(ROOT / "main.py"), "--mode", "evaluate", "--checkpoint",
                        str(tmp_path / "elsewhere.pt"), "--data-root", str(tiny_root)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and '"mAP"' in p.stdout, p.stderr[-2000:]


def test_a_short_batch_of_fewer_rows_than_two_per_rank_trains_as_one_process(tmp_path, tiny_root):
    """The demo recipe on 4 gloo ranks with batches of W <= K C < 2W rows (here K 2 and 2 clusters: 4 rows) gave a
    rank one row, and every BatchNorm raised. Now the rows go two or more to a rank (2+2+0+0), a rank without
    rows runs a stand-in that adds nothing, and the epoch is one process's whose BatchNorm slices are the ranks'
    shares (bn_images 2: slices 2+2, the running statistics of the first, as rank 0's): loss and weights."""
    demo = ["--config", "demo", "--set", "data.synthetic_size=tiny", "--set", "train.iters=2", "--device", "cpu",
            "--set", "cluster.eps=0.6", "--set", "train.num_instances=2", "--set", "test.eval_initial=false",
            "--data-root", str(tiny_root), "--output", str(tmp_path), "--epochs", "1"]
    launch(*demo, "--name", "single", "--set", "train.bn_images=2", procs=1)
    launch(*demo, "--name", "multi", "--set", "train.bn_images=0", procs=4)
    one, four = records(tmp_path / "single")[-1], records(tmp_path / "multi")[-1]
    assert four["num_clusters"] == one["num_clusters"] == 2 and four["ranks_agree"] == 4
    assert four["skipped_steps"] == 0 and one["loss"] > 0.1
    assert four["loss"] == pytest.approx(one["loss"], abs=1e-4)
    import torch
    wa = torch.load(tmp_path / "single" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "multi" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(wa[k].float(), wb[k].float(), atol=4 * 3.5e-4) for k in wa)
    assert "are not trained on" not in (tmp_path / "multi" / "log.txt").read_text()
