"""The unsupervised loop (Cluster Contrast, as the MLA paper trains; ../shared/DESIGN.md "Data flow").

Each epoch: extract features of all training images -> k-reciprocal Jaccard distance -> DBSCAN
pseudo-labels (outliers dropped) -> ClusterMemory from the clusters -> ``iters`` batches of
P pseudo-ids x K images (other cameras preferred), augmented on the device -> ClusterNCE loss plus the
model's own auxiliary losses -> step. Every ``eval_every`` epochs (and at the last) the model is
evaluated on query/gallery; ``last.pt`` and ``best.pt`` are kept.

All randomness of epoch e comes from (seed, e), so a run resumed from the checkpoint of epoch e
continues exactly as the uninterrupted run would.
"""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from clustering import pseudo_labels
from data import dataset_from_config
from data.datasets import require_training_split
from data.augment import train_augment
from data.images import load_dataset_images
from data.samplers import PseudoLabelSampler
from evaluation import evaluate_run, extract_features
from memory import ClusterMemory
from models import model_from_config
from runs.checkpoint import TrainingState
from runs.config import Config
from runs.optim import build_optimizer
from runs.progress import console, metrics_table, progress_bar
from runs.run import MetricsLog, resolve_device, seed_everything

log = logging.getLogger("reid.unsup")


def load_data(cfg: Config, device: torch.device):
    ds = dataset_from_config(cfg)
    require_training_split(ds)
    return (ds, *load_dataset_images(ds, cfg.data.height, cfg.data.width, cfg.data.workers, device))


def train_epoch(model, memory, images, sampler, cfg: Config, gen: torch.Generator, optimizer, scaler,
                device: torch.device, title: str) -> float:
    model.train()
    total, n = 0.0, 0
    use_amp = cfg.train.amp and device.type == "cuda"
    with progress_bar() as bar:
        task = bar.add_task(title, total=cfg.train.iters, info="")
        for idx in sampler.batches(cfg.train.iters):
            idx_t = torch.as_tensor(idx, device=device)
            x = train_augment(images[idx_t], gen, cfg.aug.flip, cfg.aug.pad, cfg.aug.erasing)
            targets = torch.as_tensor(sampler.labels[idx], device=device)
            with torch.autocast(device.type, enabled=use_amp):
                out = model(x)
            loss = memory(out.embedding.float(), targets) + sum(out.aux_losses.values())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += loss.item()
            n += 1
            bar.update(task, advance=1, info=f"loss {total / n:.3f}")
    return total / max(n, 1)


def run_unsup(cfg: Config, run_dir: Path, resume: dict | None = None) -> list[dict]:
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    log.info("run folder %s, device %s", run_dir, device)
    ds, train_images, query_images, gallery_images = load_data(cfg, device)
    model = model_from_config(cfg, device)
    optimizer, scheduler = build_optimizer(model, cfg.train)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.amp and device.type == "cuda")
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    camids = np.array([s.camid for s in ds.train])
    state = TrainingState(run_dir, model, optimizer, scheduler, cfg.to_dict())
    start = state.resume(resume, metrics)

    def evaluate() -> dict:
        return evaluate_run(model, query_images, gallery_images, ds, cfg, device)

    if start == 0 and cfg.test.eval_initial:
        record = {"epoch": 0, "num_clusters": None, "num_outliers": None, "loss": None, **evaluate()}
        metrics.append(record)
        log.info("epoch 0 (before training): mAP %.1f%%, rank-1 %.1f%%", 100 * record["mAP"], 100 * record["rank1"])

    for epoch in range(start + 1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        feats = extract_features(model, train_images, device, cfg.test.batch_size, description="train features")
        t1 = time.perf_counter()
        c = cfg.cluster
        labels, info = pseudo_labels(feats, c.k1, c.k2, c.eps, c.min_samples, c.knn)
        t2 = time.perf_counter()
        record = {"epoch": epoch, "num_clusters": info["num_clusters"], "num_outliers": info["num_outliers"],
                  "loss": None, "extract_s": round(t1 - t0, 2), "cluster_s": round(t2 - t1, 2)}
        if info["num_clusters"] == 0:
            log.warning("epoch %d: DBSCAN found no cluster (eps %.2f, min_samples %d); skipping its training",
                        epoch, c.eps, c.min_samples)
        else:
            labels_t = torch.as_tensor(labels, device=device)
            gen_mem = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
            memory = ClusterMemory.from_clusters(feats, labels_t, init=cfg.memory.init, generator=gen_mem,
                                                 temp=cfg.memory.temp, momentum=cfg.memory.momentum,
                                                 update=cfg.memory.update)
            sampler = PseudoLabelSampler(labels, camids, cfg.train.num_ids, cfg.train.num_instances,
                                         np.random.default_rng([cfg.seed, epoch]))
            gen = torch.Generator(device=device).manual_seed(cfg.seed * 100003 + epoch)
            record["loss"] = train_epoch(model, memory, train_images, sampler, cfg, gen, optimizer, scaler,
                                         device, f"epoch {epoch}/{cfg.train.epochs}")
        with warnings.catch_warnings():      # an epoch without clusters made no optimizer step
            warnings.filterwarnings("ignore", message="Detected call of")
            scheduler.step()
        record["train_s"] = round(time.perf_counter() - t2, 2)
        if epoch % cfg.test.eval_every == 0 or epoch == cfg.train.epochs:
            record.update(evaluate())
        metrics.append(record)
        state.save(epoch, record)
        line = (f"epoch {epoch}: {record['num_clusters']} clusters, {record['num_outliers']} outliers, "
                f"loss {record['loss'] if record['loss'] is None else round(record['loss'], 3)}; "
                f"extract {record['extract_s']}s, cluster {record['cluster_s']}s, train {record['train_s']}s")
        if "mAP" in record:
            line += f", eval {record['eval_s']}s; mAP {100 * record['mAP']:.1f}%, rank-1 {100 * record['rank1']:.1f}%"
        log.info(line)
    records = metrics.read()
    console.print(metrics_table(records, f"{ds.name}: {cfg.model.name}, unsupervised"))
    return records
