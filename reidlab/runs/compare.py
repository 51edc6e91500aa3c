"""Are two runs the same run? Their metrics (every field but the wall-clock seconds) and their weights,
compared bit for bit (``train.deterministic``, runs.determinism).

    python -m reidlab.runs.compare outputs/demo outputs/demo-again        # exit 0: identical, 1: they differ

Compares each epoch's record of ``metrics.jsonl`` field by field, leaving out the fields ending in
``_s`` (seconds, which no two runs share), then the model's tensors in ``last.pt``.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from reidlab.errors import ReIDError

from .checkpoint import load_checkpoint
from .run import MetricsLog


def timeless(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.endswith("_s")}


def read_run(run_dir: Path) -> tuple[list[dict], dict]:
    run_dir = Path(run_dir)
    metrics, weights = run_dir / "metrics.jsonl", run_dir / "last.pt"
    for f in (metrics, weights):
        if not f.is_file():
            raise ReIDError(f"{run_dir} is not a finished run folder: no {f.name}")
    state = load_checkpoint(weights)["model"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ReIDError(f"{weights}: its model state is not a dict of tensors")
    return MetricsLog(metrics).read(), state


def same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Bit for bit: the same dtype, shape and bytes (a NaN equals the same NaN; 0.0 and -0.0 differ)."""
    if x.dtype != y.dtype or x.shape != y.shape:
        return False
    return torch.equal(x.contiguous().reshape(-1).view(torch.uint8), y.contiguous().reshape(-1).view(torch.uint8))


def same_value(x, y) -> bool:
    """Two metrics fields alike; a NaN (a loss that was NaN in both runs) equals a NaN."""
    nan = isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)
    return nan or x == y


def differences(a: Path, b: Path, limit: int = 10) -> list[str]:
    """What differs between runs ``a`` and ``b`` (at most ``limit`` lines); empty when they are the same."""
    (ra, wa), (rb, wb) = read_run(a), read_run(b)
    out = []
    if set(wa) != set(wb):
        out.append(f"weights: different tensors ({sorted(set(wa) ^ set(wb))[:3]} ...)")
    differ = [k for k in wa if k in wb and not same_bits(wa[k], wb[k])]
    if differ:
        out.append(f"weights: {len(differ)} of {len(wa)} tensors differ ({', '.join(differ[:3])} ...)")
    if [r.get("epoch") for r in ra] != [r.get("epoch") for r in rb]:
        out.append(f"epochs: {[r.get('epoch') for r in ra]} against {[r.get('epoch') for r in rb]}")
    for x, y in zip(ra, rb):
        x, y = timeless(x), timeless(y)
        for k in sorted(set(x) | set(y)):
            if not same_value(x.get(k), y.get(k)):
                out.append(f"epoch {x.get('epoch')}: {k} {x.get(k)} against {y.get(k)}")
    return out[:limit]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_a")
    p.add_argument("run_b")
    a = p.parse_args(argv)
    try:
        diff = differences(Path(a.run_a), Path(a.run_b))
    except ReIDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not diff:
        print(f"identical: {a.run_a} and {a.run_b} (metrics but the seconds, and every weight)")
        return 0
    print("\n".join(["they differ:", *diff]))
    return 1


if __name__ == "__main__":
    sys.exit(main())
