"""What the training benchmarks share: where their runs go (logs and metrics stay, checkpoints go unless
asked for: a ResNet-50 run folder holds several hundred MB of them), one training run from a recipe and
overrides, and inference speed."""
from __future__ import annotations

import json
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


def synthetic_arguments(p, height: int = 128, width: int = 64, epochs: int = 8) -> None:
    """The options of the synthetic-benchmark ablations: data, input size, budget, weights, device, output."""
    p.add_argument("--synthetic-size", default="small")
    p.add_argument("--data-root", default=None)
    p.add_argument("--height", type=int, default=height)
    p.add_argument("--width", type=int, default=width)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--pretrained", default="none")
    p.add_argument("--device", default="auto")
    p.add_argument("--output", default=None)
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's best.pt / last.pt")
    p.add_argument("--warmup-by", default="iter", choices=("iter", "epoch"),
                   help="train.warmup_by of every row: iter (default; a few epochs' budget) or epoch (the papers' "
                        "unit; the tables in docs/results.md were measured with it, before iter existed)")


def common_sets(a, dataset: str, name: str, out: str) -> list[str]:
    """The overrides every synthetic-benchmark row shares: data, budget, seed, output."""
    sets = [f"data.dataset={dataset}", f"data.synthetic_size={a.synthetic_size}", f"data.height={a.height}",
            f"data.width={a.width}", "data.workers=2", f"train.epochs={a.epochs}", f"test.eval_every={a.epochs}",
            "test.eval_initial=false", f"device={a.device}", f"seed={a.seed}", f"output={out}", f"name={name}",
            f"train.warmup_by={getattr(a, 'warmup_by', 'epoch')}"]
    if a.data_root:
        sets.append(f"data.root={a.data_root}")
    if a.height < 128:
        sets.append("aug.pad=4")
    return sets


def result_row(benchmark, part, variant, dataset, cfg, records, minutes, seed, paper="") -> dict:
    """A table row: final mAP / rank-1, training and inference images per second, parameters, minutes."""
    from reidlab.models import model_from_config
    from reidlab.runs.run import resolve_device
    device = resolve_device(cfg.device)
    model = model_from_config(cfg, device)
    trained = [r for r in records if r.get("epoch", 0) > 0 and r.get("loss") is not None]
    batch = cfg.train.num_ids * cfg.train.num_instances
    iters = [r.get("iters") for r in trained]
    train_ips = None
    if trained and all(iters):
        train_ips = round(sum(i * batch for i in iters) / sum(r["train_s"] for r in trained), 1)
    last = records[-1]
    inference = None if getattr(model, "test_teacher_targets", ()) else round(
        images_per_second(model, device, cfg.data.height, cfg.data.width), 1)
    return {"benchmark": benchmark, "part": part, "variant": variant, "dataset": dataset, "seed": seed,
            "mAP": round(last["mAP"], 4), "rank1": round(last["rank1"], 4), "clusters": last.get("num_clusters"),
            "train_images_per_s": train_ips, "inference_images_per_s": inference,
            "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "minutes": round(minutes, 1),
            "paper": paper}


def print_table(rows: list[dict], columns: list[tuple[str, str]]) -> None:
    """A markdown table of ``rows``: (title, key) columns; mAP and rank-1 shown as percentages."""
    print("| " + " | ".join(t for t, _ in columns) + " |")
    print("|" + " --- |" * len(columns))
    for r in rows:
        cells = [f"{100 * r[k]:.1f}" if (k.endswith("mAP") or k == "rank1") and k in r else str(r.get(k, ""))
                 for _, k in columns]
        print("| " + " | ".join(cells) + " |")


def save_rows(out: str, name: str, rows: list[dict]) -> None:
    Path(out, f"{name}.json").write_text(json.dumps(rows, indent=1))
