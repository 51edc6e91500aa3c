"""Slow, obvious re-implementations that the tests compare the project's fast code against."""
from __future__ import annotations

import math

import numpy as np


def k_reciprocal(ranking: np.ndarray, i: int, k: int) -> np.ndarray:
    forward = ranking[i, : k + 1]
    backward = ranking[forward, : k + 1]
    return forward[np.where(backward == i)[0]]


def expanded_loop(ranking: np.ndarray, i: int, k1: int) -> np.ndarray:
    """S(i): R(i, k1) united with each R(c, round(k1/2)), c in R(i, k1), of which more than 2/3 lies in R(i, k1)."""
    r1 = k_reciprocal(ranking, i, k1)
    expansion = r1
    for c in r1:
        cand = k_reciprocal(ranking, c, int(np.around(k1 / 2)))
        if len(np.intersect1d(cand, r1)) > 2 / 3 * len(cand):
            expansion = np.append(expansion, cand)
    return np.unique(expansion)


def jaccard_loop(features: np.ndarray, ranking: np.ndarray, k1: int, k2: int) -> np.ndarray:
    """The k-reciprocal Jaccard distance, point by point and dense, as the Cluster Contrast code."""
    n = features.shape[0]
    V = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        expansion = expanded_loop(ranking, i, k1)
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


def camera_lists(d: np.ndarray, cams: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Item i's full ranking among its own camera's items (itself first) and among the other cameras' items,
    by a stable argsort of row i of the dense distance matrix ``d``."""
    order = np.argsort(d[i], kind="stable")
    mine = cams[order] == cams[i]
    intra = order[mine]
    return np.concatenate([[i], intra[intra != i]]), order[~mine]


def ca_v_loop(d: np.ndarray, cams: np.ndarray, k1_intra: int, k1_inter: int, k2_intra: int, k2_inter: int,
              weight, ckrnns: bool = True, clqe: bool = True, k1: int = 30, k2: int = 6) -> np.ndarray:
    """CA-Jaccard's V after CKRNNs and CLQE, dense and point by point (Chen et al., CVPR 2024, section 3):
    N(i) = R_intra(i, k1_intra) united with R_inter(i, k1_inter), each k-reciprocal on its own camera-split
    ranking list; V[i, N(i)] = weight(i, N(i)) normalised; then V[i] <- mean of V over the first k2_intra of
    i's intra-camera list and the first k2_inter of its inter-camera list. ``ckrnns=False``: N(i) is the
    Jaccard distance's expanded set on the global ranking's first k1 + 1 columns (CA-Jaccard's code ranks the
    whole matrix and reads ``initial_rank[i, :k1 + 1]``: i and k1 others, where Cluster Contrast's kNN of k1
    columns gives i and k1 - 1 others); ``clqe=False``: the mean is over the global ranking's first k2."""
    n = d.shape[0]
    lists = [camera_lists(d, cams, i) for i in range(n)]
    ranking = np.argsort(d, axis=1, kind="stable")[:, :k1 + 1]

    def recip(which: int, i: int, k: int) -> list[int]:
        forward = lists[i][which][: k + 1]
        return [int(j) for j in forward if i in lists[int(j)][which][: k + 1]]

    V = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        if ckrnns:
            nb = np.array(sorted(set(recip(0, i, k1_intra)) | set(recip(1, i, k1_inter))), dtype=int)
        else:
            nb = expanded_loop(ranking, i, k1)
        w = weight(i, nb)
        V[i, nb] = w / w.sum()
    if not clqe:
        return V if k2 == 1 else np.stack([V[ranking[i, :k2]].mean(0) for i in range(n)])
    return np.stack([V[np.concatenate([lists[i][0][:k2_intra], lists[i][1][:k2_inter]])].mean(0)
                     for i in range(n)])


def overlap_distance(V: np.ndarray, rows: int | None = None) -> np.ndarray:
    """1 - s / (2 - s), s = sum_k min(V[i, k], V[j, k]), clipped at 0, for the first ``rows`` rows."""
    rows = V.shape[0] if rows is None else rows
    jac = np.stack([1 - (s := np.minimum(V[i], V).sum(1)) / (2 - s) for i in range(rows)])
    return np.maximum(jac, 0)


def ca_jaccard_loop(features: np.ndarray, cams: np.ndarray, k1_intra=5, k1_inter=20, k2_intra=3,
                    k2_inter=3, **parts) -> np.ndarray:
    """The CA-Jaccard distance of the clustering scene, dense: softmax weights of -(2 - 2 <f_i, f_j>);
    ``parts``: ckrnns, clqe, k1, k2 of :func:`ca_v_loop`."""
    d = 2 - 2 * features @ features.T

    def weight(i, nb):
        return np.exp(-d[i, nb] - (-d[i, nb]).max())
    return overlap_distance(ca_v_loop(d, cams, k1_intra, k1_inter, k2_intra, k2_inter, weight, **parts))


def ca_re_ranking_loop(q_g, q_q, g_g, q_cams, g_cams, k1_intra=5, k1_inter=20, k2_intra=3, k2_inter=3,
                       lambda_value=0.3):
    """CA-Jaccard as a re-ranking (the paper's re-ranking scene), dense: the squared distances normalised as
    Zhong et al.'s re-ranking, weights exp(-d), final = (1 - lambda) jaccard + lambda original, query x gallery."""
    d = np.concatenate([np.concatenate([q_q, q_g], 1), np.concatenate([q_g.T, g_g], 1)], 0) ** 2
    d = np.transpose(d / d.max(0)).astype(np.float64)
    Q = q_g.shape[0]
    cams = np.concatenate([q_cams, g_cams])
    V = ca_v_loop(d, cams, k1_intra, k1_inter, k2_intra, k2_inter, lambda i, nb: np.exp(-d[i, nb]))
    final = overlap_distance(V, Q) * (1 - lambda_value) + d[:Q] * lambda_value
    return final[:, Q:]


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
        exp = expanded_loop(rank, i, k1)
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


def euler_cosine_loop(x: np.ndarray, y: np.ndarray, alpha: float = 1.9) -> np.ndarray:
    """|sum_d (x'_d - y'_d)^2| with x' = e^(i alpha pi x) / sqrt(2), pair by pair (3C's Euler cosine distance)."""
    xz = np.exp(1j * alpha * np.pi * x.astype(np.float64)) / np.sqrt(2)
    yz = np.exp(1j * alpha * np.pi * y.astype(np.float64)) / np.sqrt(2)
    return np.array([[abs(((u - v) ** 2).sum()) for v in yz] for u in xz])


def kmeans_pp_loop(dist: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    """Greedy k-means++ seeds over a dense distance matrix, drawn from RandomState(seed) as scikit-learn draws them:
    the first uniformly, then per step 2 + ln C candidates by the cumulative closest distance, the best kept."""
    rs = np.random.RandomState(seed)
    n = dist.shape[0]
    trials = 2 + int(np.log(n_clusters))
    seeds = [rs.randint(n)]
    closest = dist[seeds[0]].astype(np.float32)[None]
    pot = closest.sum()
    for _ in range(1, n_clusters):
        cand = np.searchsorted(np.cumsum(closest, dtype=np.float64), rs.uniform(size=trials) * pot)
        cand = np.minimum(cand, n - 1)
        options = np.minimum(closest, dist[cand].astype(np.float32))
        pots = options.sum(1)
        best = int(np.argmin(pots))
        pot, closest = pots[best], options[best]
        seeds.append(int(cand[best]))
    return np.array(seeds)


def hdc_loop(x: np.ndarray, dist: np.ndarray, n_clusters: int, seeds: np.ndarray, outlier: bool = True,
             max_iter: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """3C's HDC, dense and point by point, as its code behaves (CCC/HDC/HDC_fix2.py, _HDC_utils.pyx), with the
    Euler cosine distance: (labels, centroids). ``dist``: the dense Jaccard distance (1 where a graph has no pair)."""
    n = x.shape[0]
    xx_hd = np.clip(1 - np.exp(-dist.astype(np.float32)), 0, 1)
    centroids = x[seeds].astype(np.float32)
    labels = np.array([int(np.argmin(dist[i, seeds])) for i in range(n)])
    shift_min, tol, pod = 0xfffff, 0, labels
    for it in range(max_iter):
        old = centroids.copy()
        e = euler_cosine_loop(x, centroids)
        mem_x = np.exp(-5 * e / e.max())                       # membership of each sample in each cluster
        b = np.array([mem_x[k, labels[k]] for k in range(n)])
        hd = np.empty((n, n_clusters))
        for i in range(n):
            for j in range(n_clusters):
                best, pick = -1.0, 0
                for k in np.where(labels == j)[0]:
                    t = xx_hd[i, k] * b[k] / (xx_hd[i, k] + b[k])
                    if t > best:
                        best, pick = t, k
                hd[i, j] = xx_hd[i, pick]
        mem = (hd.sum(1, keepdims=True) - hd) / (n_clusters - 1)
        labels = mem.argmax(1)
        labels_hd = hd[np.arange(n), labels]
        labels_mem = mem[np.arange(n), labels].astype(np.float32)
        while np.bincount(labels, minlength=n_clusters).min() == 0:   # an empty cluster takes a weak member
            count = np.bincount(labels, minlength=n_clusters)
            empty = np.where(count == 0)[0]
            weak = labels_mem.copy()
            weak[np.isin(labels, np.where(count < 5)[0])] = 1.0
            for j, k in zip(empty, np.argpartition(weak, empty.size)[:empty.size]):
                labels[k], labels_hd[k] = j, hd[k, j]
        pod = labels.copy()
        for j in range(n_clusters):
            v = labels_hd[labels == j]
            if v.size > 1:
                pod[(labels == j) & (labels_hd > v.mean() + v.std(ddof=1))] = -1
        centroids = np.stack([x[pod == j].mean(0) for j in range(n_clusters)]).astype(np.float32)
        shift = ((old - centroids) ** 2).sum()
        if shift == 0:
            break
        if it >= 10:
            if shift < shift_min:
                tol, shift_min = 0, shift
            elif tol < 4:
                tol += 1
            else:
                break
    return (pod if outlier else labels), centroids


def memory_update_loop(memory: np.ndarray, x: np.ndarray, y: np.ndarray, cams: np.ndarray, m: float,
                       mode: str) -> np.ndarray:
    """3C's memory updates (its models/cm.py: cm, cm_hard, cm_hard_camera, hd_camera), sample by sample in batch
    order, in float64: the memory after one batch."""
    mem = memory.astype(np.float64).copy()
    x = x.astype(np.float64)

    def move(j, v):
        mem[j] = m * mem[j] + (1 - m) * v
        mem[j] /= np.linalg.norm(mem[j])
    if mode == "mean":
        for v, j in zip(x, y):
            move(j, v)
        return mem
    before = mem.copy()
    if mode == "hard":
        for j in dict.fromkeys(y.tolist()):
            members = np.where(y == j)[0]
            move(j, x[members[np.argmin(x[members] @ before[j])]])
        return mem
    groups = {}                                    # (cluster, camera) -> members, in order of first appearance
    for k, (j, c) in enumerate(zip(y.tolist(), cams.tolist())):
        groups.setdefault((j, c), []).append(k)
    picks = {}                                     # cluster -> [(sample, h)] in order of its cameras' appearance
    for (j, c), members in groups.items():
        f = x[members]
        if mode == "hard_camera":
            picks.setdefault(j, []).append((members[int(np.argmin(f @ before[j]))], 0.0))
        else:
            centre = f.mean(0) / np.linalg.norm(f.mean(0))
            s, d = f @ centre + 1, 1 - f @ before[j]
            h = d * s / (d + s)
            picks.setdefault(j, []).append((members[int(np.argmax(h))], float(h.max())))
    for j, chosen in picks.items():
        if mode == "hard_camera":
            for k, _ in chosen:
                move(j, x[k])
        else:
            move(j, x[max(chosen, key=lambda kh: kh[1])[0]])     # the first of the largest h
    return mem


def camera_weighted_nce_loop(memory: np.ndarray, x: np.ndarray, y: np.ndarray, cams: np.ndarray,
                             temp: float) -> float:
    """3C's --loss-with-camera ClusterNCE, written out: per cluster of the batch, w = exp(entropy in bits of its
    cameras), scaled to average 1 over the clusters; the mean of w times each sample's cross-entropy."""
    x = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
    logits = x @ memory.astype(np.float64).T / temp
    ce = -(logits[np.arange(len(y)), y] - np.log(np.exp(logits).sum(1)))
    w = {}
    for j in sorted(set(y.tolist())):
        _, counts = np.unique(cams[y == j], return_counts=True)
        p = counts / counts.sum()
        w[j] = np.exp(-(p * np.log2(p)).sum())
    scale = len(w) / sum(w.values())
    return float(np.mean([w[j] * scale * c for j, c in zip(y.tolist(), ce)]))
