"""Command line: parse, build a run, dispatch to a mode. No logic of its own.

  python main.py --mode unsup --dataset market1501
  python main.py --mode unsup --config runs/recipes/demo.yaml
  python main.py --mode supervised --dataset market1501 --config runs/recipes/bot_market1501.yaml
  python main.py --mode evaluate --checkpoint outputs/RUN/best.pt
  python main.py --mode check-data --dataset dukemtmcreid
  python main.py --mode teachers --dataset market1501     # keypoints, masks, part parsing
  python main.py --resume outputs/RUN
  python main.py --list                      # recipes, datasets, models, attention blocks
  python main.py --config demo --print-config
  python main.py --mode extract --checkpoint outputs/RUN --images DIR --output gallery.npz
  python main.py --mode search --checkpoint outputs/RUN --query IMG_OR_DIR --gallery DIR_OR_NPZ --topk 10
  python main.py --mode explain --checkpoint outputs/RUN --images DIR --output pictures/
  python main.py --mode export --checkpoint outputs/RUN --format onnx
  python main.py --mode cluster-sweep --checkpoint outputs/RUN --eps 0.3:0.6:0.05 --k1 20,30
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from reidlab.errors import ReIDError

DEFAULT_RECIPE = {"unsup": "cluster_contrast_resnet50.yaml", "supervised": "bot_market1501.yaml"}
MODES = ["unsup", "supervised", "evaluate", "check-data", "teachers", "extract", "search", "explain", "export",
         "cluster-sweep"]
USE_MODES = ("extract", "search", "explain", "export", "cluster-sweep")
log = logging.getLogger("reidlab")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Person re-identification: unsupervised (Cluster Contrast, MLA) and supervised (Bag of Tricks, "
                    "DAAF, AAformer, SAP, Pirt) training, teacher annotations, evaluation, dataset checks and the "
                    "use of a trained model (extract, search, explain, export).",
        epilog="python main.py --list shows the recipes, datasets, models and attention blocks; "
               "--print-config shows the resolved config of a command line without running it.")
    p.add_argument("--mode", choices=MODES, help="what to do (default unsup; a resumed run keeps its own)")
    p.add_argument("--config", help="recipe YAML (a path, or a name in runs/recipes/)")
    p.add_argument("--dataset", help="dataset name (data.dataset); a+b trains on both")
    p.add_argument("--test-dataset", help="evaluate on this dataset instead (data.test_dataset)")
    p.add_argument("--data-root", help="folder holding the datasets (data.root; default env REID_DATA, "
                                       "else ./datasets)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--output", help="folder for run folders (default outputs); with extract: the .npz, search: "
                                    "the rank-list PNG, explain: the pictures' folder, export: the .onnx file, "
                                    "cluster-sweep: the plot (and its .json beside it)")
    p.add_argument("--epochs", type=int, help="train.epochs")
    p.add_argument("--seed", type=int)
    p.add_argument("--name", help="run folder name (an existing run's name is an error: use --resume)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config key, repeatable")
    p.add_argument("--resume", help="run folder (or its last.pt) of a run to continue")
    p.add_argument("--checkpoint", help="checkpoint (or run folder: its best.pt) to evaluate or use")
    p.add_argument("--images", help="extract / explain: an image or a folder of images (recursive)")
    p.add_argument("--query", help="search: a query image or folder")
    p.add_argument("--gallery", help="search: a gallery folder, or a .npz of --mode extract")
    p.add_argument("--topk", type=int, default=10, help="search: how many gallery images per query")
    p.add_argument("--format", default="onnx", help="export: the format (onnx)")
    p.add_argument("--eps", help="cluster-sweep: the eps to try, a comma list or start:stop:step "
                                 "(default 0.2:0.7:0.05)")
    p.add_argument("--k1", help="cluster-sweep: the k1 to try, a comma list (default the config's cluster.k1)")
    p.add_argument("--min-samples", help="cluster-sweep: the min_samples to try (default the config's)")
    p.add_argument("--clusters", help="cluster-sweep: HDC's numbers of clusters to try instead (3C's clustering), a "
                                      "comma list or start:stop:step, e.g. 150:300:25")
    p.add_argument("--quiet", action="store_true", help="the console shows warnings and errors only, and no "
                                                        "progress (a run's log.txt still gets everything)")
    p.add_argument("--list", action="store_true", help="list recipes, datasets, models and attention blocks")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--explain", action="store_true", help="with --print-config: each key's meaning and allowed "
                                                          "values beside it (docs/config.md)")
    return p.parse_args(argv)


def overrides(args) -> list[dict]:
    from reidlab.runs.config import parse_override
    out = []
    output = None if args.mode in USE_MODES else args.output     # there --output names the result instead
    for key, val in (("data.dataset", args.dataset), ("data.test_dataset", args.test_dataset),
                     ("data.root", args.data_root), ("device", args.device),
                     ("output", output), ("train.epochs", args.epochs), ("seed", args.seed),
                     ("name", args.name)):
        if val is not None:
            out.append(parse_override(f"{key}={val}"))
    return out + [parse_override(s) for s in args.set]


def print_config(cfg, explain: bool = False) -> int:
    """The resolved config as YAML; ``explain``: each key's meaning and allowed values beside it
    (runs/config_doc.py, docs/config.md)."""
    if explain:
        from reidlab.runs.config_doc import explain as explained
        print(explained(cfg), end="")
        return 0
    import yaml
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


def check_data(args) -> int:
    from reidlab.data.check import run_check
    from reidlab.runs.config import build_config
    from reidlab.progress import console
    cfg = build_config(args.config, overrides(args))
    if args.print_config:
        return print_config(cfg, args.explain)
    d = cfg.data
    reports = run_check(d.dataset, cfg.data_root, d.workers, console, synthetic_size=d.synthetic_size,
                        seed=d.synthetic_seed, hard=tuple(d.synthetic_hard), camera_from=d.camera_from,
                        camera_pattern=d.camera_pattern, labels_csv=d.labels_csv)
    return 0 if all(r.ok for r in reports) else 1


def teachers(args) -> int:
    """``--mode teachers``: keypoints, masks and part parsing of a dataset's images (data/teachers.py)."""
    from reidlab.data import dataset_from_config
    from reidlab.data.teachers import run_teachers
    from reidlab.runs.config import build_config
    from reidlab.runs.run import resolve_device
    cfg = build_config(args.config, overrides(args))
    if args.print_config:
        return print_config(cfg, args.explain)
    device = resolve_device(cfg.device)
    run_teachers(dataset_from_config(cfg, cfg.data.dataset), cfg.teacher, device)
    return 0


def evaluate(args) -> int:
    from reidlab.runs.checkpoint import load_checkpoint
    from reidlab.runs.config import build_config
    if not args.checkpoint:
        raise ReIDError("--mode evaluate needs --checkpoint PATH (a .pt file or a run folder)")
    ckpt = load_checkpoint(args.checkpoint, "best.pt")
    cfg = build_config(args.config, overrides(args), base=ckpt["config"])
    if args.print_config:
        return print_config(cfg, args.explain)
    from reidlab.use.evaluate import evaluate_checkpoint
    evaluate_checkpoint(cfg, ckpt)
    return 0


def check_use_output(args) -> None:
    """Before any work: the use mode's ``--output`` can receive what it writes (runs/files.py)."""
    from reidlab.data.files import check_file_output, check_folder_output, figure_suffixes
    if args.mode == "extract":
        check_file_output(args.output, "the features file", [".npz"], "gallery.npz")
    elif args.mode == "search":
        check_file_output(args.output or "search.png", "the rank-list picture", figure_suffixes(), "search.png")
    elif args.mode == "explain":
        check_folder_output(args.output, "the pictures")
    elif args.mode == "cluster-sweep":
        plot = args.output or "cluster_sweep.png"
        check_file_output(plot, "the sweep's plot", figure_suffixes(), "cluster_sweep.png")
        check_file_output(Path(plot).with_suffix(".json"), "the sweep's table (beside the plot)", [".json"],
                          "cluster_sweep.json")
    elif args.output:
        check_file_output(args.output, "the ONNX model", [".onnx"], "model.onnx")


def use(args) -> int:
    """The modes that use a trained model: extract, search, explain, export."""
    need = {"extract": ("images", "output"), "search": ("query", "gallery"), "explain": ("images", "output"),
            "export": (), "cluster-sweep": ()}[args.mode]
    empty = [f"--{n}" for n in ("checkpoint", *need) if getattr(args, n) is not None and not getattr(args, n).strip()]
    if empty:
        raise ReIDError(f"{empty[0]} '': an empty path; give an image file or a folder (or a checkpoint for "
                        f"--checkpoint)")
    missing = [f"--{n}" for n in ("checkpoint", *need) if not getattr(args, n)]
    if missing:
        raise ReIDError(f"--mode {args.mode} needs {' and '.join(missing)} (python main.py --help)")
    if args.topk < 1:
        raise ReIDError(f"--topk {args.topk}: give at least 1")
    if args.mode == "cluster-sweep":
        from reidlab.use.cluster_sweep import DEFAULT_EPS, parse_grid
        grid = (parse_grid(args.eps or DEFAULT_EPS, "--eps", float, 1e-6, 1.0),
                parse_grid(args.k1, "--k1", int, 1), parse_grid(args.min_samples, "--min-samples", int, 1),
                parse_grid(args.clusters, "--clusters", int, 2) if args.clusters is not None else None)
    check_use_output(args)
    from reidlab.use.trained import load_trained
    model, cfg, ckpt, device = load_trained(args.checkpoint, overrides(args), images_only=args.mode != "explain")
    if args.print_config:
        return print_config(cfg, args.explain)
    if args.mode == "extract":
        from reidlab.use.extract import run_extract
        run_extract(model, cfg, ckpt, device, args.images, args.output)
    elif args.mode == "search":
        from reidlab.use.search import run_search
        run_search(model, cfg, ckpt, device, args.query, args.gallery, args.topk, args.output or "search.png")
    elif args.mode == "explain":
        from reidlab.use.explain import run_explain
        run_explain(model, cfg, ckpt, device, args.images, args.output)
    elif args.mode == "cluster-sweep":
        from reidlab.progress import console
        from reidlab.use.cluster_sweep import run_cluster_sweep
        c = cfg.cluster
        run_cluster_sweep(model, cfg, ckpt, device, grid[0], grid[1] or [c.k1], grid[2] or [c.min_samples],
                          args.output or "cluster_sweep.png", console, grid[3])
    else:
        from reidlab.use.export import run_export
        run_export(model, cfg, ckpt, device, args.format, args.output)
    return 0


def train(args) -> int:
    """A new run (``--mode unsup|supervised``) or a resumed one (``--resume``); under torchrun, every rank
    runs this, rank 0 alone owns the run folder (runs/dist.py)."""
    from reidlab.runs import dist
    from reidlab.runs.checkpoint import load_resumable
    from reidlab.runs.config import build_config
    from reidlab.runs.loop import check_run_inputs
    from reidlab.runs.run import MetricsLog, make_run_dir, mark_failed, open_run_dir, release_run_dir, setup_logging
    if args.resume:
        ckpt = load_resumable(args.resume)
        MetricsLog(Path(ckpt["path"]).parent / "metrics.jsonl").read()     # damaged: said before the folder opens
        cfg = build_config(args.config, overrides(args), base=ckpt["config"])
    else:                                    # --mode, else the recipe's own mode
        recipe = args.config or DEFAULT_RECIPE[args.mode or "unsup"]
        cfg = build_config(recipe, overrides(args) + ([{"mode": args.mode}] if args.mode else []))
    if args.print_config:
        return print_config(cfg, args.explain)
    if args.resume and not ckpt.get("fresh") and ckpt.get("epoch", 0) >= cfg.train.epochs:
        print(f"{Path(ckpt['path']).parent}: last.pt is at epoch {ckpt['epoch']} and the run ends at epoch "
              f"{cfg.train.epochs}: nothing to train. To train further give more epochs, e.g. --resume "
              f"{args.resume} --epochs {ckpt['epoch'] + 10}; to recompute its metrics, --mode evaluate "
              f"--checkpoint {Path(ckpt['path']).parent}")
        return 0
    dist.init(cfg.device)
    if dist.world() > 1 and cfg.train.num_ids % dist.world():
        raise ReIDError(f"train.num_ids={cfg.train.num_ids} does not split into {dist.world()} processes: each "
                        f"takes whole identities of every P x K batch; give a multiple of {dist.world()}")
    batch = cfg.train.num_ids * cfg.train.num_instances
    share, bn = batch // dist.world(), cfg.train.bn_images
    if (0 < bn < share and share % bn) or share < bn < batch:
        raise ReIDError(f"train.bn_images={bn} does not divide each of the {dist.world()} processes' {share} images "
                        f"of a batch: give a divisor of {share} that is a multiple of train.num_instances="
                        f"{cfg.train.num_instances} (or {batch}: each process's whole share)")
    main_rank = dist.is_main()
    if not main_rank:                        # rank 0 prints; the others only warn
        import rich

        from reidlab.progress import console
        setup_logging(level=logging.WARNING)
        rich.get_console().quiet = console.quiet = True
    ds = check_run_inputs(cfg, new_run=not args.resume and main_rank,
                          explicit_name=args.name is not None)          # before any folder
    if args.resume and not ckpt.get("fresh"):    # a refused resume leaves its run as it was
        from reidlab.runs.loop import check_resume
        from reidlab.supervised.trainer import extra_parameters
        check_resume(cfg, ckpt, ds, extra_parameters if cfg.mode == "supervised" else None)
    run_dir, resume = None, None
    if main_rank:
        if args.resume:
            run_dir = open_run_dir(Path(ckpt["path"]).parent)
        else:
            run_dir = make_run_dir(cfg, explicit_name=args.name is not None)
        setup_logging(run_dir)
    run_dir = Path(dist.broadcast_object(str(run_dir) if run_dir else None))
    if args.resume:
        resume = None if ckpt.get("fresh") else ckpt
    if args.resume and args.mode and args.mode != cfg.mode:
        log.warning("%s is a %s run: it resumes as one (--mode %s does not apply)", run_dir, cfg.mode, args.mode)
    if cfg.mode == "supervised":
        from reidlab.supervised.trainer import run_supervised as trainer
    else:
        from reidlab.unsup.trainer import run_unsup as trainer
    from reidlab.runs.determinism import kept
    try:
        with kept():                         # threads and kernels as they were, after the run (notebooks, the API)
            trainer(cfg, run_dir, resume=resume, ds=ds)
    except KeyboardInterrupt:
        log.warning("interrupted; continue with --resume %s", run_dir)
        raise
    except BaseException as e:
        message = str(e) if isinstance(e, ReIDError) else f"{type(e).__name__}: {e}"
        log.error("the run failed: %s", message, exc_info=not isinstance(e, ReIDError))
        if main_rank:
            mark_failed(run_dir, message)
        raise
    finally:
        if main_rank:
            release_run_dir(run_dir)
    dist.finish()
    return 0


def run(args) -> int:
    from reidlab.runs.run import setup_logging
    if args.explain and not args.print_config:
        raise ReIDError("--explain goes with --print-config: python main.py --config NAME --print-config --explain")
    setup_logging(quiet=args.quiet)
    if args.list:
        from reidlab.runs.catalogue import print_catalogue
        print_catalogue()
        return 0
    if args.mode == "check-data":
        return check_data(args)
    if args.mode == "teachers":
        return teachers(args)
    if args.mode == "evaluate":
        return evaluate(args)
    if args.mode in USE_MODES:
        return use(args)
    return train(args)


PATH_FLAGS = ("output", "resume", "checkpoint", "images", "query", "gallery", "config", "data_root")


def main(argv=None) -> int:
    args = parse_args(argv)
    for flag in PATH_FLAGS:                  # '~/runs' quoted in a shell reaches us unexpanded: expand it here
        value = getattr(args, flag, None)
        if isinstance(value, str) and value.startswith("~"):
            setattr(args, flag, os.path.expanduser(value))
    try:
        return run(args)
    except ReIDError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
