"""Resume is what docs/running.md says: a resumed run is the straight run bit for bit, stochastic layers
included; a resume that is refused leaves its run folder as it was; a run leaves the process as it found it."""
import json

import pytest
import torch

import main
from reidlab.runs.compare import differences
from tests.conftest import run_in_process
from tests.test_mistakes import tree_digest
from tests.test_supervised import TINY_SUP

DETERMINISTIC = ["--set", "train.deterministic=true", "--set", "train.threads=2"]
VIT = [*TINY_SUP, "--config", "vit_base_market1501", "--set", "data.height=64", "--set", "data.width=32",
       "--set", "model.pretrained=none", "--set", "model.args.size=tiny", "--set", "train.iters=2",
       *DETERMINISTIC]


def train(*args) -> int:
    return main.main([str(a) for a in args])


def test_a_resumed_vit_is_the_straight_run_bit_for_bit(tmp_path, tiny_root):
    """The ViT recipe (drop-path 0.1, dropout: its own values) for 3 epochs, against 1 epoch then --resume to 3:
    the same metrics and every weight bit for bit (the global generators are seeded per epoch)."""
    where = ["--data-root", tiny_root, "--output", tmp_path]
    assert train(*VIT, *where, "--epochs", "3", "--name", "straight") == 0
    assert train(*VIT, *where, "--epochs", "1", "--name", "resumed") == 0
    assert train("--resume", tmp_path / "resumed", "--epochs", "3", "--data-root", tiny_root) == 0
    assert differences(tmp_path / "straight", tmp_path / "resumed") == []
    config = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["config"]
    assert config["model"]["args"].get("drop_path", 0.1) > 0          # the stochastic layers were on


def bot(tmp_path, tiny_root, name="b"):
    args = [*TINY_SUP, "--config", "bot_market1501", "--set", "model.name=resnet18", "--set", "data.height=64",
            "--set", "data.width=32", "--set", "train.iters=2", "--epochs", "1", "--data-root", tiny_root,
            "--output", tmp_path, "--name", name]
    assert train(*args) == 0
    return tmp_path / name


def test_a_refused_resume_leaves_the_run_as_it_was(tmp_path, tiny_root):
    """Another optimiser, another model, data of other identities: each is refused with exit 2 before the
    folder opens: no FAILED.txt, no log line, no file changed."""
    from tests.test_small_data import labelled_tree
    run = bot(tmp_path, tiny_root)
    twelve = labelled_tree(tiny_root / "synthetic-tiny", tmp_path / "twelve")
    before = tree_digest(run)
    for extra, words in ((["--set", "train.optimizer=sgd"], "holds the state of adam"),
                         (["--set", "model.name=resnet50"], "does not fit"),
                         (["--dataset", f"market:{twelve}"], "12 training identities")):
        code, out, err = run_in_process("--resume", run, "--epochs", "2", "--data-root", tiny_root, *extra)
        assert code == 2 and words in err, err
        assert tree_digest(run) == before and not (run / "FAILED.txt").exists()


def test_a_resume_with_another_learning_rate_takes_it(tmp_path, tiny_root):
    run = bot(tmp_path, tiny_root)
    was = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][-1]["lr"]
    assert train("--resume", run, "--epochs", "2", "--data-root", tiny_root, "--set", "train.lr=3.5e-5") == 0
    now = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][-1]["lr"]
    # epoch 2 of the run's schedule (its warm-up of one epoch from 0.1 x), at the new rate
    from reidlab.runs.config import build_config
    from reidlab.runs.optim import build_optimizer
    config = torch.load(run / "last.pt", weights_only=True)["config"]
    _, schedule = build_optimizer(torch.nn.Linear(1, 1), build_config(base=config).train)
    f = schedule.lr_lambdas[0]
    assert f(0) < f(1) and was == pytest.approx(3.5e-4 * f(0)) and now == pytest.approx(3.5e-5 * f(1))


def test_a_run_leaves_the_threads_and_kernels_as_it_found_them(tmp_path, tiny_root):
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    args = [*TINY_SUP, "--config", "bot_market1501", "--set", "model.name=resnet18", "--set", "train.iters=1",
            "--epochs", "1", "--set", "train.threads=1", "--set", "train.deterministic=true",
            "--data-root", tiny_root, "--output", tmp_path, "--name", "t"]
    assert train(*args) == 0
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == deterministic


def test_a_resumed_unsupervised_run_is_the_straight_run_labels_moved_included(tmp_path, tiny_root):
    """The demo recipe for 3 epochs against 2 then --resume to 3: the third epoch's labels_changed and
    labels_ari_prev compare with the second epoch's pseudo-labels, which last.pt now carries (the straight
    run's numbers, not a first epoch's)."""
    demo = ["--config", "demo", "--set", "data.synthetic_size=tiny", "--set", "train.iters=2", "--device", "cpu",
            "--set", "test.eval_every=1", "--data-root", tiny_root, "--output", tmp_path]
    assert train(*demo, "--epochs", "3", "--name", "straight") == 0
    assert train(*demo, "--epochs", "2", "--name", "resumed") == 0
    assert train("--resume", tmp_path / "resumed", "--epochs", "3", "--data-root", tiny_root) == 0
    assert differences(tmp_path / "straight", tmp_path / "resumed") == []
    last = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()][-1]
    assert "labels_changed" in last and "labels_ari_prev" in last


def test_the_loss_scaler_and_the_guards_streak_resume_where_they_were(tmp_path):
    """fp16's GradScaler settles below its first scale of 65536; a resumed run starting again at 65536 skipped its
    first steps as overflows. last.pt carries the scaler's state, the NaN guard's streak and its history."""
    from reidlab.runs.checkpoint import TrainingState
    from reidlab.runs.step import StepGuard
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=65536.0)
    scaler.scale(torch.ones(()))                            # the scale is made at its first use
    scaler.update(1024.0)                                   # where the straight run's scale had settled
    guard = StepGuard(20)
    guard.streak, guard.skipped, guard.history = 3, 5, {1: 2, 2: 3}
    (tmp_path / "config.yaml").write_text("mode: unsup\n")
    TrainingState(tmp_path, model, opt, sched, {}, progress={"scaler": scaler, "guard": guard}).save(2, {})
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    ckpt["path"] = str(tmp_path / "last.pt")
    scaler2, guard2 = torch.amp.GradScaler("cpu", init_scale=65536.0), StepGuard(20)
    TrainingState(tmp_path, model, opt, sched, {}, progress={"scaler": scaler2, "guard": guard2}).resume(ckpt)
    assert scaler2.get_scale() == 1024.0 and scaler2.state_dict() == scaler.state_dict()
    assert (guard2.streak, guard2.skipped, guard2.history) == (3, 5, {1: 2, 2: 3})
    # a checkpoint of an earlier version (no progress): both start afresh, with a line in the log
    del ckpt["progress"]
    scaler3, guard3 = torch.amp.GradScaler("cpu", init_scale=65536.0), StepGuard(20)
    TrainingState(tmp_path, model, opt, sched, {}, progress={"scaler": scaler3, "guard": guard3}).resume(ckpt)
    assert guard3.streak == 0 and scaler3.state_dict()["scale"] == 65536.0


def test_a_checkpoint_holding_nan_is_refused_before_its_folder_is_touched(tmp_path, tiny_root):
    """A last.pt with NaN weights (written before the guard, or damaged) trained into the run folder and stopped at
    the first evaluation, after writing FAILED.txt, log.txt and events. Now: exit 2 at once, the folder as it was."""
    run = bot(tmp_path, tiny_root)
    ckpt = torch.load(run / "last.pt", weights_only=True)
    first = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][first][...] = float("nan")
    torch.save(ckpt, run / "last.pt")
    before = tree_digest(run)
    code, out, err = run_in_process("--resume", run, "--epochs", "2", "--data-root", tiny_root)
    assert code == 2 and "NaN or inf" in err and first in err and "Traceback" not in err
    assert tree_digest(run) == before and not (run / "FAILED.txt").exists()
