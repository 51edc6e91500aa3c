"""What the training benchmarks share: where their runs go (logs and metrics stay, checkpoints go unless
asked for: a ResNet-50 run folder holds several hundred MB of them), one training run from a recipe and
overrides, and inference speed."""
from __future__ import annotations

import json
import statistics
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
    from reidlab.runs.config import build_config, parse_override
    from reidlab.runs.run import make_run_dir, release_run_dir, setup_logging
    cfg = build_config(recipe, [parse_override(s) for s in sets])
    start = time.perf_counter()
    run_dir = make_run_dir(cfg)
    setup_logging(run_dir)
    if cfg.mode == "supervised":
        from reidlab.supervised.trainer import run_supervised as trainer
    else:
        from reidlab.unsup.trainer import run_unsup as trainer
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


# ---- seeds-by-rows benchmarks of the demo recipe (benchmarks.own_data, benchmarks.noise_floor) ----

def summary(lines: list[dict], order=None) -> list[dict]:
    """Per row (in ``order``, else as they first appear): seeds, and mean / min / max of each evaluated
    epoch's mAP, the final rank-1 and clusters (None in the supervised loop)."""
    out = []
    order = order or list(dict.fromkeys(r["row"] for r in lines))
    for name in [n for n in order if any(r["row"] == n for r in lines)]:
        runs = sorted((r for r in lines if r["row"] == name), key=lambda r: r["seed"])
        epochs = runs[0]["epochs"]
        curve = [[r["mAP"][i] for r in runs] for i in range(len(epochs))]
        final = curve[-1]
        out.append({"row": name, "seeds": [r["seed"] for r in runs], "epochs": epochs,
                    "mAP_mean": [round(100 * statistics.mean(c), 1) for c in curve],
                    "mAP_min": round(100 * min(final), 1), "mAP_max": round(100 * max(final), 1),
                    "mAP_sd": round(100 * statistics.stdev(final), 1) if len(final) > 1 else None,
                    "rank1_mean": round(100 * statistics.mean(r["rank1"][-1] for r in runs), 1),
                    "clusters_mean": None if runs[0]["clusters"][-1] is None else
                    round(statistics.mean(r["clusters"][-1] for r in runs))})
    return out


def print_summary(rows: list[dict]) -> None:
    if not rows:
        print("no finished run")
        return
    epochs = rows[0]["epochs"]
    print("| row | seeds | mAP at epochs " + " / ".join(map(str, epochs)) + " (mean) | final mAP min-max (sd) | "
          "final rank-1 (mean) | final clusters (mean) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        sd = "" if r["mAP_sd"] is None else f" ({r['mAP_sd']})"
        print(f"| {r['row']} | {len(r['seeds'])} | {' / '.join(f'{m:.1f}' for m in r['mAP_mean'])} | "
              f"{r['mAP_min']}-{r['mAP_max']}{sd} | {r['rank1_mean']} | {r['clusters_mean']} |")


def run_arguments(p) -> None:
    """The options every seeds-by-rows benchmark of the demo recipe shares (this one, benchmarks.own_data)."""
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--output", default=None)
    p.add_argument("--summary", default=None, metavar="JSONL", help="print the table of the runs in this file and stop")


def read_lines(path) -> list[dict]:
    """The finished runs of a benchmark's JSON-lines file."""
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
