"""Supervised mode: the losses against loop implementations, the schedule, and runs of BoT / DAAF."""
import json

import pytest
import torch

import main
from reidlab.runs.optim import LRFactor
from reidlab.supervised.losses import batch_hard_triplet, label_smoothed_cross_entropy
from tests.reference import batch_hard_triplet_loop, label_smoothed_ce_loop


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_label_smoothed_cross_entropy_matches_the_loop(eps):
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(7, 5, generator=g) * 3, torch.randint(0, 5, (7,), generator=g)
    assert label_smoothed_cross_entropy(logits, targets, eps).item() == pytest.approx(
        label_smoothed_ce_loop(logits, targets, eps), rel=1e-5)


@pytest.mark.parametrize("margin", [0.3, 0.0, 1.0])
def test_batch_hard_triplet_matches_the_loop(margin):
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(12, 6, generator=g)
    targets = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4])     # id 4 has no positive: not an anchor
    assert batch_hard_triplet(feats, targets, margin).item() == pytest.approx(
        batch_hard_triplet_loop(feats, targets.tolist(), margin), rel=1e-5)


def test_triplet_gradient_is_finite_with_duplicate_features():
    feats = torch.ones(4, 3, requires_grad=True)
    batch_hard_triplet(feats, torch.tensor([0, 0, 1, 1])).backward()
    assert torch.isfinite(feats.grad).all()


def test_warmup_then_steps_and_cosine():
    f = LRFactor("step", epochs=120, steps=[40, 70], gamma=0.1, warmup_epochs=10, warmup_factor=0.1)
    assert f(0) == pytest.approx(0.1) and f(5) == pytest.approx(0.55) and f(10) == 1.0
    assert f(39) == 1.0 and f(40) == pytest.approx(0.1) and f(70) == pytest.approx(0.01)
    assert LRFactor("step", step_size=20)(45) == pytest.approx(0.01)
    c = LRFactor("cosine", epochs=20, warmup_epochs=0)
    assert c(0) == 1.0 and c(10) == pytest.approx(0.5) and c(20) == pytest.approx(0.0)


TINY_SUP = ["--mode", "supervised", "--dataset", "synthetic", "--set", "data.synthetic_size=tiny",
            "--set", "data.height=32", "--set", "data.width=16", "--set", "model.pretrained=none",
            "--set", "train.iters=2", "--set", "train.num_ids=4", "--set", "train.num_instances=4",
            "--set", "train.warmup_epochs=1", "--set", "test.eval_every=1", "--set", "test.batch_size=64",
            "--device", "cpu"]


def run_sup(tmp_path, root, name, recipe, *extra):
    args = [*TINY_SUP, "--config", recipe, "--data-root", str(root), "--output", str(tmp_path), "--name", name, *extra]
    assert main.main(args) == 0
    return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("recipe,extra,parts", [
    ("bot_market1501", ["--set", "model.name=resnet18"], {"id", "triplet"}),
    ("daaf_bot_market1501", ["--set", "model.args.base=resnet18"], {"id", "triplet", "hab", "pab"}),
    ("daaf_trinet_market1501", ["--set", "model.args.base=resnet18", "--set", "teacher.noisy=true"],
     {"triplet", "hab", "pab"}),
])
def test_one_supervised_epoch(tmp_path, tiny_root, recipe, extra, parts):
    records = run_sup(tmp_path, tiny_root, "r", recipe, "--epochs", "1", *extra)
    last = records[-1]
    assert last["epoch"] == 1 and 0 <= last["mAP"] <= 1
    assert parts <= set(last) and all(last[k] > 0 for k in parts)
    assert (tmp_path / "r" / "best.pt").is_file()
    # evaluate mode rebuilds the model (with its classifier) from the checkpoint
    assert main.main(["--mode", "evaluate", "--checkpoint", str(tmp_path / "r"), "--data-root", str(tiny_root)]) == 0


def test_resume_continues_exactly(tmp_path, tiny_root, capsys):
    extra = ["--set", "model.args.base=resnet18", "--set", "test.eval_every=2"]
    full = run_sup(tmp_path, tiny_root, "full", "daaf_bot_market1501", "--epochs", "2", *extra)
    run_sup(tmp_path, tiny_root, "part", "daaf_bot_market1501", "--epochs", "1", *extra)
    assert main.main(["--resume", str(tmp_path / "part"), "--epochs", "2", "--data-root", str(tiny_root)]) == 0
    part = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    keys = ("epoch", "loss", "id", "triplet", "hab", "pab")
    assert [[r.get(k) for k in keys] for r in part] == [[r.get(k) for k in keys] for r in full]
    assert (part[-1]["mAP"], part[-1]["rank1"]) == (full[-1]["mAP"], full[-1]["rank1"])
    # best.pt holds the weights only (a third of last.pt with Adam's moments): resuming from it says so
    assert (tmp_path / "full" / "best.pt").stat().st_size < 0.5 * (tmp_path / "full" / "last.pt").stat().st_size
    assert main.main(["--resume", str(tmp_path / "full" / "best.pt"), "--data-root", str(tiny_root)]) == 2
    assert "weights only" in capsys.readouterr().err


def test_center_loss_matches_the_loop():
    from reidlab.supervised.losses import CenterLoss
    torch.manual_seed(0)
    c = CenterLoss(4, 3)
    f, y = torch.randn(6, 3), torch.tensor([0, 1, 1, 3, 2, 0])
    loop = sum(float(((f[i] - c.centers[y[i]].detach()) ** 2).sum()) for i in range(6)) / 6
    assert c(f, y).item() == pytest.approx(loop, rel=1e-5)


def test_identity_sampler_is_bots():
    import numpy as np
    from reidlab.data.samplers import IdentitySampler
    labels = np.repeat(np.arange(10), [8, 8, 4, 4, 4, 9, 2, 4, 5, 4])
    s = IdentitySampler(labels, num_ids=4, num_instances=4, rng=np.random.default_rng(0))
    one = s.one_pass()
    for b in one:
        ids = labels[b]
        assert len(b) == 16 and len(set(ids)) == 4 and all((ids == y).sum() == 4 for y in set(ids))
    # one pass: every chunk of 4 at most once (images of identities with >= 4 images never repeat)
    flat = [i for b in one for i in b if (labels == labels[i]).sum() >= 4]
    assert len(flat) == len(set(flat))
    # 13 chunks of 4 over 10 identities (2, 2, 1, 1, 1, 2, 1 filled up by repeats, 1, 1, 1): at most 3
    # batches, and the pass ends once fewer than 4 identities have chunks left (after 2 or 3 batches)
    assert 2 <= len(one) <= 3
    assert len(list(s.batches(7))) == 7


def test_warmup_by_iteration(tmp_path, tiny_root, monkeypatch):
    """train.warmup_by=iter: over the warm-up epochs the learning rate rises at every step, linearly from
    warmup_factor x lr, then the epoch schedule takes over; warmup_by=epoch keeps one rate per epoch."""
    base, wf = 1e-3, 0.1
    f = LRFactor("step", 3, 10, (), 0.1, 2, wf)
    assert [f.at(t) for t in (0, 0.5, 1.0, 1.5, 2.0)] == pytest.approx([0.1, 0.325, 0.55, 0.775, 1.0])
    seen = []
    step = torch.optim.Adam.step

    def recording(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)
    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    for unit in ("iter", "epoch"):
        seen.clear()
        assert main.main([*TINY_SUP, "--data-root", str(tiny_root), "--output", str(tmp_path), "--name", unit,
                          "--epochs", "2", "--set", "train.iters=2", "--set", f"train.lr={base}", "--set",
                          "train.warmup_epochs=1", "--set", f"train.warmup_factor={wf}", "--set",
                          f"train.warmup_by={unit}", "--set", "test.eval_every=3", "--set",
                          "test.eval_initial=false"]) == 0
        one = LRFactor("step", 2, 10, (), 0.1, 1, wf)
        want = [base * one.at(x) for x in (0, 0.5)] if unit == "iter" else [base * wf] * 2
        assert seen == pytest.approx(want + [base] * 2), unit
