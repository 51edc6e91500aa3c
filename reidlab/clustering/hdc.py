"""HDC, 3C's harmonic-discrepancy clustering, on a sparse distance graph (never an N x N array).

3C: "Confidence-Guided Clustering and Contrastive Learning for Unsupervised Person Re-Identification" (arXiv
2408.09464, Neurocomputing 2025), its clustering; read from its code (github:stone5265/3C-reid: CCC/HDC/HDC_fix2.py,
_HDC_utils.pyx, utils.py, distances.py, utils/memory_table.py), which the paper describes in words. A k-means-like
loop into a set number C of clusters, whose assignment weighs each candidate cluster by its most confident members:

- **Two measures.** Sample to sample: the discrepancy a(i, k) = 1 - exp(-d(i, k)) of the Jaccard distance d (the
  graph; a pair it does not hold is at d = 1, so a = 1 - e^-1). Sample to centroid: the membership
  b(k) = exp(-5 e(k, c) / max e) of k in its own cluster, e the Euler cosine distance (alpha 1.9: |sum_d (x'_d -
  c'_d)^2| with x' = e^(i alpha pi x) / sqrt 2), divided by its largest value over every sample and centroid.
- **Harmonic discrepancy.** For sample i and cluster j, the member k of j with the largest a(i, k) b(k) / (a(i, k)
  + b(k)) (the earliest of equals), and h(i, j) = a(i, k) of that member.
- **Assignment.** i joins the cluster of the largest mean of the other clusters' h (that is, the smallest h(i, j)).
  A cluster left empty takes the samples of the lowest such membership, outside clusters of fewer than 5 (the
  code's ``_relocate_empty_clusters``), until none is empty.
- **Outliers** (``outlier``, the code's ``--hdc-outlier``): in each cluster of two or more, the samples whose h to it
  exceeds the cluster's mean plus one standard deviation (ddof 1) are left out of its centroid, and are -1 in the
  result.
- **Centroids**: the mean of each cluster's kept members (L2-normalised with ``normalize``).
- **Stop**: when the centroids stop moving, or after ``max_iter``; from iteration ``MIN_ITER`` on, when their total
  squared shift has not reached a new minimum ``N_TOL`` times in a row.
- **Start** (``init``): ``k-means++2`` (the code's default and its README's): k-means++ over the graph's distances,
  each step the best of 2 + ln C candidates (scikit-learn's greedy k-means++), then every sample to its nearest
  seed; ``random``: uniform labels; ``k-means++``: scikit-learn's k-means++ on the features (the code uses daal4py's
  here, which we do not use: another random stream). The seed's generator is numpy's RandomState(seed), drawn in the
  code's order, so the same seed gives the code's seeds; ``init_indices`` gives them directly.

Where this departs from the code: the graph holds the pairs of d < 1 only, which is what the code's dense matrix
holds too (absent pairs are exactly 1); its random start draws from an unseeded RandomState, ours from the run's
seed; ``random``'s empty cluster has a zero centroid, not the code's mean of nothing (NaN). Everything runs on the
features' device in blocks of rows (the N x C assignment, the Euler cosine distances through complex matrix
products); the k-means++ draws and the rare relocation of an empty cluster run in numpy on N-vectors, as the code.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

log = logging.getLogger(__name__)
EC_ALPHA = 1.9                  # the Euler cosine distance's alpha (distances.euler_cosine_distances)
MEMBERSHIP_SHARPNESS = 5.0      # b = exp(-5 e / max e) (HDC_fix2's VERSION 'hd=1-exp(-5*norm_dist)')
MIN_ITER, N_TOL, N_SIGMA = 10, 4, 1.0     # HDC's constructor defaults
RELOCATION_ROUNDS = 100         # the code's relocation rounds before the one that always ends (relocate_empty)
SMALL_CLUSTER = 5               # _relocate_empty_clusters keeps the members of clusters of fewer than this
SIMILARITIES = ("euler-cosine", "euclidean", "cosine")


@dataclass
class HDCResult:
    labels: np.ndarray                    # int64, -1 for outliers (with ``outlier``)
    centroids: torch.Tensor               # C x D float32, on the features' device
    iterations: int
    info: dict = field(default_factory=dict)


def pair_discrepancy(d: torch.Tensor) -> torch.Tensor:
    """a = 1 - exp(-d), clipped to [0, 1] (the code's ``_hd_mat`` with a distance matrix)."""
    return (1 - torch.exp(-d.float())).clamp_(0, 1)


def non_neighbour_discrepancy(device) -> torch.Tensor:
    """a of a pair the graph does not hold (d = 1), computed as the pairs' a is."""
    return pair_discrepancy(torch.ones((), device=device))


def _euler(x: torch.Tensor) -> torch.Tensor:
    ang = (EC_ALPHA * math.pi) * x.float()
    return torch.complex(torch.cos(ang), torch.sin(ang)) * (1 / math.sqrt(2))


class Samples:
    """The features, and what the Euler cosine distance needs of them in every iteration, computed once (their
    e^(i alpha pi x) / sqrt 2 and its squares' sums, when they fit in ``cache_bytes``; else block by block)."""

    def __init__(self, x: torch.Tensor, similarity: str, cache_bytes: int = 2 << 30):
        self.x, self.similarity = x, similarity
        self.z = self.z2 = None
        if similarity == "euler-cosine" and x.numel() * 8 <= cache_bytes:
            self.z = _euler(x)
            self.z2 = (self.z * self.z).sum(1)

    def euler(self, s: int, e: int):
        if self.z is not None:
            return self.z[s:e], self.z2[s:e]
        z = _euler(self.x[s:e])
        return z, (z * z).sum(1)


def centroid_distances(samples: Samples, centroids: torch.Tensor, block: int = 8192):
    """Per sample, its distance to every centroid, in blocks of rows, as a generator of (first row, block); each
    block N_b x C float32 (the code's ``get_distances`` before its normalisation)."""
    x, similarity = samples.x, samples.similarity
    if similarity == "euler-cosine":
        cz = _euler(centroids)
        c2 = (cz * cz).sum(1)
    for s in range(0, x.shape[0], block):
        xb = x[s:s + block].float()
        if similarity == "euler-cosine":
            xz, x2 = samples.euler(s, s + block)
            d = (x2[:, None] + c2[None, :] - 2 * (xz @ cz.T)).abs()
        elif similarity == "euclidean":
            d = torch.cdist(xb, centroids.float())
        elif similarity == "cosine":
            d = 1 - torch.nn.functional.normalize(xb, dim=1) @ torch.nn.functional.normalize(centroids.float(),
                                                                                            dim=1).T
        else:
            raise ValueError(f"HDC similarity: one of {', '.join(SIMILARITIES)}, not {similarity!r}")
        yield s, d


def memberships(samples: Samples, centroids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """b(k) = 1 - (1 - exp(-5 e(k, c_label(k)) / e_max)), as the code computes it (its ``xc_mem_mat``); e_max over
    every sample and centroid (the code normalises the whole N x C matrix: Euclidean and Euler cosine by its
    largest value, cosine by 2)."""
    x = samples.x
    own = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    top = torch.zeros((), dtype=torch.float32, device=x.device)
    for s, d in centroid_distances(samples, centroids):
        top = torch.maximum(top, d.max())
        own[s:s + d.shape[0]] = d.gather(1, labels[s:s + d.shape[0], None]).squeeze(1)
    q = own / (2.0 if samples.similarity == "cosine" else top)
    hd = (1 - torch.exp(-MEMBERSHIP_SHARPNESS * q)).nan_to_num_(1.0).clamp_(0, 1)
    return 1 - hd


def kmeans_pp_indices(rows: np.ndarray, cols: np.ndarray, dists: np.ndarray, n: int, n_clusters: int,
                      rs: np.random.RandomState) -> np.ndarray:
    """The seeds of k-means++ over the graph's distances (absent pairs at 1), drawn as scikit-learn's greedy
    k-means++ (2 + ln C candidates a step) with ``rs``, in the order the code draws them (its utils._kmeans_plusplus
    on the dense matrix), one distance row at a time."""
    import scipy.sparse as sp
    csr = sp.csr_matrix((dists.astype(np.float32), (rows, cols)), shape=(n, n))

    def row(i):
        out = np.ones(n, dtype=np.float32)
        lo, hi = csr.indptr[i], csr.indptr[i + 1]
        out[csr.indices[lo:hi]] = csr.data[lo:hi]
        return out

    trials = 2 + int(np.log(n_clusters))
    indices = np.full(n_clusters, -1, dtype=int)
    indices[0] = rs.randint(n)
    closest = row(indices[0])[np.newaxis, :]
    current = closest.sum()
    for c in range(1, n_clusters):
        rand_vals = rs.uniform(size=trials) * current
        cumulative = np.cumsum(closest, dtype=np.float64)
        candidates = np.searchsorted(cumulative, rand_vals)
        np.clip(candidates, None, closest.size - 1, out=candidates)
        to_candidates = np.stack([row(k) for k in candidates])
        np.minimum(closest, to_candidates, out=to_candidates)
        pots = to_candidates.sum(axis=1)
        best = int(np.argmin(pots))
        current, closest = pots[best], to_candidates[best]
        indices[c] = candidates[best]
    return indices


def nearest_seed(rows: torch.Tensor, cols: torch.Tensor, d: torch.Tensor, n: int, seeds: np.ndarray) -> torch.Tensor:
    """Every sample's seed of the smallest distance (absent pairs at 1; the first seed of equals, as numpy's argmin
    over the dense columns of the seeds)."""
    device = rows.device
    seeds_t = torch.as_tensor(seeds, device=device).long()
    which = torch.full((n,), len(seeds), dtype=torch.long, device=device)
    which.scatter_reduce_(0, seeds_t, torch.arange(len(seeds), device=device), reduce="amin")   # a seed twice: first
    which[which == len(seeds)] = -1
    j = which[cols]
    hit = j >= 0
    r, j, dv = rows[hit], j[hit], d[hit].float()
    best = torch.full((n,), 1.0, dtype=torch.float32, device=device)
    best.scatter_reduce_(0, r, dv, reduce="amin")
    at_best = dv == best[r]
    label = torch.full((n,), len(seeds), dtype=torch.long, device=device)
    label.scatter_reduce_(0, r[at_best], j[at_best], reduce="amin")
    label[best >= 1.0] = 0                       # every seed at 1: the first
    return label


class _Assignment:
    """One iteration's h(i, j) (module docstring), held sparsely: the value c of a pair the graph does not hold,
    except at (row, cluster) entries where a graph neighbour is the cluster's chosen member."""

    def __init__(self, rows, clusters, values, n, n_clusters, c, empty_value=None):
        self.rows, self.clusters, self.values = rows, clusters, values
        self.n, self.C, self.c = n, n_clusters, c
        self.empty_value = empty_value               # (empty clusters, their per-row values) or None

    def dense(self, s: int, e: int) -> torch.Tensor:
        """Rows s..e of h, N_b x C float32."""
        h = torch.full((e - s, self.C), float(self.c), dtype=torch.float32, device=self.rows.device)
        if self.empty_value is not None:
            empty, column = self.empty_value
            h[:, empty] = column[s:e, None]
        sel = (self.rows >= s) & (self.rows < e)
        h[self.rows[sel] - s, self.clusters[sel]] = self.values[sel]
        return h

    def at(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        out = []
        for a, b in zip(i.tolist(), j.tolist()):
            out.append(float(self.dense(a, a + 1)[0, b]))
        return np.asarray(out, dtype=np.float32)


def harmonic_assignment(rows, cols, a, b, labels, n_clusters, c) -> _Assignment:
    """h(i, j) for every sample and cluster (module docstring), from the graph's pairs (rows, cols, a) and the
    memberships ``b`` of the current ``labels`` (every sample labelled). One sort of the pairs by (row, cluster, the
    member's rank in its cluster) serves both candidates of each (i, j): the best graph neighbour, and the best
    non-neighbour, the first member by membership that is not a neighbour of i."""
    device = rows.device
    n = labels.numel()
    C = n_clusters
    sizes = torch.bincount(labels, minlength=C)
    starts = torch.cumsum(sizes, 0) - sizes
    # each cluster's members by membership, the largest first (the smallest index of equals), and their ranks
    by_index = torch.arange(n, device=device)
    member_order = by_index[torch.argsort(-b, stable=True)]
    member_order = member_order[torch.argsort(labels[member_order], stable=True)]
    rank = torch.empty(n, dtype=torch.long, device=device)
    rank[member_order] = by_index - starts[labels[member_order]]
    lab_k = labels[cols]
    g = rows * C + lab_k
    order = torch.argsort(g * (int(sizes.max()) + 1) + rank[cols])      # unique keys: one plain sort
    gs, ks, ao = g[order], cols[order], a[order]
    bo = b[ks]
    fo = ao * bo / (ao + bo)
    first = torch.ones_like(gs, dtype=torch.bool)
    first[1:] = gs[1:] != gs[:-1]
    group = torch.cumsum(first.long(), 0) - 1
    n_groups = int(group[-1]) + 1 if group.numel() else 0
    group_start = torch.nonzero(first).flatten()
    gi, gj = gs[first] // C, gs[first] % C
    # the best neighbour candidate of each (i, j): the largest f, the smallest k of equals
    f_nb = torch.full((n_groups,), -1.0, dtype=fo.dtype, device=device).scatter_reduce_(0, group, fo, "amax")
    at_max = fo == f_nb[group]
    k_nb = torch.full((n_groups,), n, dtype=torch.long, device=device).scatter_reduce_(
        0, group[at_max], ks[at_max], "amin")
    chosen = at_max & (ks == k_nb[group])
    a_nb = torch.empty(n_groups, dtype=ao.dtype, device=device)
    a_nb[group[chosen]] = ao[chosen]
    # the best non-neighbour of (i, j): the mex of the neighbours' ranks (those sorted within the group); its f is
    # c b / (c + b), the largest over the non-neighbours since f grows with b
    pos = torch.arange(gs.numel(), device=device) - group_start[group]
    mex = torch.zeros(n_groups, dtype=torch.long, device=device).index_add_(0, group, (rank[ks] == pos).long())
    has_nn = mex < sizes[gj]
    k_nn = member_order[starts[gj] + torch.minimum(mex, (sizes[gj] - 1).clamp(min=0))]
    b_nn = b[k_nn]
    f_nn = c * b_nn / (c + b_nn)
    keep = ~has_nn | (f_nb > f_nn) | ((f_nb == f_nn) & (k_nb < k_nn))
    empty = torch.nonzero(sizes == 0).flatten()
    empty_value = None
    if empty.numel():                              # a cluster without members: the code's h is a(i, 0)
        column = torch.full((n,), float(c), dtype=torch.float32, device=device)
        at0 = cols == 0
        column[rows[at0]] = a[at0]
        empty_value = (empty, column)
    return _Assignment(gi[keep], gj[keep], a_nb[keep], n, C, c, empty_value)


def relocate_empty(labels: np.ndarray, labels_hd: np.ndarray, labels_mem: np.ndarray, hd: _Assignment,
                   n_clusters: int, rounds: int = RELOCATION_ROUNDS) -> None:
    """The code's ``_relocate_empty_clusters`` until no cluster is empty (in place): each empty cluster takes one of
    the samples of lowest membership (numpy's argpartition, as there), outside clusters of fewer than 5.

    The code repeats its rounds for as long as a cluster stays empty, which never ends when each move empties
    another cluster (as many clusters as samples, or every sample in a cluster of fewer than 5). After ``rounds``
    rounds, then, each cluster still empty takes the sample of lowest membership among those of clusters of at
    least 2 members, one at a time (there always is one while a cluster is empty, as there are at least as many
    samples as clusters), which ends in as many moves as clusters are empty."""
    for _ in range(rounds):
        count = np.bincount(labels, minlength=n_clusters).astype(np.int32)
        empty = np.where(count == 0)[0].astype(np.int32)
        if not empty.size:
            return
        member = labels_mem.astype(np.float32).copy()
        small = np.where(count < SMALL_CLUSTER)[0]
        member[np.isin(labels, small)] = 1.0
        far = np.argpartition(member, empty.size)[:empty.size]
        for cid, idx in zip(empty, far):
            labels[idx] = cid
            labels_hd[idx] = hd.at(np.array([idx]), np.array([cid]))[0]
    count = np.bincount(labels, minlength=n_clusters)
    for cid in np.where(count == 0)[0]:
        donors = np.where(count[labels] >= 2)[0]
        idx = donors[np.argmin(labels_mem[donors])]
        count[labels[idx]] -= 1
        count[cid] += 1
        labels[idx] = cid
        labels_hd[idx] = hd.at(np.array([idx]), np.array([cid]))[0]


def hdc(features: torch.Tensor, graph: tuple, n_clusters: int, *, outlier: bool = True, init: str = "k-means++2",
        max_iter: int = 80, similarity: str = "euler-cosine", normalize: bool = False, seed: int = 0,
        init_indices: np.ndarray | None = None, block: int = 8192) -> HDCResult:
    """HDC (module docstring) of ``features`` (N x D, on any device) on ``graph`` = (rows, cols, distances) of the
    pairs at a distance below 1, both directions and each sample with itself (the Jaccard graphs)."""
    x = torch.as_tensor(features, dtype=torch.float32)
    device = x.device
    n = x.shape[0]
    if not 1 <= n_clusters <= n:
        raise ValueError(f"HDC: {n_clusters} clusters of {n} samples; give 1 to {n}")
    rows, cols, d = (torch.as_tensor(t, device=device) for t in graph[:3])
    rows, cols = rows.long(), cols.long()
    a = pair_discrepancy(d)
    c = non_neighbour_discrepancy(device)
    rs = np.random.RandomState(seed)
    if init_indices is not None or init == "k-means++2":
        seeds = np.asarray(init_indices) if init_indices is not None else kmeans_pp_indices(
            rows.cpu().numpy(), cols.cpu().numpy(), d.float().cpu().numpy(), n, n_clusters, rs)
        centroids = x[torch.as_tensor(seeds, device=device)].clone()
        labels = nearest_seed(rows, cols, d, n, seeds)
    elif init == "random":
        labels = torch.as_tensor(rs.randint(0, n_clusters, n), device=device).long()
        centroids = _centroids(x, labels, n_clusters, normalize)
    elif init == "k-means++":
        from sklearn.cluster import kmeans_plusplus
        centres, _ = kmeans_plusplus(x.cpu().numpy(), n_clusters, random_state=rs)
        centroids = torch.as_tensor(centres, device=device)
        labels = torch.cat([blk.argmin(1) for _, blk in centroid_distances(Samples(x, similarity), centroids,
                                                                           block)])
    else:
        raise ValueError(f"HDC init: k-means++2, k-means++ or random, not {init!r}")
    samples = Samples(x, similarity)
    shift_min, tol, it = float(0xfffff), 0, 0
    pod = labels
    for it in range(max_iter):
        old = centroids.clone()
        b = memberships(samples, centroids, labels)
        hd = harmonic_assignment(rows, cols, a, b, labels, n_clusters, c)
        new_labels = torch.empty(n, dtype=torch.long, device=device)
        labels_hd = torch.empty(n, dtype=torch.float32, device=device)
        labels_mem = torch.empty(n, dtype=torch.float32, device=device)
        for s in range(0, n, block):
            h = hd.dense(s, min(n, s + block))
            mem = (h.sum(1, keepdim=True) - h) / (n_clusters - 1) if n_clusters > 1 else 1 - h
            lab = mem.argmax(1)
            new_labels[s:s + h.shape[0]] = lab
            labels_hd[s:s + h.shape[0]] = h.gather(1, lab[:, None]).squeeze(1)
            labels_mem[s:s + h.shape[0]] = mem.gather(1, lab[:, None]).squeeze(1)
        if torch.bincount(new_labels, minlength=n_clusters).min() == 0:
            ln, lh = new_labels.cpu().numpy(), labels_hd.cpu().numpy()
            relocate_empty(ln, lh, labels_mem.cpu().numpy(), hd, n_clusters)
            new_labels, labels_hd = torch.as_tensor(ln, device=device), torch.as_tensor(lh, device=device)
        labels = new_labels
        pod = peripheral_objects(labels, labels_hd, n_clusters)
        centroids = _centroids(x, pod, n_clusters, normalize)
        shift = float(((old - centroids) ** 2).sum())
        if shift == 0:
            break
        if it >= MIN_ITER:
            if shift < shift_min:
                tol, shift_min = 0, shift
            elif tol < N_TOL:
                tol += 1
            else:
                break
    final = pod if outlier else labels
    return HDCResult(final.cpu().numpy().astype(np.int64), centroids, it + 1,
                     {"hdc_iterations": it + 1, "hdc_outliers": int((pod < 0).sum())})


def peripheral_objects(labels: torch.Tensor, labels_hd: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """The code's ``_peripheral_object_detection``: in each cluster of two or more, the members whose h exceeds the
    cluster's mean plus one standard deviation (ddof 1) become -1."""
    v = labels_hd.double()
    count = torch.bincount(labels, minlength=n_clusters).double()
    total = torch.zeros(n_clusters, dtype=torch.float64, device=v.device).index_add_(0, labels, v)
    mean = total / count.clamp(min=1)
    sq = torch.zeros_like(total).index_add_(0, labels, (v - mean[labels]) ** 2)
    std = (sq / (count - 1).clamp(min=1)).sqrt()
    threshold = (mean + N_SIGMA * std).float()
    out = labels.clone()
    out[(count[labels] > 1) & (labels_hd > threshold[labels])] = -1
    return out


def _centroids(x: torch.Tensor, labels: torch.Tensor, n_clusters: int, normalize: bool) -> torch.Tensor:
    keep = labels >= 0
    sums = torch.zeros(n_clusters, x.shape[1], dtype=torch.float64, device=x.device).index_add_(
        0, labels[keep], x[keep].double())
    count = torch.bincount(labels[keep], minlength=n_clusters).double()
    cent = (sums / count.clamp(min=1)[:, None]).float()
    if normalize:
        cent = torch.nn.functional.normalize(cent, dim=1)
    return cent
