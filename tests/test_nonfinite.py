"""Training is right or it stops (runs.loop.StepGuard): a step whose loss or gradients are not finite is
skipped, leaving the weights, the BatchNorm statistics, the optimiser and the memory bank as they were; the
skips are counted; a streak stops the run with exit 2; no checkpoint and no metric is ever made of NaN.

The faults come from ``tests.faults.NaNAtStep``, an attention block named by import path as a user's own,
which poisons the forward output (or the gradient) at chosen training steps."""
import json
import math

import pytest
import torch

import main
from reidlab.memory import ClusterMemory
from reidlab.runs.checkpoint import non_finite
from reidlab.runs.compare import differences
from tests.test_supervised import TINY_SUP
from tests.test_unsup import TINY

FAULT = ["--set", "model.attention=tests.faults:NaNAtStep", "--set", "model.attention_placement=after"]
SUP = [*TINY_SUP, "--config", "bot_market1501", "--set", "model.name=resnet18", "--set", "data.height=64",
       "--set", "data.width=32", "--set", "train.iters=3"]


def fault(**args) -> list[str]:
    return [*FAULT, *[x for k, v in args.items() for x in ("--set", f"model.attention_args.{k}={v}")]]


def records(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def watch_steps(monkeypatch):
    """The model's weights and buffers (and the memory banks' features) at the start of every training step."""
    from reidlab.runs import loop
    seen: list[dict] = []
    banks: list[list[torch.Tensor]] = []
    original = loop.training_module

    def training_module(s):
        net = original(s)

        def snapshot(module, args):
            if module.training:
                seen.append({k: v.detach().clone() for k, v in s.model.state_dict().items()})
        net.register_forward_pre_hook(snapshot)
        return net
    monkeypatch.setattr(loop, "training_module", training_module)
    forward = ClusterMemory.forward

    def memory_forward(self, inputs, targets, cams=None):
        banks.append(self.features.detach().clone())
        return forward(self, inputs, targets, cams)
    monkeypatch.setattr(ClusterMemory, "forward", memory_forward)
    return seen, banks


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_nan_forward_is_skipped_and_changes_nothing(tmp_path, tiny_root, monkeypatch):
    """Unsupervised, NaN embeddings at step 2 of 3: that step is skipped (counted once in the record and the
    log), the weights, the BatchNorm statistics and the memory bank at step 3 are those of step 2, and the
    steps after it are finite again (had the memory taken the NaN update, every later loss would be NaN)."""
    seen, banks = watch_steps(monkeypatch)
    args = [*TINY, *fault(step=2), "--epochs", "1", "--data-root", tiny_root, "--output", tmp_path, "--name", "u"]
    assert main.main([str(a) for a in args]) == 0
    r = records(tmp_path / "u")[-1]
    assert r["skipped_steps"] == 1 and math.isfinite(r["loss"])
    assert len(seen) == 3 and len(banks) == 3
    assert not same_state(seen[0], seen[1])                       # step 1 was taken
    assert same_state(seen[1], seen[2])                           # step 2 was not: nothing moved
    assert torch.equal(banks[1], banks[2]) and not torch.equal(banks[0], banks[1])
    assert "1 of 3 steps skipped" in (tmp_path / "u" / "log.txt").read_text()


def test_a_nan_gradient_is_skipped_with_the_batchnorm_statistics_its_forward_moved(tmp_path, tiny_root, monkeypatch):
    """Supervised BoT with its centre loss, a finite forward and NaN gradients at step 2: the step is skipped,
    and the running statistics that step's (finite) forward updated are put back."""
    seen, _ = watch_steps(monkeypatch)
    from reidlab.supervised import trainer
    centres = []
    original = trainer.extra_parameters

    def extra_parameters(*a):
        extra = original(*a)
        centres.append(extra.module)
        return extra
    monkeypatch.setattr(trainer, "extra_parameters", extra_parameters)
    args = [*SUP, *fault(step=2, where="backward"), "--set", "loss.center=0.0005", "--epochs", "1",
            "--data-root", tiny_root, "--output", tmp_path, "--name", "s"]
    assert main.main([str(a) for a in args]) == 0
    assert records(tmp_path / "s")[-1]["skipped_steps"] == 1
    assert len(seen) >= 3 and same_state(seen[1], seen[2]) and not same_state(seen[0], seen[1])
    assert any("running_mean" in k for k in seen[1])
    assert torch.isfinite(centres[-1].centers).all()


def test_a_streak_stops_the_run_with_its_causes_and_the_last_good_checkpoint(tmp_path, tiny_root):
    """NaN from step 2 on, 3 in a row allowed: epoch 1 skips 2 steps and is saved; epoch 2's first step is the
    third in a row, and the run stops with exit 2, FAILED.txt, and no non-finite tensor in any file."""
    args = [*TINY, *fault(step=2, count=0), "--set", "train.max_nonfinite_steps=3", "--epochs", "3",
            "--data-root", tiny_root, "--output", tmp_path, "--name", "streak"]
    code, out, err = run(*args)
    assert code == 2, err
    for words in ("3 training steps in a row had a non-finite loss", "train.lr=", "train.amp=",
                  f"{tmp_path / 'streak' / 'last.pt'} (epoch 1)", "--resume"):
        assert words in err, words
    assert (tmp_path / "streak" / "FAILED.txt").is_file()
    assert [(r["epoch"], r.get("skipped_steps")) for r in records(tmp_path / "streak")] == [(0, None), (1, 2)]
    for pt in (tmp_path / "streak").glob("*.pt"):
        assert non_finite(torch.load(pt, weights_only=True)) == [], pt


def run(*args):
    from tests.conftest import run_in_process
    return run_in_process(*args)


@pytest.mark.parametrize("recipe", ["demo", "bot_market1501"])
def test_a_learning_rate_that_diverges_stops_and_never_saves_nan(tmp_path, tiny_root, recipe):
    """``train.lr=1e30`` on a shipped recipe with its own values (bot_market1501 does not evaluate the untrained
    model, so its best.pt would have been the NaN model): exit 2, no NaN in any checkpoint, no metric of NaN."""
    data = ["--dataset", "synthetic", "--set", "data.synthetic_size=tiny", "--set", "train.iters=3",
            "--set", "data.height=64", "--set", "data.width=32", "--set", "model.pretrained=none", "--device", "cpu"]
    code, out, err = run("--config", recipe, *data, "--set", "train.lr=1e30", "--epochs", "4",
                         "--set", "test.eval_every=1", "--data-root", tiny_root, "--output", tmp_path, "--name", "x")
    assert code == 2 and "non-finite" in err and "train.lr=1e+30" in err, err
    for pt in (tmp_path / "x").glob("*.pt"):
        assert non_finite(torch.load(pt, weights_only=True)) == [], pt
    for r in records(tmp_path / "x") if (tmp_path / "x" / "metrics.jsonl").is_file() else []:
        assert all(not (isinstance(v, float) and math.isnan(v)) for v in r.values()), r


def test_evaluating_a_checkpoint_with_nan_weights_is_an_error(tmp_path, tiny_root):
    assert main.main([str(a) for a in [*TINY, "--epochs", "1", "--data-root", tiny_root, "--output", tmp_path,
                                       "--name", "ok"]]) == 0
    ckpt = torch.load(tmp_path / "ok" / "best.pt", weights_only=True)
    key = next(k for k in ckpt["model"] if k.endswith("conv1.weight"))
    ckpt["model"][key][0, 0, 0, 0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.pt")
    code, out, err = run("--mode", "evaluate", "--checkpoint", tmp_path / "nan.pt", "--data-root", tiny_root)
    assert code == 2 and "non-finite (NaN or inf) features" in err and "mAP" not in out


def test_the_memory_takes_a_held_update_only_when_committed():
    g = torch.Generator().manual_seed(0)
    feats, y = torch.nn.functional.normalize(torch.randn(8, 4, generator=g), dim=1), torch.arange(8) % 4
    x = torch.randn(8, 4, generator=g, requires_grad=True)
    direct, held = ClusterMemory.from_clusters(feats, y), ClusterMemory.from_clusters(feats, y)
    direct(x, y).backward()
    held.hold_updates = True
    before = held.features.clone()
    held(x, y).backward()
    assert torch.equal(held.features, before)
    held.discard()
    held.commit()
    assert torch.equal(held.features, before)                     # a discarded update is gone
    held(x, y).backward()
    held.commit()
    assert torch.equal(held.features, direct.features)            # a committed one is the immediate update


def test_compare_calls_two_runs_with_the_same_nan_identical(tmp_path):
    """Two bit-identical runs that both hold a NaN (a foreign or older run's files) are identical."""
    for name in ("a", "b"):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "loss": float("nan"), "train_s": 1.0}) + "\n")
        torch.save({"model": {"w": torch.tensor([1.0, float("nan")])}, "config": {}, "epoch": 1}, d / "last.pt")
    assert differences(tmp_path / "a", tmp_path / "b") == []
    torch.save({"model": {"w": torch.tensor([1.0, 2.0])}, "config": {}, "epoch": 1}, tmp_path / "b" / "last.pt")
    assert differences(tmp_path / "a", tmp_path / "b") != []


def test_a_weight_file_with_nan_is_refused_before_the_run_folder(tmp_path, tiny_root):
    from reidlab.models import build_model
    state = build_model("resnet18", pretrained="none", input_size=(64, 32)).state_dict()
    state[next(k for k in state if k.endswith("conv1.weight"))].view(-1)[0] = float("inf")
    torch.save(state, tmp_path / "w.pt")
    code, out, err = run(*TINY, "--epochs", "1", "--set", f"model.pretrained={tmp_path / 'w.pt'}",
                         "--data-root", tiny_root, "--output", tmp_path / "runs")
    assert code == 2 and "NaN or inf" in err and not (tmp_path / "runs").exists()
