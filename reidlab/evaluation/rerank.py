"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), on the same k-reciprocal code as the Jaccard
distance of the unsupervised loop (clustering.jaccard).

Exactly the original algorithm: the distances of all Q + G items are squared and each row is divided
by its maximum (the original divides columns of the symmetric matrix and transposes); R(i, k1) looks at
the first k1 + 1 items of i's full ranking, the expansion at round(k1/2) + 1; V[i, S] = exp(-d) / sum;
query expansion over the first k2 items; the Jaccard distance of each query to every item; and
final = (1 - lambda) * jaccard + lambda * original, restricted to query x gallery.

With ``ca`` (and the items' cameras), CA-Jaccard's re-ranking scene (Chen et al., CVPR 2024; its code's
``caj/utils/rerank.py``): the k-reciprocal sets are found on each item's intra-camera and inter-camera
ranking lists (CKRNNs) and the query expansion averages the first k2_intra and k2_inter of those lists
(CLQE); the normalisation, the weights and the final mix are the ones above (clustering.ca_jaccard has
the details and the choices).

No (Q + G) x (Q + G) matrix is built: rankings, weights and the Jaccard sums are computed in row blocks,
from the three input blocks (:func:`re_ranking`, the original interface) or from the features themselves
(:func:`re_ranking_features`, what evaluation uses: its memory is the Q x G result plus row blocks, so the
query x gallery of MSMT17 (11,659 x 82,161) re-ranks without its 82,161 x 82,161 gallery matrix).
"""
from __future__ import annotations

import numpy as np
import torch

from reidlab.clustering.knn import self_first
from reidlab.clustering.kreciprocal import (PAD, block_budget, camera_sets, expanded_sets, min_overlap_sums,
                                           query_expansion, rows_to_padded)


class _Blocks:
    """The normalised squared distance of the (Q+G) x (Q+G) matrix [[qq, qg], [qg.T, gg]], by rows."""

    def __init__(self, q_g, q_q, g_g):
        self.qg, self.qq, self.gg = (torch.as_tensor(np.asarray(a), dtype=torch.float32) ** 2 for a in (q_g, q_q, g_g))
        self.Q, self.G = self.qg.shape
        self.row_max = torch.cat([torch.maximum(self.qq.max(1).values, self.qg.max(1).values),
                                  torch.maximum(self.qg.max(0).values, self.gg.max(1).values)])

    def rows(self, a: int, b: int) -> torch.Tensor:
        """Rows a..b-1 of the normalised matrix (b - a) x (Q + G)."""
        Q = self.Q
        parts = []
        if a < Q:
            e = min(b, Q)
            parts.append(torch.cat([self.qq[a:e], self.qg[a:e]], 1))
        if b > Q:
            s = max(a, Q) - Q
            parts.append(torch.cat([self.qg[:, s:b - Q].T, self.gg[s:b - Q]], 1))
        return torch.cat(parts) / self.row_max[a:b, None]

    def at(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Elements (i, j) of the normalised matrix."""
        Q = self.Q
        out = torch.empty(i.shape, dtype=torch.float32)
        qi, qj = i < Q, j < Q
        m = qi & qj
        out[m] = self.qq[i[m], j[m]]
        m = qi & ~qj
        out[m] = self.qg[i[m], j[m] - Q]
        m = ~qi & qj
        out[m] = self.qg[j[m], i[m] - Q]
        m = ~qi & ~qj
        out[m] = self.gg[i[m] - Q, j[m] - Q]
        return out / self.row_max[i]


class _FeatureBlocks(_Blocks):
    """The same normalised matrix, computed from L2-normalised features X = [query; gallery] by rows: the
    distance is evaluation's cosine distance 1 - <x_i, x_j> (evaluation.metrics.pairwise_distance), squared,
    each row divided by its maximum (found in a first pass over row blocks)."""

    def __init__(self, qf: torch.Tensor, gf: torch.Tensor, block_elems: int = 1 << 24):
        self.x = torch.cat([torch.as_tensor(qf), torch.as_tensor(gf)]).float().cpu()
        self.Q, self.G = len(qf), len(gf)
        n = len(self.x)
        self.step = max(1, block_elems // n)
        self.row_max = torch.ones(n)
        self.row_max = torch.cat([self.rows(a, min(n, a + self.step)).max(1).values for a in range(0, n, self.step)])

    def rows(self, a: int, b: int) -> torch.Tensor:
        return (1 - self.x[a:b] @ self.x.T) ** 2 / self.row_max[a:b, None]

    def at(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        out = torch.empty(i.shape, dtype=torch.float32)
        step = max(1, (1 << 24) // self.x.shape[1])
        for s in range(0, i.numel(), step):
            a, b = i[s:s + step], j[s:s + step]
            out[s:s + step] = (1 - (self.x[a] * self.x[b]).sum(1)) ** 2 / self.row_max[a]
        return out


def _camera_rankings(d: _Blocks, cams: torch.Tensor, k_intra: int, k_inter: int, block: int):
    """Each item's nearest among its own camera's items (self first) and among the other cameras' items;
    rows end in -1 where those hold fewer items."""
    n = d.Q + d.G
    out = [], []
    for s in range(0, n, block):
        rows = d.rows(s, min(n, s + block))
        same = cams[s:s + rows.shape[0], None] == cams[None, :]
        for lists, mask, k in ((out[0], ~same, k_intra), (out[1], same, k_inter)):
            top = rows.masked_fill(mask, float("inf")).topk(min(n, k), dim=1, largest=False)
            lists.append(top.indices.masked_fill(top.values == float("inf"), PAD))
    return self_first(torch.cat(out[0])), torch.cat(out[1])


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
               block: int = 2048, cams=None, ca: dict | None = None) -> np.ndarray:
    """Re-ranked query x gallery distances (Q x G float32 numpy). ``ca``: CA-Jaccard's parameters (k1_intra,
    k1_inter, k2_intra, k2_inter, ckrnns, clqe; :func:`clustering.ca_jaccard.ca_jaccard_graph`'s defaults
    where absent), with ``cams`` = (query cameras, gallery cameras); None: Zhong et al.'s re-ranking."""
    return _re_rank(_Blocks(q_g_dist, q_q_dist, g_g_dist), k1, k2, lambda_value, block, cams, ca)


def re_ranking_features(query: torch.Tensor, gallery: torch.Tensor, k1: int = 20, k2: int = 6,
                        lambda_value: float = 0.3, cams=None, ca: dict | None = None) -> np.ndarray:
    """:func:`re_ranking` of the cosine distances of L2-normalised query and gallery features, computed from
    the features by row blocks (module docstring): the same numbers, without any (Q + G)-square matrix."""
    d = _FeatureBlocks(query, gallery)
    return _re_rank(d, k1, k2, lambda_value, d.step, cams, ca)


def _re_rank(d: _Blocks, k1: int, k2: int, lambda_value: float, block: int, cams, ca: dict | None) -> np.ndarray:
    n, Q = d.Q + d.G, d.Q
    ranking = torch.cat([d.rows(s, min(n, s + block)).topk(min(n, k1 + 1), dim=1, largest=False).indices
                         for s in range(0, n, block)])
    # the item itself first (distance 0), as a full argsort puts it unless it has exact duplicates
    ranking = self_first(ranking)
    sets_of = lambda: expanded_sets(ranking, k1)                    # noqa: E731
    expansion = ranking[:, :k2] if k2 != 1 else None
    if ca is not None:
        if cams is None:
            raise ValueError("re_ranking: CA-Jaccard (ca=...) needs the query and gallery cameras (cams=...)")
        p = {**dict(k1_intra=5, k1_inter=20, k2_intra=3, k2_inter=3, ckrnns=True, clqe=True), **ca}
        cams_t = torch.as_tensor(np.concatenate([np.asarray(cams[0]), np.asarray(cams[1])])).long()
        intra, inter = _camera_rankings(d, cams_t, max(p["k1_intra"] + 1, p["k2_intra"]),
                                        max(p["k1_inter"] + 1, p["k2_inter"]), block)
        if p["ckrnns"]:
            sets_of = lambda: camera_sets(intra, inter, p["k1_intra"], p["k1_inter"])   # noqa: E731
        if p["clqe"]:
            expansion = torch.cat([intra[:, :p["k2_intra"]], inter[:, :p["k2_inter"]]], dim=1)
    rows, cols, vals = [], [], []
    start = 0
    for sets in sets_of():
        r = torch.arange(start, start + sets.shape[0])[:, None].expand_as(sets)
        ok = sets >= 0
        w = torch.zeros(sets.shape)
        w[ok] = torch.exp(-d.at(r[ok], sets[ok]))
        w = w / w.sum(1, keepdim=True)
        rows.append(r[ok])
        cols.append(sets[ok])
        vals.append(w[ok])
        start += sets.shape[0]
    rows, cols, vals = torch.cat(rows), torch.cat(cols), torch.cat(vals)
    if expansion is not None:
        vcol, vval = rows_to_padded(rows, cols, vals, n)
        rows, cols, vals = query_expansion(vcol, vval, expansion, expansion.shape[1])
    i, j, s = min_overlap_sums(rows, cols, vals, n, block_budget(torch.device("cpu")), n_rows=Q)
    jaccard = torch.ones(Q, d.G)
    gal = j >= Q
    jaccard[i[gal], j[gal] - Q] = 1 - s[gal] / (2 - s[gal])
    jaccard.mul_(1 - lambda_value)
    for a in range(0, Q, block):                  # + lambda * original, a block of query rows at a time
        b = min(Q, a + block)
        jaccard[a:b].add_(d.rows(a, b)[:, Q:], alpha=lambda_value)
    return jaccard.numpy()
