"""ClusterMemory: one L2-normalised feature per cluster and the ClusterNCE loss (Dai et al. 2021).

loss = CE(normalise(x) @ M.T / temp, y) -- eq. 1 of the MLA paper -- or, with ``camera_weighted`` (3C's
``--loss-with-camera``), the mean of each sample's cross-entropy times its cluster's camera weight
(memory.updates.camera_weights). The memory is updated in the backward pass of that loss by the rule
``memory.update`` names (memory/updates.py: mean, hard, hard_camera, hd_camera, or a user's own), so after
``loss.backward()`` it holds the step's update.

With ``hold_updates`` (the training step sets it), the backward pass stages the update instead, and the
step applies it (:meth:`ClusterMemory.commit`) once it is known to be good, or drops it
(:meth:`ClusterMemory.discard`) with a step it skips for a non-finite loss or gradient (runs.step): a
NaN never reaches the memory. Nothing reads the memory between the backward and the commit, so the
numbers are those of the immediate update.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .updates import CAMERA_UPDATES, MEMORY_UPDATES, camera_weights, first_in_group


class _ClusterNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, inputs, targets, cams, bank):
        ctx.save_for_backward(inputs, targets)
        ctx.bank, ctx.cams = bank, cams
        return inputs @ bank.features.T

    @staticmethod
    def backward(ctx, grad_output):
        inputs, targets = ctx.saved_tensors
        grad = grad_output @ ctx.bank.features if ctx.needs_input_grad[0] else None
        ctx.bank.take_update(inputs.detach(), targets, ctx.cams)
        return grad, None, None, None


class ClusterMemory(nn.Module):
    def __init__(self, num_features: int, num_clusters: int, temp: float = 0.05, momentum: float = 0.2,
                 update: str = "mean", camera_weighted: bool = False):
        super().__init__()
        # "momentum": the earlier name of "mean" (a checkpoint's config may hold it)
        self.update_fn = MEMORY_UPDATES.resolve("mean" if update == "momentum" else update, "memory.update")
        self.temp, self.momentum, self.update, self.camera_weighted = temp, momentum, update, camera_weighted
        self.needs_cameras = camera_weighted or update in CAMERA_UPDATES
        self.register_buffer("features", torch.zeros(num_clusters, num_features))
        self.hold_updates = False
        self._pending: list[tuple] = []

    def take_update(self, x: torch.Tensor, targets: torch.Tensor, cams: torch.Tensor | None = None) -> None:
        """A batch's update (module docstring): applied now, or staged when ``hold_updates`` is set."""
        if self.hold_updates:
            self._pending.append((x, targets, cams))
        else:
            self._apply_update(x, targets, cams)

    @torch.no_grad()
    def _apply_update(self, x: torch.Tensor, targets: torch.Tensor, cams: torch.Tensor | None) -> None:
        self.update_fn(self.features, x.to(self.features.dtype), targets, cams, self.momentum)

    def commit(self) -> None:
        """Apply the staged updates, in order."""
        pending, self._pending = self._pending, []
        for x, y, c in pending:
            self._apply_update(x, y, c)

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

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, cams: torch.Tensor | None = None) -> torch.Tensor:
        """ClusterNCE in fp32 whatever autocast is active: the memory is fp32, and logits over a temperature
        of 0.05 need fp32's mantissa (under bf16 autocast the product would be bf16, and its backward would
        meet the fp32 memory). A float64 memory (``memory.double()``) computes in float64
        (benchmarks/parity_step.py). ``cams``: the batch's camera ids, for the camera updates and weights."""
        if self.needs_cameras and cams is None:
            raise ValueError("this memory's update or loss reads the batch's cameras: give cams")
        with torch.autocast(inputs.device.type, enabled=False):
            x = F.normalize(inputs.to(torch.promote_types(self.features.dtype, torch.float32)), dim=1)
            logits = _ClusterNCE.apply(x, targets, cams, self) / self.temp
            if not self.camera_weighted:
                return F.cross_entropy(logits, targets)
            return (camera_weights(targets, cams) * F.cross_entropy(logits, targets, reduction="none")).mean()
