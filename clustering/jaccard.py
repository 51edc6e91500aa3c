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
import os

import numpy as np
import scipy.sparse as sp
import torch

from .knn import knn

_PAD = -1


def reciprocal_sets(ranking: torch.Tensor, k: int, block: int = 8192) -> torch.Tensor:
    """R(i, k) for every i as an N x c tensor (c = min(k+1, columns)), non-members replaced by -1."""
    fw = ranking[:, : k + 1]
    out = torch.empty_like(fw)
    for s in range(0, fw.shape[0], block):
        f = fw[s:s + block]
        own = torch.arange(s, s + f.shape[0], device=fw.device).view(-1, 1, 1)
        ok = (fw[f] == own).any(-1)                       # is i among the first k+1 of each of its neighbours
        out[s:s + block] = torch.where(ok, f, _PAD)
    return out


def _compact(idx: torch.Tensor, n: int) -> torch.Tensor:
    """Per row: unique valid entries first (ascending), then -1 padding; trailing all-pad columns cut."""
    key = torch.where(idx < 0, n, idx)
    key, _ = key.sort(dim=1)
    dup = torch.zeros_like(key, dtype=torch.bool)
    dup[:, 1:] = key[:, 1:] == key[:, :-1]
    key = torch.where(dup, n, key).sort(dim=1).values
    width = int((key < n).sum(1).max().item()) if key.numel() else 0
    key = key[:, : max(width, 1)]
    return torch.where(key >= n, _PAD, key)


def expanded_sets(ranking: torch.Tensor, k1: int, block: int = 2048) -> list[torch.Tensor]:
    """S(i) of step (b), as a list of padded blocks of rows."""
    n = ranking.shape[0]
    r1 = reciprocal_sets(ranking, k1)
    rh = reciprocal_sets(ranking, int(np.around(k1 / 2)))
    blocks = []
    for s in range(0, n, block):
        cand = r1[s:s + block]                                            # b x c1
        ch = torch.where(cand[..., None] >= 0, rh[cand.clamp(min=0)], _PAD)  # b x c1 x ch
        valid = ch >= 0
        inside = (ch[..., None] == cand[:, None, None, :]).any(-1) & valid
        size, hits = valid.sum(-1).double(), inside.sum(-1).double()
        accept = (hits > (2.0 / 3.0) * size) & (cand >= 0)
        extra = torch.where(accept[..., None], ch, _PAD).flatten(1)
        blocks.append(_compact(torch.cat([cand, extra], dim=1), n))
    return blocks


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


def _rows_to_padded(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n_rows: int):
    """COO entries sorted by row -> padded per-row (cols, vals)."""
    counts = torch.bincount(rows, minlength=n_rows)
    width = int(counts.max().item()) if rows.numel() else 1
    start = torch.cumsum(counts, 0) - counts
    pos = torch.arange(rows.numel(), device=rows.device) - start[rows]
    pc = torch.full((n_rows, width), _PAD, dtype=torch.long, device=rows.device)
    pv = torch.zeros((n_rows, width), dtype=vals.dtype, device=rows.device)
    pc[rows, pos] = cols
    pv[rows, pos] = vals
    return pc, pv


def _query_expansion(vcol: torch.Tensor, vval: torch.Tensor, ranking: torch.Tensor, k2: int, block: int = 4096):
    """Step (d): V[i] <- mean over r in ranking[i, :k2] of V[r], as COO (rows, cols, vals) sorted by row."""
    n = vcol.shape[0]
    out_r, out_c, out_v = [], [], []
    for s in range(0, n, block):
        nb = ranking[s:s + block, :k2]
        b = nb.shape[0]
        cols = vcol[nb].flatten(1)                                  # b x (k2*M)
        vals = vval[nb].flatten(1)
        ok = cols >= 0
        local = torch.arange(b, device=cols.device)[:, None].expand_as(cols)
        key = (local * n + cols)[ok]
        uniq, inv = torch.unique(key, return_inverse=True)          # sorted: by row, then column
        summed = torch.zeros(uniq.shape[0], dtype=vals.dtype, device=vals.device).index_add_(0, inv, vals[ok])
        out_r.append(uniq // n + s)
        out_c.append(uniq % n)
        out_v.append(summed / k2)
    return torch.cat(out_r), torch.cat(out_c), torch.cat(out_v)


def _min_overlap(rows, cols, vals, n: int, max_elems: int, n_rows: int | None = None):
    """Step (e)'s s(i, j) = sum_k min(V[i, k], V[j, k]) for all pairs with s > 0 (for the first
    ``n_rows`` rows i only, when given), in row blocks.

    Each entry (i, k) meets every entry (j, k) of its column; the pairs of one block of rows are
    summed in a (rows x N) buffer whose size, like the number of pairs, is bounded by ``max_elems``."""
    dev = vals.device
    crow = torch.zeros(n + 1, dtype=torch.long, device=dev)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=n), 0)
    order = torch.argsort(cols * n + rows)                        # CSC order
    c_rows, c_vals = rows[order], vals[order]
    ccount = torch.bincount(cols, minlength=n)
    cptr = torch.cumsum(ccount, 0) - ccount
    pairs_per_entry = ccount[cols]
    pairs_per_row = torch.zeros(n, dtype=torch.long, device=dev).index_add_(0, rows, pairs_per_entry)
    cum_pairs = torch.cumsum(pairs_per_row, 0).cpu()
    out_i, out_j, out_s = [], [], []
    buffer = torch.empty(min(n, max(1, max_elems // n)) * n, dtype=vals.dtype, device=dev)  # reused: no churn
    a, n_rows = 0, n if n_rows is None else n_rows
    while a < n_rows:
        base = int(cum_pairs[a - 1]) if a else 0
        by_pairs = int(torch.searchsorted(cum_pairs, torch.tensor(base + max_elems), right=True))
        b = min(n_rows, max(a + 1, by_pairs), a + max(1, max_elems // n))
        e0, e1 = int(crow[a]), int(crow[b])
        r_e, k_e, v_e = rows[e0:e1], cols[e0:e1], vals[e0:e1]
        lens = ccount[k_e]
        rep = torch.repeat_interleave(torch.arange(e1 - e0, device=dev), lens)
        offs = torch.arange(rep.numel(), device=dev) - (torch.cumsum(lens, 0) - lens)[rep]
        pos = cptr[k_e[rep]] + offs
        contrib = torch.minimum(v_e[rep], c_vals[pos])
        key = (r_e[rep] - a) * n + c_rows[pos]
        buf = buffer[: (b - a) * n].zero_().index_add_(0, key, contrib)
        nz = torch.nonzero(buf > 0).squeeze(1)
        out_i.append(nz // n + a)
        out_j.append(nz % n)
        out_s.append(buf[nz].clone())
        a = b
    return torch.cat(out_i), torch.cat(out_j), torch.cat(out_s)


def block_budget(device: torch.device, bytes_per_elem: int = 64, share: float = 0.125) -> int:
    """Pairs handled at once in the Jaccard sums: a share of the device's free memory (each pair costs
    about ``bytes_per_elem`` in temporaries), between 2^16 and 2^23 (larger blocks measured slower on a CPU)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            free = 4 << 30
    return int(min(1 << 23, max(1 << 16, free * share / bytes_per_elem)))


def jaccard_graph(features: torch.Tensor, k1: int = 30, k2: int = 6, ranking: torch.Tensor | None = None,
                  knn_backend: str = "auto", max_block_elems: int | None = None, phase=None,
                  ranking_sims: torch.Tensor | None = None):
    """The pairs with Jaccard distance < 1 as tensors (rows, cols, distances) on the features' device,
    sorted by row then column. See :func:`jaccard_distance` for the arguments. ``phase``, if given, is a
    context-manager factory called with each phase's name (knn, reciprocal, weights, query_expansion,
    jaccard), e.g. to time them. ``ranking_sims``: the inner products of ``ranking`` (from the kNN
    search), which spare most of the weights' feature gathers."""
    phase = phase or (lambda name: contextlib.nullcontext())
    max_block_elems = max_block_elems or block_budget(features.device)
    n = features.shape[0]
    features = features.float()
    if ranking is None:
        with phase("knn"):
            ranking, ranking_sims = knn(features, k1, knn_backend, return_sims=True)
    ranking = ranking.to(features.device).long()
    with phase("reciprocal"):
        blocks = expanded_sets(ranking, k1)
    with phase("weights"):
        rows, cols, vals = [], [], []
        start = 0
        for sets in blocks:
            w = _weights(features, sets, start, ranking, ranking_sims)
            ok = sets >= 0
            rows.append(torch.arange(start, start + sets.shape[0], device=sets.device)[:, None].expand_as(sets)[ok])
            cols.append(sets[ok])
            vals.append(w[ok])
            start += sets.shape[0]
        del blocks
        rows, cols, vals = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    if k2 != 1:
        with phase("query_expansion"):
            vcol, vval = _rows_to_padded(rows, cols, vals, n)
            rows, cols, vals = _query_expansion(vcol, vval, ranking, k2)
            del vcol, vval
    with phase("jaccard"):
        i, j, s = _min_overlap(rows, cols, vals, n, max_block_elems)
        return i, j, (1 - s / (2 - s)).clamp_(min=0)


def to_csr(i: torch.Tensor, j: torch.Tensor, d: torch.Tensor, n: int) -> sp.csr_matrix:
    """Row-sorted pairs -> scipy CSR, explicit zeros kept."""
    counts = torch.bincount(i, minlength=n)
    indptr = np.concatenate([[0], np.cumsum(counts.cpu().numpy())])
    return sp.csr_matrix((d.cpu().numpy(), j.cpu().numpy(), indptr), shape=(n, n))


def jaccard_distance(features: torch.Tensor, k1: int = 30, k2: int = 6, ranking: torch.Tensor | None = None,
                     knn_backend: str = "auto", max_block_elems: int | None = None) -> sp.csr_matrix:
    """The k-reciprocal Jaccard distance of L2-normalised ``features`` (N x D), sparse (module docstring).

    ``ranking`` (N x k1 neighbour indices, self first) may be given, e.g. to compare implementations
    independently of the kNN's tie order; otherwise it is computed with :func:`clustering.knn`.
    ``max_block_elems`` bounds the pairs handled at once, and so the peak memory; by default it adapts
    to the free memory of the features' device (:func:`block_budget`)."""
    i, j, d = jaccard_graph(features, k1, k2, ranking, knn_backend, max_block_elems)
    return to_csr(i, j, d, features.shape[0])
