"""A run's folder, logging, device and seeding; JSON-lines metrics."""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from rich.logging import RichHandler

from errors import ConfigError

from .config import Config

log = logging.getLogger("reid")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_logging(run_dir: Path | None = None, level: int = logging.INFO) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(level)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)   # its CPU-feature probing is noise
    console = RichHandler(show_path=False, log_time_format="%H:%M:%S")
    console.setLevel(level)
    root.addHandler(console)
    if run_dir is not None:
        fh = logging.FileHandler(run_dir / "log.txt")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)


def make_run_dir(cfg: Config) -> Path:
    name = cfg.name or f"{cfg.mode}-{cfg.data.dataset}-{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.output) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run_dir


class MetricsLog:
    """metrics.jsonl: one JSON object per epoch."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, epoch: int) -> None:
        """Drop records of epochs after ``epoch`` (a resumed run writes them again)."""
        kept = [r for r in self.read() if r["epoch"] <= epoch]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
