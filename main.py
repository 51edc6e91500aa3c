"""Command line: parse, build a run, dispatch to a mode. No logic of its own.

  python main.py --mode unsup --dataset market1501
  python main.py --mode unsup --config runs/recipes/demo.yaml
  python main.py --mode supervised --dataset market1501 --config runs/recipes/bot_market1501.yaml
  python main.py --mode evaluate --checkpoint outputs/RUN/best.pt
  python main.py --mode check-data --dataset dukemtmcreid
  python main.py --mode unsup --resume outputs/RUN
"""
from __future__ import annotations

import argparse
import logging
import sys

from errors import ReIDError

DEFAULT_RECIPE = {"unsup": "cluster_contrast_resnet50.yaml", "supervised": "bot_market1501.yaml"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Person re-identification: unsupervised (Cluster Contrast) and "
                                            "supervised (Bag of Tricks, DAAF) training, and evaluation.")
    p.add_argument("--mode", choices=["unsup", "supervised", "evaluate", "check-data"], default="unsup")
    p.add_argument("--config", help="recipe YAML (a path, or a name in runs/recipes/)")
    p.add_argument("--dataset", help="dataset name (data.dataset); a+b trains on both")
    p.add_argument("--test-dataset", help="evaluate on this dataset instead (data.test_dataset)")
    p.add_argument("--data-root", help="folder holding the datasets (data.root; default env REID_DATA, else ./data)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--output", help="folder for run folders (default outputs)")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--seed", type=int)
    p.add_argument("--name", help="run folder name")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key, repeatable")
    p.add_argument("--resume", help="checkpoint or run folder of a run to continue")
    p.add_argument("--checkpoint", help="checkpoint to evaluate (--mode evaluate)")
    return p.parse_args(argv)


def overrides(args) -> list[dict]:
    from runs.config import parse_override
    out = []
    for key, val in (("data.dataset", args.dataset), ("data.test_dataset", args.test_dataset), ("data.root", args.data_root), ("device", args.device),
                     ("output", args.output), ("train.epochs", args.epochs), ("seed", args.seed),
                     ("name", args.name)):
        if val is not None:
            out.append(parse_override(f"{key}={val}"))
    return out + [parse_override(s) for s in args.set]


def run(args) -> int:
    from pathlib import Path

    from runs.checkpoint import load_checkpoint, load_resumable
    from runs.config import build_config
    from runs.run import make_run_dir, setup_logging

    setup_logging()
    if args.mode == "check-data":
        cfg = build_config(args.config, overrides(args))
        from data.check import run_check
        from runs.progress import console
        reports = run_check(cfg.data.dataset, cfg.data_root, cfg.data.workers, console,
                            synthetic_size=cfg.data.synthetic_size, seed=cfg.data.synthetic_seed)
        return 0 if all(r.ok for r in reports) else 1
    if args.mode == "evaluate":
        if not args.checkpoint:
            raise ReIDError("--mode evaluate needs --checkpoint PATH (a .pt file or a run folder)")
        ckpt = load_checkpoint(args.checkpoint, "best.pt")
        cfg = build_config(args.config, overrides(args), base=ckpt["config"])
        from unsup.evaluate import evaluate_checkpoint
        evaluate_checkpoint(cfg, ckpt)
        return 0
    if args.resume:
        ckpt = load_resumable(args.resume)
        cfg = build_config(args.config, overrides(args), base=ckpt["config"])
        run_dir = Path(ckpt["path"]).parent
    else:
        ckpt = None
        cfg = build_config(args.config or DEFAULT_RECIPE[args.mode], overrides(args))
        cfg.mode = args.mode
        run_dir = make_run_dir(cfg)
    setup_logging(run_dir)
    if cfg.mode == "supervised":     # a resumed run keeps its own mode
        from supervised.trainer import run_supervised
        run_supervised(cfg, run_dir, resume=ckpt)
    else:
        from unsup.trainer import run_unsup
        run_unsup(cfg, run_dir, resume=ckpt)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except ReIDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logging.getLogger("reid").warning("interrupted; continue with --resume RUN_FOLDER")
        return 130


if __name__ == "__main__":
    sys.exit(main())
