"""AAformer's Tables IV-V on the synthetic benchmark, and part-transformer students in the unsupervised
loop; prints mAP, rank-1 and images per second of each row, with the paper's numbers beside them.

    python -m benchmarks.aaformer_ablation                          # both parts, CPU scale
    python -m benchmarks.aaformer_ablation --part supervised --datasets synthetic-occluded
    python -m benchmarks.aaformer_ablation --size base --height 256 --width 128 --epochs 60 \\
        --pretrained imagenet --synthetic-size market --device cuda   # the GPU version

Supervised rows (the AAformer recipe, runs/recipes/aaformer_market1501.yaml, at CPU scale), same seed and
budget, on ``synthetic`` and ``synthetic-occluded``:
  ViT baseline (the ViT recipe's model, no [PART]s), fixed horizontal stripes as [PART]s ("+PCB PT" of
  Table IV), AAformer with optimal transport, AAformer with nearest-neighbour assignment (Table V).
Unsupervised rows (the cluster-contrast loop of aaformer_unsup_market1501.yaml at CPU scale, batch
16 x 4, ``--unsup-iters`` per epoch), same seed and budget, on ``synthetic``: ResNet-18, ViT and AAformer
students.

CPU scale: synthetic-small read at its native 128 x 64; transformers of ``--size`` (tiny: D 192, 3
heads) with ``--depth`` layers (4) and 16-pixel patches with ``--stride`` (16: 8 x 4 patches), trained
from scratch (no ImageNet weights can be downloaded here); ``--epochs`` (8) with the recipes' warm-up and
schedule shape. (ViT-small with 6 layers and stride 12 measured 10+ s per step of 64 images on these
2 cores, too slow for the table.) Images per second: training (batches of the recipe, from the measured epoch time) and
inference (batches of 128, eval mode). AAformer rows also give the [CLS]-only mAP (the same checkpoint
ranked by [CLS] alone) and the last epoch's cross-entropy of [CLS]'s classifier and of the [PART]s'.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import (common_sets, drop_checkpoints, output_folder, print_table, result_row, save_rows,
                               synthetic_arguments, train_run)
from reidlab.runs.run import setup_logging

SUPERVISED = {"ViT baseline": ("vit", None), "stripes as [PART]s": ("aaformer", "stripes"),
              "AAformer (OT)": ("aaformer", "ot"), "AAformer (NN)": ("aaformer", "nn")}
UNSUPERVISED = {"ResNet-18": "resnet18", "ViT": "vit", "AAformer": "aaformer"}
# the paper's rows (ViT-Base, ImageNet weights): Market-1501 mAP / rank-1 (Table II) where it gives them,
# and MSMT17 mAP / rank-1 (Tables IV-V)
PAPER = {"ViT baseline": "Market 86.3 / 94.2; MSMT17 58.9 / 79.7", "stripes as [PART]s": "MSMT17 62.1 / 82.2",
         "AAformer (OT)": "Market 88.0 / 95.4; MSMT17 65.6 / 84.4", "AAformer (NN)": "MSMT17 61.5 / 82.2"}


def model_sets(name: str, assign: str | None, a) -> list[str]:
    """The row's model on the recipe's training settings: the recipe's model.args are cleared first."""
    sets = ["model.args=null", f"model.name={name}", f"model.pretrained={a.pretrained}"]
    if name == "resnet18":
        return sets
    sets += [f"model.args.size={a.size}", f"model.args.depth={a.depth}", f"model.args.stride={a.stride}"]
    return sets + ([f"model.args.assign={assign}"] if assign else [])


def cls_only_map(run_dir: Path) -> float:
    """The run's best.pt evaluated by its [CLS] feature alone (test.feature=global), beside the full feature of
    [CLS] and the [PART]s that the row's mAP uses: what the [PART]s add, or cost."""
    from reidlab.runs.checkpoint import load_checkpoint
    from reidlab.runs.config import build_config
    from reidlab.use.evaluate import evaluate_checkpoint
    ckpt = load_checkpoint(run_dir, "best.pt")
    return round(evaluate_checkpoint(build_config(None, [{"test": {"feature": "global"}}], base=ckpt["config"]),
                                     ckpt)["mAP"], 4)


def token_losses(records: list[dict]) -> dict:
    """The last trained epoch's mean cross-entropy of [CLS]'s classifier and of the [PART]s' (each token's
    own, unweighted: reidlab.supervised.trainer.reid_loss records them beside eq. 6's mean)."""
    last = [r for r in records if "ce_global" in r][-1]
    part = [v for k, v in last.items() if k.startswith("ce_part")]
    return {"ce_cls": round(last["ce_global"], 3), "ce_parts": round(sum(part) / len(part), 3),
            "ce_parts_each": [round(v, 3) for v in part]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    synthetic_arguments(p)
    p.add_argument("--part", choices=["supervised", "unsupervised", "both"], default="both")
    p.add_argument("--datasets", nargs="+", default=["synthetic", "synthetic-occluded"])
    p.add_argument("--size", default="tiny", choices=["tiny", "small", "base"])
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--stride", type=int, default=16)
    p.add_argument("--unsup-iters", type=int, default=60)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--variants", nargs="+", default=None, help="rows to run (default all)")
    a = p.parse_args(argv)
    setup_logging()
    out = output_folder(a.output, "aaformer_ablation_")
    rows = []
    warmup = f"train.warmup_epochs={max(1, a.epochs // 12)}"
    if a.part in ("supervised", "both"):
        for dataset in a.datasets:
            for variant, (name, assign) in SUPERVISED.items():
                if a.variants and variant not in a.variants:
                    continue
                tag = f"sup-{dataset}-{variant.split()[0]}-{assign or 'none'}-seed{a.seed}"
                sets = model_sets(name, assign, a) + common_sets(a, dataset, tag, out) + [warmup]
                cfg, records, minutes = train_run("aaformer_market1501", sets, True)
                rows.append(result_row("aaformer_ablation", "supervised", variant, dataset, cfg, records, minutes,
                                       a.seed, PAPER.get(variant, "")))
                if name == "aaformer":
                    rows[-1]["cls_only_mAP"] = cls_only_map(Path(out) / tag)
                    rows[-1].update(token_losses(records))
                drop_checkpoints(Path(out) / tag, a.keep_checkpoints)
                print(json.dumps(rows[-1]), flush=True)
    if a.part in ("unsupervised", "both"):
        for variant, name in UNSUPERVISED.items():
            if a.variants and variant not in a.variants:
                continue
            tag = f"unsup-{variant}-seed{a.seed}"
            sets = model_sets(name, "ot" if name == "aaformer" else None, a) + common_sets(a, "synthetic", tag, out) + [
                "train.num_ids=16", "train.num_instances=4", f"train.iters={a.unsup_iters}",
                f"train.step_size={max(1, round(0.4 * a.epochs))}"]
            cfg, records, minutes = train_run("aaformer_unsup_market1501", sets, a.keep_checkpoints)
            rows.append(result_row("aaformer_ablation", "unsupervised", variant, "synthetic", cfg, records, minutes,
                                   a.seed, PAPER.get(variant, "")))
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows, [("part", "part"), ("dataset", "dataset"), ("variant", "variant"), ("mAP", "mAP"),
                       ("rank-1", "rank1"), ("[CLS]-only mAP", "cls_only_mAP"),
                       ("[CLS] CE", "ce_cls"), ("[PART] CE (mean)", "ce_parts"), ("train img/s", "train_images_per_s"),
                       ("inference img/s", "inference_images_per_s"), ("params (M)", "params_M"),
                       ("paper (mAP / rank-1)", "paper")])
    save_rows(out, "aaformer_ablation", rows)

if __name__ == "__main__":
    main()
