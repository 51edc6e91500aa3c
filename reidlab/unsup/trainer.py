"""The unsupervised loop (Cluster Contrast, as the MLA paper trains; docs/architecture.md "Data flow").

Each epoch: extract features of all training images -> k-reciprocal Jaccard distance -> DBSCAN
pseudo-labels (outliers dropped) -> ClusterMemory from the clusters -> ``iters`` batches of
P pseudo-ids x K images (other cameras preferred), augmented on the device -> ClusterNCE loss plus the
model's own auxiliary losses -> step. The rest of the run (evaluation every ``eval_every`` epochs,
``last.pt`` / ``best.pt``, resume, the log) is the shared skeleton of ``runs.loop``.

All randomness of epoch e comes from (seed, e), so a run resumed from the checkpoint of epoch e
continues exactly as the uninterrupted run would.

Part models (AAformer, SAP, ...): the pseudo-labels come from the eval feature (global and parts
concatenated, ``models.registry.retrieval_feature``); there is one ClusterMemory for the global feature
and one per part, all built from the same clusters (each from its own piece of the eval feature,
``model.feature_splits``), and the loss is the mean of their ClusterNCE losses. This follows PPLR (Cho
et al., "Part-based Pseudo Label Refinement for Unsupervised Person Re-identification", CVPR 2022) in
keeping a cluster memory per part under the labels of the whole-image clustering, without PPLR's
cross-agreement label refinement and with every memory weighted alike (PPLR weights its part losses
against the global one), so that a part model is compared with a global one under the same loop.
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from reidlab.clustering.methods import cluster_epoch
from reidlab.data.samplers import PseudoLabelSampler
from reidlab.evaluation import extract_features
from reidlab.memory import ClusterMemory
from reidlab.runs import dist
from reidlab.runs.config import Config
from reidlab.runs.loop import EpochPlan, epoch_iters, fit, start

from .label_free import clustering_advice, draw_pool_now, label_free_metrics, pool_queries, pool_rank_lists

log = logging.getLogger("reidlab.unsup")


def cluster_memories(feats: torch.Tensor, labels: torch.Tensor, splits, cfg: Config, seed: int,
                     centroids: torch.Tensor | None = None) -> list[ClusterMemory]:
    """One ClusterMemory per piece of the eval feature (the global feature, then each part), all from the
    same clusters; with ``memory.init: random`` every memory starts from the same random member. ``centroids``:
    the clustering's own (HDC's, with cluster.hdc_centroids), normalised, for a model of one piece."""
    pieces = feats.split(list(splits), dim=1) if len(splits) > 1 else [feats]
    m = cfg.memory
    memories = [ClusterMemory.from_clusters(F.normalize(p, dim=1) if len(pieces) > 1 else p, labels, init=m.init,
                                            generator=torch.Generator().manual_seed(seed), temp=m.temp,
                                            momentum=m.momentum, update=m.update, camera_weighted=m.camera_weighted)
                for p in pieces]
    if centroids is not None and len(pieces) == 1:
        memories[0].features.copy_(F.normalize(centroids.to(memories[0].features), dim=1))
    return memories


def cluster_contrast_loss(memories: list[ClusterMemory], labels: torch.Tensor, cams: torch.Tensor | None = None):
    """The epoch's loss: ClusterNCE of the embedding against its memory (eq. 1 of the MLA paper), averaged
    with the part embeddings' against theirs, plus the model's own auxiliary losses. ``cams``: the training
    images' camera ids (the camera memory updates and weights read the batch's)."""
    def loss(out, idx: torch.Tensor):
        y = labels[idx]
        c = cams[idx] if cams is not None else None
        embeddings = [out.embedding, *out.part_embeddings]
        nce = sum(mem(e.float(), y, c) for mem, e in zip(memories, embeddings, strict=True)) / len(memories)
        parts = {"nce": nce, **out.aux_losses}
        return sum(parts.values()), parts
    return loss


def ranks_agree(memories: list[ClusterMemory], labels: np.ndarray) -> dict:
    """Under torchrun, after an epoch: every rank's memories and pseudo-labels must be bit-identical (each
    rank updates its memories with the same gathered batches); a checksum of each, gathered, says so."""
    digest = hashlib.sha256(labels.tobytes())
    for m in memories:
        digest.update(m.features.detach().cpu().numpy().tobytes())
    ours = digest.hexdigest()
    everyone = dist.all_gather_object(ours)
    if len(set(everyone)) != 1:
        raise RuntimeError(f"the ranks' cluster memories or pseudo-labels differ after the epoch: {everyone}")
    return {"ranks_agree": len(everyone)}


class PreviousLabels:
    """The last epoch's pseudo-labels, which the next epoch's record compares with (labels_changed, labels_ari_prev);
    kept in last.pt (runs.loop.fit's ``carried``), so that a resumed run's first epoch says what the straight run's
    does."""

    def __init__(self):
        self.labels: np.ndarray | None = None

    def state_dict(self) -> dict:
        return {} if self.labels is None else {"labels": torch.as_tensor(self.labels)}

    def load_state_dict(self, state: dict) -> None:
        self.labels = state["labels"].numpy() if "labels" in state else None


def run_unsup(cfg: Config, run_dir: Path, resume: dict | None = None, ds=None) -> list[dict]:
    s = start(cfg, run_dir, ds=ds)
    camids = np.array([x.camid for x in s.ds.train])
    camids_t = torch.as_tensor(camids, device=s.device)
    c = cfg.cluster
    if c.distance == "ca-jaccard":
        log.info("pseudo-labels on CA-Jaccard distances over %d cameras: %s k1_intra %d / k1_inter %d, %s "
                 "k2_intra %d / k2_inter %d%s", len(np.unique(camids)), "CKRNNs" if c.ckrnns else "KRNNs (k1)",
                 c.k1_intra, c.k1_inter, "CLQE" if c.clqe else "LQE (k2)", c.k2_intra, c.k2_inter,
                 " (3 / 3 at the first epoch)" if c.clqe_warmup and c.clqe else "")

    previous = PreviousLabels()               # the last epoch's pseudo-labels (label_free_metrics), in last.pt
    advised: set[str] = set()                 # the kinds of clustering_advice already said in this run
    shown = cfg.test
    queries = pool_queries(len(s.ds.train), shown.pool_ranklists)
    truth = np.array([x.pid for x in s.ds.train]) if s.ds.labelled else None

    def prepare_epoch(epoch: int) -> EpochPlan:
        t0 = time.perf_counter()
        feats = extract_features(s.model, s.train_images, s.device, cfg.test.batch_size,
                                 description="train features", shard=dist.shard_spec(), amp=cfg.train.amp)
        t1 = time.perf_counter()
        # under torchrun: clustered once, on rank 0, and broadcast (runs/dist.py)
        found = dist.broadcast_object(cluster_epoch(feats, c, camids, epoch, cfg.seed) if dist.is_main() else None)
        labels, info = found.labels, found.info
        centroids = found.centroids.to(s.device) if found.centroids is not None else None
        record = {"num_clusters": info["num_clusters"], "num_outliers": info["num_outliers"],
                  **{k: v for k, v in info.items() if k.startswith("hdc_")},
                  **({"camera_gap": info["camera_gap"]} if "camera_gap" in info else {}),
                  "extract_s": round(t1 - t0, 2), "cluster_s": round(time.perf_counter() - t1, 2),
                  **label_free_metrics(feats, labels, previous.labels)}
        previous.labels = labels
        if dist.is_main() and len(queries) and draw_pool_now(epoch, shown.pool_ranklists_every, shown.pool_ranklists):
            picture = pool_rank_lists(run_dir / "pool_ranklists" / f"epoch_{epoch - 1:03d}.png", feats, labels,
                                      s.train_images, queries, truth)
            log.info("rank lists of %d training images in the training pool, model after %d epochs: %s",
                     len(queries), epoch - 1, picture)
        summary = f"{info['num_clusters']} clusters, {info['num_outliers']} outliers"
        for kind, words in clustering_advice(labels, c.eps, c.min_samples, (cfg.train.num_ids,
                                             cfg.train.num_instances), run_dir).items():
            if kind not in advised and (epoch > 2 or kind in ("small", "none")):   # an untrained model clusters badly
                advised.add(kind)
                log.info("epoch %d: %s", epoch, words)
        if info["num_clusters"] == 0:
            log.warning("epoch %d: the clustering (cluster.method=%s) found no cluster of min_samples %d or more "
                        "(eps %.2f); skipping its training", epoch, c.method, c.min_samples, c.eps)
            return EpochPlan(None, record=record, summary=summary)
        labels_t = torch.as_tensor(labels, device=s.device)
        splits = getattr(s.model, "feature_splits", (feats.shape[1],))
        memories = cluster_memories(feats, labels_t, splits, cfg, cfg.seed * 100003 + epoch, centroids)
        t = cfg.train
        sampler = PseudoLabelSampler(labels, camids, t.num_ids, t.num_instances,
                                     np.random.default_rng([cfg.seed, epoch]), t.pass_end, t.replace_below)
        # iters 0: one pass over the clustered images, as in supervised mode; iters_for: the paper's passes
        iters = epoch_iters(t, int((labels >= 0).sum()) if not t.iters else len(labels))
        return EpochPlan(sampler.batches(iters), iters, cluster_contrast_loss(memories, labels_t, camids_t), record,
                         summary,
                         finish=(lambda: ranks_agree(memories, labels)) if dist.active() else None,
                         holds=memories, unit="clusters")     # a step's update waits for its check (runs.step)

    return fit(s, prepare_epoch, "unsupervised", resume, carried=previous)
