"""A grid of clustering settings over one set of features (``--mode cluster-sweep``): for each k1 the kNN
search and the Jaccard graph are computed once, and DBSCAN runs on that graph at every min_samples and eps.
Each setting's labels are the ones the unsupervised loop's :func:`clustering.pseudo_labels` gives at that
setting, computed by the same three functions (kNN, Jaccard graph, DBSCAN) on the same inputs."""
from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from .ca_jaccard import ca_jaccard_graph
from .dbscan import dbscan
from .jaccard import jaccard_graph
from .knn import knn


def with_singletons(labels: np.ndarray) -> np.ndarray:
    """Labels with each outlier (-1) in a cluster of its own: how a partition's agreement with another (the truth,
    or the previous epoch's) is scored here. Outliers as one big cluster would reward marking everything an
    outlier; outliers left out would score a clustering on the few points it was sure of."""
    out = labels.copy()
    noise = out < 0
    out[noise] = out.max(initial=-1) + 1 + np.arange(int(noise.sum()))
    return out


def cluster_sizes(labels: np.ndarray) -> np.ndarray:
    """The size of each cluster (outliers, -1, left out)."""
    return np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0, dtype=int)


def size_summary(labels: np.ndarray, sizes: np.ndarray) -> dict:
    """The median cluster size and the largest cluster's share of all images: the keys the sweep's rows and
    the loop's label-free records (unsup/label_free.py) share, so that the two can be compared."""
    return {"largest_cluster_share": round(float(sizes.max() / len(labels)), 4) if len(sizes) else 0.0,
            "cluster_size_median": float(np.median(sizes)) if len(sizes) else 0.0}


def describe(labels: np.ndarray, truth: np.ndarray | None = None) -> dict:
    """What one setting's labels look like: clusters, outliers, the largest cluster's share, the median
    cluster size; with ``truth`` (identities; -1 where unknown: a partly labelled folder), the adjusted Rand
    index and the adjusted mutual information against it, on the images whose identity is known
    (:func:`agreement`)."""
    sizes = cluster_sizes(labels)
    row = {"clusters": int(len(sizes)), "outliers": int((labels < 0).sum()),
           "outlier_share": round(float((labels < 0).mean()), 4), **size_summary(labels, sizes)}
    if truth is not None:                    # scored on the images whose identity is known (truth >= 0)
        known = np.asarray(truth) >= 0
        row.update(agreement(np.asarray(truth)[known], labels[known]))
    return row


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """How far two labellings of the same points agree, outliers (-1) of either counted as singletons
    (:func:`with_singletons`): ``ari``, the adjusted Rand index, and ``ami``, the adjusted mutual information
    (scikit-learn's). Both are 1 for the same partition (a relabelling included) and about 0 for one unrelated
    to it, whatever the sizes: all points outliers, or two random partitions, score 0. (The normalised mutual
    information, which this replaces, reads 0.82 for all points outliers against Market-size identities: it
    grows with the number of clusters, and singletons are the most.)"""
    x, y = with_singletons(np.asarray(a)), with_singletons(np.asarray(b))
    return {"ari": round(float(adjusted_rand_score(x, y)), 4), "ami": round(float(adjusted_mutual_info_score(x, y)), 4)}


def sweep(features: torch.Tensor, eps: list[float], k1: list[int], min_samples: list[int], k2: int = 6,
          knn_backend: str = "auto", truth: np.ndarray | None = None, progress=None, cams=None, ca: dict | None = None):
    """(rows, labels): one row per (k1, min_samples, eps), in that nesting order, with :func:`describe`'s
    keys and the seconds each stage took; ``labels`` maps each (k1, min_samples, eps) to its labels. ``progress``:
    a callable given a message before each graph (None: silent). ``ca`` and ``cams``: CA-Jaccard graphs, as
    :func:`clustering.pseudo_labels` takes them (k1 then serves only a part turned off: with CKRNNs and CLQE
    both on, one graph serves every k1)."""
    features = torch.as_tensor(features, dtype=torch.float32)
    rows, labels = [], {}
    graph = None
    for k in k1:
        if progress:
            progress(f"k1 {k}: kNN and {'CA-' if ca is not None else ''}Jaccard graph of {features.shape[0]} features")
        t0 = time.perf_counter()
        if ca is None:
            ranking, sims = knn(features, k, knn_backend, return_sims=True)
            i, j, d = jaccard_graph(features, k1=k, k2=k2, ranking=ranking, ranking_sims=sims)
        else:
            if graph is None or not (ca.get("ckrnns", True) and ca.get("clqe", True)):
                graph = ca_jaccard_graph(features, cams, k1=k, k2=k2, knn_backend=knn_backend, **ca)
            i, j, d = graph
        graph_s = time.perf_counter() - t0
        for m in min_samples:
            for e in eps:
                t1 = time.perf_counter()
                got = dbscan((i, j, d, features.shape[0]), eps=e, min_samples=m)
                labels[(k, m, e)] = got
                rows.append({"k1": k, "k2": k2, "min_samples": m, "eps": e, **describe(got, truth),
                             "graph_s": round(graph_s, 2), "dbscan_s": round(time.perf_counter() - t1, 3)})
    return rows, labels


def sweep_counts(features: torch.Tensor, graph, counts: list[int], cluster, seed: int = 0,
                 truth: np.ndarray | None = None, progress=None):
    """HDC (clustering.hdc, with the ``cluster`` config's hdc_* settings, its clusters of fewer than min_samples
    dissolved as in the loop) at each number of clusters in ``counts``, on one graph: rows with :func:`describe`'s
    keys, ``asked`` (the number asked for) and the seconds; the number of clusters a user of their own data cannot
    know, chosen by looking (``--mode cluster-sweep --clusters``)."""
    import dataclasses

    from .methods import METHODS
    rows, labels = [], {}
    for count in counts:
        if progress:
            progress(f"HDC into {count} clusters")
        t0 = time.perf_counter()
        c = dataclasses.replace(cluster, method="hdc", hdc_num_clusters=count, hdc_dbscan_epochs=0)
        got = METHODS.get("hdc")(c, seed)(features, graph, None, 1).labels
        labels[count] = got
        rows.append({"asked": count, "k1": cluster.k1, "k2": cluster.k2, "min_samples": cluster.min_samples,
                     **describe(got, truth), "hdc_s": round(time.perf_counter() - t0, 2)})
    return rows, labels
