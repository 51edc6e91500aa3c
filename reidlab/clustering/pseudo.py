"""Pseudo-labels of the unsupervised loop: kNN, Jaccard (or CA-Jaccard) distance, then DBSCAN."""
from __future__ import annotations

import time

import numpy as np
import torch

from reidlab.progress import stage_progress

from .ca_jaccard import ca_jaccard_graph, camera_gap
from .dbscan import dbscan
from .jaccard import jaccard_graph
from .knn import knn


def pseudo_labels(features: torch.Tensor, k1: int = 30, k2: int = 6, eps: float = 0.4, min_samples: int = 4,
                  knn_backend: str = "auto", cams=None, ca: dict | None = None) -> tuple[np.ndarray, dict]:
    """Cluster L2-normalised features (a torch tensor on any device, or a numpy array); returns labels
    (-1 outliers) and a dict of counts and seconds.

    ``ca``: CA-Jaccard's keyword arguments (:func:`clustering.ca_jaccard.ca_jaccard_graph`: k1_intra, k1_inter,
    k2_intra, k2_inter, ckrnns, clqe), with ``cams`` the N camera ids; None: the Jaccard distance. With
    ``cams``, the info also holds ``camera_gap`` (:func:`clustering.ca_jaccard.camera_gap`)."""
    features = torch.as_tensor(features, dtype=torch.float32)
    info: dict = {}
    if ca is not None and cams is None:
        raise ValueError("pseudo_labels: CA-Jaccard (ca=...) needs the images' camera ids (cams=...)")
    with stage_progress() as bar:
        task = bar.add_task("clustering: kNN", total=3)
        t0 = time.perf_counter()
        if ca is None:
            ranking, sims = knn(features, k1, knn_backend, return_sims=True)
        t1 = time.perf_counter()
        bar.update(task, advance=1, description="clustering: " + ("CA-Jaccard" if ca else "Jaccard") + " distance")
        if ca is None:
            i, j, d = jaccard_graph(features, k1=k1, k2=k2, ranking=ranking, ranking_sims=sims)
        else:                                  # its kNN (the camera lists) is part of the distance's time
            i, j, d = ca_jaccard_graph(features, cams, k1=k1, k2=k2, knn_backend=knn_backend, **ca)
        t2 = time.perf_counter()
        bar.update(task, advance=1, description="clustering: DBSCAN")
        labels = dbscan((i, j, d, features.shape[0]), eps=eps, min_samples=min_samples)
        t3 = time.perf_counter()
        bar.update(task, advance=1)
    info.update(num_clusters=int(labels.max() + 1) if labels.size else 0, num_outliers=int((labels < 0).sum()),
                pairs=int(d.numel()), knn_s=t1 - t0, jaccard_s=t2 - t1, dbscan_s=t3 - t2)
    if cams is not None and torch.as_tensor(cams).unique().numel() > 1:
        info["camera_gap"] = round(camera_gap(features, cams), 4)
    return labels, info
