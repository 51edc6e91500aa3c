"""How a training batch moves the cluster memory (``memory.update``), each named after its code's ``--cm-mode``.

Every update writes M[y] <- m M[y] + (1 - m) x, then renormalises M[y], with a sample x of cluster y chosen by the
rule (m = ``memory.momentum``; every "before" below is the memory as the batch found it):

- ``mean`` (Cluster Contrast's ``cm``, 3C's ``cm``; ``momentum`` in earlier versions): every sample of the batch,
  one after the other in batch order;
- ``hard`` (``cm_hard``; MLA's "batch_hard"): per cluster of the batch, the sample least similar to M[y] before;
- ``hard_camera`` (3C's ``cm_hard_camera``): per cluster and camera of the batch, the sample least similar to M[y]
  before; a cluster's picks are applied in turn, in the order its cameras first appear in the batch;
- ``hd_camera`` (3C's ``hd_camera``, its published setting, "Hard (CHD)"): per cluster and camera of the batch, the
  sample with the largest harmonic discrepancy h = d s / (d + s), where d = 1 - <x, M[y]> (before) is its distance
  from the memory and s = 1 + <x, c> its similarity to its camera's centre c (the mean of that cluster's batch
  samples of that camera, normalised); then per cluster the camera whose pick has the largest h (the earliest of
  equals) makes the one update.

Each is a function ``update(memory, x, y, cams, m)`` of the memory (C x D, updated in place), the batch's
normalised features x (B x D), pseudo-labels y and camera ids ``cams`` (B; None where the loop has none), chosen by
name from ``MEMORY_UPDATES`` or by import path (``memory.update=mypackage.memory:my_update``, docs/api.md).
Ties go to the earliest sample, as the code's argmin / argmax over a list in batch order. Vectorised: no loop over
the batch's samples (``mean`` loops over a sample's rank within its cluster, at most K steps).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reidlab.errors import ConfigError
from reidlab.registry import Registry

MEMORY_UPDATES: Registry = Registry("memory update", ConfigError)
CAMERA_UPDATES = {"hard_camera", "hd_camera"}         # the built-in updates that read the batch's cameras


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


def first_in_group(scores: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group, the position with the smallest score, the earliest of equals: (positions, their groups), groups
    ascending."""
    order = torch.argsort(scores, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    g = groups[order]
    first = torch.ones_like(g, dtype=torch.bool)
    first[1:] = g[1:] != g[:-1]
    return order[first], g[first]


def _groups(y: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
    """One id per (cluster, camera) pair of the batch."""
    return y * (int(cams.max()) + 1) + cams


def _first_position(groups: torch.Tensor) -> torch.Tensor:
    """Per position, the first position of its group in the batch."""
    pos = torch.arange(groups.numel(), device=groups.device)
    first = torch.full((int(groups.max()) + 1,), groups.numel(), dtype=torch.long, device=groups.device)
    first.scatter_reduce_(0, groups, pos, reduce="amin")
    return first[groups]


def in_turn(memory: torch.Tensor, x: torch.Tensor, y: torch.Tensor, m: float) -> None:
    """M[y] <- normalise(m M[y] + (1 - m) x) for each (x, y) in order (a cluster's several updates one after the
    other; different clusters at once)."""
    rank = _rank_in_group(y)
    for r in range(int(rank.max().item()) + 1 if y.numel() else 0):
        sel = rank == r
        ys = y[sel]
        memory[ys] = F.normalize(m * memory[ys] + (1 - m) * x[sel], dim=1)


@MEMORY_UPDATES.register("mean")
def mean_update(memory: torch.Tensor, x: torch.Tensor, y: torch.Tensor, cams, m: float) -> None:
    in_turn(memory, x, y, m)


@MEMORY_UPDATES.register("hard")
def hard_update(memory: torch.Tensor, x: torch.Tensor, y: torch.Tensor, cams, m: float) -> None:
    pick, yp = first_in_group((x * memory[y]).sum(1), y)      # the least similar sample per cluster
    memory[yp] = F.normalize(m * memory[yp] + (1 - m) * x[pick], dim=1)


def _need_cameras(cams, name: str) -> torch.Tensor:
    if cams is None:
        raise ConfigError(f"memory.update={name} reads each sample's camera, and this loop gives none")
    return cams


@MEMORY_UPDATES.register("hard_camera")
def hard_camera_update(memory: torch.Tensor, x: torch.Tensor, y: torch.Tensor, cams, m: float) -> None:
    groups = _groups(y, _need_cameras(cams, "hard_camera"))
    pick, _ = first_in_group((x * memory[y]).sum(1), groups)   # per cluster and camera: the least similar
    pick = pick[torch.argsort(_first_position(groups)[pick], stable=True)]   # cameras in order of appearance
    in_turn(memory, x[pick], y[pick], m)


@MEMORY_UPDATES.register("hd_camera")
def hd_camera_update(memory: torch.Tensor, x: torch.Tensor, y: torch.Tensor, cams, m: float) -> None:
    groups = _groups(y, _need_cameras(cams, "hd_camera"))
    n = int(groups.max()) + 1
    sums = torch.zeros(n, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, groups, x)
    counts = torch.bincount(groups, minlength=n).to(x.dtype)
    centre = sums / counts[:, None]
    centre = centre / centre.norm(dim=1, keepdim=True)          # the code's camera_center /= norm
    s = (x * centre[groups]).sum(1) + 1                          # similarity to its camera's centre, in [0, 2]
    d = 1 - (x * memory[y]).sum(1)                               # distance from the memory, in [0, 2]
    h = d * s / (d + s)
    pick, _ = first_in_group(-h, groups)                         # per cluster and camera: the largest h
    pick = pick[torch.argsort(_first_position(groups)[pick], stable=True)]
    best, yp = first_in_group(-h[pick], y[pick])                 # per cluster: the camera of the largest h
    chosen = pick[best]
    memory[yp] = F.normalize(m * memory[yp] + (1 - m) * x[chosen], dim=1)


def camera_weights(targets: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
    """3C's camera-weighted ClusterNCE (``--loss-with-camera``, its ``ClusterMemory.forward`` with reweight): per
    sample, the weight of its cluster, as its code computes it: for each cluster in the batch, the entropy in bits
    H of its batch samples' cameras, w = exp(H) (e to the power of bits, as written there), scaled so that the
    clusters' weights average 1; the loss is the mean over the batch of w times each sample's cross-entropy."""
    ids, inverse = torch.unique(targets, return_inverse=True)
    n_cams = int(cams.max()) + 1
    counts = torch.zeros(len(ids), n_cams, dtype=torch.float32, device=targets.device)
    counts.index_put_((inverse, cams), torch.ones_like(inverse, dtype=torch.float32), accumulate=True)
    prob = counts / counts.sum(1, keepdim=True).clamp(min=1e-30)
    entropy = (-prob * torch.log2(prob.clamp(min=1e-30))).sum(1)
    w = torch.exp(entropy)
    w = len(ids) * w / w.sum()
    return w[inverse]
