"""The first minutes on a GPU: one prepared command that measures what the project's GPU goals need (docs/scale.md), in
about 9 minutes on one H100 / H200, into one JSON file and one table.

    python -m benchmarks.gpu_check                                  # on the GPU: every part, ~9 minutes
    python -m benchmarks.gpu_check --out $OUT/gpu_check.json        # where the JSON goes
    python -m benchmarks.gpu_check --device cpu --tiny              # the smoke test that make test runs

Each part runs in a process of its own under its own time limit (``--budget PART=SECONDS``), so a slow or
hung part is stopped and the others still run; the rows a part finished before its limit are kept, and
the table says which part ran out of time. The parts:

- ``throughput``: training-step and extraction images/s of every registered model at 256 x 128 under bf16
  autocast (``train.amp``), channels-last for the CNNs, batch 256 for the CNNs and the largest of 256,
  128, 64, ... that fits for the others; ResNet-50 also through ``torch.compile``. With the forward FLOPs
  per image and the fraction of the device's peak (benchmarks.throughput).
- ``pseudo_labels``: ``clustering.pseudo_labels`` (kNN, Jaccard, DBSCAN, as the loop calls it) at N =
  12,936, 32,621, 100,000 and 1,000,000 clustered features of D 2,048: seconds, peak device memory, and
  up to ``--cpu-max`` points the labels against the CPU's (the same partition, and the adjusted Rand index).
- ``ca_jaccard``: the same step with CA-Jaccard (``cluster.distance=ca-jaccard``, its recipe's values; cameras
  as benchmarks.clustering draws them: 6 up to 20,000 points, else 15) at 12,936, 32,621 and 100,000 points,
  with its labels against the CPU's up to ``--cpu-max``.
- ``hdc``: 3C's HDC (clustering.hdc, its recipe's values: outliers, k-means++2, Euler cosine) on one graph of its
  Jaccard distance at 12,936 (750 clusters) and 32,621 points (1,000), seconds and peak device memory, and up to
  ``--cpu-max`` points its labels against the CPU's for the same seed (equal, or the adjusted Rand index).
- ``evaluation``: ``evaluation.metrics.evaluate_features`` at Market-1501 size (3,368 x 19,732, D 2,048)
  and MSMT17 size (11,659 x 82,161, D 256).
- ``unsup_epochs``: three epochs of ``cluster_contrast_resnet50`` (ResNet-50, batch 256, 200 iterations)
  on the ``market``-size synthetic benchmark (generated under the data root on first use, outside the
  part's limit), from random weights (no ImageNet weights can be had here), seconds per phase, and the
  50-epoch run extrapolated: epoch 1 as measured, epochs 2-50 at the mean of epochs 2 and 3, plus the
  recipe's evaluations.
- ``faiss``: whether faiss and a GPU build of it are present, and the kNN time of the path the loop uses
  against the exact torch kNN.

Targets (docs/scale.md): ResNet-50 training >= 3,000 img/s; pseudo-labels < 0.5 s at 12,936 points and
< 3 min at 1,000,000; a 50-epoch ``market``-size unsupervised run < 20 minutes. ``--tiny`` runs every part
at sizes a CPU does in seconds (the targets are then not judged).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROW = "GPU_CHECK_ROW "                      # the prefix of a result line on a part's stdout
PARTS = ("throughput", "pseudo_labels", "ca_jaccard", "hdc", "evaluation", "unsup_epochs", "faiss")
# seconds per part on the GPU (about 9 minutes in all; the 1M-point clustering may take its 3-minute target)
BUDGET_S = {"throughput": 120, "pseudo_labels": 180, "ca_jaccard": 60, "hdc": 60, "evaluation": 30,
            "unsup_epochs": 130, "faiss": 15}
TINY_BUDGET_S = 120                         # each part at --tiny on a CPU: imports, a loaded CI machine
TARGETS = {"resnet50_train_images_per_s": 3000, "pseudo_labels_12936_s": 0.5, "pseudo_labels_1000000_s": 180,
           "unsup_50_epochs_min": 20}
# --tiny: the models at test sizes (tests/test_model_contract.py's), the rest at a few hundred points
TINY_MODEL_ARGS = {"daaf": dict(base="resnet18"), "vit": dict(size="tiny", depth=2),
                   "aaformer": dict(size="tiny", depth=2), "sap": dict(size="tiny", depth=2),
                   "pirt": dict(backbone="resnet18"), "pcb": dict(backbone="resnet18", stripes=4)}


def emit(row: dict) -> None:
    print(ROW + json.dumps(row), flush=True)


# ---- the parts (each runs in its own process: python -m benchmarks.gpu_check --part NAME) --------------

def part_throughput(device, a) -> None:
    import torch

    from benchmarks.throughput import ARGS, PEAKS, measure
    from reidlab.models import MODELS
    peak = None
    if device.type == "cuda":
        peak = next((v for k, v in PEAKS.items() if k in torch.cuda.get_device_name(device)), None)
    height, width, steps = (64, 32, 1) if a.tiny else (256, 128, 10)
    amp = "bf16"                             # as a GPU run's train.amp=auto on an H100 / H200, on any device
    jobs = [(name, False) for name in MODELS.names()] + [("resnet50", True)]
    for name, compiled in jobs:
        if compiled and a.tiny:
            emit({"part": "throughput", "model": name, "compiled": True,
                  "skipped": "--tiny: torch.compile is exercised by tests/test_amp.py (both loops)"})
            continue
        args = TINY_MODEL_ARGS.get(name, {}) if a.tiny else ARGS.get(name, {})
        batch = 4 if a.tiny else 256
        while True:
            try:
                row = measure(name, device, batch, steps, height, width, peak, compile=compiled, args=args, amp=amp,
                              channels_last=True)
                break
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                if batch <= 8:
                    emit({"part": "throughput", "model": name, "error": "out of memory at batch 8"})
                    row = None
                    break
                batch //= 2
        if row is not None:
            emit({"part": "throughput", **row})
        if device.type == "cuda":
            torch.cuda.empty_cache()


def part_pseudo_labels(device, a, distance: str = "jaccard") -> None:
    import numpy as np
    import torch
    from sklearn.metrics import adjusted_rand_score

    from benchmarks.clustering import CA_RECIPE, cameras, clustered_features
    from reidlab.clustering import pseudo_labels
    part = "pseudo_labels" if distance == "jaccard" else "ca_jaccard"
    sizes = [300, 1000] if a.tiny else [12936, 32621, 100000] + ([1000000] if distance == "jaccard" else [])
    k1, eps = (10, 0.6) if a.tiny else (30, 0.4)
    for n in sizes:
        x = clustered_features(n, 64 if a.tiny else 2048, device)
        extra = {} if distance == "jaccard" else dict(cams=cameras(n, device), ca=CA_RECIPE)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        labels, info = pseudo_labels(x, k1=k1, k2=6, eps=eps, min_samples=4, **extra)
        if device.type == "cuda":
            torch.cuda.synchronize()
        row = {"part": part, "N": n, "D": x.shape[1], "device": str(device),
               "seconds": round(time.perf_counter() - start, 3),
               **{k: round(v, 3) if isinstance(v, float) else v for k, v in info.items()}}
        if device.type == "cuda":
            row["peak_device_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
        if n <= a.cpu_max and device.type != "cpu":
            cpu_start = time.perf_counter()
            if extra:
                extra["cams"] = extra["cams"].cpu()
            cpu_labels, _ = pseudo_labels(x.cpu(), k1=k1, k2=6, eps=eps, min_samples=4, **extra)
            row.update(cpu_seconds=round(time.perf_counter() - cpu_start, 2),
                       same_labels_as_cpu=bool(np.array_equal(labels, cpu_labels)),
                       ari_against_cpu=round(float(adjusted_rand_score(cpu_labels, labels)), 6))
        emit(row)
        del x


def part_ca_jaccard(device, a) -> None:
    part_pseudo_labels(device, a, "ca-jaccard")


def part_hdc(device, a) -> None:
    import numpy as np
    import torch
    from sklearn.metrics import adjusted_rand_score

    from benchmarks.clustering import clustered_features
    from reidlab.clustering.hdc import hdc
    from reidlab.clustering.methods import ThreeCJaccardDistance
    from types import SimpleNamespace
    sizes = [(300, 16), (1000, 40)] if a.tiny else [(12936, 750), (32621, 1000)]
    for n, clusters in sizes:
        x = clustered_features(n, 64 if a.tiny else 2048, device)
        graph = ThreeCJaccardDistance(SimpleNamespace(k1=10 if a.tiny else 30, k2=6, knn="auto")).graph(x, None, 2)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        r = hdc(x, graph, clusters, outlier=True, seed=0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        row = {"part": "hdc", "N": n, "clusters": clusters, "device": str(device),
               "seconds": round(time.perf_counter() - start, 3), "iterations": r.iterations}
        if device.type == "cuda":
            row["peak_device_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
        if n <= a.cpu_max and device.type != "cpu":
            cpu = hdc(x.cpu(), tuple(t.cpu() for t in graph), clusters, outlier=True, seed=0)
            row.update(same_labels_as_cpu=bool(np.array_equal(r.labels, cpu.labels)),
                       ari_against_cpu=round(float(adjusted_rand_score(cpu.labels, r.labels)), 6))
        emit(row)
        del x


def part_evaluation(device, a) -> None:
    import torch

    from benchmarks.evaluation import case
    from reidlab.evaluation.metrics import evaluate_features
    cases = ([("tiny", 100, 500, 20, 4, 64, 2.0), ("tiny-2", 200, 1000, 40, 6, 32, 1.5)] if a.tiny else
             [("Market-1501", 3368, 19732, 751, 6, 2048, 4.0), ("MSMT17", 11659, 82161, 3060, 15, 256, 2.5)])
    for name, q, g, ids, cams, dim, noise in cases:
        qf, gf, labels = case(q, g, ids, cams, dim, noise)
        qf, gf = qf.to(device), gf.to(device)
        q_p, g_p, q_c, g_c = labels
        evaluate_features(qf[:10], gf, q_p[:10], g_p, q_c[:10], g_c)           # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        r = evaluate_features(qf, gf, *labels)
        if device.type == "cuda":
            torch.cuda.synchronize()
        emit({"part": "evaluation", "case": name, "size": f"{q} x {g}", "D": dim, "device": str(device),
              "seconds": round(time.perf_counter() - start, 3), "mAP": round(float(r["mAP"]), 4)})


def unsup_overrides(a) -> list[str]:
    sets = ["data.dataset=synthetic", "model.pretrained=none", "train.epochs=3", "test.eval_every=3",
            "test.eval_initial=false", f"device={a.device}", f"data.root={a.data_root}"]
    if a.tiny:                               # 64 x 32: at 32 x 16, bf16 on the CPU meets a oneDNN bug on AMX CPUs
        sets += ["data.synthetic_size=tiny", "data.height=64", "data.width=32", "model.name=resnet18",
                 "train.iters=2", "train.num_ids=4", "train.num_instances=4", "train.bn_images=0",
                 "cluster.k1=10", "cluster.eps=0.6", "test.batch_size=64", "train.amp=bf16"]
    else:
        sets += ["data.synthetic_size=market"]
    return sets


def part_unsup_epochs(device, a) -> None:
    from benchmarks.common import train_run
    from reidlab.runs.config import build_config, parse_override
    recipe = "cluster_contrast_resnet50"
    sets = unsup_overrides(a)
    full = build_config(recipe, [parse_override(s) for s in sets if not s.startswith(("train.epochs",
                                                                                    "test.eval"))])
    out = tempfile.mkdtemp(prefix="gpu_check_unsup_")
    try:
        cfg, records, minutes = train_run(recipe, [*sets, f"output={out}", "name=run"])
    finally:
        shutil.rmtree(out, ignore_errors=True)
    epochs = [r for r in records if r["epoch"] >= 1]
    for r in epochs:
        emit({"part": "unsup_epochs", "epoch": r["epoch"], "clusters": r.get("num_clusters"),
              **{k: r[k] for k in ("extract_s", "cluster_s", "train_s", "eval_s") if k in r},
              "train_images_per_s": round(cfg.train.iters * cfg.train.num_ids * cfg.train.num_instances
                                          / r["train_s"], 1) if r.get("train_s") else None})
    phase = lambda r: r.get("extract_s", 0) + r.get("cluster_s", 0) + r.get("train_s", 0)   # noqa: E731
    steady = sum(phase(r) for r in epochs[1:]) / max(1, len(epochs[1:]))
    evals = [r["eval_s"] for r in epochs if "eval_s" in r]
    eval_s = sum(evals) / max(1, len(evals))
    n_evals = full.train.epochs // full.test.eval_every + int(full.train.epochs % full.test.eval_every != 0)
    n_evals += int(full.test.eval_initial)
    setup_s = minutes * 60 - sum(phase(r) + r.get("eval_s", 0) for r in epochs)
    total = setup_s + phase(epochs[0]) + steady * (full.train.epochs - 1) + n_evals * eval_s
    emit({"part": "unsup_epochs", "summary": True, "recipe": recipe, "images": cfg.data.synthetic_size,
          "setup_s": round(setup_s, 1), "steady_epoch_s": round(steady, 2), "eval_s": round(eval_s, 2),
          f"extrapolated_{full.train.epochs}_epochs_min": round(total / 60, 2),
          "extrapolation": f"setup + epoch 1 + {full.train.epochs - 1} x mean(epochs 2-3) + {n_evals} evaluations"})


def part_faiss(device, a) -> None:
    import torch

    from benchmarks.clustering import clustered_features
    from reidlab.clustering.knn import _faiss, knn, knn_torch
    faiss = _faiss()
    row = {"part": "faiss", "faiss": getattr(faiss, "__version__", "present") if faiss else None,
           "faiss_gpus": int(faiss.get_num_gpus()) if faiss and hasattr(faiss, "get_num_gpus") else 0}
    n, k = (1000, 10) if a.tiny else (100000, 30)
    x = clustered_features(n, 64 if a.tiny else 2048, device)

    def timed(f):
        f()                                         # warm-up (kernels, faiss resources)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        f()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return round(time.perf_counter() - t, 3)

    row.update(N=n, knn_auto_s=timed(lambda: knn(x, k)), knn_torch_s=timed(lambda: knn_torch(x, k)),
               path="faiss" + (" GPU" if row["faiss_gpus"] and device.type == "cuda" else " CPU")
               if faiss else "torch (no faiss)")
    emit(row)


# ---- the parent: one process per part, each under its limit ---------------------------------------------

def run_part(name: str, argv: list[str], budget: float) -> tuple[list[dict], dict]:
    """Run one part in a child process; its rows, and its status (seconds, exit, timed out)."""
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--part", name, *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=Path(__file__).resolve().parent.parent)
    rows: list[dict] = []

    def read():
        for line in proc.stdout:
            if line.startswith(ROW):
                rows.append(json.loads(line[len(ROW):]))
            print(line, end="", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    timed_out = False
    try:
        rc = proc.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
    reader.join(timeout=5)
    return rows, {"part": name, "status": True, "seconds": round(time.perf_counter() - start, 1),
                  "budget_s": budget, "exit": rc, "timed_out": timed_out}


def verdicts(rows: list[dict], tiny: bool) -> list[dict]:
    """The targets against what was measured (not judged at --tiny sizes)."""
    got: dict[str, float] = {}
    for r in rows:
        if r.get("part") == "throughput" and r.get("model") == "resnet50" and "train_images_per_s" in r:
            got["resnet50_train_images_per_s"] = max(got.get("resnet50_train_images_per_s", 0),
                                                     r["train_images_per_s"])
        if r.get("part") == "pseudo_labels" and r.get("N") in (12936, 1000000):
            got[f"pseudo_labels_{r['N']}_s"] = r["seconds"]
        if r.get("part") == "unsup_epochs" and r.get("summary"):
            got["unsup_50_epochs_min"] = next((v for k, v in r.items() if k.startswith("extrapolated_")), None)
    out = []
    for key, target in TARGETS.items():
        value = got.get(key)
        higher = key.endswith("per_s")
        met = None if value is None or tiny else (value >= target if higher else value <= target)
        out.append({"target": key, "wanted": (">= " if higher else "<= ") + str(target), "measured": value,
                    "met": met})
    return out


TABLE_LEAVES_OUT = ("part", "model", "N", "case", "epoch", "benchmark", "device", "precision", "input", "summary")


def table(rows: list[dict], statuses: list[dict], goals: list[dict]) -> str:
    from rich.console import Console
    from rich.table import Table
    t = Table(title="gpu_check", show_lines=False)
    for c in ("part", "item", "numbers"):
        t.add_column(c, overflow="fold")
    for r in rows:
        item = next((f"{k} {r[k]}" for k in ("model", "N", "case", "epoch") if k in r), "summary")
        nums = ", ".join(f"{k} {v}" for k, v in r.items() if k not in TABLE_LEAVES_OUT)
        t.add_row(r["part"], item, nums)
    for s in statuses:
        state = "timed out" if s["timed_out"] else ("ok" if s["exit"] == 0 else f"failed (exit {s['exit']})")
        t.add_row(s["part"], "status", f"{state}, {s['seconds']} s of {s['budget_s']} s")
    for g in goals:
        met = {True: "met", False: "NOT met", None: "not judged"}[g["met"]]
        t.add_row("target", g["target"], f"wanted {g['wanted']}, measured {g['measured']}: {met}")
    buf = io.StringIO()
    Console(file=buf, width=160, color_system=None).print(t)
    return buf.getvalue()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="every part at sizes a CPU does in seconds")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--budget", action="append", default=[], metavar="PART=SECONDS",
                   help="a part's time limit (defaults: " + ", ".join(f"{k} {v}" for k, v in BUDGET_S.items())
                   + f"; {TINY_BUDGET_S} each with --tiny)")
    p.add_argument("--cpu-max", type=int, default=12936, help="largest N whose labels are checked on the CPU")
    p.add_argument("--data-root", default=str(Path(__file__).resolve().parent.parent / "datasets"))
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.part:                                     # a child: one part
        import reidlab  # noqa: F401  (the OpenMP wait policy, before torch)
        from reidlab.runs.run import resolve_device
        globals()[f"part_{a.part}"](resolve_device(a.device), a)
        return 0
    budgets = dict.fromkeys(PARTS, TINY_BUDGET_S) if a.tiny else dict(BUDGET_S)
    for b in a.budget:
        name, _, sec = b.partition("=")
        if name not in PARTS or not sec.replace(".", "", 1).isdigit():
            p.error(f"--budget {b!r}: give PART=SECONDS with PART one of {', '.join(PARTS)}")
        budgets[name] = float(sec)
    a.data_root = str(Path(a.data_root).resolve())
    child = ["--device", a.device, "--cpu-max", str(a.cpu_max), "--data-root", a.data_root]
    child += ["--tiny"] if a.tiny else []
    if "unsup_epochs" in a.parts:                  # the benchmark's images, outside the part's limit
        from reidlab.data.synthetic import ensure_synthetic
        ensure_synthetic(a.data_root, "tiny" if a.tiny else "market")
    rows, statuses = [], []
    for name in a.parts:
        got, status = run_part(name, child, budgets[name])
        rows += got
        statuses.append(status)
    goals = verdicts(rows, a.tiny)
    text = table(rows, statuses, goals)
    print(text)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"device": a.device, "tiny": a.tiny, "rows": rows, "parts": statuses,
                                       "targets": goals}, indent=1))
    print(f"written to {a.out}")
    return 0 if all(s["exit"] == 0 and not s["timed_out"] for s in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
