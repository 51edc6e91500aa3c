"""Evaluation speed and memory at Market-1501 and MSMT17 sizes, next to the argsort reference (the
project's previous implementation: per chunk of queries, a stable argsort of every gallery row).

    python -m benchmarks.evaluation                  # Market size on the distance matrix, with the reference
    python -m benchmarks.evaluation --msmt           # MSMT17 size from features (peak memory in a child)
    python -m benchmarks.evaluation --rerank both    # re-ranking, Zhong et al.'s and CA-Jaccard's, each in a
                                                     # process of its own (add --msmt for MSMT17's size)

The features are random clusters (751 / 3,060 identities, 6 / 15 cameras, D 2,048 / 256), hard enough
that mAP is far from 1.
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch


def reference_evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50, chunk=256):
    """The previous implementation: argsort of every row (numpy, stable)."""
    n_q, n_g = distmat.shape
    cmc_sum, ap_sum, inp_sum, valid = np.zeros(max_rank), 0.0, 0.0, 0
    for s in range(0, n_q, chunk):
        order = np.argsort(distmat[s:s + chunk], axis=1, kind="stable")
        qp, qc = q_pids[s:s + chunk, None], q_cams[s:s + chunk, None]
        gp, gc = g_pids[order], g_cams[order]
        keep = ~((gp == qp) & (gc == qc))
        match = (gp == qp) & keep
        n_rel = match.sum(1)
        ok = n_rel > 0
        keep, match, n_rel = keep[ok], match[ok], n_rel[ok]
        rank = np.cumsum(keep, axis=1) - 1
        hits = np.cumsum(match, axis=1)
        first = rank[np.arange(len(n_rel)), np.argmax(match, axis=1)]
        cmc_sum += (first[:, None] <= np.arange(max_rank)[None, :]).sum(0)
        with np.errstate(divide="ignore", invalid="ignore"):
            ap_sum += float((np.where(match, hits / (rank + 1.0), 0).sum(1) / n_rel).sum())
        last = match.shape[1] - 1 - np.argmax(match[:, ::-1], axis=1)
        inp_sum += float((n_rel / (rank[np.arange(len(last)), last] + 1.0)).sum())
        valid += int(ok.sum())
    return {"mAP": ap_sum / valid, "cmc": cmc_sum / valid, "mINP": inp_sum / valid}


def case(Q, G, ids, cams, dim, noise, seed=0):
    rng = np.random.default_rng(seed)
    q_p = rng.integers(1, ids + 1, Q)
    g_p = rng.integers(0, ids + 1, G)
    q_c, g_c = rng.integers(0, cams, Q), rng.integers(0, cams, G)
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(ids + 1, dim, generator=g)
    qf = torch.nn.functional.normalize(centers[q_p] + noise * torch.randn(Q, dim, generator=g), dim=1)
    gf = torch.nn.functional.normalize(centers[g_p] + noise * torch.randn(G, dim, generator=g), dim=1)
    return qf, gf, (q_p, g_p, q_c, g_c)


def timed(f):
    start = time.perf_counter()
    r = f()
    return r, round(time.perf_counter() - start, 2)


def rerank_row(msmt: bool, distance: str) -> dict:
    """Re-ranking of the query x gallery from the features (evaluation.rerank.re_ranking_features): seconds,
    the process' peak memory growth, mAP before and after."""
    from reidlab.evaluation.metrics import evaluate, evaluate_features
    from reidlab.evaluation.rerank import re_ranking_features
    qf, gf, labels = case(11659, 82161, 3060, 15, 256, 2.5) if msmt else case(3368, 19732, 751, 6, 2048, 4.0)
    plain = evaluate_features(qf, gf, *labels)["mAP"]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ca = dict(k1_intra=5, k1_inter=20, k2_intra=3, k2_inter=3) if distance == "ca-jaccard" else None
    dist, t = timed(lambda: re_ranking_features(qf, gf, cams=(labels[2], labels[3]), ca=ca))
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"benchmark": "rerank", "distance": distance, "size": f"{len(qf)} x {len(gf)}", "D": qf.shape[1],
            "seconds": t, "peak_growth_MB": round(grown), "result_float32_MB": round(len(qf) * len(gf) * 4 / 2**20),
            "gallery_square_float32_MB": round(len(gf) ** 2 * 4 / 2**20), "mAP": round(plain, 4),
            "reranked_mAP": round(evaluate(torch.from_numpy(dist), *labels)["mAP"], 4)}


def main(argv=None) -> None:
    from reidlab.evaluation.metrics import evaluate, evaluate_features, pairwise_distance
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--msmt", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--rerank", choices=("jaccard", "ca-jaccard", "both"))
    a = p.parse_args(argv)
    dev = torch.device(a.device)
    if a.rerank == "both":
        import subprocess
        import sys
        for distance in ("jaccard", "ca-jaccard"):
            subprocess.run([sys.executable, "-m", "benchmarks.evaluation", "--rerank", distance]
                           + (["--msmt"] if a.msmt else []), check=True)
    elif a.rerank:
        print(json.dumps(rerank_row(a.msmt, a.rerank)), flush=True)
    elif not a.msmt:
        qf, gf, labels = case(3368, 19732, 751, 6, 2048, 4.0)
        dist = pairwise_distance(qf, gf)
        ref, t_ref = timed(lambda: reference_evaluate(dist, *labels))
        new, t_new = timed(lambda: evaluate(torch.from_numpy(dist).to(dev), *labels))
        feats, t_feat = timed(lambda: evaluate_features(qf.to(dev), gf.to(dev), *labels))
        print(json.dumps({"benchmark": "evaluation", "size": "3368 x 19732", "device": str(dev),
                          "evaluate_s": t_new, "reference_argsort_s": t_ref,
                          "evaluate_features_s (with the 2048-d distances)": t_feat,
                          "mAP": new["mAP"], "reference_mAP": ref["mAP"],
                          "max_abs_diff": max(abs(new["mAP"] - ref["mAP"]), abs(new["mINP"] - ref["mINP"]),
                                              float(np.abs(new["cmc"] - ref["cmc"]).max()))}))
    else:
        qf, gf, labels = case(11659, 82161, 3060, 15, 256, 2.5)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        r, t = timed(lambda: evaluate_features(qf.to(dev), gf.to(dev), *labels))
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(json.dumps({"benchmark": "evaluation", "size": "11659 x 82161", "device": str(dev), "seconds": t,
                          "peak_growth_MB": round(grown, 1), "dense_float32_MB": round(11659 * 82161 * 4 / 2 ** 20),
                          "mAP": r["mAP"]}))


if __name__ == "__main__":
    main()
