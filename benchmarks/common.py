"""What the training benchmarks share: where their runs go (logs and metrics stay, checkpoints go unless
asked for: a ResNet-50 run folder holds several hundred MB of them), one training run from a recipe and
overrides, and inference speed."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch


def output_folder(given: str | None, prefix: str) -> str:
    out = given or tempfile.mkdtemp(prefix=prefix)
    print(f"runs, logs and metrics under {out}", flush=True)
    return out


def drop_checkpoints(run_dir: Path, keep: bool) -> None:
    if not keep:
        for p in Path(run_dir).glob("*.pt"):
            p.unlink()


def train_run(recipe: str, sets: list[str], keep_checkpoints: bool = False):
    """Train ``recipe`` with ``--set`` overrides in a new run folder (the config's ``output``/``name``);
    returns (config, metrics records, minutes)."""
    from runs.config import build_config, parse_override
    from runs.run import make_run_dir, release_run_dir, setup_logging
    cfg = build_config(recipe, [parse_override(s) for s in sets])
    start = time.perf_counter()
    run_dir = make_run_dir(cfg)
    setup_logging(run_dir)
    if cfg.mode == "supervised":
        from supervised.trainer import run_supervised as trainer
    else:
        from unsup.trainer import run_unsup as trainer
    try:
        records = trainer(cfg, run_dir)
    finally:
        release_run_dir(run_dir)
    drop_checkpoints(run_dir, keep_checkpoints)
    return cfg, records, (time.perf_counter() - start) / 60


@torch.no_grad()
def images_per_second(model, device, height, width, batch=128, repeats=3) -> float:
    """Eval-mode forward passes of random images, after one warm-up pass."""
    model.eval()
    x = torch.randn(batch, 3, height, width, device=device)
    model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        model(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - t)
