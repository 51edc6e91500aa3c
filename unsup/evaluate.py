"""``--mode evaluate``: recompute a saved model's metrics on its dataset's query/gallery."""
from __future__ import annotations

import json
import logging

from data import build_dataset
from data.images import load_images
from evaluation import evaluate_model
from runs.checkpoint import load_model_state
from runs.config import Config
from runs.run import resolve_device

from .trainer import model_from_config, rerank_options

log = logging.getLogger("reid.evaluate")


def evaluate_checkpoint(cfg: Config, ckpt: dict) -> dict:
    device = resolve_device(cfg.device)
    cfg.model.pretrained = "none"                      # the checkpoint brings the weights
    model = model_from_config(cfg, device)
    load_model_state(model, ckpt)
    ds = build_dataset(cfg.data.dataset, cfg.data_root, synthetic_size=cfg.data.synthetic_size,
                       seed=cfg.data.synthetic_seed)
    size = (cfg.data.height, cfg.data.width, cfg.data.workers)
    q = load_images([s.path for s in ds.query], *size, description="query images")
    g = load_images([s.path for s in ds.gallery], *size, description="gallery images")
    r = evaluate_model(model, q, g, ds.query, ds.gallery, device, cfg.test.batch_size, cfg.test.flip,
                       rerank_options(cfg))
    log.info("%s (epoch %s) on %s: mAP %.1f%%, rank-1 %.1f%%, rank-5 %.1f%%, rank-10 %.1f%%, mINP %.1f%%",
             ckpt["path"], ckpt.get("epoch"), ds.name, 100 * r["mAP"], 100 * r["rank1"], 100 * r["rank5"],
             100 * r["rank10"], 100 * r["mINP"])
    print(json.dumps({"checkpoint": ckpt["path"], "epoch": ckpt.get("epoch"), **r}))
    return r
