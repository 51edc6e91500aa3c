"""DBSCAN on a sparse precomputed distance graph, with scikit-learn's labels, on CPU or GPU.

scikit-learn's ``DBSCAN(metric="precomputed")`` marks core points (at least ``min_samples``
neighbours within ``eps``, the point itself included), then visits points in index order: each
unvisited core point starts a new cluster that a depth-first search extends through core points and
their neighbours. Hence, exactly:
  - clusters are the connected components of the core points (core-core edges within eps),
    numbered in the order of their smallest core point;
  - a border point (not core, with a core neighbour) joins the lowest-numbered cluster among its
    core neighbours, the first search to reach it;
  - every other point is noise, -1.
We compute that directly with torch on the graph's device: neighbour counts, connected components by
minimum-label propagation with pointer jumping (each component ends labelled with its smallest core
point), and a minimum over core neighbours for border points.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def _edges(distances):
    if isinstance(distances, tuple):
        rows, cols, vals, n = distances
        return rows, cols, vals, int(n)
    g = sp.coo_matrix(distances)
    return (torch.from_numpy(g.row.astype(np.int64)), torch.from_numpy(g.col.astype(np.int64)),
            torch.from_numpy(g.data), g.shape[0])


def connected_components(u: torch.Tensor, v: torch.Tensor, n: int) -> torch.Tensor:
    """For an undirected edge list, each vertex's component labelled by its smallest vertex index."""
    label = torch.arange(n, device=u.device)
    if u.numel() == 0:
        return label
    src, dst = torch.cat([u, v]), torch.cat([v, u])
    while True:
        new = label.scatter_reduce(0, src, label[dst], reduce="amin")
        new = new[new]                                   # pointer jumping: follow labels to their labels
        if torch.equal(new, label):
            return label
        label = new


def dbscan(distances, eps: float, min_samples: int) -> np.ndarray:
    """Labels (int64 numpy, -1 for noise) of DBSCAN on ``distances``: a scipy sparse N x N matrix, or a
    tuple (rows, cols, values, N) of torch tensors on any device. Absent pairs are at distance 1 (or
    more) and never neighbours, so ``eps`` must be below 1."""
    if not 0 <= eps < 1:
        raise ValueError(f"eps must be in [0, 1) on a sparse Jaccard graph (absent pairs are at 1), got {eps}")
    rows, cols, vals, n = _edges(distances)
    keep = (vals <= eps) & (rows != cols)       # a point is its own neighbour whether or not stored
    r, c = rows[keep], cols[keep]
    counts = torch.bincount(r, minlength=n) + 1
    core = counts >= min_samples
    labels = torch.full((n,), -1, dtype=torch.long, device=rows.device)
    if not bool(core.any()):
        return labels.cpu().numpy()
    cc = core[r] & core[c]
    comp = connected_components(r[cc], c[cc], n)
    roots, number = torch.unique(comp[core], return_inverse=True)   # roots ascending = smallest core point
    labels[core] = number
    border = ~core[r] & core[c]
    if bool(border.any()):
        big = torch.iinfo(torch.long).max
        best = torch.full((n,), big, dtype=torch.long, device=rows.device)
        best = best.scatter_reduce(0, r[border], labels[c[border]], reduce="amin")
        has = best < big
        labels[has] = best[has]
    return labels.cpu().numpy()
