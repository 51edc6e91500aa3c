"""The k-reciprocal machinery shared by the Jaccard distance of the unsupervised loop
(``clustering.jaccard``) and the k-reciprocal re-ranking of evaluation (``evaluation.rerank``),
after Zhong et al. (CVPR 2017).

All functions work in blocks of rows with torch on their inputs' device, on padded per-row lists
(N x M, -1 = padding) or COO triples, and never build an N x N array:

- :func:`reciprocal_sets`: R(i, k), the k-reciprocal neighbours of every i;
- :func:`expanded_sets`: S(i), R(i, k1) expanded by the R(c, round(k1/2)) that overlap it by > 2/3;
- :func:`camera_sets`: CA-Jaccard's CKRNNs, R on the intra-camera list united with R on the inter-camera one;
- :func:`rows_to_padded`, :func:`query_expansion`: V as padded rows, and its average over each
  item's first k2 neighbours;
- :func:`min_overlap_sums`: s(i, j) = sum_k min(V[i, k], V[j, k]) for every pair with s > 0;
- :func:`block_budget`: how many pairs to handle at once on a device.
"""
from __future__ import annotations

import os

import numpy as np
import torch

PAD = -1


def reciprocal_sets(ranking: torch.Tensor, k: int, block: int = 8192) -> torch.Tensor:
    """R(i, k) for every i as an N x c tensor (c = min(k+1, columns)), non-members replaced by -1."""
    fw = ranking[:, : k + 1]
    out = torch.empty_like(fw)
    for s in range(0, fw.shape[0], block):
        f = fw[s:s + block]
        own = torch.arange(s, s + f.shape[0], device=fw.device).view(-1, 1, 1)
        ok = (fw[f] == own).any(-1)                       # is i among the first k+1 of each of its neighbours
        out[s:s + block] = torch.where(ok, f, PAD)
    return out


def compact(idx: torch.Tensor, n: int) -> torch.Tensor:
    """Per row: unique valid entries first (ascending), then -1 padding; trailing all-pad columns cut."""
    key = torch.where(idx < 0, n, idx)
    key, _ = key.sort(dim=1)
    dup = torch.zeros_like(key, dtype=torch.bool)
    dup[:, 1:] = key[:, 1:] == key[:, :-1]
    key = torch.where(dup, n, key).sort(dim=1).values
    width = int((key < n).sum(1).max().item()) if key.numel() else 0
    key = key[:, : max(width, 1)]
    return torch.where(key >= n, PAD, key)


def expanded_sets(ranking: torch.Tensor, k1: int, block: int = 2048) -> list[torch.Tensor]:
    """S(i) of step (b), as a list of padded blocks of rows."""
    n = ranking.shape[0]
    r1 = reciprocal_sets(ranking, k1)
    rh = reciprocal_sets(ranking, int(np.around(k1 / 2)))
    blocks = []
    for s in range(0, n, block):
        cand = r1[s:s + block]                                            # b x c1
        ch = torch.where(cand[..., None] >= 0, rh[cand.clamp(min=0)], PAD)  # b x c1 x ch
        valid = ch >= 0
        inside = (ch[..., None] == cand[:, None, None, :]).any(-1) & valid
        size, hits = valid.sum(-1).double(), inside.sum(-1).double()
        accept = (hits > (2.0 / 3.0) * size) & (cand >= 0)
        extra = torch.where(accept[..., None], ch, PAD).flatten(1)
        blocks.append(compact(torch.cat([cand, extra], dim=1), n))
    return blocks


def camera_sets(intra: torch.Tensor, inter: torch.Tensor, k1_intra: int, k1_inter: int,
                block: int = 2048) -> list[torch.Tensor]:
    """CA-Jaccard's camera-aware k-reciprocal neighbours (CKRNNs, Chen et al. CVPR 2024, section 3.2):
    R_intra(i, k1_intra) on the ranking among i's own camera (``intra``, self first) united with
    R_inter(i, k1_inter) on the ranking among the other cameras (``inter``), as padded blocks of rows. The
    two are disjoint (one holds i's camera only, the other none of it), and no expansion follows (the
    published code's ``nn_k1 = union1d(nn_intra, nn_inter)``)."""
    r_intra, r_inter = reciprocal_sets(intra, k1_intra), reciprocal_sets(inter, k1_inter)
    n = intra.shape[0]
    return [compact(torch.cat([r_intra[s:s + block], r_inter[s:s + block]], dim=1), n)
            for s in range(0, n, block)]


def rows_to_padded(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n_rows: int):
    """COO entries sorted by row -> padded per-row (cols, vals)."""
    counts = torch.bincount(rows, minlength=n_rows)
    width = int(counts.max().item()) if rows.numel() else 1
    start = torch.cumsum(counts, 0) - counts
    pos = torch.arange(rows.numel(), device=rows.device) - start[rows]
    pc = torch.full((n_rows, width), PAD, dtype=torch.long, device=rows.device)
    pv = torch.zeros((n_rows, width), dtype=vals.dtype, device=rows.device)
    pc[rows, pos] = cols
    pv[rows, pos] = vals
    return pc, pv


def query_expansion(vcol: torch.Tensor, vval: torch.Tensor, ranking: torch.Tensor, k2: int, block: int = 4096):
    """Step (d): V[i] <- mean over r in ranking[i, :k2] of V[r], as COO (rows, cols, vals) sorted by row.

    Padding (-1) in ``ranking`` is left out of the mean: a row with fewer than k2 neighbours (CA-Jaccard's
    inter-camera list when the other cameras hold fewer images) averages the ones it has."""
    n = vcol.shape[0]
    out_r, out_c, out_v = [], [], []
    for s in range(0, n, block):
        nb = ranking[s:s + block, :k2]
        b = nb.shape[0]
        real = nb >= 0
        count = real.sum(1)
        cols = torch.where(real[..., None], vcol[nb.clamp(min=0)], PAD).flatten(1)   # b x (k2*M)
        vals = vval[nb.clamp(min=0)].flatten(1)
        ok = cols >= 0
        local = torch.arange(b, device=cols.device)[:, None].expand_as(cols)
        key = (local * n + cols)[ok]
        uniq, inv = torch.unique(key, return_inverse=True)          # sorted: by row, then column
        summed = torch.zeros(uniq.shape[0], dtype=vals.dtype, device=vals.device).index_add_(0, inv, vals[ok])
        out_r.append(uniq // n + s)
        out_c.append(uniq % n)
        out_v.append(summed / (k2 if bool(real.all()) else count[uniq // n].to(summed.dtype)))
    return torch.cat(out_r), torch.cat(out_c), torch.cat(out_v)


def min_overlap_sums(rows, cols, vals, n: int, max_elems: int, n_rows: int | None = None):
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
