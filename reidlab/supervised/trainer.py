"""The supervised loop: Bag of Tricks and the models built on it (DAAF), on true identities.

Each epoch: ``iters`` batches (0: one pass over the training images) of P identities x K images
(``train.sampler``: ``pk`` draws P identities in turn and K random images of each; ``identity`` is
Bag of Tricks' RandomIdentitySampler), augmented on the device together with any teacher targets the
model asks for (``model.teacher_targets``: DAAF's masks and keypoints), then

    loss = id * CE_ls(logits) + triplet * batch_hard(features) + center * L_C(features) + model's aux_losses

(the ID term only when the model has a classifier; the centre loss, Bag of Tricks' optional term, only
when ``loss.center`` > 0, its centres trained by their own SGD at ``loss.center_lr``). The rest of the run
(schedule, evaluation, checkpoints, resume, the log) is the shared skeleton of ``runs.loop``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from reidlab.data.samplers import IdentitySampler, PKSampler
from reidlab.runs.config import Config
from reidlab.runs.loop import EpochPlan, ExtraParameters, epoch_iters, fit, start

from .losses import CenterLoss, batch_hard_triplet, label_smoothed_cross_entropy

log = logging.getLogger("reidlab.supervised")


def _weighted_mean(global_term: torch.Tensor, part_terms: list[torch.Tensor], w: float) -> torch.Tensor:
    """(global + w * sum(parts)) / (1 + w * P): with w = 1 the mean over all tokens (AAformer eq. 6)."""
    if not part_terms:
        return global_term
    return (global_term + w * sum(part_terms)) / (1 + w * len(part_terms))


def reid_loss(out, targets: torch.Tensor, cfg: Config, center: CenterLoss | None = None):
    """The trainer's loss on a model's training output, and its weighted parts (the loss is their sum).
    For a part model the parts also hold, detached and not in the sum, the unweighted cross-entropy of
    each token's classifier (``ce_global`` for [CLS], ``ce_part1``...): what eq. 6's mean hides.

    A part model's parts count as AAformer's eqs. (6)-(8) have them, with ``loss.parts`` = w weighing the
    part terms against the global ones (w = 1: the paper's): the ID loss is the mean of the global and
    per-part cross-entropies (each part has its own classifier); the triplet loss is the mean of the
    global triplet and the part triplet, the latter on the concatenated part features
    (``out.part_metric == "concat"``, AAformer eq. 7 and SAP) or the mean of one triplet per part
    (``"each"``); the hardest pairs are mined separately for each. A model whose paper composes its
    losses otherwise gives ``out.loss_terms`` (Pirt's eqs. 15-17), which then replace that composition.
    The centre loss is on the global feature only, as Bag of Tricks has it."""
    parts: dict[str, torch.Tensor] = {}
    tokens: dict[str, torch.Tensor] = {}
    w = cfg.loss.parts
    if out.loss_terms is not None:                  # the model's own composition (models.registry.LossTerm)
        ce = [t.ce * label_smoothed_cross_entropy(t.logits, targets, cfg.loss.label_smoothing)
              for t in out.loss_terms if t.logits is not None and t.ce > 0]
        tri = [t.triplet * batch_hard_triplet(t.features, targets, cfg.loss.margin)
               for t in out.loss_terms if t.features is not None and t.triplet > 0]
        if ce and cfg.loss.id > 0:
            parts["id"] = cfg.loss.id * sum(ce)
        if tri and cfg.loss.triplet > 0:
            parts["triplet"] = cfg.loss.triplet * sum(tri)
    elif out.logits is not None and cfg.loss.id > 0:
        def ce(logits):
            return label_smoothed_cross_entropy(logits, targets, cfg.loss.label_smoothing)
        token_ce = [ce(out.logits)] + [ce(x) for x in out.part_logits]
        parts["id"] = cfg.loss.id * _weighted_mean(token_ce[0], token_ce[1:], w)
        if out.part_logits:                         # each token's own cross-entropy, recorded, not added
            tokens = {"ce_global": token_ce[0], **{f"ce_part{i}": v for i, v in enumerate(token_ce[1:], 1)}}
    if cfg.loss.triplet > 0 and out.loss_terms is None:
        def tri(features):
            return batch_hard_triplet(features, targets, cfg.loss.margin)
        part_term = []
        if out.part_features:
            part_term = [tri(torch.cat(out.part_features, dim=1)) if out.part_metric == "concat"
                         else sum(tri(f) for f in out.part_features) / len(out.part_features)]
        parts["triplet"] = cfg.loss.triplet * _weighted_mean(tri(out.features), part_term, w)
    if center is not None:
        parts["center"] = cfg.loss.center * center(out.features, targets)
    parts.update(out.aux_losses)
    if not parts:
        raise ValueError("no loss to train: the model has no classifier and loss.triplet is 0")
    total = sum(parts.values())
    parts.update({k: v.detach() for k, v in tokens.items()})
    return total, parts


def extra_parameters(cfg: Config, num_pids: int, model, device) -> ExtraParameters | None:
    """Bag of Tricks' centres (``loss.center`` > 0) with their own SGD, or None."""
    if cfg.loss.center <= 0:
        return None
    center = CenterLoss(num_pids, model.feature_dim).to(device)
    return ExtraParameters(center, torch.optim.SGD(center.parameters(), lr=cfg.loss.center_lr),
                           grad_scale=1.0 / cfg.loss.center)


def run_supervised(cfg: Config, run_dir: Path, resume: dict | None = None, ds=None) -> list[dict]:
    s = start(cfg, run_dir, num_classes=lambda ds: ds.num_train_pids, ds=ds)
    labels = torch.as_tensor([x.pid for x in s.ds.train], device=s.device)
    labels_np = labels.cpu().numpy()
    camids = np.array([x.camid for x in s.ds.train])
    t = cfg.train
    extra = extra_parameters(cfg, s.ds.num_train_pids, s.model, s.device)
    center = extra.module if extra is not None else None
    if s.ds.num_train_pids < t.num_ids:
        log.info("%s has %d training identities, fewer than train.num_ids=%d: every batch holds all of them "
                 "(%d x %d images)", s.ds.name, s.ds.num_train_pids, t.num_ids, s.ds.num_train_pids, t.num_instances)
    iters = epoch_iters(t, len(s.ds.train))
    log.info("%s: %d identities, %d images; %d x %d batches (%s sampler)", s.ds.name, s.ds.num_train_pids,
             len(s.ds.train), t.num_ids, t.num_instances, t.sampler)

    def loss(out, idx):
        return reid_loss(out, labels[idx], cfg, center)

    def prepare_epoch(epoch: int) -> EpochPlan:
        rng = np.random.default_rng([cfg.seed, epoch])
        if t.sampler == "identity":
            sampler = IdentitySampler(labels_np, t.num_ids, t.num_instances, rng)
            batches = list(sampler.batches(iters if t.iters else None))     # None: the sampler's own pass
            return EpochPlan(iter(batches), len(batches), loss)
        sampler = PKSampler(labels_np, camids, t.num_ids, t.num_instances, rng)
        return EpochPlan(sampler.batches(iters), iters, loss)

    return fit(s, prepare_epoch, "supervised", resume, extra)
