"""``train.bn_images``: BatchNorm over per-device slices on one device (models/sliced_bn.py) gives what
nn.DataParallel's replicas, and torchrun without SyncBN, give on the same batch."""
import copy

import pytest
import torch
from torch import nn

from reidlab.errors import ConfigError
from reidlab.models.sliced_bn import SlicedBatchNorm, slice_batchnorms, slice_sizes
from reidlab.runs.config import build_config
from tests.test_distributed import SUP, TINY, launch


def replicas_reference(module: nn.Module, x: torch.Tensor, images):
    """What DataParallel computes: a copy of ``module`` on each slice (``images`` rows each, or a list of the
    slices' rows), outputs concatenated, gradients of the shared parameters summed, the buffers of the first
    copy (the one that shares the module's storage)."""
    pieces = x.split(images)
    copies = [copy.deepcopy(module) for _ in pieces]
    out = torch.cat([c(s) for c, s in zip(copies, pieces)])
    return out, copies


def test_slices_of_any_batch_are_torch_chunk_in_whole_identities():
    """DataParallel scatters with torch.chunk (torch/nn/parallel/scatter_gather.py -> comm.scatter): the same
    pieces, counted in identities of K rows when the rows are a multiple of K (but a last piece of one row,
    which no BatchNorm normalises in training, joins the one before)."""
    for devices in range(1, 9):
        for rows in range(1, 80):
            chunks = [len(c) for c in torch.arange(rows).chunk(devices)]
            if len(chunks) > 1 and chunks[-1] == 1:
                chunks[-2:] = [chunks[-2] + 1]
            if chunks[0] == 1 and len(chunks) > 1:             # pieces of one row each: joined as they come
                chunks = [rows]
            assert slice_sizes(rows, devices) == chunks, (rows, devices)
            assert rows < 2 or min(slice_sizes(rows, devices)) >= 2
            for K in (2, 4):
                if rows % K == 0:
                    ids = [len(c) * K for c in torch.arange(rows // K).chunk(devices)]
                    assert slice_sizes(rows, devices, K) == ids
    assert slice_sizes(64, 4, 4) == [16] * 4 and slice_sizes(44, 4, 4) == [12, 12, 12, 8]
    assert slice_sizes(3, 4, 1) == [3] and slice_sizes(5, 4) == [2, 3]   # never a slice of one row


def test_a_slice_of_one_row_never_reaches_a_batchnorm():
    """3 rows over 4 devices' shares gave [1, 2], and the sliced BatchNorm raised on the first: now one slice."""
    layer = SlicedBatchNorm(4, images=1, devices=4)
    layer.train()
    out = layer(torch.randn(3, 4))
    assert out.shape == (3, 4) and torch.isfinite(out).all()


@pytest.mark.parametrize("rows,sizes", [(44, [12, 12, 12, 8]), (12, [4, 4, 4]), (4, None), (42, [11, 11, 11, 9])])
def test_a_short_batch_is_normalised_as_dataparallels_chunks(rows, sizes):
    """The demo's slices (batch 16 x 4, bn_images 16: four devices) on a batch of fewer identities than P:
    against one replica per DataParallel chunk, output, gradients and the first chunk's running statistics."""
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(6)
    nn.init.normal_(bn.weight)
    nn.init.normal_(bn.bias)
    x = torch.randn(rows, 6, 3, 2) * 2 + 1
    model = slice_batchnorms(nn.Sequential(copy.deepcopy(bn)), 16, batch=64, group=4)
    assert model[0].sizes(rows) == (sizes or [rows])
    out = model(x)
    out.square().sum().backward()
    ref, copies = replicas_reference(bn, x, sizes or [rows])
    ref.square().sum().backward()
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(model[0].weight.grad, sum(c.weight.grad for c in copies), atol=1e-4)
    assert torch.allclose(model[0].running_mean, copies[0].running_mean)
    assert torch.allclose(model[0].running_var, copies[0].running_var)


@pytest.mark.parametrize("shape", [(16, 6, 5, 3), (16, 6)])
def test_slices_are_normalised_alone_and_the_first_updates_the_running_stats(shape):
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(6) if len(shape) == 4 else nn.BatchNorm1d(6)
    nn.init.normal_(bn.weight)
    nn.init.normal_(bn.bias)
    x = torch.randn(*shape) * 3 + 1
    ref_out, copies = replicas_reference(bn, x, 4)
    ref_out.square().sum().backward()
    ref_grads = [sum(c.weight.grad for c in copies), sum(c.bias.grad for c in copies)]
    model = nn.Sequential(copy.deepcopy(bn))
    slice_batchnorms(model, 4)
    assert isinstance(model[0], SlicedBatchNorm)
    out = model(x)
    out.square().sum().backward()
    assert torch.allclose(out, ref_out, atol=1e-5)
    assert torch.allclose(model[0].weight.grad, ref_grads[0], atol=1e-4)
    assert torch.allclose(model[0].bias.grad, ref_grads[1], atol=1e-4)
    first = copies[0]
    assert torch.allclose(model[0].running_mean, first.running_mean)
    assert torch.allclose(model[0].running_var, first.running_var)
    assert int(model[0].num_batches_tracked) == int(first.num_batches_tracked) == 1
    # the whole-batch BatchNorm differs: the slices are what changed
    assert not torch.allclose(out, bn(x), atol=1e-3)
    # eval mode: a plain BatchNorm with the running statistics
    model.eval()
    first.eval()
    assert torch.allclose(model(x), first(x), atol=1e-6)


def test_mean_of_the_slices_running_stats():
    torch.manual_seed(1)
    x = torch.randn(12, 3, 4, 4) * 2
    bn = nn.Sequential(nn.BatchNorm2d(3))
    slice_batchnorms(bn, 4, running="mean")
    bn(x)
    _, copies = replicas_reference(nn.BatchNorm2d(3), x, 4)
    assert torch.allclose(bn[0].running_mean, torch.stack([c.running_mean for c in copies]).mean(0), atol=1e-6)
    assert torch.allclose(bn[0].running_var, torch.stack([c.running_var for c in copies]).mean(0), atol=1e-6)


def test_every_batchnorm_of_every_model_is_sliced_and_nothing_else():
    """The same Parameter objects and state-dict keys after the conversion; LayerNorm and InstanceNorm kept."""
    from reidlab.models import build_model
    for name, kwargs in (("resnet18", {}), ("resnet50_ibn_a", {}), ("vit", {"size": "tiny"})):
        model = build_model(name, pretrained="none", input_size=(64, 32), **kwargs)
        before = {k: v for k, v in model.state_dict().items()}
        params = {id(p) for p in model.parameters()}
        norms = {type(m) for m in model.modules() if isinstance(m, (nn.LayerNorm, nn.InstanceNorm2d))}
        slice_batchnorms(model, 8)
        assert not [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                    and not isinstance(m, SlicedBatchNorm)], name
        assert any(isinstance(m, SlicedBatchNorm) for m in model.modules()), name
        assert {id(p) for p in model.parameters()} == params
        assert model.state_dict().keys() == before.keys()
        assert {type(m) for m in model.modules() if isinstance(m, (nn.LayerNorm, nn.InstanceNorm2d))} == norms


def test_config_checks_the_slices():
    ok = build_config("demo", [{"train": {"bn_images": 16}}])            # 16 x 4: four identities a slice
    assert ok.train.bn_images == 16
    assert build_config("demo", [{"train": {"bn_images": 100}}]).train.bn_images == 100     # the whole batch
    for bad, match in (({"bn_images": 6}, "whole identities"), ({"bn_images": 24}, "divides 64"),
                       ({"bn_images": 16, "sync_bn": True}, "exclude each other"),
                       ({"bn_running": "last"}, "bn_running")):
        with pytest.raises(ConfigError, match=match):
            build_config("demo", [{"train": bad}])


@pytest.mark.parametrize("model", ["resnet18", "vit"])
def test_one_process_with_slices_is_torchrun_without_sync_bn(tmp_path, tiny_root, model):
    """bn_images = batch / 2 in one process against 2 gloo processes without SyncBN on the same global batch:
    the same losses and the same weights and running statistics after the epoch (rank 0's buffers are the
    first slice's, as DataParallel's)."""
    sup = [*SUP, "--set", "train.sync_bn=false"]
    if model == "vit":
        sup = ["--config", "vit_base_market1501", "--dataset", "synthetic", *TINY, "--set", "model.pretrained=none",
               "--set", "model.args.size=tiny", "--set", "model.args.stride=8", "--set", "model.args.depth=2",
               "--set", "model.args.drop_path=0", "--set", "train.warmup_epochs=1"]
    where = ["--data-root", str(tiny_root), "--output", str(tmp_path), "--epochs", "1",
             "--set", "test.eval_initial=false"]
    launch(*sup, *where, "--set", "train.bn_images=8", "--name", "single", procs=1)
    launch(*sup, *where, "--name", "multi")
    from tests.test_distributed import records
    one, two = records(tmp_path / "single")[-1], records(tmp_path / "multi")[-1]
    for key in ("loss", "id", "triplet"):
        assert two[key] == pytest.approx(one[key], abs=1e-4), key
    a = torch.load(tmp_path / "single" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "multi" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-4), k


def test_slices_must_fit_each_process_share(tmp_path, tiny_root):
    """12 x 4 = 48 images on 2 processes: 24 each, which slices of 16 (a divisor of 48) do not divide."""
    import subprocess
    import sys

    from tests.test_distributed import ROOT, UNSUP
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(ROOT / "main.py"),
           *UNSUP, "--set", "train.num_ids=12", "--set", "train.bn_images=16", "--data-root", str(tiny_root),
           "--output", str(tmp_path)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "does not divide each of the 2 processes' 24 images" in p.stdout + p.stderr
    assert not list(tmp_path.iterdir())                                       # before any run folder
