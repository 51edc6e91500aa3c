"""Pseudo-labels of the unsupervised loop: kNN, Jaccard distance, then DBSCAN."""
from __future__ import annotations

import time

import numpy as np
import torch

from reidlab.progress import stage_progress

from .dbscan import dbscan
from .jaccard import jaccard_graph
from .knn import knn


def pseudo_labels(features: torch.Tensor, k1: int = 30, k2: int = 6, eps: float = 0.4, min_samples: int = 4,
                  knn_backend: str = "auto") -> tuple[np.ndarray, dict]:
    """Cluster L2-normalised features (a torch tensor on any device, or a numpy array); returns labels
    (-1 outliers) and a dict of counts and seconds."""
    features = torch.as_tensor(features, dtype=torch.float32)
    info: dict = {}
    with stage_progress() as bar:
        task = bar.add_task("clustering: kNN", total=3)
        t0 = time.perf_counter()
        ranking, sims = knn(features, k1, knn_backend, return_sims=True)
        t1 = time.perf_counter()
        bar.update(task, advance=1, description="clustering: Jaccard distance")
        i, j, d = jaccard_graph(features, k1=k1, k2=k2, ranking=ranking, ranking_sims=sims)
        t2 = time.perf_counter()
        bar.update(task, advance=1, description="clustering: DBSCAN")
        labels = dbscan((i, j, d, features.shape[0]), eps=eps, min_samples=min_samples)
        t3 = time.perf_counter()
        bar.update(task, advance=1)
    info.update(num_clusters=int(labels.max() + 1) if labels.size else 0, num_outliers=int((labels < 0).sum()),
                pairs=int(d.numel()), knn_s=t1 - t0, jaccard_s=t2 - t1, dbscan_s=t3 - t2)
    return labels, info
