"""``--mode evaluate``: recompute a saved model's metrics (either mode's) on its dataset's query/gallery."""
from __future__ import annotations

import json
import logging

from reidlab.data import dataset_from_config
from reidlab.data.datasets import require_cameras
from reidlab.data.images import load_images
from reidlab.errors import DatasetError
from reidlab.evaluation import evaluate_run
from reidlab.runs.config import Config
from reidlab.runs.run import resolve_device

from .trained import build_trained

log = logging.getLogger("reidlab.evaluate")


def evaluate_checkpoint(cfg: Config, ckpt: dict) -> dict:
    device = resolve_device(cfg.device)
    model = build_trained(cfg, ckpt, device)
    ds = dataset_from_config(cfg)
    if not ds.query or not ds.gallery:
        raise DatasetError(f"{ds.name} has no {'query' if not ds.query else 'gallery'} to evaluate on (a folder of "
                           f"your own has one only where data.labels_csv gives pids in two cameras or more); give a "
                           f"labelled set: --mode evaluate --checkpoint {ckpt['path']} --test-dataset market:PATH")
    require_cameras(ds, cfg, training=False)
    size = (cfg.data.height, cfg.data.width, cfg.data.workers)
    q = load_images([s.path for s in ds.query], *size, description="query images", resize=cfg.data.resize)
    g = load_images([s.path for s in ds.gallery], *size, description="gallery images", resize=cfg.data.resize)
    needs = tuple(getattr(model, "test_teacher_targets", ()))
    teacher = None
    if needs:                                     # a model that needs its teacher at test time (Pirt, ...)
        from reidlab.data.annotations import load_teacher
        from reidlab.runs.loop import teacher_noise
        teacher = tuple(load_teacher(ds, split, cfg.data.height, cfg.data.width, needs, teacher_noise(cfg),
                                     cfg.data.workers) for split in (ds.query, ds.gallery))
    r = evaluate_run(model, q, g, ds, cfg, device, teacher=teacher)
    log.info("%s (epoch %s) on %s: mAP %.1f%%, rank-1 %.1f%%, rank-5 %.1f%%, rank-10 %.1f%%, mINP %.1f%%",
             ckpt["path"], ckpt.get("epoch"), ds.name, 100 * r["mAP"], 100 * r["rank1"], 100 * r["rank5"],
             100 * r["rank10"], 100 * r["mINP"])
    print(json.dumps({"checkpoint": ckpt["path"], "epoch": ckpt.get("epoch"), **r}))
    return r
