"""Which difference from Cluster Contrast's own code changes what our loop learns (issue: "the loop must
learn as Cluster Contrast's own code does"): the demo recipe (runs/recipes/demo.yaml: ResNet-18 from
scratch on synthetic-small at 64 x 32, 10 epochs x 100 iterations of 16 x 4, lr step at epoch 8) with
each of the three differences found side by side switched alone, and all of them together.

    python -m benchmarks.parity_ablation                                   # every row, seeds 1-5
    python -m benchmarks.parity_ablation --rows earlier all --seeds 1 2 3  # a subset
    python -m benchmarks.parity_ablation --rows earlier all --pad 10       # the side-by-side's pad 10 at 64 x 32
    python -m benchmarks.parity_ablation --summary OUT/parity_ablation.jsonl   # the table of finished runs

The rows (each sets the four options below; every other value is the demo recipe's):

    row        aug.erasing_box  data.resize  train.pass_end  train.replace_below
    earlier    clip             bilinear     carry           k-1        (this project before the issue)
    erasing    redraw           bilinear     carry           k-1
    resize     clip             bicubic      carry           k-1
    sampler    clip             bilinear     drop            k
    all        redraw           bicubic      drop            k          (Cluster Contrast's code)

Each run appends one JSON line (mAP, rank-1, clusters and outliers at every evaluated epoch) to
``OUT/parity_ablation.jsonl`` as soon as it ends, so that several processes can share the work (give
each its own ``--rows`` / ``--seeds``) and an interrupted ablation keeps its finished runs. The summary
is the mean, min and max over seeds of mAP at epochs 2, 4, 6, 8 and 10, and of the final rank-1 and
cluster count.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from benchmarks.common import output_folder, train_run
from reidlab.runs.run import setup_logging

OPTIONS = ("aug.erasing_box", "data.resize", "train.pass_end", "train.replace_below")
ROWS = {
    "earlier": ("clip", "bilinear", "carry", "k-1"),
    "erasing": ("redraw", "bilinear", "carry", "k-1"),
    "resize": ("clip", "bicubic", "carry", "k-1"),
    "sampler": ("clip", "bilinear", "drop", "k"),
    "all": ("redraw", "bicubic", "drop", "k"),
}


def label(name: str, pad: int | None) -> str:
    return name if pad is None else f"{name}, pad {pad}"


def run_row(name: str, seed: int, a, out: str) -> dict:
    sets = [f"{k}={v}" for k, v in zip(OPTIONS, ROWS[name], strict=True)]
    sets += [f"train.bn_images={a.bn_images}", f"train.threads={a.threads}"]
    sets += [f"seed={seed}", f"train.epochs={a.epochs}", f"test.eval_every={a.eval_every}", f"device={a.device}",
             f"output={out}", f"name=parity-{name}{'' if a.pad is None else f'-pad{a.pad}'}-seed{seed}"]
    if a.pad is not None:
        sets.append(f"aug.pad={a.pad}")
    if a.data_root:
        sets.append(f"data.root={a.data_root}")
    cfg, records, minutes = train_run(a.recipe, sets)
    evaluated = [r for r in records if "mAP" in r and r["epoch"] > 0]
    return {"benchmark": "parity_ablation", "row": label(name, a.pad), "seed": seed, "aug.pad": cfg.aug.pad,
            **dict(zip(OPTIONS, ROWS[name])),
            "epochs": [r["epoch"] for r in evaluated], "mAP": [round(r["mAP"], 4) for r in evaluated],
            "rank1": [round(r["rank1"], 4) for r in evaluated],
            "clusters": [r.get("num_clusters") for r in evaluated],
            "outliers": [r.get("num_outliers") for r in evaluated],
            "minutes": round(minutes, 1)}


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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    p.add_argument("--recipe", default="demo")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=2)
    p.add_argument("--pad", type=int, default=None, help="aug.pad of every row (default: the recipe's)")
    p.add_argument("--bn-images", type=int, default=64,
                   help="train.bn_images of every row (default 64: the whole batch, as the README table)")
    p.add_argument("--threads", type=int, default=1, help="train.threads of every run (default 1, as measured)")
    run_arguments(p)
    a = p.parse_args(argv)
    if a.summary:
        print_summary(summary(read_lines(a.summary)))
        return
    setup_logging()
    out = output_folder(a.output, "parity_ablation_")
    results = Path(out, "parity_ablation.jsonl")
    for name in a.rows:
        for seed in a.seeds:
            row = run_row(name, seed, a, out)
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print_summary(summary(read_lines(results)))


if __name__ == "__main__":
    main()
