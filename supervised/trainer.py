"""The supervised loop: Bag of Tricks and the models built on it (DAAF), on true identities.

Each epoch: ``iters`` batches (0: one pass over the training images) of P identities x K images
(``PKSampler``), augmented on the device together with any teacher targets the model asks for
(``model.teacher_targets``: DAAF's masks and keypoints), then

    loss = id * CE_ls(logits) + triplet * batch_hard(features) + sum(model's own aux_losses)

(the ID term only when the model has a classifier), mixed precision on CUDA. The learning rate warms
up and then decays by steps or a cosine (runs.optim). Every ``eval_every`` epochs (and at the last) the
model is evaluated on query/gallery; ``last.pt`` / ``best.pt`` are kept; ``--resume`` continues exactly,
since all randomness of epoch e comes from (seed, e).
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from data import dataset_from_config
from data.datasets import require_training_split
from data.annotations import TeacherNoise, load_teacher
from data.augment import augment_with_teacher
from data.images import load_dataset_images
from data.samplers import PKSampler
from evaluation import evaluate_run
from models import model_from_config
from runs.checkpoint import TrainingState
from runs.config import Config
from runs.optim import build_optimizer
from runs.progress import console, metrics_table, progress_bar
from runs.run import MetricsLog, resolve_device, seed_everything

from .losses import batch_hard_triplet, label_smoothed_cross_entropy

log = logging.getLogger("reid.supervised")


def teacher_noise(cfg: Config) -> TeacherNoise | None:
    t = cfg.teacher
    return TeacherNoise(t.jitter, t.drop, t.morph, t.holes, seed=cfg.seed) if t.noisy else None


def reid_loss(out, targets: torch.Tensor, cfg: Config) -> tuple[torch.Tensor, dict[str, float]]:
    """The trainer's loss on a model's training output, and its parts for the log."""
    parts: dict[str, torch.Tensor] = {}
    if out.logits is not None and cfg.loss.id > 0:
        parts["id"] = cfg.loss.id * label_smoothed_cross_entropy(out.logits, targets, cfg.loss.label_smoothing)
    if cfg.loss.triplet > 0:
        parts["triplet"] = cfg.loss.triplet * batch_hard_triplet(out.features, targets, cfg.loss.margin)
    parts.update(out.aux_losses)
    if not parts:
        raise ValueError("no loss to train: the model has no classifier and loss.triplet is 0")
    return sum(parts.values()), {k: float(v.detach()) for k, v in parts.items()}


def train_epoch(model, images, teacher: dict, labels: torch.Tensor, sampler: PKSampler, iters: int, cfg: Config,
                gen: torch.Generator, optimizer, scaler, device: torch.device, title: str) -> dict[str, float]:
    model.train()
    sums: dict[str, float] = {}
    n = 0
    use_amp = cfg.train.amp and device.type == "cuda"
    with progress_bar() as bar:
        task = bar.add_task(title, total=iters, info="")
        for idx in sampler.batches(iters):
            idx_t = torch.as_tensor(idx, device=device)
            x, t = augment_with_teacher(images[idx_t], {k: v[idx_t] for k, v in teacher.items()}, gen,
                                        cfg.aug.flip, cfg.aug.pad, cfg.aug.erasing)
            with torch.autocast(device.type, enabled=use_amp):
                out = model(x, **t)
            loss, parts = reid_loss(out, labels[idx_t], cfg)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            n += 1
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(task, advance=1, info=" ".join(f"{k} {v / n:.3f}" for k, v in sums.items()))
    return {k: v / max(n, 1) for k, v in sums.items()}


def run_supervised(cfg: Config, run_dir: Path, resume: dict | None = None) -> list[dict]:
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    log.info("run folder %s, device %s", run_dir, device)
    ds = dataset_from_config(cfg)
    require_training_split(ds)
    train_images, query_images, gallery_images = load_dataset_images(ds, cfg.data.height, cfg.data.width,
                                                                      cfg.data.workers, device)
    model = model_from_config(cfg, device, num_classes=ds.num_train_pids)
    needs = tuple(getattr(model, "teacher_targets", ()))
    teacher = {}
    if needs:
        teacher = load_teacher(ds, ds.train, cfg.data.height, cfg.data.width, needs, teacher_noise(cfg),
                               cfg.data.workers)
        teacher = {k: v.to(device) for k, v in teacher.items()}
    labels = torch.as_tensor([s.pid for s in ds.train], device=device)
    camids = np.array([s.camid for s in ds.train])
    batch = cfg.train.num_ids * cfg.train.num_instances
    iters = cfg.train.iters or math.ceil(len(ds.train) / batch)
    optimizer, scheduler = build_optimizer(model, cfg.train)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.amp and device.type == "cuda")
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    state = TrainingState(run_dir, model, optimizer, scheduler, cfg.to_dict())
    start = state.resume(resume, metrics)
    log.info("%s: %d identities, %d images; %d iterations of %d x %d per epoch", ds.name, ds.num_train_pids,
             len(ds.train), iters, cfg.train.num_ids, cfg.train.num_instances)

    if start == 0 and cfg.test.eval_initial:
        record = {"epoch": 0, **evaluate_run(model, query_images, gallery_images, ds, cfg, device)}
        metrics.append(record)
        log.info("epoch 0 (before training): mAP %.1f%%, rank-1 %.1f%%", 100 * record["mAP"], 100 * record["rank1"])

    for epoch in range(start + 1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        sampler = PKSampler(labels.cpu().numpy(), camids, cfg.train.num_ids, cfg.train.num_instances,
                            np.random.default_rng([cfg.seed, epoch]))
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 100003 + epoch)
        lr = optimizer.param_groups[0]["lr"]
        losses = train_epoch(model, train_images, teacher, labels, sampler, iters, cfg, gen, optimizer, scaler,
                             device, f"epoch {epoch}/{cfg.train.epochs}")
        scheduler.step()
        record = {"epoch": epoch, "lr": lr, **{k: round(v, 4) for k, v in losses.items()},
                  "train_s": round(time.perf_counter() - t0, 2)}
        if epoch % cfg.test.eval_every == 0 or epoch == cfg.train.epochs:
            record.update(evaluate_run(model, query_images, gallery_images, ds, cfg, device))
        metrics.append(record)
        state.save(epoch, record)
        line = (f"epoch {epoch}: lr {lr:.2e}, " + ", ".join(f"{k} {v:.3f}" for k, v in losses.items())
                + f"; train {record['train_s']}s")
        if "mAP" in record:
            line += f", eval {record['eval_s']}s; mAP {100 * record['mAP']:.1f}%, rank-1 {100 * record['rank1']:.1f}%"
        log.info(line)
    records = metrics.read()
    console.print(metrics_table(records, f"{ds.name}: {cfg.model.name}, supervised"))
    return records
