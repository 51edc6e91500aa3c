"""BatchNorm over per-device slices of a batch on one device (``train.bn_images``).

The published unsupervised and occluded re-ID recipes were measured under ``nn.DataParallel``: Cluster
Contrast's batch of 256 on 4 GPUs, so each BatchNorm normalised 64 images; MLA's 64 on 2 GPUs (32).
``nn.DataParallel`` scatters the batch along dim 0 in equal contiguous chunks, one per device, runs a
replica of the model on each chunk and gathers the outputs, so every BatchNorm layer normalises each
chunk with that chunk's own mean and variance. ``SlicedBatchNorm`` does the same on one device: in
training, its input is split along dim 0 into consecutive slices of ``images`` rows, and each slice is
batch-normalised alone (``F.batch_norm`` per slice, the very computation each replica makes); the
affine weight and bias are shared, so their gradients are the sum over the slices, as DataParallel's
reduction of the replicas' gradients. In eval mode it is a plain BatchNorm.

Running statistics: ``nn.DataParallel`` re-creates the replicas at every forward; its documentation
guarantees that "the replica on device[0] will have its parameters and buffers sharing storage with the
base parallelized module", so "in-place updates to the parameters or buffers on device[0] will be
recorded" ("BatchNorm2d and spectral_norm() rely on this behavior to update the buffers"), while the
other replicas' updates are dropped with them (torch/nn/parallel/replicate.py broadcasts the buffers with
``comm.broadcast_coalesced``, whose outputs for the source device are the source tensors themselves).
So under DataParallel the running mean and variance, and ``num_batches_tracked``, are updated by the
**first slice** alone, once per forward: ``running: first`` (the default) does exactly that. (torchrun
without SyncBN leaves them the same way: DistributedDataParallel broadcasts rank 0's buffers, updated
by rank 0's share, i.e. the first slice, before every forward.) ``running: mean`` updates them with the
mean over the slices of each slice's statistics instead, which uses every image of the batch.

What the slices hold: every BatchNorm of the models here sees the image batch along dim 0 (B x C x H x
W in the backbones, DAAF's decoders and Pirt's intra-part module, B x C in the BN necks of the CNNs,
ViTs, AAformer's and SAP's part necks and Pirt's pose necks), so a slice of rows is the same images in
every layer. The config checks that ``images`` divides the batch and is a multiple of K, so that a slice
of a full batch holds whole identities, as each device's share did (runs.config). InstanceNorm
(ResNet-IBN-a's halves, Pirt's IN before its BN) normalises each image alone and is not touched;
LayerNorm (the transformers) neither.

A short batch (fewer clusters or identities than P, so ``min(P, C) x K`` rows; :func:`slice_sizes`):
``nn.DataParallel`` over the recipe's ``devices = batch / images`` devices scatters any batch with
``torch.chunk`` along dim 0 (torch/nn/parallel/scatter_gather.py -> comm.scatter): pieces of
``ceil(rows / devices)`` rows, the last one smaller, and fewer pieces (fewer devices used) when the rows
are few. The slices here are those pieces, counted in whole identities of K rows where the rows are a
multiple of K: 11 identities x 4 on 4 devices are 3+3+3+2 identities (12+12+12+8 rows) where DataParallel
would cut 11+11+11+11 rows through identities. A full batch gives ``devices`` slices of ``images`` either way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def slice_sizes(rows: int, devices: int, group: int = 1) -> list[int]:
    """The rows of each slice of a batch of ``rows`` rows over ``devices`` devices' shares: ``torch.chunk``'s
    rule (pieces of ``ceil(n / devices)``, the last smaller, fewer pieces when ``n`` is small), counted in whole
    groups of ``group`` rows (one identity's K images) when ``rows`` is a multiple of ``group``, in rows
    otherwise. No slice ever holds one row, which no BatchNorm can normalise in training: such a slice joins its
    neighbour (3 rows over 4 devices: one slice of 3)."""
    unit = group if group > 1 and rows % group == 0 else 1
    units = rows // unit
    if units == 0:
        return [rows] if rows else []
    size = -(-units // max(devices, 1))
    sizes = [size * unit] * (units // size) + ([units % size * unit] if units % size else [])
    merged: list[int] = []
    for n in sizes:
        if merged and (n == 1 or merged[-1] == 1):
            merged[-1] += n
        else:
            merged.append(n)
    return merged


def describe_slices(rows: int, devices: int, group: int = 1) -> str:
    """``12+12+12+8 images (whole identities of 4): 44 images over 4 devices' shares``."""
    sizes = slice_sizes(rows, devices, group)
    whole = group > 1 and rows % group == 0
    return (f"{'+'.join(map(str, sizes))} images{f' (whole identities of {group})' if whole else ''}: {rows} "
            f"images over {devices} devices' shares")


class SlicedBatchNorm(nn.modules.batchnorm._BatchNorm):
    """A BatchNorm that, in training, normalises each slice of its input alone (module docstring): slices of
    ``images`` rows for a full batch of ``devices x images`` rows, :func:`slice_sizes` of any other batch
    (in whole groups of ``group`` rows: one identity's K images). Without ``devices`` a batch of n rows is
    taken as ``ceil(n / images)`` devices' shares. Any input layout N x C x ... ."""

    def __init__(self, num_features: int, images: int, running: str = "first", eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True,
                 devices: int | None = None, group: int = 1):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        if images < 1:
            raise ValueError(f"train.bn_images: a positive number of images per slice, not {images}")
        if running not in ("first", "mean"):
            raise ValueError(f"train.bn_running: 'first' or 'mean', not {running!r}")
        self.images, self.running, self.devices, self.group = images, running, devices, group

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-d input, got {x.dim()}-d")

    def extra_repr(self) -> str:
        return super().extra_repr() + f", images={self.images}, running={self.running}, devices={self.devices}"

    def sizes(self, n: int) -> list[int]:
        """The slices of a training batch of ``n`` rows."""
        return slice_sizes(n, self.devices or -(-n // self.images), self.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = self.sizes(x.shape[0]) if self.training else []
        if len(sizes) <= 1:
            return super().forward(x)
        factor = 0.0
        if self.track_running_stats:                         # as _BatchNorm.forward counts a forward
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        slices = x.split(sizes)
        if not self.track_running_stats or self.running == "first":
            out = [F.batch_norm(s, self.running_mean if i == 0 else None, self.running_var if i == 0 else None,
                                self.weight, self.bias, True, factor, self.eps) for i, s in enumerate(slices)]
            return torch.cat(out)
        means, variances, out = [], [], []
        for s in slices:                                     # each slice's update of a copy, then their mean
            mean, var = self.running_mean.clone(), self.running_var.clone()
            out.append(F.batch_norm(s, mean, var, self.weight, self.bias, True, factor, self.eps))
            means.append(mean)
            variances.append(var)
        with torch.no_grad():
            self.running_mean.copy_(torch.stack(means).mean(0))
            self.running_var.copy_(torch.stack(variances).mean(0))
        return torch.cat(out)


def adopt(new: nn.Module, old: nn.Module) -> nn.Module:
    """``new``, a BatchNorm of another kind, holding ``old``'s very Parameter objects (a frozen BN-neck bias stays
    frozen) and buffers, and its training flag: the state dict, the optimiser and the checkpoints see no change."""
    if old.affine:
        new.weight, new.bias = old.weight, old.bias
    if old.track_running_stats:
        new.running_mean, new.running_var = old.running_mean, old.running_var
        new.num_batches_tracked = old.num_batches_tracked
    return new.train(old.training)


def slice_batchnorms(model: nn.Module, images: int, running: str = "first", batch: int | None = None,
                     group: int = 1) -> nn.Module:
    """Every BatchNorm (1d, 2d, 3d) of ``model`` replaced, in place, by a ``SlicedBatchNorm`` with the very
    same Parameter objects (a frozen BN-neck bias stays frozen) and buffers, so that the state dict, the
    optimiser and the checkpoints see no change; InstanceNorm and LayerNorm are left as they are.
    ``batch``: the rows of a full training batch (so ``batch / images`` devices); ``group``: the rows of one
    identity (K), which a short batch's slices keep whole."""
    devices = max(1, batch // images) if batch else None
    for name, child in model.named_children():
        if isinstance(child, nn.SyncBatchNorm):
            raise ValueError("train.bn_images and train.sync_bn exclude each other")
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, SlicedBatchNorm):
            setattr(model, name, adopt(SlicedBatchNorm(child.num_features, images, running, child.eps, child.momentum,
                                                       child.affine, child.track_running_stats, devices, group), child))
        else:
            slice_batchnorms(child, images, running, batch, group)
    return model
