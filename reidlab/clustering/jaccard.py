"""k-reciprocal Jaccard distance (Zhong et al. 2017), as the Cluster Contrast code computes it.

With R(i, k) the k-reciprocal neighbours of i, taken from the first k+1 columns of a ranking that has
k1 columns (so R(i, k1) looks at k1 columns, R(i, round(k1/2)) at round(k1/2)+1 -- the code's quirk):
  (a) R1(i) = R(i, k1), Rh(i) = R(i, round(k1/2)) (numpy's round-half-to-even);
  (b) S(i) = R1(i) united with every Rh(c), c in R1(i), of which more than 2/3 lies in R1(i);
  (c) V[i, S(i)] = softmax over S(i) of -(2 - 2 <f_i, f_j>);
  (d) query expansion: V[i] <- mean of V[r] over the first k2 ranking entries r of i (when k2 != 1);
  (e) d(i, j) = 1 - s / (2 - s), s = sum_k min(V[i, k], V[j, k]), clipped at 0.

Everything is computed in blocks of rows with torch on the features' device; V is held as padded
per-row lists (N x M, M = the largest |S(i)|), never N x N. The result is a ``scipy.sparse.csr_matrix``
N x N holding every pair with d < 1 (explicit zeros kept); an absent pair means d = 1.
"""
from __future__ import annotations

import contextlib

import numpy as np
import scipy.sparse as sp
import torch

from .knn import knn
from .kreciprocal import block_budget, expanded_sets, min_overlap_sums, query_expansion, rows_to_padded


def _weights(features: torch.Tensor, sets: torch.Tensor, first_row: int, ranking: torch.Tensor | None = None,
             sims: torch.Tensor | None = None, max_elems: int = 1 << 24) -> torch.Tensor:
    """Step (c): softmax over S(i) of -(2 - 2 <f_i, f_j>), 0 at padding.

    Inner products already known from the kNN search (``ranking``, ``sims``) are looked up -- most of
    S(i) lies in i's own k1 nearest neighbours; the others are computed from the features."""
    b, m = sets.shape
    valid = sets >= 0
    prod = torch.zeros((b, m), dtype=features.dtype, device=features.device)
    todo = valid
    if ranking is not None and sims is not None:
        r, sv = ranking[first_row:first_row + b], sims[first_row:first_row + b].to(features.dtype)
        hit = sets[:, :, None] == r[:, None, :]                               # b x m x k1
        found = hit.any(-1) & valid
        prod = torch.where(found, (hit * sv[:, None, :]).sum(-1), prod)
        todo = valid & ~found
    rows, cols = torch.nonzero(todo, as_tuple=True)
    step = max(1, max_elems // features.shape[1])
    for s in range(0, rows.numel(), step):
        i, j = rows[s:s + step], cols[s:s + step]
        prod[i, j] = (features[first_row + i] * features[sets[i, j]]).sum(1)
    dist = (2 - 2 * prod).masked_fill(~valid, float("inf"))
    return torch.softmax(-dist, dim=1)


def jaccard_graph(features: torch.Tensor, k1: int = 30, k2: int = 6, ranking: torch.Tensor | None = None,
                  knn_backend: str = "auto", max_block_elems: int | None = None, phase=None,
                  ranking_sims: torch.Tensor | None = None):
    """The pairs with Jaccard distance < 1 as tensors (rows, cols, distances) on the features' device,
    sorted by row then column. See :func:`jaccard_distance` for the arguments. ``phase``, if given, is a
    context-manager factory called with each phase's name (knn, reciprocal, weights, query_expansion,
    jaccard), e.g. to time them. ``ranking_sims``: the inner products of ``ranking`` (from the kNN
    search), which spare most of the weights' feature gathers."""
    phase = phase or (lambda name: contextlib.nullcontext())
    features = torch.as_tensor(features, dtype=torch.float32)      # a numpy array works too
    if ranking is None:
        with phase("knn"):
            ranking, ranking_sims = knn(features, k1, knn_backend, return_sims=True)
    ranking = ranking.to(features.device).long()
    with phase("reciprocal"):
        blocks = expanded_sets(ranking, k1)
    return overlap_graph(features, blocks, ranking, ranking_sims, ranking[:, :k2] if k2 != 1 else None,
                         phase, max_block_elems)


def overlap_graph(features: torch.Tensor, blocks: list[torch.Tensor], known: torch.Tensor,
                  known_sims: torch.Tensor | None, expansion: torch.Tensor | None, phase,
                  max_block_elems: int | None = None):
    """Steps (c)-(e) from the neighbour sets S(i) on: the weights V (``known`` and ``known_sims``: indices
    and inner products already found by the kNN search, looked up instead of recomputed), the query
    expansion over each row's ``expansion`` neighbours (None: none; -1 padding left out of the mean), and the
    pairs with distance < 1. Shared by the Jaccard distance and CA-Jaccard (``clustering.ca_jaccard``)."""
    n = features.shape[0]
    max_block_elems = max_block_elems or block_budget(features.device)
    with phase("weights"):
        rows, cols, vals = [], [], []
        start = 0
        for sets in blocks:
            w = _weights(features, sets, start, known, known_sims)
            ok = sets >= 0
            rows.append(torch.arange(start, start + sets.shape[0], device=sets.device)[:, None].expand_as(sets)[ok])
            cols.append(sets[ok])
            vals.append(w[ok])
            start += sets.shape[0]
        del blocks
        rows, cols, vals = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    if expansion is not None:
        with phase("query_expansion"):
            vcol, vval = rows_to_padded(rows, cols, vals, n)
            rows, cols, vals = query_expansion(vcol, vval, expansion, expansion.shape[1])
            del vcol, vval
    with phase("jaccard"):
        i, j, s = min_overlap_sums(rows, cols, vals, n, max_block_elems)
        return i, j, (1 - s / (2 - s)).clamp_(min=0)


def to_csr(i: torch.Tensor, j: torch.Tensor, d: torch.Tensor, n: int) -> sp.csr_matrix:
    """Row-sorted pairs -> scipy CSR, explicit zeros kept."""
    counts = torch.bincount(i, minlength=n)
    indptr = np.concatenate([[0], np.cumsum(counts.cpu().numpy())])
    return sp.csr_matrix((d.cpu().numpy(), j.cpu().numpy(), indptr), shape=(n, n))


def jaccard_distance(features: torch.Tensor, k1: int = 30, k2: int = 6, ranking: torch.Tensor | None = None,
                     knn_backend: str = "auto", max_block_elems: int | None = None) -> sp.csr_matrix:
    """The k-reciprocal Jaccard distance of L2-normalised ``features`` (N x D, a torch tensor on any device
    or a numpy array), sparse (module docstring).

    ``ranking`` (N x k1 neighbour indices, self first) may be given, e.g. to compare implementations
    independently of the kNN's tie order; otherwise it is computed with :func:`clustering.knn`.
    ``max_block_elems`` bounds the pairs handled at once, and so the peak memory; by default it adapts
    to the free memory of the features' device (:func:`block_budget`)."""
    i, j, d = jaccard_graph(features, k1, k2, ranking, knn_backend, max_block_elems)
    return to_csr(i, j, d, len(features))
