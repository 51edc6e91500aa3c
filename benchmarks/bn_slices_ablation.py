"""Does the BatchNorm batch matter on the synthetic benchmark? (``train.bn_images``, models/sliced_bn.py.)
Both loops at CPU scale, with every BatchNorm over the whole batch, a quarter of it and a sixteenth:

  unsup       runs/recipes/demo.yaml (Cluster Contrast scaled to the CPU: ResNet-18 from scratch on
              synthetic-small at 64 x 32, 10 epochs x 100 iterations of 16 x 4): bn_images 64 / 16 / 4
  supervised  bot_market1501.yaml scaled the same way (ResNet-18 from scratch, 64 x 32, pad 4, 16 x 4,
              10 epochs with 1 warm-up epoch and x0.1 at epochs 4 and 7 in place of 10 / 40 / 70 of 120)

    python -m benchmarks.bn_slices_ablation                          # both parts, seeds 1-3
    python -m benchmarks.bn_slices_ablation --parts unsup --images 64 4 --seeds 1
    python -m benchmarks.bn_slices_ablation --summary OUT/bn_slices_ablation.jsonl

One JSON line per run in ``OUT/bn_slices_ablation.jsonl`` (mAP, rank-1, clusters at every second
epoch), then the table of benchmarks.parity_ablation: mean, min-max and sd over seeds.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import output_folder, train_run
from benchmarks.parity_ablation import print_summary, summary
from reidlab.runs.run import setup_logging

PARTS = {
    "unsup": ("demo", []),
    "supervised": ("bot_market1501", ["data.dataset=synthetic", "data.synthetic_size=small", "data.height=64",
                                      "data.width=32", "data.workers=2", "model.name=resnet18",
                                      "model.pretrained=none", "aug.pad=4", "train.warmup_epochs=1",
                                      "train.steps=[4, 7]"]),
}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    p.add_argument("--images", type=int, nargs="+", default=[64, 16, 4], help="bn_images of each row")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="train.threads of every run (default 1, as measured)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--output", default=None)
    p.add_argument("--summary", default=None, metavar="JSONL", help="print the table of the runs in this file and stop")
    a = p.parse_args(argv)
    rows = [f"{part} bn_images={n}" for part in PARTS for n in a.images]
    if a.summary:
        print_summary(summary([json.loads(x) for x in Path(a.summary).read_text().splitlines() if x.strip()], rows))
        return
    setup_logging()
    out = output_folder(a.output, "bn_slices_ablation_")
    results = Path(out, "bn_slices_ablation.jsonl")
    for part in a.parts:
        recipe, sets = PARTS[part]
        for n in a.images:
            for seed in a.seeds:
                run_sets = [*sets, f"train.bn_images={n}", f"train.threads={a.threads}", f"seed={seed}",
                            f"train.epochs={a.epochs}",
                            "test.eval_every=2", f"device={a.device}", f"output={out}",
                            f"name=bn-{part}-{n}-seed{seed}"] + ([f"data.root={a.data_root}"] if a.data_root else [])
                cfg, records, minutes = train_run(recipe, run_sets)
                evaluated = [r for r in records if "mAP" in r and r["epoch"] > 0]
                row = {"benchmark": "bn_slices_ablation", "row": f"{part} bn_images={n}", "part": part,
                       "bn_images": n, "seed": seed, "epochs": [r["epoch"] for r in evaluated],
                       "mAP": [round(r["mAP"], 4) for r in evaluated],
                       "rank1": [round(r["rank1"], 4) for r in evaluated],
                       "clusters": [r.get("num_clusters") for r in evaluated], "minutes": round(minutes, 1)}
                with results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    print_summary(summary([json.loads(x) for x in results.read_text().splitlines() if x.strip()], rows))


if __name__ == "__main__":
    main()
