"""Runs never lose or mix work, and inputs are checked before the first minute is spent (issue 18).
Each test is named after the numbered item it checks; the two-process and generation-race tests use
real processes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import main
from tests.conftest import run_in_process
from tests.test_unsup import TINY

ROOT = Path(__file__).resolve().parents[1]
QUICK = [*TINY, "--set", "train.iters=2", "--set", "test.eval_initial=false"]


def cli(*args):
    """The command in this process (tests.conftest.run_in_process); the tests of several processes start their
    own, and benchmarks/bad_inputs.py runs the mistakes in fresh ones."""
    return run_in_process(*args)


def epochs(run_dir):
    return [json.loads(x)["epoch"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def folders(out):
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


def test_1_a_new_run_never_takes_over_a_run_folder(tmp_path, tiny_root):
    args = [*QUICK, "--data-root", str(tiny_root), "--output", str(tmp_path), "--epochs", "1"]
    assert main.main(args) == 0 and main.main(args) == 0      # demo.yaml names its runs "demo"
    assert folders(tmp_path) == ["demo", "demo-2"]
    assert epochs(tmp_path / "demo") == [1] and epochs(tmp_path / "demo-2") == [1]
    code, _, err = cli(*args, "--name", "demo")               # a name the user gives is not renamed
    assert code == 2 and "holds another run" in err and "--resume" in err and "Traceback" not in err


def wait_for(predicate, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_2_two_processes_on_one_run_folder(tmp_path, tiny_root):
    args = [*QUICK, "--data-root", str(tiny_root), "--output", str(tmp_path), "--name", "same", "--epochs", "30"]
    first = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: (tmp_path / "same" / "run.lock").is_file())
        code, _, err = cli(*args)
        assert code == 2 and "Traceback" not in err
        assert f"in use by process {first.pid}" in err and str(tmp_path / "same") in err
        # a killed run's lock is stale: --resume takes it over
        assert wait_for(lambda: (tmp_path / "same" / "last.pt").is_file())
        first.send_signal(signal.SIGKILL)
        first.wait()
        done = torch.load(tmp_path / "same" / "last.pt", weights_only=True)["epoch"]
        code, _, err = cli("--resume", str(tmp_path / "same"), "--epochs", str(done + 1), "--data-root", str(tiny_root))
        assert code == 0, err
        assert f"took over the lock left by process {first.pid}" in (tmp_path / "same" / "log.txt").read_text()
    finally:
        first.kill()
        first.wait()


def test_3_resume_from_any_point_and_no_epoch_twice(tmp_path, tiny_root):
    from reidlab.runs.config import build_config
    from reidlab.runs.run import make_run_dir, release_run_dir
    # stopped before its first checkpoint (while loading data): only config.yaml
    cfg = build_config("demo", [{"output": str(tmp_path), "name": "early"}])
    run_dir = make_run_dir(cfg, explicit_name=True)
    release_run_dir(run_dir)
    assert not (run_dir / "last.pt").exists()
    assert main.main(["--resume", str(run_dir), *QUICK[2:], "--data-root", str(tiny_root), "--epochs", "1"]) == 0
    assert epochs(run_dir) == [1]
    # stopped during epoch 1 of another run: last.pt of epoch 0 exists from the start
    args = [*TINY, "--data-root", str(tiny_root), "--output", str(tmp_path), "--name", "r", "--set", "train.iters=2"]
    assert main.main([*args, "--epochs", "2"]) == 0
    with (run_dir.parent / "r" / "metrics.jsonl").open("a") as f:      # as if epoch 3 was logged, then killed
        f.write(json.dumps({"epoch": 3, "loss": 1.0}) + "\n")
    assert main.main(["--resume", str(tmp_path / "r"), "--epochs", "3", "--data-root", str(tiny_root)]) == 0
    assert epochs(tmp_path / "r") == [0, 1, 2, 3]
    assert "dropped 1 record(s) past epoch 2" in (tmp_path / "r" / "log.txt").read_text()


def sigint_as_a_shell_gives_it():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


def signal_masks(pid: int) -> str:
    try:
        return " ".join(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                        if x.startswith(("SigBlk", "SigIgn", "SigCgt")))
    except OSError:
        return "?"


def test_3_last_pt_exists_before_the_first_epoch(tmp_path, tiny_root):
    # 100 iterations make epoch 1 last seconds, so the interrupt lands in it on a fast idle machine too (with 2,
    # all 30 epochs once ran out before it); Ctrl-C is repeated, as a user would, should one land where Python
    # ignores it (a finaliser).
    args = [*QUICK, "--set", "train.iters=100", "--data-root", str(tiny_root), "--output", str(tmp_path), "--name",
            "k", "--epochs", "30"]
    # The child starts with SIGINT at its default and unblocked, as a shell starts a command: a child inherits
    # its parent's ignored and blocked signals, and once in a full suite the run went on through every Ctrl-C.
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, preexec_fn=sigint_as_a_shell_gives_it)
    try:
        assert wait_for(lambda: (tmp_path / "k" / "last.pt").is_file())
        masks = signal_masks(p.pid)
        for _ in range(5):
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                pass
        assert p.wait(timeout=60) == 130, f"the run went on through Ctrl-C; its signal masks: {masks}"
    finally:
        p.kill()
        p.wait()
    assert main.main(["--resume", str(tmp_path / "k"), "--epochs", "1", "--data-root", str(tiny_root)]) == 0
    assert epochs(tmp_path / "k") == [1]


def test_4_a_failed_run_keeps_its_error(tmp_path):
    from tests.test_datasets import market_tree
    market_tree(tmp_path / "data")                     # no annotations/: DAAF fails after the folder exists
    args = ["--mode", "supervised", "--config", "daaf_bot_market1501", "--dataset", "market1501",
            "--data-root", str(tmp_path / "data"), "--output", str(tmp_path / "out"), "--name", "f",
            "--set", "model.pretrained=none", "--set", "model.args.base=resnet18", "--device", "cpu"]
    code, _, err = cli(*args)
    assert code == 2 and "annotations" in err
    log = (tmp_path / "out" / "f" / "log.txt").read_text()
    assert "the run failed" in log and "annotations" in log
    assert "annotations" in (tmp_path / "out" / "f" / "FAILED.txt").read_text()
    # a mistake found before the folder is made leaves no folder
    code, _, err = cli("--dataset", "market1501", "--data-root", str(tmp_path / "nothing"),
                       "--output", str(tmp_path / "out2"))
    assert code == 2 and not (tmp_path / "out2").exists()


def test_5_checkpoints(tmp_path, tiny_root):
    args = [*QUICK, "--data-root", str(tiny_root), "--output", str(tmp_path), "--name", "c", "--epochs", "1"]
    assert main.main(args) == 0
    run_dir = tmp_path / "c"
    assert oct((run_dir / "last.pt").stat().st_mode & 0o777) == oct((run_dir / "log.txt").stat().st_mode & 0o777)
    orphan = run_dir / "last.pt.abc123.tmp"
    orphan.write_bytes(b"x" * 100)
    assert main.main(["--resume", str(run_dir), "--epochs", "2", "--data-root", str(tiny_root)]) == 0
    assert not orphan.exists()
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    for f, words in (("text.pt", "text file"), ("empty.pt", "empty (0 bytes)")):
        code, _, err = cli("--mode", "evaluate", "--checkpoint", str(tmp_path / f))
        assert code == 2 and words in err and "expected a last.pt or best.pt" in err, err


def test_5_resuming_a_supervised_run_in_unsup_mode_says_so(tmp_path, tiny_root):
    from tests.test_supervised import TINY_SUP
    assert main.main([*TINY_SUP, "--config", "bot_market1501", "--set", "model.name=resnet18", "--data-root",
                      str(tiny_root), "--output", str(tmp_path), "--name", "s", "--epochs", "1"]) == 0
    assert main.main(["--mode", "unsup", "--resume", str(tmp_path / "s"), "--epochs", "2",
                      "--data-root", str(tiny_root)]) == 0
    assert "is a supervised run: it resumes as one" in (tmp_path / "s" / "log.txt").read_text()
    assert epochs(tmp_path / "s")[-1] == 2


@pytest.mark.parametrize("bad,key", [
    (["--set", "cluster.eps=1.5"], "cluster.eps"), (["--set", "cluster.knn=fast"], "cluster.knn"),
    (["--set", "memory.update=soft"], "memory.update"), (["--set", "test.eval_every=0"], "test.eval_every"),
    (["--set", "train.num_instances=0"], "train.num_instances"), (["--seed", "-1"], "seed"),
    (["--epochs", "-1"], "train.epochs"), (["--set", "data.height=0"], "data.height"),
])
def test_6_7_values_are_checked_when_the_config_is_built(tmp_path, bad, key):
    start = time.time()
    code, _, err = cli("--config", "demo", "--data-root", str(tmp_path / "d"), "--output", str(tmp_path / "o"), *bad)
    assert code == 2 and "Traceback" not in err and key in err and "allowed" in err, err
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()      # nothing made, nothing loaded
    assert time.time() - start < 60


def test_7_iters_0_is_one_pass_in_both_modes(tmp_path, tiny_root):
    records = [json.loads(x) for x in _run(tmp_path, tiny_root, "p", "--set", "train.iters=0")]
    assert records[-1]["loss"] is not None and records[-1]["loss"] > 0


def _run(tmp_path, root, name, *extra):
    assert main.main([*QUICK, "--data-root", str(root), "--output", str(tmp_path), "--name", name, "--epochs", "1",
                      *extra]) == 0
    return (tmp_path / name / "metrics.jsonl").read_text().splitlines()


def unwritable(tmp_path) -> Path:
    """A folder this process cannot write: chmod 0555 for a user; root writes anywhere, so /sys for root."""
    if os.geteuid() == 0:
        return Path("/sys")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return d


def test_8_output_and_data_root_problems(tmp_path, tiny_root, main_in_process):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "taken").write_text("x")
    base = [*QUICK, "--data-root", str(tiny_root)]
    for extra, words in (
            (["--output", str(unwritable(tmp_path))], "output"),
            (["--output", str(tmp_path / "afile")], "is a file"),
            (["--output", str(tmp_path / "out"), "--name", "taken"], "is a file, not a run folder")):
        code, _, err = main_in_process(*base, *extra)
        assert code == 2 and words in err and "Traceback" not in err, err
    code, _, err = main_in_process(*QUICK, "--data-root", str(unwritable(tmp_path) / "data"),
                                   "--output", str(tmp_path / "o"))
    assert code == 2 and "--data-root" in err and "Traceback" not in err, err


def test_9_two_first_time_generations_at_once(tmp_path):
    code = ("import sys; from reidlab.data.synthetic import ensure_synthetic; "
            "print(ensure_synthetic(sys.argv[1], 'tiny', seed=int(sys.argv[2])))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), "3"], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert {o.strip().splitlines()[-1] for o, _ in outs} == {str(tmp_path / "synthetic-tiny-seed3")}
    assert not list(tmp_path.glob(".synthetic-tiny-seed3.tmp-*"))


def test_9_the_seed_never_deletes_another_generation(tmp_path):
    from reidlab.data.synthetic import ensure_synthetic
    a = ensure_synthetic(tmp_path, "tiny", seed=0)
    stamp = (a / ".complete").stat().st_mtime_ns
    b = ensure_synthetic(tmp_path, "tiny", seed=1)
    assert a != b and (a / ".complete").stat().st_mtime_ns == stamp
    from reidlab.errors import DatasetError
    with pytest.raises(DatasetError, match="synthetic_seed"):
        ensure_synthetic(tmp_path, "tiny", seed=-5)
    assert a.is_dir() and b.is_dir()


def test_10_a_users_recipe_can_base_on_a_shipped_one(tmp_path):
    (tmp_path / "mine.yaml").write_text("_base_: demo.yaml\ntrain:\n  lr: 1.0e-3\n")
    (tmp_path / "child.yaml").write_text("_base_: mine\ntrain:\n  epochs: 3\n")
    from reidlab.runs.config import build_config
    cfg = build_config(str(tmp_path / "child.yaml"))
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.name) == (1e-3, 3, "resnet18")


def test_11_a_misnamed_training_image_is_a_warning(tmp_path, caplog):
    from reidlab.data import build_dataset
    from tests.test_datasets import market_tree
    root = market_tree(tmp_path)
    (root / "bounding_box_train" / "IMG_0001.jpg").write_bytes((root / "query").iterdir().__next__().read_bytes())
    import logging
    caplog.set_level(logging.INFO)
    build_dataset("market1501", tmp_path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "1 names that do not parse" in warnings[0].getMessage()
    assert "IMG_0001.jpg" in warnings[0].getMessage()


def test_12_an_attention_path_that_is_not_a_module(tmp_path):
    code, _, err = cli("--config", "demo", "--set", "model.attention=builtins:dict", "--output", str(tmp_path))
    assert code == 2 and "not a torch.nn.Module class" in err and "Traceback" not in err


def test_13_help_list_and_print_config():
    code, out, _ = cli("--help")
    assert code == 0 and "--list" in out and "--print-config" in out
    code, out, _ = cli("--list")
    assert code == 0 and all(w in out for w in ("mla_market1501", "market1501", "daaf", "pla+hla", "occluded_reid"))
    code, out, _ = cli("--config", "demo", "--set", "cluster.eps=0.5", "--print-config")
    import yaml
    cfg = yaml.safe_load(out)
    assert code == 0 and cfg["cluster"]["eps"] == 0.5 and cfg["name"] == "demo"


def test_14_readme_keeps_to_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "../shared" not in readme and "--test-dataset" in readme
    assert (ROOT / "docs" / "architecture.md").is_file()


def test_checkpoint_files_are_not_private(tmp_path):
    from reidlab.runs.checkpoint import save_checkpoint
    save_checkpoint(tmp_path / "x.pt", {"a": torch.zeros(1)})
    (tmp_path / "y.txt").write_text("y")
    assert (tmp_path / "x.pt").stat().st_mode & 0o777 == (tmp_path / "y.txt").stat().st_mode & 0o777


def test_a_metrics_line_cut_short_by_a_kill_does_not_stop_the_resume(tmp_path, tiny_root):
    args = [*QUICK, "--data-root", str(tiny_root), "--output", str(tmp_path), "--name", "torn"]
    assert main.main([*args, "--epochs", "1"]) == 0
    with (tmp_path / "torn" / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 2, "lr": 0.00')                      # killed mid-write: no newline
    assert main.main(["--resume", str(tmp_path / "torn"), "--epochs", "2", "--data-root", str(tiny_root)]) == 0
    assert epochs(tmp_path / "torn") == [1, 2]
    assert "cut short" in (tmp_path / "torn" / "log.txt").read_text()
    # a damaged line before the last is an error that names it, and the run is left as it was
    path = tmp_path / "torn" / "metrics.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    before = path.read_text()
    code, _, err = cli("--resume", str(tmp_path / "torn"), "--epochs", "3", "--data-root", str(tiny_root))
    assert code == 2 and "line 2 is not an epoch's record" in err and "Traceback" not in err
    assert path.read_text() == before


def test_a_finished_runs_lock_is_not_taken_over_as_a_crashed_one(tmp_path, tiny_root):
    args = [*QUICK, "--data-root", str(tiny_root), "--output", str(tmp_path), "--name", "ended"]
    assert main.main([*args, "--epochs", "1"]) == 0
    assert (tmp_path / "ended" / "run.lock").read_text() == ""
    assert main.main(["--resume", str(tmp_path / "ended"), "--epochs", "2", "--data-root", str(tiny_root)]) == 0
    assert "took over the lock" not in (tmp_path / "ended" / "log.txt").read_text()


def test_resuming_a_run_that_has_all_its_epochs_says_what_to_do(tmp_path, tiny_root, capsys):
    args = [*QUICK, "--data-root", str(tiny_root), "--output", str(tmp_path), "--name", "full"]
    assert main.main([*args, "--epochs", "1"]) == 0
    before = (tmp_path / "full" / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main.main(["--resume", str(tmp_path / "full"), "--data-root", str(tiny_root)]) == 0
    out = capsys.readouterr().out
    assert "nothing to train" in out and "--epochs 11" in out and "--mode evaluate" in out
    assert (tmp_path / "full" / "metrics.jsonl").read_text() == before
