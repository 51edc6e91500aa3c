"""Slow, obvious re-implementations that the tests compare the project's fast code against."""
from __future__ import annotations

import math

import numpy as np


def k_reciprocal(ranking: np.ndarray, i: int, k: int) -> np.ndarray:
    forward = ranking[i, : k + 1]
    backward = ranking[forward, : k + 1]
    return forward[np.where(backward == i)[0]]


def jaccard_loop(features: np.ndarray, ranking: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """The k-reciprocal Jaccard distance, point by point and dense, as the Cluster Contrast code."""
    n = features.shape[0]
    r1 = [k_reciprocal(ranking, i, k1) for i in range(n)]
    rh = [k_reciprocal(ranking, i, int(np.around(k1 / 2))) for i in range(n)]
    V = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        expansion = r1[i]
        for c in r1[i]:
            cand = rh[c]
            if len(np.intersect1d(cand, r1[i])) > 2 / 3 * len(cand):
                expansion = np.append(expansion, cand)
        expansion = np.unique(expansion)
        dist = 2 - 2 * features[i] @ features[expansion].T
        w = np.exp(-dist - (-dist).max())
        V[i, expansion] = w / w.sum()
    if k2 != 1:
        V = np.stack([V[ranking[i, :k2]].mean(0) for i in range(n)])
    jac = np.ones((n, n))
    for i in range(n):
        for j in range(n):
            s = np.minimum(V[i], V[j]).sum()
            jac[i, j] = 1 - s / (2 - s)
    return np.maximum(jac, 0)


def ap_loop(dist_row, q_pid, q_cam, g_pids, g_cams):
    """(AP, first-match rank, INP) of one query, or None when it has no valid match."""
    order = np.argsort(dist_row, kind="stable")
    ranked = [(g_pids[j], g_cams[j]) for j in order if not (g_pids[j] == q_pid and g_cams[j] == q_cam)]
    hits = [p == q_pid for p, _ in ranked]
    if not any(hits):
        return None
    precisions, found = [], 0
    for r, h in enumerate(hits):
        if h:
            found += 1
            precisions.append(found / (r + 1))
    last = max(r for r, h in enumerate(hits) if h)
    return float(np.mean(precisions)), hits.index(True), found / (last + 1)


def re_ranking_loop(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3):
    """Zhong et al.'s re-ranking, dense and point by point, as their published algorithm."""
    d = np.concatenate([np.concatenate([q_q, q_g], 1), np.concatenate([q_g.T, g_g], 1)], 0) ** 2
    d = np.transpose(d / d.max(0)).astype(np.float64)
    n, Q = d.shape[0], q_g.shape[0]
    rank = np.argsort(d, axis=1, kind="stable")
    V = np.zeros_like(d)
    for i in range(n):
        r1 = k_reciprocal(rank, i, k1)
        exp = r1
        for c in r1:
            cand = k_reciprocal(rank, c, int(np.around(k1 / 2)))
            if len(np.intersect1d(cand, r1)) > 2 / 3 * len(cand):
                exp = np.append(exp, cand)
        exp = np.unique(exp)
        w = np.exp(-d[i, exp])
        V[i, exp] = w / w.sum()
    if k2 != 1:
        V = np.stack([V[rank[i, :k2]].mean(0) for i in range(n)])
    jac = np.zeros((Q, n))
    for i in range(Q):
        jac[i] = 1 - (s := np.minimum(V[i], V).sum(1)) / (2 - s)
    final = jac * (1 - lambda_value) + d[:Q] * lambda_value
    return final[:, Q:]


def label_smoothed_ce_loop(logits, targets, eps):
    """Cross-entropy against (1 - eps) one-hot + eps / C, one sample and one class at a time."""
    total = 0.0
    n, c = logits.shape
    for i in range(n):
        row = [float(v) for v in logits[i]]
        m = max(row)
        log_z = m + math.log(sum(math.exp(v - m) for v in row))
        for j in range(c):
            q = (1 - eps) * (j == int(targets[i])) + eps / c
            total -= q * (row[j] - log_z)
    return total / n


def batch_hard_triplet_loop(features, targets, margin):
    """Hardest positive / negative per anchor by explicit loops over pairs."""
    n = len(targets)
    losses = []
    for a in range(n):
        d = [math.sqrt(sum((float(features[a][k]) - float(features[b][k])) ** 2 for k in range(features.shape[1])))
             for b in range(n)]
        pos = [d[b] for b in range(n) if b != a and targets[b] == targets[a]]
        neg = [d[b] for b in range(n) if targets[b] != targets[a]]
        if not pos or not neg:
            continue
        diff = max(pos) - min(neg)
        losses.append(math.log1p(math.exp(diff)) if margin == 0 else max(0.0, diff + margin))
    return sum(losses) / len(losses)
