"""MLA's Table 6 on the synthetic benchmark: every variant trained in the unsupervised loop of the MLA
recipe (runs/recipes/mla_market1501.yaml: SpCL's loop with MLA's section 4.1 settings) scaled to a CPU,
with the same seeds and budget; prints mAP / rank-1 per seed, parameter count and inference images/s.

    python -m benchmarks.mla_ablation                                     # all rows, seed 1
    python -m benchmarks.mla_ablation --variants baseline ALL --seeds 2 3 # the seed spread
    python -m benchmarks.mla_ablation --variants ALL --position-init scaled   # HLA's BoTNet-code init
    python -m benchmarks.mla_ablation --arch resnet50 --size market --height 256 --width 128 \
        --epochs 50 --iters 400 --pretrained imagenet --device cuda      # the recipe itself, on a GPU

Scaled to the CPU: synthetic-small read at 64x32, ResNet-18 from scratch (the blocks replace the 3x3
conv2 of its last stage's two residual blocks; ResNet-50 from scratch collapsed to a handful of
clusters within a CPU budget), ``--epochs`` x ``--iters`` instead of 50 x 400. Kept from the recipe:
P x K = 8 x 8, lr 1.6e-4 with x0.1 every 40% of the epochs (20 of 50), random-member memory
initialisation, hard update with momentum 0.2, average pooling, eps 0.4 / MinPts 4, k1 30 / k2 6.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


from benchmarks.common import images_per_second, output_folder, train_run
from reidlab.models import model_from_config
from reidlab.runs.run import resolve_device, setup_logging

VARIANTS = {"baseline": "", "HLA": "hla", "PLA": "pla", "PLA+HLA": "pla+hla", "DLA": "dla", "ALL": "mla"}
PAPER_MARKET = {"baseline": (80.6, 91.5), "HLA": (0.9, 2.2), "PLA": (82.4, 92.3), "PLA+HLA": (79.3, 90.6),
                "DLA": (82.4, 92.3), "ALL": (83.1, 92.8)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet50"])
    p.add_argument("--size", default="small")
    p.add_argument("--data-root", default=None)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--iters", type=int, default=80)
    p.add_argument("--pretrained", default="none")
    p.add_argument("--device", default="auto")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--position-init", default="normal", choices=["normal", "scaled"],
                   help="HLA's position encoding: the paper's N(0, 1) or BoTNet code's N(0, 1/d)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--output", default=None)
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's best.pt / last.pt")
    a = p.parse_args(argv)
    setup_logging()
    out = output_folder(a.output, "mla_ablation_")
    rows = []
    for name in a.variants:
        for seed in a.seeds:
            sets = [f"model.name={a.arch}", f"model.attention={VARIANTS[name]}", f"model.pretrained={a.pretrained}",
                    "data.dataset=synthetic", f"data.synthetic_size={a.size}", f"data.height={a.height}",
                    f"data.width={a.width}", "data.workers=2", f"train.epochs={a.epochs}", f"train.iters={a.iters}",
                    f"train.step_size={max(1, round(0.4 * a.epochs))}", f"test.eval_every={a.epochs}",
                    "test.eval_initial=false", f"device={a.device}", f"seed={seed}", f"output={out}",
                    f"name=mla-{name}-{a.position_init}-seed{seed}"]
            if VARIANTS[name] in ("hla", "pla+hla", "mla"):
                sets.append(f"model.attention_args.position_init={a.position_init}")
            if a.height < 128:
                sets.append("aug.pad=4")
            if a.data_root:
                sets.append(f"data.root={a.data_root}")
            cfg, records, minutes = train_run("mla_market1501", sets, a.keep_checkpoints)
            device = resolve_device(cfg.device)
            model = model_from_config(cfg, device)
            last = records[-1]
            row = {"benchmark": "mla_ablation", "variant": name, "seed": seed, "position_init": a.position_init,
                   "attention": VARIANTS[name], "mAP": round(last["mAP"], 4), "rank1": round(last["rank1"], 4),
                   "clusters": last.get("num_clusters"),
                   "params_M": round(sum(q.numel() for q in model.parameters()) / 1e6, 2),
                   "images_per_s": round(images_per_second(model, device, a.height, a.width), 1),
                   "train_minutes": round(minutes, 1),
                   "paper_market_mAP_rank1": PAPER_MARKET[name]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| variant | seed | mAP | rank-1 | params (M) | inference img/s | paper, Market-1501 (mAP / rank-1) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        pm, pr = r["paper_market_mAP_rank1"]
        print(f"| {r['variant']} | {r['seed']} | {100 * r['mAP']:.1f} | {100 * r['rank1']:.1f} | {r['params_M']} | "
              f"{r['images_per_s']} | {pm} / {pr} |")
    Path(out, "mla_ablation.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
