"""Camera-aware Jaccard distance (CA-Jaccard; Chen, Fan, Chen and Zhu, "CA-Jaccard: Camera-aware Jaccard
Distance for Person Re-identification", CVPR 2024; code: chenyiyuu/CA-Jaccard, ``caj/utils/caj_rerank.py``).

The k-reciprocal Jaccard distance (``clustering.jaccard``) finds each image's neighbours on one ranking list,
which images of its own camera dominate. CA-Jaccard changes two of its steps:

- **CKRNNs** (camera-aware k-reciprocal nearest neighbours), replacing steps (a)-(b): two ranking lists per
  image, one over its own camera's images (self first) and one over the other cameras' images; S(i) is the
  union of the k-reciprocal neighbours on each, R(i, k1_intra) on the first and R(i, k1_inter) on the second,
  with no 2/3 expansion. So other cameras' images always take part in the overlap.
- **CLQE** (camera-aware local query expansion), replacing step (d): V[i] <- the mean of V[r] over the first
  k2_intra entries of i's intra-camera list (i itself first) and the first k2_inter of its inter-camera list.

Steps (c) and (e) are the Jaccard distance's: V[i, S(i)] = softmax over S(i) of -(2 - 2 <f_i, f_j>), and
d(i, j) = 1 - s / (2 - s), s = sum_k min(V[i, k], V[j, k]), clipped at 0. Either part can be turned off
(``ckrnns=False``: steps (a)-(b) on the global ranking with k1; ``clqe=False``: the query expansion over
the first k2 of the global ranking), as the paper's ablation (its Table 3) and its code's flags do. As its
code: with CKRNNs off the global ranking holds i and k1 others (it ranks the whole matrix and reads
``initial_rank[i, :k1 + 1]``), one more than Cluster Contrast's kNN of k1 columns (``clustering.jaccard``), so
both parts off is CA-Jaccard's own Jaccard distance, up to 0.03 from Cluster Contrast's at the same k1.

Defaults are the published code's (``--k1-intra 5 --k1-inter 20 --k2-intra 3 --k2-inter 3``); its README
trains Market-1501 and MSMT17 with ``--k2-intra 2 --k2-inter 4``, and its training script uses 3 / 3 at the
first epoch (a warm-up: ``cluster.k2_warmup``).

Choices where the code is silent: the code ranks with ``argpartition`` on the whole N x N matrix plus 999 on
the masked cameras, so a list longer than the images it may hold spills into the masked ones; here such a
list ends in padding, which the reciprocal test and the query expansion's mean leave out (this differs only
when a camera, or all the others together, holds fewer than k1 + 1 images).

Everything runs on the features' device in row blocks, as the Jaccard distance does: the two ranking lists
are N x (k1_intra + 1) and N x (k1_inter + 1), V is held as padded rows, and no N x N array is built.
"""
from __future__ import annotations

import contextlib

import torch

from .jaccard import overlap_graph, to_csr
from .knn import camera_knn, knn
from .kreciprocal import camera_sets, expanded_sets


def camera_gap(features: torch.Tensor, cams: torch.Tensor) -> float:
    """The mean squared distance 2 - 2 <f_i, f_j> of pairs from different cameras minus that of pairs from one
    camera (the published code's "Camera difference"), in O(N D) from the cameras' feature sums."""
    cams = torch.as_tensor(cams, device=features.device).long()
    f = features.double()
    sums = torch.zeros(int(cams.max()) + 1, f.shape[1], dtype=f.dtype, device=f.device).index_add_(0, cams, f)
    sizes = torch.bincount(cams).double()
    norms = (f * f).sum(1)
    self_dot = torch.zeros_like(sizes).index_add_(0, cams, norms)
    intra_dot = float(((sums * sums).sum(1) - self_dot).sum()) / 2          # pairs i < j of one camera
    intra_pairs = float((sizes * (sizes - 1)).sum()) / 2
    total = f.sum(0)
    all_dot = (float(total @ total) - float(norms.sum())) / 2
    n = f.shape[0]
    inter_pairs = n * (n - 1) / 2 - intra_pairs
    norm_sum = float(norms.sum())
    # sum over pairs of ||f_i||^2 + ||f_j||^2 (1 + 1 for normalised features), split by kind
    intra_norms = float((self_dot * (sizes - 1)).sum())
    inter_norms = norm_sum * (n - 1) - intra_norms
    if intra_pairs == 0 or inter_pairs == 0:
        return float("nan")
    intra = (intra_norms - 2 * intra_dot) / intra_pairs
    inter = (inter_norms - 2 * (all_dot - intra_dot)) / inter_pairs
    return inter - intra


def ca_jaccard_graph(features: torch.Tensor, cams, k1_intra: int = 5, k1_inter: int = 20, k2_intra: int = 3,
                     k2_inter: int = 3, ckrnns: bool = True, clqe: bool = True, k1: int = 30, k2: int = 6,
                     knn_backend: str = "auto", max_block_elems: int | None = None, phase=None):
    """The pairs with CA-Jaccard distance < 1 as (rows, cols, distances) on the features' device, sorted by
    row then column (module docstring). ``cams``: the N camera ids. ``k1`` and ``k2`` serve the parts turned
    off (``ckrnns=False``, ``clqe=False``); ``knn_backend``: the kNN search (clustering.knn's; the camera
    lists are exact: faiss when installed, else torch, and ``faiss-ivf`` / ``faiss-hnsw`` serve the global
    ranking only). ``phase``: as in
    :func:`clustering.jaccard_graph` (knn, reciprocal, weights, query_expansion, jaccard)."""
    phase = phase or (lambda name: contextlib.nullcontext())
    features = torch.as_tensor(features, dtype=torch.float32)
    cams = torch.as_tensor(cams, device=features.device).long()       # numpy or a tensor on any device
    with phase("knn"):
        intra, intra_s, inter, inter_s = camera_knn(     # exact (the approximate backends serve the global list)
            features, cams, max(k1_intra + 1, k2_intra), max(k1_inter + 1, k2_inter),
            backend=knn_backend if knn_backend in ("faiss", "torch") else "auto")
        if not (ckrnns and clqe):         # i and k1 others: CA-Jaccard's initial_rank[i, :k1 + 1] (module docstring)
            ranking, ranking_s = knn(features, k1 + 1, knn_backend, return_sims=True)
            ranking, ranking_s = ranking.to(features.device).long(), ranking_s.to(features.device)
    with phase("reciprocal"):
        blocks = camera_sets(intra, inter, k1_intra, k1_inter) if ckrnns else expanded_sets(ranking, k1)
    # the inner products the weights look up: those of the lists the sets came from (each index once per row)
    known, sims = (torch.cat([intra, inter], 1), torch.cat([intra_s, inter_s], 1)) if ckrnns else (ranking, ranking_s)
    if clqe:
        expansion = torch.cat([intra[:, :k2_intra], inter[:, :k2_inter]], dim=1)
    else:
        expansion = ranking[:, :k2] if k2 != 1 else None
    return overlap_graph(features, blocks, known, sims, expansion, phase, max_block_elems)


def ca_arguments(cluster, first_epoch: bool = False) -> dict | None:
    """CA-Jaccard's keyword arguments from a run's ``cluster`` config (``cluster.distance=ca-jaccard``), else
    None. At the first epoch with ``cluster.clqe_warmup``, CLQE averages 3 + 3 neighbours, as its training code
    does (``train_caj.py``: ``if epoch == 0: k2_intra, k2_inter = 3, 3``)."""
    if cluster.distance != "ca-jaccard":
        return None
    warm = first_epoch and cluster.clqe_warmup
    return dict(k1_intra=cluster.k1_intra, k1_inter=cluster.k1_inter, k2_intra=3 if warm else cluster.k2_intra,
                k2_inter=3 if warm else cluster.k2_inter, ckrnns=cluster.ckrnns, clqe=cluster.clqe)


def ca_jaccard_distance(features: torch.Tensor, cams, **kwargs):
    """The CA-Jaccard distance of L2-normalised ``features`` as a scipy CSR matrix (absent pairs at 1);
    keyword arguments as :func:`ca_jaccard_graph`."""
    i, j, d = ca_jaccard_graph(features, cams, **kwargs)
    return to_csr(i, j, d, len(features))
