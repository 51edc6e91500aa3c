"""The fifth round of benchmarks.bad_inputs: what the last batches added, tried as a new user would.

PCB's settings, CA-Jaccard's settings and cameras, the ablation runner's tables (a missing recipe, a bad override,
a runner holding a run, a killed row, a table edited after its runs), the hard generator's switches, a tensorboard
that does not import, label files with the mistakes a spreadsheet makes, and 3C's settings (HDC, the memory updates,
the camera weights, --clusters). Each probe is (class, what, arguments, expected exit, words, environment); the
arguments run ``python main.py ...``, or ``python -m ...`` when they start with ``-m``. ``words`` the output must
hold; a tuple (must, must-not) for a summary that must not report a row.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

HOLDERS: list[subprocess.Popen] = []          # processes holding a run's lock while the probes run


def hold_lock(folder: Path) -> None:
    """A process that holds ``folder/run.lock`` as a running run does (another runner's run)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.lock").write_text("")
    code = (f"import fcntl, time\nf = open({str(folder / 'run.lock')!r}, 'a')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
            f"print('held', flush=True)\ntime.sleep(3600)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    p.stdout.readline()
    HOLDERS.append(p)


def release_locks() -> None:
    for p in HOLDERS:
        p.kill()
        p.wait()
    HOLDERS.clear()


def setup_round_five(tmp: Path, p: dict[str, Path]) -> dict[str, Path]:
    """Tables for the runner, label files as spreadsheets get them wrong, a tensorboard that does not import, and a
    folder of crops from one camera."""
    f, data = p["files"] / "r5", p["data"]
    f.mkdir()
    tiny = [f"data.root={data}", "data.synthetic_size=tiny", "train.iters=1", "train.epochs=1", "device=cpu",
            "test.eval_initial=false"]

    def table(name: str, **content) -> Path:
        path = f / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"title": name, "recipe": "demo", "seeds": [1], "sets": tiny, **content}))
        return path
    table("missing_recipe", rows=[{"name": "a"}, {"name": "b", "recipe": "no_such_recipe"}])
    table("bad_override", rows=[{"name": "a"}, {"name": "b", "sets": ["cluster.eps=2"]}])
    table("bad_comparison", rows=[{"name": "a"}], comparisons=[{"a": "a", "b": "z"}])
    table("no_start", rows=[{"name": "a"}])
    table("bad_regime_key", rows=[{"name": "a", "colour": "red"}])
    held = table("held", rows=[{"name": "a"}])
    edited = table("edited", rows=[{"name": "a"}])
    # a killed row: its results file ends in half a line
    (f / "killed.jsonl").write_text('{"table": "edited", "row": "a", "seed": 1, "key": "deadbeef", "mAP": 0.5}\n{"ta')
    # a runner holding a run: the run folder of "held"'s only run, locked by another process
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.ablate import run_name
    from benchmarks.ablate_tables import load_table
    hold_lock(f / "held_out" / run_name(load_table(held).rows[0], 1))
    # a table edited after its runs: its old results stay in the file, under the old contents' key
    old = load_table(edited).rows[0]
    (f / "edited.jsonl").write_text(json.dumps({"table": "edited", "row": "a", "seed": 1, "key": "0ld0ld00",
                                                "mAP": 0.99, "rank1": 0.99, "sets": old.sets}) + "\n")
    csvs = {
        "comma_decimal.csv": "path;camera;pid\ncam1/a.png;1;3,0\n",
        "scientific.csv": "path,camera,pid\ncam1/a.png,1,1e3\n",
        "fraction.csv": "path,camera,pid\ncam1/a.png,1,3.5\n",
        "header_only.csv": "path,camera,pid\n",
        "no_path.csv": "file,camera,pid\ncam1/a.png,1,3\n",
        "twice.csv": "path,camera,pid\ncam1/a.png,1,3\ncam1/a.png,1,4\n",
        "negative.csv": "path,camera,pid\ncam1/a.png,1,-7\n",
        "empty.csv": "",
    }
    for name, text in csvs.items():
        (f / name).write_text(text)
    (f / "latin1.csv").write_bytes("path,camera,pid\ncam1/é.png,1,3\n".encode("latin-1"))
    broken = f / "broken_tb" / "torch" / "utils"          # a tensorboard whose import raises TypeError
    crops = f / "onecam"
    src = sorted((data / "synthetic-tiny" / "bounding_box_train").glob("*.jpg"))[:40]
    crops.mkdir()
    for q in src:
        shutil.copy(q, crops / q.name)
    return {"f": f, "broken": broken, "onecam": crops}


def probes_round_five(tmp: Path, p: dict[str, Path]) -> list[tuple]:
    q = setup_round_five(tmp, p)
    f, data, unsup = q["f"], str(p["data"]), str(p["unsup"])
    out = str(tmp / "out")
    tiny = ["--set", "data.synthetic_size=tiny", "--data-root", data, "--output", out]
    demo, bot, d3c = ["--config", "demo", *tiny], ["--config", "bot_market1501", "--dataset", "synthetic", *tiny], \
        ["--config", "demo_3c", *tiny]
    pcb = [*bot, "--set", "model.name=pcb", "--set", "model.args.backbone=resnet18", "--set", "data.height=64",
           "--set", "data.width=32"]
    caj = ["--config", "demo_cajaccard", *tiny]
    folder = ["--config", "demo", "--dataset", f"folder:{q['onecam']}", "--output", out]
    ablate = ["-m", "benchmarks.ablate"]
    results = ["--results", str(f / "r.jsonl"), "--out", str(f / "runs")]
    sweep = ["--mode", "cluster-sweep", "--checkpoint", unsup, "--data-root", data, "--output", f"{out}/sweep.png"]
    csv_run = [*folder, "--set", "data.camera_from=none", "--set", "data.labels_csv="]
    bad = [
        ("pcb: 0 stripes", [*pcb, "--set", "model.args.stripes=0"], "model.args.stripes", None),
        ("pcb: 2.5 stripes", [*pcb, "--set", "model.args.stripes=2.5"], "model.args.stripes", None),
        ("pcb: stripes true", [*pcb, "--set", "model.args.stripes=true"], "model.args.stripes", None),
        ("pcb: 5 stripes on a 4-row map", [*pcb, "--set", "model.args.stripes=5"], "gives 4", None),
        ("pcb: an unknown backbone", [*pcb, "--set", "model.args.backbone=vgg16"], "model.args.backbone", None),
        ("pcb: the global feature of a model without one", [*pcb, "--set", "model.args.stripes=2", "--set",
                                                              "test.feature=global"], "test.feature=all", None),
        ("ca-jaccard: k1_intra 0", [*caj, "--set", "cluster.k1_intra=0"], "cluster.k1_intra", None),
        ("ca-jaccard: k2_inter -1", [*caj, "--set", "cluster.k2_inter=-1"], "cluster.k2_inter", None),
        ("ca-jaccard: one camera", [*folder, "--set", "cluster.distance=ca-jaccard", "--set",
                                    "data.camera_from=none"], "two cameras", None),
        ("ca-jaccard: re-ranking on one camera", ["--mode", "evaluate", "--checkpoint", unsup, "--dataset",
                                                  f"folder:{q['onecam']}", "--set", "test.rerank=true", "--set",
                                                  "test.rerank_distance=ca-jaccard"], "", None),
        ("ca-jaccard: an unknown distance", [*demo, "--set", "cluster.distance=ca_jaccard"], "did you mean", None),
        ("hard: an unknown switch", [*demo, "--set", "data.synthetic_hard=[fog]"], "data.synthetic_hard", None),
        ("hard: a switch as text", [*demo, "--set", "data.synthetic_hard=crowds"], "data.synthetic_hard", None),
        ("ablate: a row naming a missing recipe", [*ablate, str(f / "missing_recipe.yaml"), *results],
         "no recipe file no_such_recipe", None),
        ("ablate: a bad override in the second row", [*ablate, str(f / "bad_override.yaml"), *results],
         "cluster.eps=2", None),
        ("ablate: a comparison of a row not in the table", [*ablate, str(f / "bad_comparison.yaml"), *results],
         "not a row of the table", None),
        ("ablate: the papers' regime without a start", [*ablate, str(f / "no_start.yaml"), "--regime", "paper",
                                                         *results], "needs a start", None),
        ("ablate: a start that does not exist", [*ablate, str(f / "no_start.yaml"), "--regime", "paper", "--start",
                                                  str(f / "none.pt"), *results], "no such weight file", None),
        ("ablate: a row key that is not one", [*ablate, str(f / "bad_regime_key.yaml"), *results],
         "unknown key(s) colour", None),
        ("ablate: --jobs 0", [*ablate, str(f / "held.yaml"), "--jobs", "0", *results], "--jobs 0", None),
        ("ablate: --seeds x", [*ablate, str(f / "held.yaml"), "--seeds", "x", *results], "not a seed", None),
        ("ablate: --regime long", [*ablate, str(f / "held.yaml"), "--regime", "long", *results], "invalid choice",
         None),
        ("labels: a decimal comma", [*csv_run[:-1], f"data.labels_csv={f / 'comma_decimal.csv'}"],
         "is not a whole number", None),
        ("labels: a pid in scientific notation", [*csv_run[:-1], f"data.labels_csv={f / 'scientific.csv'}"],
         "is not a whole number", None),
        ("labels: a pid of 3.5", [*csv_run[:-1], f"data.labels_csv={f / 'fraction.csv'}"], "not a whole number",
         None),
        ("labels: no path column", [*csv_run[:-1], f"data.labels_csv={f / 'no_path.csv'}"], "header line", None),
        ("labels: one path, two pids", [*csv_run[:-1], f"data.labels_csv={f / 'twice.csv'}"], "two labels", None),
        ("labels: pid -7", [*csv_run[:-1], f"data.labels_csv={f / 'negative.csv'}"], "is not allowed", None),
        ("labels: an empty file", [*csv_run[:-1], f"data.labels_csv={f / 'empty.csv'}"], "header line", None),
        ("labels: saved as latin-1", [*csv_run[:-1], f"data.labels_csv={f / 'latin1.csv'}"], "UTF-8", None),
        ("3c: 0 clusters", [*d3c, "--set", "cluster.hdc_num_clusters=0"], "cluster.hdc_num_clusters", None),
        ("3c: 4.5 clusters", [*d3c, "--set", "cluster.hdc_num_clusters=4.5"], "expected an integer", None),
        ("3c: more clusters than images", [*d3c, "--set", "cluster.hdc_num_clusters=5000"], "at most 200", None),
        ("3c: an unknown method", [*d3c, "--set", "cluster.method=kmeans"], "cluster.method", None),
        ("3c: an unknown init", [*d3c, "--set", "cluster.hdc_init=kmeans++"], "cluster.hdc_init", None),
        ("3c: an unknown similarity", [*d3c, "--set", "cluster.hdc_similarity=manhattan"], "cluster.hdc_similarity",
         None),
        ("3c: a memory update that does not import", [*d3c, "--set", "memory.update=nowhere:fn"], "cannot import",
         None),
        ("3c: camera weights on one camera", [*folder, "--set", "data.camera_from=none", "--set",
                                              "memory.camera_weighted=true"], "two cameras", None),
        ("3c: hd_camera on one camera", [*folder, "--set", "data.camera_from=none", "--set",
                                         "memory.update=hd_camera"], "two cameras", None),
        ("3c: --clusters 0", [*sweep, "--clusters", "0,8"], "each value must be", None),
        ("3c: --clusters x", [*sweep, "--clusters", "x"], "give a comma list", None),
        ("3c: --clusters of more than the images", [*sweep, "--clusters", "8,5000"], "give at most that", None),
        ("3c: --clusters 1:100000:1", [*sweep, "--clusters", "2:100000:1"], "at most 200", None),
    ]
    legal = [
        ("ablate: a runner holding the run: skipped, not a failure (exit 0)",
         [*ablate, str(f / "held.yaml"), "--results", str(f / "held.jsonl"), "--out", str(f / "held_out")],
         "in use by another runner; skipped", None),
        ("ablate: a killed runner's half line (exit 0)",
         [*ablate, str(f / "edited.yaml"), "--results", str(f / "killed.jsonl"), "--summary"],
         "not a run's record", None),
        ("ablate: a table edited after its runs reports none of them (exit 0)",
         [*ablate, str(f / "edited.yaml"), "--results", str(f / "edited.jsonl"), "--summary"],
         ("short regime", "| a | 1 |"), None),
        ("tensorboard that does not import: a run without events (exit 0)",
         [*demo, "--set", "train.iters=1", "--epochs", "1", "--set", "test.eval_initial=false", "--device", "cpu"],
         "cannot be imported", {"PYTHONPATH": str(q["broken"].parents[1])}),
        ("3c: the demo with HDC into 16 clusters (exit 0)",
         [*d3c, "--set", "train.iters=1", "--epochs", "3", "--set", "cluster.hdc_num_clusters=16", "--device", "cpu",
          "--set", "test.eval_every=3"], "", None),
        ("3c: --clusters 8:16:4 (exit 0)", [*sweep, "--clusters", "8:16:4"], "HDC at each number of clusters", None),
    ]
    make_broken_tensorboard(q["broken"])
    return ([("round five", w, a, 2, words, env) for w, a, words, env in bad]
            + [("legal", w, a, 0, words, env) for w, a, words, env in legal])


def make_broken_tensorboard(utils: Path) -> None:
    """A ``torch`` shadow package is too much; instead a ``sitecustomize`` on PYTHONPATH makes the import of
    torch.utils.tensorboard raise protobuf's TypeError, as a mismatched protobuf does."""
    root = utils.parents[1]
    root.mkdir(parents=True, exist_ok=True)
    (root / "sitecustomize.py").write_text(
        "import builtins\n_real = builtins.__import__\n"
        "def _imp(name, *a, **k):\n"
        "    if name.startswith('torch.utils.tensorboard'):\n"
        "        raise TypeError('Descriptors cannot be created directly.')\n"
        "    return _real(name, *a, **k)\n"
        "builtins.__import__ = _imp\n")

