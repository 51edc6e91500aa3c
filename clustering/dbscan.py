"""DBSCAN on a sparse precomputed distance graph, with scikit-learn's labels.

scikit-learn's ``DBSCAN(metric="precomputed")`` marks core points (at least ``min_samples``
neighbours within ``eps``, the point itself included), then visits points in index order: each
unvisited core point starts a new cluster that a depth-first search extends through core points and
their neighbours. Hence, exactly:
  - clusters are the connected components of the core points (core-core edges within eps),
    numbered in the order of their smallest core point;
  - a border point (not core, with a core neighbour) joins the lowest-numbered cluster among its
    core neighbours, the first search to reach it;
  - every other point is noise, -1.
We compute that directly: neighbour counts, connected components (scipy), a minimum per border point.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components


def dbscan(distances: sp.spmatrix, eps: float, min_samples: int) -> np.ndarray:
    """Labels (int64, -1 for noise) of DBSCAN on ``distances``, an N x N sparse matrix of which absent
    entries are distance 1 (or more) and so never neighbours: ``eps`` must be below 1."""
    if not 0 <= eps < 1:
        raise ValueError(f"eps must be in [0, 1) on a sparse Jaccard graph (absent pairs are at 1), got {eps}")
    g = sp.csr_matrix(distances)
    n = g.shape[0]
    rows = np.repeat(np.arange(n), np.diff(g.indptr))
    near = g.data <= eps
    r, c = rows[near], g.indices[near]
    # a point is its own neighbour at distance 0 whether or not the diagonal is stored
    offdiag = r != c
    r, c = r[offdiag], c[offdiag]
    counts = np.bincount(r, minlength=n) + 1
    core = counts >= min_samples
    labels = np.full(n, -1, dtype=np.int64)
    if not core.any():
        return labels
    cc = core[r] & core[c]
    graph = sp.csr_matrix((np.ones(cc.sum(), np.int8), (r[cc], c[cc])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    # renumber components by their smallest core point; non-core points form singleton components
    core_idx = np.flatnonzero(core)
    first = np.full(comp.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, comp[core_idx], core_idx)
    used = np.flatnonzero(first < n)
    rank = np.full(comp.max() + 1, -1, dtype=np.int64)
    rank[used[np.argsort(first[used], kind="stable")]] = np.arange(len(used))
    labels[core_idx] = rank[comp[core_idx]]
    # border points: the lowest cluster number among their core neighbours
    border = (~core[r]) & core[c]
    if border.any():
        best = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(best, r[border], labels[c[border]])
        has = best < np.iinfo(np.int64).max
        labels[has] = best[has]
    return labels
