"""Same seed, same numbers (``train.deterministic``, runs/determinism.py): two runs, bit for bit."""
import pytest
import torch
import torch.nn.functional as F

import main
from reidlab.models.heads import GeM, GlobalPool
from reidlab.runs.compare import differences
from reidlab.runs.compare import main as compare_main
from reidlab.runs.config import build_config
from reidlab.runs.determinism import DEFAULT_THREADS, configure
from tests.test_supervised import TINY_SUP
from tests.test_unsup import TINY

DETERMINISTIC = ["--set", "train.deterministic=true", "--set", "train.threads=2"]


def twice(tmp_path, root, args):
    for name in ("a", "b"):
        assert main.main([*args, *DETERMINISTIC, "--data-root", str(root), "--output", str(tmp_path),
                          "--name", name]) == 0
    return tmp_path / "a", tmp_path / "b"


def test_two_deterministic_unsupervised_runs_are_bit_identical(tmp_path, tiny_root, capsys):
    a, b = twice(tmp_path, tiny_root, [*TINY, "--epochs", "3", "--set", "train.bn_images=8"])
    assert differences(a, b) == []
    assert compare_main([str(a), str(b)]) == 0 and "identical" in capsys.readouterr().out
    assert "deterministic mode: 2 CPU threads" in (a / "log.txt").read_text()


def test_two_deterministic_supervised_runs_are_bit_identical(tmp_path, tiny_root):
    a, b = twice(tmp_path, tiny_root, [*TINY_SUP, "--config", "bot_market1501", "--set", "model.name=resnet18",
                                       "--epochs", "2"])
    assert differences(a, b) == []


def test_compare_finds_a_difference_and_refuses_what_is_not_a_run(tmp_path, tiny_root, capsys):
    common = [*TINY, "--epochs", "1", "--data-root", str(tiny_root), "--output", str(tmp_path)]
    assert main.main([*common, "--name", "s1"]) == 0
    assert main.main([*common, "--name", "s2", "--seed", "2"]) == 0
    found = differences(tmp_path / "s1", tmp_path / "s2")
    assert found and found[0].startswith("weights:")
    assert compare_main([str(tmp_path / "s1"), str(tmp_path / "s2")]) == 1
    assert compare_main([str(tmp_path / "s1"), str(tmp_path / "missing")]) == 2
    assert "not a finished run folder" in capsys.readouterr().err


def test_the_mode_is_set_for_each_run_and_undone_by_the_next():
    cfg = build_config("demo", [{"train": {"threads": 1}}])
    try:
        configure(cfg, torch.device("cpu"))
        assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        configure(build_config("cluster_contrast_resnet50"), torch.device("cpu"))
        assert not torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == DEFAULT_THREADS
        assert not torch.backends.cudnn.deterministic
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(DEFAULT_THREADS)


@pytest.mark.parametrize("bad", ["train.threads=-1", "train.deterministic=maybe"])
def test_bad_values_stop_when_the_config_is_built(tmp_path, bad, capsys):
    assert main.main(["--config", "demo", "--set", bad, "--output", str(tmp_path)]) == 2
    assert bad.split("=")[0] in capsys.readouterr().err


@pytest.mark.parametrize("shape", [(4, 8, 4, 2), (3, 16, 16, 8), (2, 5, 7, 3)])
def test_global_pools_give_the_adaptive_pools_numbers(shape):
    """The reductions that replace AdaptiveAvg/MaxPool2d(1) (no deterministic CUDA backward) give the same
    forward bit for bit and the same gradient."""
    x = torch.randn(*shape, requires_grad=True)
    for kind, ref in (("avg", F.adaptive_avg_pool2d), ("max", F.adaptive_max_pool2d)):
        ours, theirs = GlobalPool(kind)(x), ref(x, 1).flatten(1)
        assert torch.equal(ours, theirs)
        g = torch.randn_like(ours)
        (ga,) = torch.autograd.grad(ours, x, g)
        (gb,) = torch.autograd.grad(theirs, x, g)
        assert torch.allclose(ga, gb, atol=1e-7)
    y, gem = x.detach().abs(), GeM()
    assert torch.equal(gem(y), F.adaptive_avg_pool2d(y.clamp(min=gem.eps).pow(gem.p), 1).pow(1.0 / gem.p).flatten(1))
