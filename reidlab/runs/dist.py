"""Several processes with PyTorch's own distributed engine (``torchrun --nproc_per_node N main.py ...``).

One process per device; the process group comes from torchrun's environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``), NCCL on GPUs, gloo on CPUs. Without torchrun every function here is the identity of a
single process, so the trainers have one code path.

How a run is shared (docs/architecture.md, "Several GPUs"):
- every rank draws the same global P x K batch (same seeds) and trains on its contiguous share, P / N
  whole identities (a short batch, of fewer clusters than P: as equal a share as can be, ``split_rows``);
  the model is wrapped in DistributedDataParallel (``train.sync_bn`` converts its BatchNorms to SyncBatchNorm);
- the model's outputs are all-gathered (``gather``, with a gradient) before the loss, so every rank
  computes the loss of the whole global batch, exactly the single-process loss: batch-hard triplets mine
  the global batch, and the ClusterMemory is updated with every rank's features and targets, identically
  on every rank;
- feature extraction is sharded and all-gathered; the pseudo-labels are computed on rank 0 and
  broadcast (one clustering instead of N, and no chance of two ranks disagreeing through a
  nondeterministic kNN); evaluation metrics are computed on rank 0 and broadcast;
- rank 0 alone writes the run folder (checkpoints, metrics.jsonl, log.txt) and prints.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def launched() -> bool:
    """True in a process started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def init(device_name: str) -> None:
    """Join torchrun's process group (NCCL when the run's device is a GPU, gloo otherwise); a GPU run's
    process uses cuda:LOCAL_RANK (runs.run.resolve_device)."""
    if not launched() or active():
        return
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank())


def all_min(flags: torch.Tensor) -> torch.Tensor:
    """The element-wise minimum over the ranks of a small integer tensor (every rank gets it)."""
    if not active():
        return flags
    t = flags.to("cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t.to(flags.device)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) on every rank, as DistributedDataParallel does before each forward."""
    if not active():
        return
    for b in module.buffers():
        if dist.get_backend() == "nccl" or b.device.type == "cpu":
            dist.broadcast(b, 0)
        else:
            cpu = b.cpu()
            dist.broadcast(cpu, 0)
            b.copy_(cpu)


def broadcast_object(obj):
    """``obj`` of rank 0, on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj) -> list:
    """Every rank's ``obj``, in rank order."""
    if not active():
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's rows (in rank order); the ranks may hold different numbers of rows."""
    if not active():
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    most = int(max(s.item() for s in sizes))
    padded = torch.zeros((most, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[:x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(world())]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:int(s.item())] for p, s in zip(parts, sizes)])


def split_rows(rows: int, parts: int, group: int = 1, least: int = 2) -> list[int]:
    """The rows of each rank's share of a global batch of ``rows`` rows: as equal as can be, in whole groups
    of ``group`` rows (one identity's K images) when the rows are a multiple of ``group`` and there are at
    least ``parts`` groups, in rows otherwise (a short batch of fewer identities than ranks). No share holds
    fewer than ``least`` rows but none: a BatchNorm cannot normalise one row in training, so a short batch of
    fewer than ``least x parts`` rows goes to the first ranks (4 rows on 4 ranks: 2+2+0+0), and the others take
    no rows (runs.loop: a rank without rows runs a stand-in that adds nothing to the step)."""
    unit = group if group > 1 and rows % group == 0 and rows // group >= parts else 1
    base, extra = divmod(rows // unit, parts)
    sizes = [(base + (i < extra)) * unit for i in range(parts)]
    if any(0 < n < least for n in sizes):
        pieces = max(1, min(parts, rows // least))
        base, extra = divmod(rows, pieces)
        sizes = [base + (i < extra) for i in range(pieces)] + [0] * (parts - pieces)
    return sizes


class _GatherWithGrad(torch.autograd.Function):
    """All-gather of every rank's rows (``sizes[r]`` rows on rank r, padded to the largest for the collective)
    whose backward sums every rank's gradient of the whole and hands each rank its own rows' part
    (all-reduce: gloo has no reduce-scatter)."""

    @staticmethod
    def forward(ctx, x, sizes):
        most = max(sizes)
        padded = x.new_zeros((most, *x.shape[1:]))
        padded[:x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(world())]
        dist.all_gather(parts, padded.contiguous())
        ctx.start, ctx.rows = sum(sizes[:rank()]), x.shape[0]
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.start:ctx.start + ctx.rows], None


def gather(x: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Every rank's rows of ``x`` (``sizes``: each rank's row count, known to all; None: equal), concatenated,
    with a gradient back to this rank's rows. Every rank then computes the same loss L of the global batch;
    the backward hands rank r the sum over ranks of dL/dx_r (N times its own), which
    DistributedDataParallel's averaging of the parameters' gradients over the N ranks turns back into the
    single-process gradient dL/dtheta, whatever the shares' sizes."""
    if not active():
        return x
    return _GatherWithGrad.apply(x, list(sizes) if sizes is not None else [x.shape[0]] * world())


def share(rows: int, group: int = 1, least: int = 2) -> tuple[range, list[int]]:
    """This rank's contiguous share of a global batch of ``rows`` rows (:func:`split_rows`: whole identities
    of ``group`` rows where it can, no share of fewer than ``least`` rows but none), and every rank's row count."""
    sizes = split_rows(rows, world(), group, least) if active() else [rows]
    start = sum(sizes[:rank()])
    return range(start, start + sizes[rank()]), sizes


def mean(value: float) -> float:
    """The mean over ranks of a number (for the log of a loss computed per rank)."""
    if not active():
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item()) / world()


def shard_spec():
    """(rank, world, gather) for sharded feature extraction, or None in one process."""
    return (rank(), world(), all_gather_rows) if active() else None


def barrier() -> None:
    if active():
        dist.barrier()


def finish() -> None:
    """Wait for every rank, then leave the process group."""
    if active():
        dist.barrier()
        dist.destroy_process_group()


class CPUSyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """Synchronised batch normalisation for CPU processes (gloo), which torch.nn.SyncBatchNorm does not
    run on: in training, the per-channel sums and sums of squares of every rank's batch are all-reduced
    (with torch.distributed.nn's differentiable all_reduce), so the statistics are those of the global
    batch; eval mode is a plain BatchNorm. Any input layout N x C x ... ."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-d input, got {x.dim()}-d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce
        dims = [0] + list(range(2, x.dim()))
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype)
        stats = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))
        C = x.shape[1]
        n = stats[-1]
        mean, var = stats[:C] / n, (stats[C:2 * C] / n - (stats[:C] / n) ** 2).clamp(min=0)
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1).clamp(min=1))
                self.num_batches_tracked += 1
        shape = [1, C] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_sync_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``train.sync_bn``: PyTorch's SyncBatchNorm on GPUs; on CPUs, ``CPUSyncBatchNorm`` with the same
    parameters (the very Parameter objects, so a frozen bias stays frozen) and buffers."""
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            from reidlab.models.sliced_bn import adopt
            setattr(model, name, adopt(CPUSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                                        child.track_running_stats), child))
        else:
            convert_sync_batchnorm(child, device)
    return model
