"""What a table's ``measure`` may ask of each run's model beyond its metrics (benchmarks/ablate.py): its size, its
inference speed, and SAP's attention inside the teacher's parts."""
from __future__ import annotations

from pathlib import Path

import yaml


def sap_attention(run_dir: Path, images: int = 256) -> dict:
    """A SAP run's final model measured by reidlab.models.sap.attention_in_part on the first ``images`` query
    images, with the teacher parsing it trained on (the same noise): the share of the patch heads' and proxies'
    attention inside the teacher's part, against a uniform attention's share. Nothing for the teacher-partition
    row (no distilled heads)."""
    import torch

    from reidlab.data.annotations import load_teacher
    from reidlab.data.augment import normalise
    from reidlab.data.datasets import dataset_from_config
    from reidlab.data.images import load_images
    from reidlab.models.sap import attention_in_part
    from reidlab.runs.checkpoint import load_checkpoint
    from reidlab.runs.config import build_config
    from reidlab.runs.loop import teacher_noise
    from reidlab.runs.run import resolve_device
    from reidlab.use.trained import build_trained
    ckpt = load_checkpoint(run_dir, "last.pt")
    cfg = build_config(None, [], base=ckpt["config"])
    if cfg.model.name != "sap" or (cfg.model.args or {}).get("partition") == "teacher":
        return {}
    device = resolve_device(cfg.device)
    model = build_trained(cfg, ckpt, device)
    ds = dataset_from_config(cfg)
    samples = ds.query[:images]
    x = normalise(load_images([q.path for q in samples], cfg.data.height, cfg.data.width, cfg.data.workers,
                              resize=cfg.data.resize)).to(device)
    parsing = load_teacher(ds, samples, cfg.data.height, cfg.data.width, ("parsing",), teacher_noise(cfg),
                           cfg.data.workers)["parsing"].to(device)
    with torch.no_grad():
        return {f"attn_{k}": v for k, v in attention_in_part(model, x, parsing).items()}


def model_size_and_speed(run_dir: Path, what: list[str]) -> dict:
    from benchmarks.common import images_per_second
    from reidlab.models import model_from_config
    from reidlab.runs.config import build_config
    from reidlab.runs.run import resolve_device
    cfg = build_config(base=yaml.safe_load((run_dir / "config.yaml").read_text()))
    cfg.model.pretrained = "none"
    device = resolve_device(cfg.device)
    model = model_from_config(cfg, device)
    out = {}
    if "params" in what:
        out["params_M"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    if "inference" in what and not getattr(model, "test_teacher_targets", ()):
        out["inference_images_per_s"] = round(images_per_second(model, device, cfg.data.height, cfg.data.width), 1)
    return out


# what a table's ``measure`` may name: each a function of (run folder, the table's measure list) -> columns
MEASURE_FUNCTIONS = {"params": model_size_and_speed, "inference": model_size_and_speed,
            "sap_attention": lambda run_dir, what: sap_attention(run_dir)}


def measure_model(run_dir: Path, what: list[str]) -> dict:
    out = {}
    for fn in dict.fromkeys(MEASURE_FUNCTIONS[w] for w in what):      # each function once
        out.update(fn(run_dir, what))
    return out


