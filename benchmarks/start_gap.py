"""How far each start is from the benchmark before any fine-tuning: its mAP on synthetic-small's query and gallery.

    python -m benchmarks.start_gap                                  # every start that exists, both backbones
    python -m benchmarks.start_gap --starts none pretrain_fractal_resnet18 --models resnet18

The papers start from ImageNet weights, whose domain is far from Market-1501's; a start learnt on the benchmark's
own look (pretrain_resnet18 / pretrain_vit_tiny: synthetic persons) is not that, one learnt on fractals
(pretrain_fractal_*) is meant to be. Each start is loaded as the ablation tables load it (model.pretrained=FILE:
the backbone only; the BN neck at its initialisation, the identity classifier absent) into the students the
tables train: ResNet-18 at 64 x 32 with last stride 1 (bot_ladder, cajaccard_regime, mla_table6, daaf_table4)
and the ViT-tiny of depth 4 at 128 x 64 (aaformer_tables, sap_table3), then evaluated as a run's epoch 0 is.
"none" is the random start at the seed (1 unless --seed). A start whose file does not exist is said and left out.
One JSON line per (model, start), then a markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {       # the recipe each student's tables start from, and the student at the tables' scale
    "resnet18": ("bot_market1501", ["model.name=resnet18", "data.height=64", "data.width=32"]),
    "vit_tiny": ("vit_base_market1501", ["model.args.size=tiny", "model.args.depth=4", "model.args.stride=16",
                                         "data.height=128", "data.width=64"]),
}
STARTS = {"resnet18": ["none", "pretrain_resnet18", "pretrain_fractal_resnet18"],
          "vit_tiny": ["none", "pretrain_vit_tiny", "pretrain_fractal_vit_tiny"]}


def start_path(start: str) -> str | None:
    if start == "none":
        return "none"
    for cand in (Path(start), ROOT / "outputs" / start / "last.pt"):
        if cand.is_file():
            return str(cand)
    return None


def evaluate_start(model_name: str, weights: str, seed: int, data_sets: list[str]) -> dict:
    import torch

    from reidlab.data.datasets import dataset_from_config
    from reidlab.data.store import load_dataset_images
    from reidlab.evaluation import evaluate_run
    from reidlab.models import model_from_config
    from reidlab.runs.config import build_config, parse_override
    from reidlab.runs.run import seed_everything
    recipe, student = MODELS[model_name]
    cfg = build_config(recipe, [parse_override(s) for s in [
        "data.dataset=synthetic", "data.synthetic_size=small", "data.workers=2", "device=cpu",
        f"model.pretrained={weights}", f"seed={seed}", *student, *data_sets]])
    ds = dataset_from_config(cfg)
    _, query, gallery = load_dataset_images(ds, cfg.data.height, cfg.data.width, cfg.data.workers, "cpu",
                                            resize=cfg.data.resize)
    seed_everything(seed)
    model = model_from_config(cfg, torch.device("cpu"), num_classes=0)
    r = evaluate_run(model, query, gallery, ds, cfg, torch.device("cpu"))
    return {"mAP": round(r["mAP"], 4), "rank1": round(r["rank1"], 4)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    p.add_argument("--starts", nargs="+", help="weight files or pretraining runs (default: the shipped ones)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--set", dest="sets", action="append", default=[], help="another tree, e.g. "
                   "data.synthetic_hard=[camera]")
    a = p.parse_args(argv)
    rows = []
    for model in a.models:
        for start in a.starts or STARTS[model]:
            weights = start_path(start)
            if weights is None:
                print(f"{model} from {start}: no weight file (outputs/{start}/last.pt); make it with python main.py "
                      f"--config {start}", flush=True)
                continue
            r = {"model": model, "start": start, **evaluate_start(model, weights, a.seed, a.sets)}
            print(json.dumps(r), flush=True)
            rows.append(r)
    print("\n| student | start | mAP | rank-1 |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['model']} | {r['start']} | {100 * r['mAP']:.1f} | {100 * r['rank1']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
