"""Probes a user's mistakes: every bad input must stop with exit 2 and a one-paragraph message (no
traceback), before any minute is spent; every legal one exits 0.

    python -m benchmarks.bad_inputs            # prints one row per probe, then the count

Each probe runs ``python main.py ...`` in a fresh process, with its own output folder and data root in
a temporary folder (nothing is written elsewhere).
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
    """(what, arguments, expected exit code)."""
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
        ("extract without --output", ["--mode", "extract", "--checkpoint", str(tmp / "text.pt"),
                                      "--images", str(tmp)]),
        ("search with a non-checkpoint", ["--mode", "search", "--checkpoint", str(tmp / "text.pt"),
                                          "--query", str(tmp / "afile"), "--gallery", str(tmp)]),
        ("export to an unknown format", ["--mode", "export", "--checkpoint", str(tmp / "empty.pt"),
                                         "--format", "tflite"]),
        ("teachers: a split that does not exist", ["--mode", "teachers", "--set", "teacher.splits=[test]"]),
        ("teachers: a weights file missing", ["--mode", "teachers", "--dataset", "synthetic",
                                              "--set", "data.synthetic_size=tiny",
                                              "--set", "teacher.pose_weights=/nonexistent/kp.pth"]),
    ]
    legal = [
        ("--help", ["--help"]),
        ("--list", ["--list"]),
        ("--print-config of the demo", ["--config", "demo", "--print-config"]),
        ("--print-config of a supervised recipe", ["--config", "daaf_bot_market1501", "--print-config"]),
        ("check-data on the tiny synthetic benchmark",
         ["--mode", "check-data", "--dataset", "synthetic", "--set", "data.synthetic_size=tiny",
          "--data-root", str(tmp / "data")]),
    ]
    return [(w, base + a, 2) for w, a in bad] + [(w, a, 0) for w, a in legal]


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    rows, good = [], 0
    with tempfile.TemporaryDirectory(prefix="bad_inputs_") as d:
        tmp = Path(d)
        for what, args, expected in probes(tmp):
            start = time.perf_counter()
            p = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, capture_output=True,
                               text=True, timeout=600)
            text = (p.stderr if p.returncode else p.stdout).strip().splitlines()
            first = next((line for line in text if line.startswith("error:")), text[0] if text else "")
            ok = p.returncode == expected and "Traceback" not in p.stderr
            good += ok
            shown = " ".join(a.replace(d, "$TMP") for a in args)
            rows.append({"probe": what, "command": f"main.py {shown}", "exit": p.returncode, "expected": expected,
                         "ok": ok, "seconds": round(time.perf_counter() - start, 1),
                         "first_line": first.replace(d, "$TMP")[:200]})
            print(json.dumps(rows[-1]), flush=True)
    print(f"{good} of {len(rows)} probes as expected (bad input: exit 2 without a traceback; legal input: exit 0)")
    return 0 if good == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
