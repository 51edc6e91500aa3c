"""The pseudo-label step by name: a distance (``cluster.distance``) makes a sparse graph of the features, a method
(``cluster.method``) clusters it. Both are chosen from a registry, or by import path (``package.module:Name``), so a
user's own plugs in with no edit of the project (docs/api.md has one of each).

A **distance** is a class built from the run's ``cluster`` config, with ``needs_cameras`` and
``graph(features, cams, epoch) -> (rows, cols, distances)``: the pairs at a distance below 1, both directions and
each point with itself, as tensors on the features' device (a pair not given is at 1 or more). Registered:

- ``jaccard``: the k-reciprocal Jaccard distance as Cluster Contrast's code computes it (i and k1 - 1 others on the
  ranking; clustering.jaccard);
- ``jaccard-3c``: the same with i and k1 others, as 3C's code (its utils/faiss_rerank.py searches k1 + 1) and
  CA-Jaccard's own code compute it;
- ``ca-jaccard``: CA-Jaccard (clustering.ca_jaccard), from the images' cameras.

A **method** is a class built from the ``cluster`` config and the run's seed, called as
``method(features, graph, cams, epoch) -> Clusters`` (labels, -1 for outliers; centroids when it has its own).
Registered: ``dbscan`` (eps, min_samples), and ``hdc`` (3C's harmonic-discrepancy clustering, clustering.hdc, with
its DBSCAN warm-up epochs). Epochs count from 1.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from reidlab.errors import ConfigError
from reidlab.registry import Registry

from .ca_jaccard import ca_arguments, ca_jaccard_graph, camera_gap
from .dbscan import dbscan
from .jaccard import jaccard_graph
from .knn import knn

DISTANCES: Registry = Registry("cluster distance", ConfigError)
METHODS: Registry = Registry("clustering method", ConfigError)


@dataclass
class Clusters:
    labels: np.ndarray                      # int64, -1 for outliers
    centroids: torch.Tensor | None = None   # C x D, when the method has its own (HDC's)
    info: dict = field(default_factory=dict)


@DISTANCES.register("jaccard")
class JaccardDistance:
    """Cluster Contrast's k-reciprocal Jaccard distance (k1, k2, the kNN search ``knn``)."""
    needs_cameras = False
    extra = 0                              # ranking columns beyond k1 (jaccard-3c: 1)

    def __init__(self, cluster):
        self.c = cluster

    def graph(self, features: torch.Tensor, cams, epoch: int):
        ranking, sims = knn(features, self.c.k1 + self.extra, self.c.knn, return_sims=True)
        return jaccard_graph(features, k1=self.c.k1, k2=self.c.k2, ranking=ranking, ranking_sims=sims)


@DISTANCES.register("jaccard-3c")
class ThreeCJaccardDistance(JaccardDistance):
    """3C's Jaccard distance: the ranking holds i and k1 others (one more than Cluster Contrast's)."""
    extra = 1


@DISTANCES.register("ca-jaccard")
class CAJaccardDistance:
    """CA-Jaccard (clustering.ca_jaccard), its first epoch's CLQE 3 + 3 as its training code."""
    needs_cameras = True

    def __init__(self, cluster):
        self.c = cluster

    def graph(self, features: torch.Tensor, cams, epoch: int):
        return ca_jaccard_graph(features, cams, k1=self.c.k1, k2=self.c.k2, knn_backend=self.c.knn,
                                **ca_arguments(self.c, epoch == 1))


@METHODS.register("dbscan")
class DBSCANMethod:
    """DBSCAN (eps, min_samples) on the graph, scikit-learn's labels (clustering.dbscan)."""

    def __init__(self, cluster, seed: int = 0):
        self.c = cluster

    def __call__(self, features: torch.Tensor, graph, cams, epoch: int) -> Clusters:
        return Clusters(dbscan((*graph, features.shape[0]), eps=self.c.eps, min_samples=self.c.min_samples))


@METHODS.register("hdc")
class HDCMethod:
    """3C's HDC into ``hdc_num_clusters`` clusters (clustering.hdc), after ``hdc_dbscan_epochs`` epochs of DBSCAN
    (eps, min_samples), as its code's --warmup-iters with --warmup-with-dbscan. Clusters of fewer than
    ``min_samples`` members are then dissolved into outliers and the rest numbered again in order, as its
    MemoryTable does with --cluster-min-instances."""

    def __init__(self, cluster, seed: int = 0):
        self.c, self.seed = cluster, seed

    def __call__(self, features: torch.Tensor, graph, cams, epoch: int) -> Clusters:
        from .hdc import hdc
        c = self.c
        if epoch <= c.hdc_dbscan_epochs:
            return DBSCANMethod(c)(features, graph, cams, epoch)
        seed = int(np.random.SeedSequence([self.seed, epoch, 0x3C]).generate_state(1)[0])
        n = features.shape[0]
        if c.hdc_num_clusters > n:
            raise ConfigError(f"cluster.hdc_num_clusters={c.hdc_num_clusters} is more than the {n} images to "
                              f"cluster: give at most {n}")
        r = hdc(features, graph, c.hdc_num_clusters, outlier=c.hdc_outlier, init=c.hdc_init,
                max_iter=c.hdc_max_iter, similarity=c.hdc_similarity, normalize=c.hdc_normalize, seed=seed)
        labels, centroids = drop_small_clusters(r.labels, r.centroids, c.min_samples)
        return Clusters(labels, centroids if c.hdc_centroids else None, r.info)


def drop_small_clusters(labels: np.ndarray, centroids: torch.Tensor, min_size: int):
    """Clusters of fewer than ``min_size`` members become outliers; the others keep their order, numbered 0.. again,
    with their centroids (3C's MemoryTable.update_labels)."""
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    kept = ids[counts >= min_size]
    new = np.full(int(labels.max()) + 2 if labels.size else 1, -1, dtype=np.int64)
    new[kept] = np.arange(kept.size)
    out = np.where(labels >= 0, new[np.maximum(labels, 0)], -1)
    return out, centroids[torch.as_tensor(kept, device=centroids.device)]


def resolve_distance(name: str):
    return DISTANCES.resolve(name, "cluster.distance")


def resolve_method(name: str):
    return METHODS.resolve(name, "cluster.method")


def cluster_epoch(features: torch.Tensor, cluster, cams=None, epoch: int = 1, seed: int = 0) -> Clusters:
    """The epoch's pseudo-labels of L2-normalised ``features`` by the run's ``cluster`` config: the distance's graph,
    then the method; the info holds the counts, the seconds of each part, and (with cameras) the camera gap."""
    features = torch.as_tensor(features, dtype=torch.float32)
    distance = resolve_distance(cluster.distance)(cluster)
    method = resolve_method(cluster.method)(cluster, seed)
    if getattr(distance, "needs_cameras", False) and cams is None:
        raise ValueError(f"cluster.distance={cluster.distance} needs the images' camera ids")
    t0 = time.perf_counter()
    graph = distance.graph(features, cams, epoch)
    t1 = time.perf_counter()
    out = method(features, graph, cams, epoch)
    t2 = time.perf_counter()
    labels = np.asarray(out.labels, dtype=np.int64)
    out.labels = labels
    out.info.update(num_clusters=int(labels.max() + 1) if labels.size and labels.max() >= 0 else 0,
                    num_outliers=int((labels < 0).sum()), pairs=int(graph[2].numel()), distance_s=t1 - t0,
                    method_s=t2 - t1)
    if cams is not None and torch.as_tensor(cams).unique().numel() > 1:
        out.info["camera_gap"] = round(camera_gap(features, cams), 4)
    return out
