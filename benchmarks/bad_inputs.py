"""Probes a user's mistakes: every bad input must stop with exit 2 and a one-paragraph message (no
traceback), before any minute is spent, and change no existing run folder; every legal one exits 0.

    python -m benchmarks.bad_inputs            # prints one row per probe, then the count
    python -m benchmarks.bad_inputs --only resume   # the probes whose class or words contain "resume"

Each probe runs ``python main.py ...`` in a fresh process, with its own output folder and data root in
a temporary folder (nothing is written elsewhere). Before the probes, two tiny runs are trained there
(unsupervised and supervised) and copies of them are damaged in the ways the probes need; every file
under the temporary folder's ``runs/`` is hashed before and after each probe, and a probe that changes
one fails, as does a bad input that makes a new run folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def probes(tmp: Path) -> list[tuple[str, list[str], int]]:
    """The first round's probes: (what, arguments, expected exit code)."""
    (tmp / "afile").write_text("x\n")
    (tmp / "text.pt").write_text("not a checkpoint\n")
    (tmp / "empty.pt").write_bytes(b"")
    (tmp / "bad.yaml").write_text("train: [unclosed\n")
    (tmp / "list.yaml").write_text("- a\n- b\n")
    (tmp / "out" / "busy").mkdir(parents=True)
    (tmp / "out" / "busy" / "config.yaml").write_text("mode: unsup\n")
    (tmp / "out" / "taken").write_text("x\n")
    (tmp / "emptyrun").mkdir()
    unwritable = "/sys" if os.geteuid() == 0 else str(tmp / "ro")
    if os.geteuid() != 0:
        (tmp / "ro").mkdir()
        (tmp / "ro").chmod(0o555)
    base = ["--config", "demo", "--output", str(tmp / "out"), "--data-root", str(tmp / "data")]
    bad = [
        ("DBSCAN eps outside (0, 1]", ["--set", "cluster.eps=1.5"]),
        ("unknown kNN backend", ["--set", "cluster.knn=fast"]),
        ("unknown memory update", ["--set", "memory.update=soft"]),
        ("evaluation every 0 epochs", ["--set", "test.eval_every=0"]),
        ("0 images per identity", ["--set", "train.num_instances=0"]),
        ("negative seed", ["--seed", "-1"]),
        ("negative epochs", ["--epochs", "-1"]),
        ("negative iterations", ["--set", "train.iters=-3"]),
        ("image height 0", ["--set", "data.height=0"]),
        ("unknown synthetic size", ["--set", "data.synthetic_size=huge"]),
        ("negative synthetic seed", ["--set", "data.synthetic_seed=-5"]),
        ("attention path that is not a module", ["--set", "model.attention=builtins:dict"]),
        ("attention path that does not import", ["--set", "model.attention=nowhere.module:Block"]),
        ("misspelt attention block", ["--set", "model.attention=mlaa"]),
        ("misspelt model", ["--set", "model.name=resnet5"]),
        ("misspelt dataset", ["--dataset", "market1502"]),
        ("dataset folder missing", ["--dataset", "market1501"]),
        ("misspelt config key", ["--set", "cluster.epss=0.5"]),
        ("a word for an integer", ["--set", "train.epochs=x"]),
        ("a word for a boolean", ["--set", "test.flip=maybe"]),
        ("a CUDA device on a machine without it", ["--device", "cuda:7"]),
        ("not a device", ["--device", "gpu"]),
        ("--output is a file", ["--output", str(tmp / "afile")]),
        ("--output cannot be written", ["--output", unwritable]),
        ("--name is a file", ["--name", "taken"]),
        ("--name of another run", ["--name", "busy"]),
        ("synthetic data root cannot be written", ["--data-root", unwritable + "/data"]),
        ("recipe file missing", ["--config", "nonexistent.yaml"]),
        ("recipe is not valid YAML", ["--config", str(tmp / "bad.yaml")]),
        ("recipe is not a mapping", ["--config", str(tmp / "list.yaml")]),
        ("evaluate without a checkpoint", ["--mode", "evaluate"]),
        ("checkpoint is a text file", ["--mode", "evaluate", "--checkpoint", str(tmp / "text.pt")]),
        ("checkpoint is empty", ["--mode", "evaluate", "--checkpoint", str(tmp / "empty.pt")]),
        ("resume a folder that does not exist", ["--resume", str(tmp / "nowhere")]),
        ("resume a folder that holds no run", ["--resume", str(tmp / "emptyrun")]),
        ("the old model.daaf key", ["--set", "model.daaf.hab=false"]),
        ("a model argument the model does not take", ["--set", "model.args.hab=true"]),
        ("unknown head", ["--set", "model.head=mlp"]),
        ("weights file missing", ["--set", "model.pretrained=/nonexistent/weights.pth"]),
        ("unknown pooling", ["--set", "model.pooling=median"]),
        ("unknown optimiser", ["--set", "train.optimizer=rmsprop"]),
        ("unknown sampler", ["--set", "train.sampler=random"]),
        ("label smoothing above 1", ["--set", "loss.label_smoothing=1.5"]),
        ("a run name with a slash", ["--set", "name=a/b"]),
        ("a learning-rate step at epoch 0", ["--set", "train.steps=[0]"]),
        ("last stride 3", ["--set", "model.last_stride=3"]),
        ("training on a test-only dataset", ["--dataset", "occluded_reid"]),
        ("--set without '='", ["--set", "train.lr"]),
        ("an attention block on a ViT", ["--set", "model.name=vit", "--set", "model.attention=mla"]),
        ("a ViT size that does not exist", ["--set", "model.name=vit", "--set", "model.args.size=huge"]),
        ("a negative memory budget", ["--set", "data.memory_budget=-1"]),
        ("extract without --output", ["--mode", "extract", "--checkpoint", str(tmp / "text.pt"), "--images", str(tmp)]),
        (
            "search with a non-checkpoint",
            [
                "--mode",
                "search",
                "--checkpoint",
                str(tmp / "text.pt"),
                "--query",
                str(tmp / "afile"),
                "--gallery",
                str(tmp),
            ],
        ),
        (
            "export to an unknown format",
            ["--mode", "export", "--checkpoint", str(tmp / "empty.pt"), "--format", "tflite"],
        ),
        ("teachers: a split that does not exist", ["--mode", "teachers", "--set", "teacher.splits=[test]"]),
        (
            "teachers: a weights file missing",
            [
                "--mode",
                "teachers",
                "--dataset",
                "synthetic",
                "--set",
                "data.synthetic_size=tiny",
                "--set",
                "teacher.pose_weights=/nonexistent/kp.pth",
            ],
        ),
    ]
    legal = [
        ("--help", ["--help"]),
        ("--list", ["--list"]),
        ("--print-config of the demo", ["--config", "demo", "--print-config"]),
        ("--print-config of a supervised recipe", ["--config", "daaf_bot_market1501", "--print-config"]),
        (
            "check-data on the tiny synthetic benchmark",
            [
                "--mode",
                "check-data",
                "--dataset",
                "synthetic",
                "--set",
                "data.synthetic_size=tiny",
                "--data-root",
                str(tmp / "data"),
            ],
        ),
    ]
    return [(w, base + a, 2) for w, a in bad] + [(w, a, 0) for w, a in legal]


TINY = [
    "--set",
    "data.synthetic_size=tiny",
    "--set",
    "data.height=32",
    "--set",
    "data.width=16",
    "--set",
    "train.iters=1",
    "--set",
    "train.num_ids=4",
    "--set",
    "train.num_instances=4",
    "--set",
    "cluster.k1=10",
    "--set",
    "cluster.eps=0.6",
    "--set",
    "test.batch_size=64",
    "--device",
    "cpu",
]
TINY_SUP = [
    *TINY,
    "--config",
    "bot_market1501",
    "--dataset",
    "synthetic",
    "--set",
    "model.name=resnet18",
    "--set",
    "model.pretrained=none",
    "--set",
    "train.warmup_epochs=1",
]


def main_py(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    if check and p.returncode:
        raise RuntimeError(f"setup: main.py {' '.join(args)} failed:\n{p.stderr[-3000:]}")
    return p


def setup(tmp: Path) -> dict[str, Path]:
    """Two tiny trained runs under ``tmp/runs``, copies of them damaged as the probes need, and odd files."""
    import shutil

    import numpy as np
    import torch
    from PIL import Image

    runs, data = tmp / "runs", tmp / "data"
    main_py(
        "--config", "demo", *TINY, "--epochs", "1", "--data-root", str(data), "--output", str(runs), "--name", "unsup"
    )
    main_py(*TINY_SUP, "--epochs", "1", "--data-root", str(data), "--output", str(runs), "--name", "sup")
    unsup, sup = runs / "unsup", runs / "sup"
    shutil.copytree(unsup, runs / "mixed")  # another run's last.pt in this run's folder
    shutil.copy(sup / "last.pt", runs / "mixed" / "last.pt")
    shutil.copytree(unsup, runs / "damaged")  # a damaged line before the last
    lines = (unsup / "metrics.jsonl").read_text().splitlines()
    (runs / "damaged" / "metrics.jsonl").write_text("\n".join([lines[0], "{not json", *lines[1:]]) + "\n")
    shutil.copytree(unsup, runs / "badconfig")  # config.yaml that is not YAML, no last.pt
    (runs / "badconfig" / "last.pt").unlink()
    (runs / "badconfig" / "config.yaml").write_text("mode: [unclosed\n")
    f = tmp / "files"
    f.mkdir()
    (f / "afile").write_text("x\n")
    (f / "adir").mkdir()
    os.symlink(f / "loop", f / "loop")
    os.symlink(f / "nowhere-target", f / "dangling")
    torch.save({"model": {}, "config": "x"}, f / "keys_only.pt")
    torch.save({"model": {"w": 1}, "config": {}}, f / "not_tensors.pt")
    torch.save({"w": torch.zeros(2)}, f / "state_dict.pt")
    torch.save([1, 2, 3], f / "a_list.pt")
    (f / "truncated.pt").write_bytes((unsup / "best.pt").read_bytes()[:5000])
    other = torch.load(unsup / "best.pt", weights_only=True)
    other["model"] = {k: v * 1.01 if v.is_floating_point() else v for k, v in other["model"].items()}
    torch.save(other, f / "other_model.pt")
    query = data / "synthetic-tiny" / "query"
    main_py(
        "--mode",
        "extract",
        "--checkpoint",
        str(f / "other_model.pt"),
        "--images",
        str(query),
        "--output",
        str(f / "other_gallery.npz"),
    )
    (f / "text.npz").write_text("features,paths\n1,2\n")
    np.savez(f / "no_features.npz", paths=np.array(["a.jpg"]))
    (f / "notes.txt").write_text("not an image")
    (f / "imgs").mkdir()
    Image.new("RGB", (16, 32)).save(f / "imgs" / "one.png")
    (f / "empty_dir").mkdir()
    recipes = {
        "cycle_a.yaml": "_base_: cycle_b.yaml\n",
        "cycle_b.yaml": "_base_: cycle_a.yaml\n",
        "self.yaml": "_base_: self.yaml\n",
        "base_list.yaml": "_base_: [demo, bot_market1501]\n",
        "base_number.yaml": "_base_: 3\n",
        "base_missing.yaml": "_base_: nowhere.yaml\n",
        "dup.yaml": "train:\n  lr: 0.1\ntrain:\n  epochs: 3\n",
        "unknown_key.yaml": "trian:\n  lr: 0.1\n",
        "wrong_type.yaml": "train: 3\n",
        "nan.yaml": "train:\n  lr: .nan\n",
    }
    for name, text in recipes.items():
        (f / name).write_text(text)
    (f / "latin1.yaml").write_bytes("# Réglages\ntrain:\n  lr: 0.1\n".encode("latin-1"))
    (f / "recipe_dir.yaml").mkdir()
    bomb = tmp / "bombdata"  # the tiny benchmark with one decompression bomb
    shutil.copytree(data / "synthetic-tiny", bomb / "synthetic-tiny")
    victim = next(
        q for q in sorted((bomb / "synthetic-tiny" / "bounding_box_test").glob("*.jpg")) if not q.name.startswith("-1")
    )
    Image.MAX_IMAGE_PIXELS = None
    Image.new("1", (16000, 16000)).save(victim.with_suffix(".png"))
    victim.unlink()
    Image.MAX_IMAGE_PIXELS = 89_478_485
    half = tmp / "halfdata" / "market1501"  # Market names that half-match
    for split in ("bounding_box_train", "bounding_box_test", "query"):
        (half / split).mkdir(parents=True)
        for name in (
            "0002_c1s1_000451_03.jpg",
            "2020-01-05_c1_cam.jpg",
            "0003_c0s1_01.jpg",
            "x0004_c2.jpg",
            "0005_c2s1_000001_00.jpg",
        ):
            Image.new("RGB", (8, 16), (len(name) * 9 % 255, 40, 90)).save(half / split / name)
    return {"unsup": unsup, "sup": sup, "files": f, "data": data}


def probes_round_two(tmp: Path, p: dict[str, Path]) -> list[tuple[str, str, list[str], int]]:
    """(class, what, arguments, expected exit code) of the second round (benchmarks docstring)."""
    f, data, unsup, sup, runs = p["files"], str(p["data"]), str(p["unsup"]), str(p["sup"]), tmp / "runs"
    train = ["--config", "demo", *TINY, "--epochs", "1", "--data-root", data, "--output", str(tmp / "out")]
    query = str(p["data"] / "synthetic-tiny" / "query")
    one = str(f / "imgs" / "one.png")
    extract = ["--mode", "extract", "--checkpoint", unsup, "--images", query, "--output"]
    search = ["--mode", "search", "--checkpoint", unsup, "--query", one, "--gallery", query, "--output"]
    explain = ["--mode", "explain", "--checkpoint", unsup, "--images", one, "--output"]
    export = ["--mode", "export", "--checkpoint", unsup, "--output"]
    config = [
        ("lr NaN", ["--set", "train.lr=nan"]),
        ("lr inf", ["--set", "train.lr=inf"]),
        ("lr that overflows to inf", ["--set", "train.lr=1e400"]),
        ("memory temperature inf", ["--set", "memory.temp=inf"]),
        ("memory temperature 0", ["--set", "memory.temp=0"]),
        ("memory temperature 1e-9", ["--set", "memory.temp=1e-9"]),
        ("eps 1", ["--set", "cluster.eps=1"]),
        ("eps 0", ["--set", "cluster.eps=0"]),
        ("eps NaN", ["--set", "cluster.eps=nan"]),
        ("seed 2**32", ["--seed", "4294967296"]),
        ("seed 1e20", ["--set", "seed=1e20"]),
        ("seed 1.5", ["--set", "seed=1.5"]),
        ("device mps", ["--device", "mps"]),
        ("device cuda:-1", ["--device", "cuda:-1"]),
        ("device empty", ["--device", ""]),
        ("flip probability 1.5", ["--set", "aug.flip=1.5"]),
        ("erasing -0.1", ["--set", "aug.erasing=-0.1"]),
        ("negative margin", ["--set", "loss.margin=-1"]),
        ("label smoothing 1", ["--set", "loss.label_smoothing=1"]),
        ("warm-up factor 0", ["--set", "train.warmup_factor=0"]),
        ("gamma 0", ["--set", "train.gamma=0"]),
        ("a batch of one image", ["--set", "train.num_ids=1", "--set", "train.num_instances=1"]),
        ("BatchNorm over 1 image", ["--set", "train.num_instances=1", "--set", "train.bn_images=1"]),
        ("BatchNorm slices that do not divide", ["--set", "train.bn_images=3"]),
        ("image width 4", ["--set", "data.width=4"]),
        ("re-ranking lambda 2", ["--set", "test.rerank_lambda=2"]),
        ("teacher drop 2", ["--set", "teacher.drop=2"]),
        ("threads -1", ["--set", "train.threads=-1"]),
        ("memory budget NaN", ["--set", "data.memory_budget=nan"]),
        ("epochs 1.5", ["--set", "train.epochs=1.5"]),
        ("a step at NaN", ["--set", "train.steps=[.nan]"]),
        ("fp16 on the CPU", ["--set", "train.amp=fp16"]),
        ("channels_last maybe", ["--set", "train.channels_last=maybe"]),
        ("a run name of 230 bytes", ["--name", "n" * 230]),
    ]
    recipes = [
        (f"recipe: {w}", ["--config", str(f / n)])
        for w, n in (
            ("a _base_ cycle", "cycle_a.yaml"),
            ("its own base", "self.yaml"),
            ("_base_ a list", "base_list.yaml"),
            ("_base_ a number", "base_number.yaml"),
            ("_base_ missing", "base_missing.yaml"),
            ("a key twice", "dup.yaml"),
            ("an unknown key", "unknown_key.yaml"),
            ("a section that is a number", "wrong_type.yaml"),
            ("NaN in YAML", "nan.yaml"),
            ("saved in latin-1", "latin1.yaml"),
            ("a folder", "recipe_dir.yaml"),
        )
    ]
    outputs = [
        ("extract to a folder", [*extract, str(f / "adir")]),
        ("extract to .txt", [*extract, str(f / "q.txt")]),
        ("extract into a read-only file system", [*extract, "/proc/q.npz"]),
        ("extract under a file", [*extract, str(f / "afile" / "q.npz")]),
        ("extract to a name of 300 bytes", [*extract, str(f / ("x" * 296 + ".npz"))]),
        ("extract through a link loop", [*extract, str(f / "loop" / "q.npz")]),
        ("extract to a device", [*extract, "/dev/null"]),
        ("search to a folder", [*search, str(f / "adir")]),
        ("search to a name without suffix", [*search, str(f / "pic")]),
        ("search to .xyz", [*search, str(f / "pic.xyz")]),
        ("search into /proc", [*search, "/proc/x.png"]),
        ("search through a dangling link", [*search, str(f / "dangling" / "x.png")]),
        ("explain to a file", [*explain, str(f / "afile")]),
        ("explain into /proc", [*explain, "/proc/pics"]),
        ("explain to a name of 300 bytes", [*explain, str(f / ("d" * 300))]),
        ("export to .pt", [*export, str(f / "m.pt")]),
        ("export to a folder", [*export, str(f / "adir")]),
        ("export into /proc", [*export, "/proc/m.onnx"]),
        ("train into a link loop", [*train[:-1], str(f / "loop")]),
        ("train under a file", [*train[:-1], str(f / "afile" / "runs")]),
        ("train into /proc", [*train[:-1], "/proc/runs"]),
        ("train with a data root under a file", [*train, "--data-root", str(f / "afile" / "d")]),
        ("train with a data root that is a link loop", [*train, "--data-root", str(f / "loop")]),
    ]
    resume = [
        ("resume a folder with another run's last.pt", ["--resume", str(runs / "mixed"), "--epochs", "2"]),
        (
            "resume with a model the checkpoint does not fit",
            ["--resume", unsup, "--epochs", "2", "--set", "model.name=resnet50"],
        ),
        ("resume a supervised run as another model", ["--resume", sup, "--epochs", "2", "--set", "model.name=vit"]),
        ("resume with a damaged metrics line", ["--resume", str(runs / "damaged"), "--epochs", "2"]),
        ("resume from best.pt", ["--resume", str(p["unsup"] / "best.pt")]),
        ("resume a folder whose config.yaml is not YAML", ["--resume", str(runs / "badconfig")]),
        ("resume with an eps of 1", ["--resume", unsup, "--epochs", "2", "--set", "cluster.eps=1"]),
        ("resume with a misspelt key", ["--resume", unsup, "--epochs", "2", "--set", "train.lrr=1"]),
        ("resume a text file", ["--resume", str(f / "afile")]),
        ("resume with fp16 on the CPU", ["--resume", unsup, "--epochs", "2", "--set", "train.amp=fp16"]),
    ]
    files = [
        (
            "evaluate a .pt with the keys and not the contents",
            ["--mode", "evaluate", "--checkpoint", str(f / "keys_only.pt")],
        ),
        (
            "evaluate a .pt whose model is not tensors",
            ["--mode", "evaluate", "--checkpoint", str(f / "not_tensors.pt")],
        ),
        ("evaluate a bare state dict", ["--mode", "evaluate", "--checkpoint", str(f / "state_dict.pt")]),
        ("evaluate a .pt holding a list", ["--mode", "evaluate", "--checkpoint", str(f / "a_list.pt")]),
        ("evaluate a truncated checkpoint", ["--mode", "evaluate", "--checkpoint", str(f / "truncated.pt")]),
        (
            "evaluate with a decompression bomb in the gallery",
            ["--mode", "evaluate", "--checkpoint", unsup, "--data-root", str(tmp / "bombdata")],
        ),
        (
            "search a gallery of another model",
            [
                "--mode",
                "search",
                "--checkpoint",
                unsup,
                "--query",
                one,
                "--gallery",
                str(f / "other_gallery.npz"),
                "--output",
                str(tmp / "out" / "s.png"),
            ],
        ),
        (
            "search a text .npz",
            [
                "--mode",
                "search",
                "--checkpoint",
                unsup,
                "--query",
                one,
                "--gallery",
                str(f / "text.npz"),
                "--output",
                str(tmp / "out" / "s.png"),
            ],
        ),
        (
            "search a .npz without features",
            [
                "--mode",
                "search",
                "--checkpoint",
                unsup,
                "--query",
                one,
                "--gallery",
                str(f / "no_features.npz"),
                "--output",
                str(tmp / "out" / "s.png"),
            ],
        ),
        (
            "search a query that is a text file",
            ["--mode", "search", "--checkpoint", unsup, "--query", str(f / "notes.txt"), "--gallery", query],
        ),
        (
            "extract from an empty folder",
            [
                "--mode",
                "extract",
                "--checkpoint",
                unsup,
                "--images",
                str(f / "empty_dir"),
                "--output",
                str(tmp / "out" / "e.npz"),
            ],
        ),
        (
            "extract from a missing folder",
            [
                "--mode",
                "extract",
                "--checkpoint",
                unsup,
                "--images",
                str(f / "missing"),
                "--output",
                str(tmp / "out" / "e.npz"),
            ],
        ),
        (
            "search with topk 0",
            ["--mode", "search", "--checkpoint", unsup, "--query", one, "--gallery", query, "--topk", "0"],
        ),
        ("a checkpoint through a dangling link", ["--mode", "evaluate", "--checkpoint", str(f / "dangling")]),
        ("a checkpoint that is a folder without best.pt", ["--mode", "evaluate", "--checkpoint", str(f / "adir")]),
    ]
    own = [
        ("folder: a folder that does not exist", ["--dataset", f"folder:{f / 'missing'}"]),
        ("folder: a folder without images", ["--dataset", f"folder:{f / 'empty_dir'}"]),
        (
            "folder: a camera pattern without a group",
            ["--dataset", f"folder:{f / 'imgs'}", "--set", "data.camera_pattern=cam\\d"],
        ),
        (
            "folder: a camera pattern that is not a regex",
            ["--dataset", f"folder:{f / 'imgs'}", "--set", "data.camera_pattern=cam(\\d"],
        ),
        (
            "folder: a labels CSV that does not exist",
            ["--dataset", f"folder:{f / 'imgs'}", "--set", f"data.labels_csv={f / 'missing.csv'}"],
        ),
        ("folder: supervised training without labels", ["--dataset", f"folder:{f / 'imgs'}", "--mode", "supervised"]),
        ("market: a tree that does not exist", ["--dataset", f"market:{f / 'missing'}"]),
        ("market: a path that is a file", ["--dataset", f"market:{f / 'afile'}"]),
    ]
    legal = [
        ("resume a run that has all its epochs (says so, exit 0)", ["--resume", unsup]),
        (
            "check-data on Market names that half-match (skipped, listed; counts differ: exit 1)",
            ["--mode", "check-data", "--dataset", "market1501", "--data-root", str(tmp / "halfdata")],
        ),
        ("--print-config of a resumed run", ["--resume", unsup, "--print-config"]),
        (
            "search with the picture's name given",
            [
                "--mode",
                "search",
                "--checkpoint",
                unsup,
                "--query",
                one,
                "--gallery",
                query,
                "--topk",
                "2",
                "--output",
                str(tmp / "out" / "ranks.jpg"),
            ],
        ),
    ]
    rows = [("config", w, [*train, *a], 2) for w, a in config]
    rows += [("recipe", w, [*train, *a], 2) for w, a in recipes]
    rows += [("output", w, a, 2) for w, a in outputs]
    rows += [("resume", w, a, 2) for w, a in resume]
    rows += [("data and checkpoints", w, a, 2) for w, a in files]
    rows += [("your own data", w, [*train, *a], 2) for w, a in own]
    rows += [("legal", w, a, 1 if "exit 1" in w else 0) for w, a in legal]
    return rows + probes_round_three(tmp, p, train)


def probes_round_three(tmp: Path, p: dict[str, Path], train: list[str]) -> list[tuple[str, str, list[str], int]]:
    """The third round: cluster-sweep, --explain, and the options added with them (test.feature,
    train.warmup_by, DAAF's decoder), and the legal uses of each."""
    data, unsup, f = str(p["data"]), str(p["unsup"]), p["files"]
    sweep = ["--mode", "cluster-sweep", "--checkpoint", unsup, "--data-root", data]
    plot = str(tmp / "out" / "sweep.png")
    bad = [
        ("cluster-sweep: eps of 1 or more", [*sweep, "--eps", "0.5,1.0", "--output", plot]),
        ("cluster-sweep: eps that is not a number", [*sweep, "--eps", "0.4,x", "--output", plot]),
        ("cluster-sweep: a range that runs backwards", [*sweep, "--eps", "0.7:0.3:0.1", "--output", plot]),
        ("cluster-sweep: a fractional k1", [*sweep, "--k1", "2.5", "--output", plot]),
        ("cluster-sweep: min_samples 0", [*sweep, "--min-samples", "0", "--output", plot]),
        ("cluster-sweep: k1 beyond the training images", [*sweep, "--k1", "100000", "--output", plot]),
        ("cluster-sweep: the plot to a folder", [*sweep, "--output", str(tmp / "out")]),
        ("cluster-sweep: the plot with a suffix nothing writes", [*sweep, "--output", str(tmp / "out" / "s.xyz")]),
        ("cluster-sweep: without a checkpoint", ["--mode", "cluster-sweep", "--data-root", data]),
        ("cluster-sweep: a text file as the checkpoint", ["--mode", "cluster-sweep", "--checkpoint",
                                                          str(f / "notes.txt"), "--output", plot]),
        ("--explain without --print-config", ["--config", "demo", "--explain"]),
        ("test.feature=global with the local re-ranking", [*train, "--set", "test.feature=global", "--set",
                                                           "test.local_rerank=true"]),
        ("train.warmup_by that is no unit", [*train, "--set", "train.warmup_by=hour"]),
        ("DAAF: a decoder that does not exist", [*train, "--set", "model.name=daaf", "--set",
                                                "model.args.decoder=fast"]),
        ("DAAF: 9 decoder layers", [*train, "--set", "model.name=daaf", "--set", "model.args.decoder_layers=9"]),
    ]
    legal = [
        ("cluster-sweep of a run (exit 0)", [*sweep, "--eps", "0.5,0.6", "--output", plot]),
        ("--print-config --explain (exit 0)", ["--config", "demo", "--print-config", "--explain"]),
        ("--list (exit 0)", ["--list"]),
    ]
    return [("round three", w, a, 2) for w, a in bad] + [("legal", w, a, 0) for w, a in legal]


def setup_round_four(tmp: Path, p: dict[str, Path]) -> dict[str, Path]:
    """The files of the fourth round: a folder of crops of several kinds, label CSVs as spreadsheets save them,
    a weight file holding NaN, galleries with an upper-case suffix and with no rows, a 12-person tree."""
    import shutil

    import numpy as np
    import torch
    from PIL import Image

    f, data = p["files"], p["data"]
    crops = f / "my+crops"                            # a folder name holding '+'
    train = sorted((data / "synthetic-tiny" / "bounding_box_train").glob("*.jpg"))[:24]
    rows = []
    for i, src in enumerate(train):
        cam = f"cam{src.name.split('_c')[1][0]}"
        (crops / cam).mkdir(parents=True, exist_ok=True)
        with Image.open(src) as im:
            rgb = im.convert("RGB")
        kind = i % 4                                  # 8-bit jpg, RGBA png, 16-bit gray png, sideways jpg
        name = f"{cam}/det_{i:03d}" + (".jpg" if kind in (0, 3) else ".png")
        if kind == 1:
            rgb.convert("RGBA").save(crops / name)
        elif kind == 2:
            Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257)).save(crops / name)
        elif kind == 3:
            exif = Image.Exif()
            exif[0x0112] = 6
            rgb.rotate(90, expand=True).save(crops / name, exif=exif)
        else:
            rgb.save(crops / name)
        rows.append((name.replace("/", "\\"), cam, int(src.name[:4]) if i % 2 == 0 else ""))
    with open(f / "spreadsheet.csv", "w", newline="", encoding="utf-8-sig") as fh:
        fh.write("path;camera;pid\r\n" + "".join(f"{a};{b};{c}\r\n" for a, b, c in rows))
    (f / "bad_pid.csv").write_text("path,camera,pid\n" + rows[0][0].replace("\\", "/") + ",cam1,--3\n")
    state = torch.load(p["unsup"] / "best.pt", weights_only=True)["model"]
    state[next(k for k in state if k.endswith("conv1.weight"))].view(-1)[0] = float("nan")
    torch.save(state, f / "nan_weights.pt")
    query = str(data / "synthetic-tiny" / "query")
    main_py("--mode", "extract", "--checkpoint", str(p["unsup"]), "--images", query, "--output", str(f / "g.npz"))
    shutil.copy(f / "g.npz", f / "upper.NPZ")
    z = dict(np.load(f / "g.npz"))
    z["features"], z["paths"] = z["features"][:0], z["paths"][:0]
    np.savez(f / "no_rows.npz", **z)
    twelve = tmp / "twelve"
    shutil.copytree(data / "synthetic-tiny", twelve)
    keep = sorted({q.name[:4] for q in (twelve / "bounding_box_train").glob("*.jpg")})[:12]
    for q in (twelve / "bounding_box_train").glob("*.jpg"):
        if q.name[:4] not in keep:
            q.unlink()
    (tmp / "cache").mkdir()
    return {"crops": crops, "twelve": twelve}


def probes_round_four(tmp: Path, p: dict[str, Path]) -> list[tuple]:
    """The fourth round (issues "Training is right or it stops" and "Your own data as it really comes"):
    (class, what, arguments, expected exit, words the output must hold, environment)."""
    q = setup_round_four(tmp, p)
    f, data, unsup, sup = p["files"], str(p["data"]), str(p["unsup"]), str(p["sup"])
    crops, one = str(q["crops"]), str(p["files"] / "imgs" / "one.png")
    out = str(tmp / "out")
    train = ["--config", "demo", *TINY, "--epochs", "1", "--data-root", data, "--output", out]
    sweep = ["--mode", "cluster-sweep", "--checkpoint", unsup, "--data-root", data, "--output", f"{out}/sweep.png"]
    search = ["--mode", "search", "--checkpoint", unsup, "--query", one, "--output", f"{out}/s.png", "--gallery"]
    ascii_env = {"PYTHONUTF8": "0", "LC_ALL": "C", "LANG": "C"}
    bad = [
        ("data: a range of eps of 500 million values", [*sweep, "--eps", "0.2:0.7:1e-9"], "at most 200", None),
        ("data: eps to infinity", [*sweep, "--eps", "0.2:inf:0.1"], "give a comma list", None),
        ("data: market: without a path", ["--dataset", "market:", "--epochs", "1"], "needs the folder", None),
        ("data: a CSV pid of --3", [*train, "--dataset", f"folder:{crops}", "--set",
                                    f"data.labels_csv={f / 'bad_pid.csv'}"], "line 2: pid '--3'", None),
        ("data: evaluate on a folder without labels", ["--mode", "evaluate", "--checkpoint", unsup, "--dataset",
                                                        f"folder:{crops}"], "no query to evaluate on", None),
        ("data: extract ''", ["--mode", "extract", "--checkpoint", unsup, "--images", "", "--output",
                              f"{out}/g.npz"], "empty path", None),
        ("data: a gallery of no rows", [*search, str(f / "no_rows.npz")], "holds no features", None),
        ("data: a non-ASCII run name under the C locale", [*train, "--name", "réseau"], "file-system encoding",
         ascii_env),
        ("training: a weight file holding NaN", [*train, "--set", f"model.pretrained={f / 'nan_weights.pt'}"],
         "NaN or inf", None),
        ("resume: with another optimiser", ["--resume", unsup, "--epochs", "2", "--set", "train.optimizer=sgd"],
         "holds the state of adam", None),
        ("resume: on data of other identities", ["--resume", sup, "--epochs", "2", "--dataset",
                                                  f"market:{q['twelve']}"], "12 training identities", None),
    ]
    legal = [
        ("data: eps 0.2:0.55:0.1 stops at 0.5 (exit 0)", [*sweep, "--eps", "0.2:0.55:0.1"], "0.5", None),
        ("data: a folder of mixed kinds with '+' in its name and a spreadsheet's CSV (exit 0)",
         [*train, "--dataset", f"folder:{crops}", "--set", f"data.labels_csv={f / 'spreadsheet.csv'}",
          "--set", "data.memory_budget=0.00001"], "", {"REID_CACHE": str(tmp / "cache")}),
        ("data: --output '~/runs' expands (exit 0)", [*train, "--output", "~/runs", "--print-config"],
         "output: /", None),
        ("data: a gallery named .NPZ (exit 0)", [*search, str(f / "upper.NPZ")], "top", None),
        ("training: the demo recipe on the tiny set, short batches (exit 0)", [*train[:1], "demo", "--set",
         "data.synthetic_size=tiny", "--set", "train.iters=2", "--epochs", "1", "--device", "cpu", "--data-root",
         data, "--output", out], "", None),
    ]
    return ([("round four", w, a, 2, words, env) for w, a, words, env in bad]
            + [("legal", w, a, 0, words, env) for w, a, words, env in legal])


def tree_digest(folder: Path) -> dict[str, str]:
    import hashlib

    return {
        str(q.relative_to(folder)): hashlib.sha256(q.read_bytes()).hexdigest()
        for q in sorted(folder.rglob("*"))
        if q.is_file()
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run the probes whose class or description contains this")
    a = ap.parse_args(argv)
    rows, good = [], 0
    with tempfile.TemporaryDirectory(prefix="bad_inputs_") as d:
        tmp = Path(d)
        print("setting up: two tiny runs and the files the probes need", flush=True)
        prepared = setup(tmp)
        all_probes = [("round one", w, args, e) for w, args, e in probes(tmp)] + probes_round_two(tmp, prepared)
        all_probes += probes_round_four(tmp, prepared)
        from benchmarks.bad_inputs_round5 import probes_round_five, release_locks
        all_probes += probes_round_five(tmp, prepared)
        if a.only:
            all_probes = [pr for pr in all_probes if a.only in pr[0] or a.only in pr[1]]
        for kind, what, args, expected, *more in all_probes:
            words, env = (more + [None, None])[:2]
            before = tree_digest(tmp / "runs")
            out_before = sorted(q.name for q in (tmp / "out").iterdir()) if (tmp / "out").is_dir() else []
            start = time.perf_counter()
            program = [] if args and args[0] == "-m" else [str(ROOT / "main.py")]   # -m: a module (the runner)
            p = subprocess.run([sys.executable, *program, *args], cwd=ROOT, capture_output=True,
                               text=True, timeout=600, env={**os.environ, "HOME": str(tmp), **(env or {})},
                               errors="replace")
            text = (p.stderr if p.returncode else p.stdout).strip().splitlines()
            first = next((line for line in text if line.startswith("error:")), text[0] if text else "")
            changed = tree_digest(tmp / "runs") != before
            out_after = sorted(q.name for q in (tmp / "out").iterdir()) if (tmp / "out").is_dir() else []
            new_run = expected == 2 and out_after != out_before
            text_all = p.stdout + p.stderr
            must, must_not = words if isinstance(words, tuple) else (words, None)
            said = (not must or must in text_all) and (not must_not or must_not not in text_all)
            ok = (p.returncode == expected and "Traceback" not in p.stderr and not changed and not new_run
                  and said)
            good += ok
            shown = " ".join(x.replace(d, "$TMP") for x in args)
            rows.append(
                {
                    "class": kind,
                    "probe": what,
                    "command": f"main.py {shown}",
                    "exit": p.returncode,
                    "expected": expected,
                    "ok": ok,
                    "runs_unchanged": not changed,
                    "no_new_run_folder": not new_run,
                    "message_as_expected": said,
                    "seconds": round(time.perf_counter() - start, 1),
                    "first_line": first.replace(d, "$TMP")[:200],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        release_locks()
    by_class: dict[str, list[int]] = {}
    for r in rows:
        by_class.setdefault(r["class"], [0, 0])
        by_class[r["class"]][0] += r["ok"]
        by_class[r["class"]][1] += 1
    for kind, (ok, n) in by_class.items():
        print(f"  {kind}: {ok} of {n}")
    print(
        f"{good} of {len(rows)} probes as expected (bad input: exit 2 without a traceback, no run folder changed "
        f"and none made; legal input: its exit code)"
    )
    return 0 if good == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
