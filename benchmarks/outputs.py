"""Where the training benchmarks keep their runs: logs and metrics stay, checkpoints go unless asked for
(a ResNet-50 run folder holds several hundred MB of them)."""
from __future__ import annotations

import tempfile
from pathlib import Path


def output_folder(given: str | None, prefix: str) -> str:
    out = given or tempfile.mkdtemp(prefix=prefix)
    print(f"runs, logs and metrics under {out}", flush=True)
    return out


def drop_checkpoints(run_dir: Path, keep: bool) -> None:
    if not keep:
        for p in Path(run_dir).glob("*.pt"):
            p.unlink()
