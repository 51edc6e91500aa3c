"""Pirt's Table 3 (baseline, +P, +Intra, +Inter) and Table 5 (the confidence combinations of the matching)
on ``synthetic-occluded``, same seed and budget for every row.

    python -m benchmarks.pirt_ablation                                  # every row, seed 1, and Table 5
    python -m benchmarks.pirt_ablation --variants baseline "+P +Intra +Inter" --seeds 2 3 --no-table5
    python -m benchmarks.pirt_ablation --backbone resnet50_ibn_a --height 384 --width 128 --epochs 60 \\
        --pretrained imagenet --synthetic-size market --device cuda     # the GPU version

Rows (runs/recipes/pirt_occluded_duke.yaml at CPU scale): the baseline (the backbone's pooled feature,
cross-entropy only), +P (pose-guided local features from the backbone's map), +Intra (with the IRM),
+Inter (with the IRT: Pirt). Rows with pose features are matched as the paper does: global ranking, then
the top 100 re-ranked with confidence-weighted part distances; Table 5 evaluates the full model's best
checkpoint again with the confidences of both images, of the query only, of the gallery image only, or
none, and (our rows, not the paper's) without the local re-ranking: ranked by the retrieval feature
(global + 3 pose features), and by the global feature alone (``test.feature=global``).
The teacher keypoints are the synthetic benchmark's, for training and test images alike.

CPU scale: synthetic-small read at 128 x 64 (an 8 x 4 feature map), ResNet-18 from scratch (ResNet-50-IBN-a
is the recipe's; IBN-a has no ResNet-18 form), ``--epochs`` (6: 62 iterations of 16 x 4 each) with the recipe's
schedule shape (warm-up epochs/6, cosine from epochs/2). Six epochs, not the other ablations' eight: one step
of the full model takes about 4 s on one core, so the eight runs of the table fit in two hours of a 2-core CPU
as two one-thread processes (OMP_NUM_THREADS=1):

    python -m benchmarks.pirt_ablation --variants "+P +Intra +Inter" --seeds 1 2 3
    python -m benchmarks.pirt_ablation --variants baseline --seeds 1 2 3 --no-table5 && \
        python -m benchmarks.pirt_ablation --variants "+P" "+P +Intra" --no-table5
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import (common_sets, output_folder, print_table, result_row, save_rows, synthetic_arguments,
                               train_run)
from reidlab.runs.run import setup_logging

VARIANTS = {"baseline": dict(pose=False, intra=False, inter=False), "+P": dict(pose=True, intra=False, inter=False),
            "+P +Intra": dict(pose=True, intra=True, inter=False), "+P +Intra +Inter": dict()}
PAPER_TABLE3 = {"baseline": "43.40 / 51.81", "+P": "42.23 / 52.17", "+P +Intra": "47.20 / 55.88",
                "+P +Intra +Inter": "50.90 / 60.00"}
PAPER_TABLE5 = {"qg": "50.90 / 60.00", "q": "49.91 / 59.86", "g": "49.89 / 59.86", "none": "48.19 / 57.78"}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    synthetic_arguments(p, epochs=6)
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--no-table5", action="store_true")
    a = p.parse_args(argv)
    setup_logging()
    out = output_folder(a.output, "pirt_ablation_")
    rows = []
    for variant in a.variants:
        for seed in a.seeds:
            a.seed = seed
            tag = "pirt-" + "".join(c if c.isalnum() else "-" for c in variant).strip("-") + f"-seed{seed}"
            full = variant == "+P +Intra +Inter"
            sets = common_sets(a, "synthetic-occluded", tag, out) + [
                f"model.pretrained={a.pretrained}", f"model.args.backbone={a.backbone}",
                f"train.warmup_epochs={max(1, a.epochs // 6)}", f"train.cosine_start={a.epochs // 2}",
                f"test.local_rerank={VARIANTS[variant].get('pose', True)}"]
            sets += [f"model.args.{k}={v}" for k, v in VARIANTS[variant].items()]
            cfg, records, minutes = train_run("pirt_occluded_duke", sets, keep_checkpoints=full or a.keep_checkpoints)
            rows.append(result_row("pirt_ablation", "table 3", variant, "synthetic-occluded", cfg, records, minutes,
                                   seed, PAPER_TABLE3[variant]))
            print(json.dumps(rows[-1]), flush=True)
            if full and not a.no_table5:
                from reidlab.runs.checkpoint import load_checkpoint
                from reidlab.runs.config import build_config
                from reidlab.use.evaluate import evaluate_checkpoint
                ckpt = load_checkpoint(Path(out) / tag, "best.pt")
                no_local = {"global + pose, no re-ranking": {"local_rerank": False},
                            "global only": {"local_rerank": False, "feature": "global"}}
                for mode, paper in [*PAPER_TABLE5.items(), *((m, "-") for m in no_local)]:
                    test = no_local.get(mode, {"local_confidence": mode})
                    c = build_config(None, [{"test": test}], base=ckpt["config"])
                    r = evaluate_checkpoint(c, ckpt)
                    rows.append({"benchmark": "pirt_ablation", "part": "table 5", "variant": mode, "seed": seed,
                                 "mAP": round(r["mAP"], 4), "rank1": round(r["rank1"], 4), "paper": paper})
                    print(json.dumps(rows[-1]), flush=True)
                if not a.keep_checkpoints:
                    for f in (Path(out) / tag).glob("*.pt"):
                        f.unlink()
    print_table(rows, [("table", "part"), ("variant", "variant"), ("seed", "seed"), ("mAP", "mAP"),
                       ("rank-1", "rank1"), ("paper, Occluded-Duke (mAP / rank-1)", "paper")])
    save_rows(out, "pirt_ablation", rows)

if __name__ == "__main__":
    main()
