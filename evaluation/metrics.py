"""Re-ID metrics with the usual (Market-1501 / torchreid) semantics.

For each query, gallery entries with the query's identity *and* camera are removed; a query left with
no correct match is skipped. CMC counts the rank of the first match, AP is the mean precision at each
match, mINP (Ye et al. 2021) is (number of matches) / (rank of the last match). Computed in chunks of
queries with numpy, so a Market-size matrix (3,368 x 19,732) takes seconds on a CPU.
"""
from __future__ import annotations

import numpy as np
import torch

from errors import DatasetError


def pairwise_distance(query: torch.Tensor, gallery: torch.Tensor) -> np.ndarray:
    """Cosine distance 1 - <q, g> of L2-normalised features, Q x G float32 on the CPU."""
    return (1 - query @ gallery.T).float().cpu().numpy()


def evaluate(distmat: np.ndarray, query_pids, gallery_pids, query_camids, gallery_camids, max_rank: int = 50,
             chunk: int = 256) -> dict:
    """mAP, CMC (numpy array of ``max_rank`` values) and mINP, as fractions; plus the number of queries used."""
    q_pids, g_pids = np.asarray(query_pids), np.asarray(gallery_pids)
    q_cams, g_cams = np.asarray(query_camids), np.asarray(gallery_camids)
    n_q, n_g = distmat.shape
    wanted, max_rank = max_rank, min(max_rank, n_g)
    cmc_sum = np.zeros(max_rank)
    ap_sum = inp_sum = 0.0
    valid = 0
    for s in range(0, n_q, chunk):
        d = np.asarray(distmat[s:s + chunk])
        order = np.argsort(d, axis=1, kind="stable")
        qp, qc = q_pids[s:s + chunk, None], q_cams[s:s + chunk, None]
        gp, gc = g_pids[order], g_cams[order]
        keep = ~((gp == qp) & (gc == qc))
        match = (gp == qp) & keep
        n_rel = match.sum(1)
        ok = n_rel > 0
        if not ok.any():
            continue
        keep, match, n_rel = keep[ok], match[ok], n_rel[ok]
        rank = np.cumsum(keep, axis=1) - 1                  # rank among kept entries
        hits = np.cumsum(match, axis=1)
        first = np.argmax(match, axis=1)
        first_rank = rank[np.arange(len(first)), first]
        cmc_sum += (first_rank[:, None] <= np.arange(max_rank)[None, :]).sum(0)
        prec = np.where(match, hits / np.maximum(rank + 1.0, 1.0), 0.0)
        ap_sum += float((prec.sum(1) / n_rel).sum())
        last = match.shape[1] - 1 - np.argmax(match[:, ::-1], axis=1)
        inp_sum += float((n_rel / (rank[np.arange(len(last)), last] + 1.0)).sum())
        valid += int(ok.sum())
    if valid == 0:
        raise DatasetError("no query has a correct match in the gallery (no query's identity is in the gallery "
                           "under another camera): check the dataset's query and gallery folders")
    cmc = cmc_sum / valid
    if len(cmc) < wanted:                     # a gallery smaller than max_rank: past its end the CMC stays flat
        cmc = np.concatenate([cmc, np.full(wanted - len(cmc), cmc[-1])])
    return {"mAP": ap_sum / valid, "cmc": cmc, "mINP": inp_sum / valid, "num_valid_queries": valid}
