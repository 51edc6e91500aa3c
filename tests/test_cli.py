"""Bad input: a short error that says what to do, exit code 2, no traceback."""
from pathlib import Path

import pytest
import torch

from tests.conftest import run_in_process

ROOT = Path(__file__).resolve().parents[1]


def run_main(*args):
    """The command in this process (tests.conftest.run_in_process; fresh processes: benchmarks/bad_inputs.py)."""
    return run_in_process(*args)


def assert_user_error(code, err, needle):
    assert code == 2, err
    assert "Traceback" not in err
    assert needle in err, err


def test_missing_dataset_folder(tmp_path):
    code, _, err = run_main("--dataset", "market1501", "--data-root", str(tmp_path), "--output", str(tmp_path))
    assert_user_error(code, err, "bounding_box_train")


def test_unknown_dataset(tmp_path):
    code, _, err = run_main("--dataset", "market1502", "--output", str(tmp_path))
    assert_user_error(code, err, "did you mean 'market1501'")


def test_unknown_config_key(tmp_path):
    code, _, err = run_main("--set", "cluster.epss=0.5", "--output", str(tmp_path))
    assert_user_error(code, err, "did you mean 'cluster.eps'")


def test_corrupt_image_is_named(tmp_path):
    from tests.test_datasets import market_tree
    root = market_tree(tmp_path)
    bad = root / "bounding_box_train" / "0002_c1s1_000451_03.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    code, _, err = run_main("--config", "demo", "--dataset", "market1501", "--data-root", str(tmp_path),
                            "--output", str(tmp_path))
    assert_user_error(code, err, "0002_c1s1_000451_03.jpg")


def test_checkpoint_of_another_model(tmp_path):
    from reidlab.models import build_model
    m = build_model("resnet18", pretrained="none")
    torch.save({"model": m.state_dict(), "config": {"model": {"name": "resnet18"}}, "epoch": 1}, tmp_path / "x.pt")
    code, _, err = run_main("--mode", "evaluate", "--checkpoint", str(tmp_path / "x.pt"),
                            "--set", "model.name=resnet50")
    assert_user_error(code, err, "resnet18")


def test_evaluate_needs_a_checkpoint():
    code, _, err = run_main("--mode", "evaluate")
    assert_user_error(code, err, "--checkpoint")


@pytest.mark.parametrize("bad", ["--device=cuda:7", "--set=train.epochs=x"])
def test_bad_values(tmp_path, bad):
    if "cuda" in bad and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run_main(bad, "--output", str(tmp_path), "--config", "demo", "--data-root", str(tmp_path))
    assert code == 2 and "Traceback" not in err
