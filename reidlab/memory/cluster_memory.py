"""ClusterMemory: one L2-normalised feature per cluster and the ClusterNCE loss (Dai et al. 2021).

loss = CE(normalise(x) @ M.T / temp, y) -- eq. 1 of the MLA paper. The memory is updated in the
backward pass of that loss, so after ``loss.backward()`` it holds the step's update:
  - ``"momentum"``: every sample of the batch in order, M[y] <- m M[y] + (1 - m) x, then M[y] is
    renormalised (Cluster Contrast's CM);
  - ``"hard"``: per cluster present in the batch, one such update with the sample least similar to
    M[y] (Cluster Contrast's CM_Hard; MLA's "batch_hard").
Both are vectorised: the momentum update loops over a sample's rank within its cluster in the batch
(at most K steps), not over the batch.

With ``hold_updates`` (the training loop sets it), the backward pass stages the update instead, and the
loop applies it (:meth:`ClusterMemory.commit`) once the step is known to be good, or drops it
(:meth:`ClusterMemory.discard`) with a step it skips for a non-finite loss or gradient (runs.loop): a
NaN never reaches the memory. Nothing reads the memory between the backward and the commit, so the
numbers are those of the immediate update.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _rank_in_group(targets: torch.Tensor) -> torch.Tensor:
    """For each position, how many earlier positions have the same target."""
    order = torch.argsort(targets, stable=True)
    sorted_t = targets[order]
    idx = torch.arange(targets.numel(), device=targets.device)
    starts = torch.ones_like(sorted_t, dtype=torch.bool)
    starts[1:] = sorted_t[1:] != sorted_t[:-1]
    group_start = torch.cummax(torch.where(starts, idx, 0), 0).values
    rank = torch.empty_like(targets)
    rank[order] = idx - group_start
    return rank


def momentum_update(memory: torch.Tensor, x: torch.Tensor, y: torch.Tensor, m: float) -> None:
    rank = _rank_in_group(y)
    for r in range(int(rank.max().item()) + 1 if y.numel() else 0):
        sel = rank == r
        ys = y[sel]
        memory[ys] = F.normalize(m * memory[ys] + (1 - m) * x[sel], dim=1)


def first_in_group(scores: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group, the position with the smallest score: (positions, their groups), groups ascending."""
    order = torch.argsort(scores, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    g = groups[order]
    first = torch.ones_like(g, dtype=torch.bool)
    first[1:] = g[1:] != g[:-1]
    return order[first], g[first]


def hard_update(memory: torch.Tensor, x: torch.Tensor, y: torch.Tensor, m: float) -> None:
    pick, yp = first_in_group((x * memory[y]).sum(1), y)      # the least similar sample per cluster
    memory[yp] = F.normalize(m * memory[yp] + (1 - m) * x[pick], dim=1)


class _ClusterNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, targets, bank):
        ctx.save_for_backward(inputs, targets)
        ctx.bank = bank
        return inputs @ bank.features.T

    @staticmethod
    def backward(ctx, grad_output):
        inputs, targets = ctx.saved_tensors
        grad = grad_output @ ctx.bank.features if ctx.needs_input_grad[0] else None
        ctx.bank.take_update(inputs.detach(), targets)
        return grad, None, None


class ClusterMemory(nn.Module):
    def __init__(self, num_features: int, num_clusters: int, temp: float = 0.05, momentum: float = 0.2,
                 update: str = "momentum"):
        super().__init__()
        if update not in ("momentum", "hard"):
            raise ValueError(f"memory update must be 'momentum' or 'hard', not {update!r}")
        self.temp, self.momentum, self.update = temp, momentum, update
        self.register_buffer("features", torch.zeros(num_clusters, num_features))
        self.hold_updates = False
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    def take_update(self, x: torch.Tensor, targets: torch.Tensor) -> None:
        """A batch's update (module docstring): applied now, or staged when ``hold_updates`` is set."""
        if self.hold_updates:
            self._pending.append((x, targets))
        else:
            self._apply_update(x, targets)

    @torch.no_grad()
    def _apply_update(self, x: torch.Tensor, targets: torch.Tensor) -> None:
        x = x.to(self.features.dtype)
        (hard_update if self.update == "hard" else momentum_update)(self.features, x, targets, self.momentum)

    def commit(self) -> None:
        """Apply the staged updates, in order."""
        pending, self._pending = self._pending, []
        for x, y in pending:
            self._apply_update(x, y)

    def discard(self) -> None:
        """Drop the staged updates (a skipped step's)."""
        self._pending = []

    @classmethod
    def from_clusters(cls, features: torch.Tensor, labels: torch.Tensor, init: str = "mean",
                      generator: torch.Generator | None = None, **kwargs) -> "ClusterMemory":
        """Memory for clusters 0..C-1 of ``labels`` (-1 ignored): the L2-normalised mean of each
        cluster's features (Cluster Contrast), or one random member of it (``init="random"``, as MLA)."""
        labels = labels.to(features.device)
        keep = labels >= 0
        f, y = features[keep], labels[keep]
        c = int(y.max().item()) + 1
        if init == "mean":
            centers = torch.zeros(c, f.shape[1], device=f.device, dtype=f.dtype).index_add_(0, y, f)
        elif init == "random":
            noise = torch.rand(y.numel(), generator=generator,
                               device=generator.device if generator is not None else "cpu").to(f.device)
            pick, yp = first_in_group(noise, y)                # one random member per cluster
            centers = torch.zeros(c, f.shape[1], device=f.device, dtype=f.dtype)
            centers[yp] = f[pick]
        else:
            raise ValueError(f"memory init must be 'mean' or 'random', not {init!r}")
        mem = cls(f.shape[1], c, **kwargs).to(f.device)
        mem.features.copy_(F.normalize(centers, dim=1))
        return mem

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """ClusterNCE in fp32 whatever autocast is active: the memory is fp32, and logits over a temperature
        of 0.05 need fp32's mantissa (under bf16 autocast the product would be bf16, and its backward would
        meet the fp32 memory)."""
        with torch.autocast(inputs.device.type, enabled=False):
            x = F.normalize(inputs.float(), dim=1)
            logits = _ClusterNCE.apply(x, targets, self)
            return F.cross_entropy(logits / self.temp, targets)
