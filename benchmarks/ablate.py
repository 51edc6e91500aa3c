"""One runner for every ablation table: a table is data, a YAML file under benchmarks/tables/.

    python -m benchmarks.ablate benchmarks/tables/ca_jaccard.yaml                # every row and seed
    python -m benchmarks.ablate TABLE --rows baseline full --seeds 2 3           # a part of it
    python -m benchmarks.ablate TABLE --set device=cuda --set data.synthetic_size=market   # every row, at scale
    python -m benchmarks.ablate TABLE --summary                                  # the table of finished runs
    python -m benchmarks.ablate TABLE --dry-run                                  # the runs it would make

A table file holds (tables/README.md has an example of each key):

    title:   one line
    about:   what it measures and where each value comes from (free text)
    paper:   what the paper column holds (e.g. "MLA Table 6, Market-1501, mAP / rank-1")
    recipe:  the recipe every row starts from (a row may name its own)
    seeds:   [1, 2, 3]
    sets:    ["train.epochs=10", ...]          overrides of every row: the scale and the budget
    rows:    [{name, sets, recipe?, paper?}]   each row: its own overrides on top
    evaluations: [{name, sets, rows?, paper?}] optional: each row's best checkpoint evaluated again with these
                                               test overrides (e.g. Pirt's Table 5); rows: which (default all)
    epochs:  [2, 4, 6]                         optional: the summary's mAP at these epochs as well
    measure: [params, inference]               optional: parameter count, inference images/s of the model,
                                               sap_attention (SAP's heads' attention inside the teacher's parts)

Every run is a ``python main.py`` process of its own, in ``OUT/<row>-s<seed>-<key>`` (``--out``, default
``outputs/ablations/<table>``), where the key is a hash of the run's recipe and overrides: a table whose
values change makes new runs, never reuses old ones. When a run ends, one JSON line (mAP, rank-1, clusters at
every evaluated epoch, the extra evaluations, minutes) goes to ``OUT/results.jsonl`` and its checkpoints are
deleted (``--keep-checkpoints`` keeps them). So the table is resumable: a finished run is skipped, a killed
one continues from its last checkpoint (``--resume``), and several runners can share a table (a run another
runner holds is skipped). The summary: per row (and evaluation), the seeds, the mean final mAP, its min-max and
standard deviation, the mean rank-1 and clusters, and the paper's column.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TABLES = Path(__file__).resolve().parent / "tables"
KEYS = {"title", "about", "paper", "recipe", "seeds", "sets", "rows", "evaluations", "epochs", "measure"}


class TableError(Exception):
    """A table file that cannot be run: the message says which key and what to write."""


@dataclass
class Row:
    name: str
    recipe: str
    sets: list[str]
    paper: str = ""


@dataclass
class Evaluation:
    name: str
    sets: list[str]
    rows: list[str]
    paper: dict = field(default_factory=dict)


@dataclass
class Table:
    path: Path
    title: str
    paper: str
    seeds: list[int]
    rows: list[Row]
    evaluations: list[Evaluation]
    epochs: list[int]
    measure: list[str]


def _strings(value, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise TableError(f"{where}: give a list of key=value strings (as --set takes), not {value!r}")
    return list(value)


def load_table(path: str | Path, extra_sets: list[str] | None = None) -> Table:
    """Read and check a table file (a path, or a name under benchmarks/tables/); ``extra_sets`` go after
    every row's own overrides (the command line's --set)."""
    p = Path(path)
    if not p.is_file() and (TABLES / f"{path}.yaml").is_file():
        p = TABLES / f"{path}.yaml"
    if not p.is_file():
        known = ", ".join(sorted(t.stem for t in TABLES.glob("*.yaml")))
        raise TableError(f"no table file {path}: give a path or one of {known}")
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise TableError(f"{p}: not YAML ({e})") from None
    if not isinstance(d, dict):
        raise TableError(f"{p}: a table is a mapping of {', '.join(sorted(KEYS))}")
    unknown = set(d) - KEYS
    if unknown:
        raise TableError(f"{p}: unknown key(s) {', '.join(sorted(unknown))}; a table has {', '.join(sorted(KEYS))}")
    seeds = d.get("seeds", [1])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise TableError(f"{p}: seeds: give a list of seeds, e.g. [1, 2, 3]")
    shared = _strings(d.get("sets"), f"{p}: sets")
    rows = []
    for i, r in enumerate(d.get("rows") or []):
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            raise TableError(f"{p}: rows[{i}]: each row is a mapping with a name (and sets, recipe, paper)")
        recipe = r.get("recipe", d.get("recipe"))
        if not recipe:
            raise TableError(f"{p}: row {r['name']!r} has no recipe (give the table's recipe: or the row's)")
        rows.append(Row(r["name"], recipe, shared + _strings(r.get("sets"), f"{p}: row {r['name']!r}: sets")
                        + list(extra_sets or []), str(r.get("paper", ""))))
    if not rows:
        raise TableError(f"{p}: rows: a table needs at least one row")
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise TableError(f"{p}: two rows share a name; give each its own")
    evaluations = []
    for e in d.get("evaluations") or []:
        which = e.get("rows", names)
        missing = set(which) - set(names)
        if missing:
            raise TableError(f"{p}: evaluation {e.get('name')!r} names rows that are not in the table: "
                             f"{', '.join(sorted(missing))}")
        evaluations.append(Evaluation(str(e["name"]), _strings(e.get("sets"), f"{p}: evaluation sets"), list(which),
                                      dict(e.get("paper") or {})))
    measure = list(d.get("measure") or [])
    if set(measure) - set(MEASURES):
        raise TableError(f"{p}: measure: any of {', '.join(MEASURES)}, not {measure}")
    return Table(p, str(d.get("title", p.stem)), str(d.get("paper", "")), seeds, rows, evaluations,
                 [int(x) for x in d.get("epochs") or []], measure)


def run_key(row: Row, seed: int) -> str:
    """A hash of what makes the run: its recipe, its overrides in order, its seed."""
    return hashlib.sha1(json.dumps([row.recipe, row.sets, seed]).encode()).hexdigest()[:8]


def run_name(row: Row, seed: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", row.name).strip("-").lower() or "row"
    return f"{slug}-s{seed}-{run_key(row, seed)}"


def results(out: Path) -> list[dict]:
    f = out / "results.jsonl"
    if not f.is_file():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def main_py(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, text=True,
                          capture_output=capture)


def train(row: Row, seed: int, out: Path) -> tuple[int, Path]:
    """Train one row at one seed (or continue it from its last checkpoint); (exit status, run folder)."""
    run_dir = out / run_name(row, seed)
    if (run_dir / "last.pt").is_file():
        print(f"continuing {run_dir.name} from its last checkpoint", flush=True)
        return main_py("--resume", str(run_dir), "--quiet").returncode, run_dir
    if run_dir.exists():                     # made by a runner that died before epoch 0's checkpoint
        if (run_dir / "run.lock").is_file() and _locked(run_dir / "run.lock"):
            return 2, run_dir
        shutil.rmtree(run_dir)
    args = ["--config", row.recipe, "--seed", str(seed), "--output", str(out), "--name", run_dir.name, "--quiet"]
    for s in row.sets:
        args += ["--set", s]
    return main_py(*args).returncode, run_dir


def _locked(lock: Path) -> bool:
    import fcntl
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def evaluate(run_dir: Path, ev: Evaluation) -> dict:
    args = ["--mode", "evaluate", "--checkpoint", str(run_dir / "best.pt")]
    for s in ev.sets:
        args += ["--set", s]
    done = main_py(*args, capture=True)
    if done.returncode:
        raise RuntimeError(f"evaluation {ev.name} of {run_dir} failed:\n{done.stderr[-2000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return {"mAP": round(r["mAP"], 4), "rank1": round(r["rank1"], 4)}


def sap_attention(run_dir: Path, images: int = 256) -> dict:
    """A SAP run's final model measured by reidlab.models.sap.attention_in_part on the first ``images`` query
    images, with the teacher parsing it trained on (the same noise): the share of the patch heads' and proxies'
    attention inside the teacher's part, against a uniform attention's share. Nothing for the teacher-partition
    row (no distilled heads)."""
    import torch

    from reidlab.data.annotations import load_teacher
    from reidlab.data.augment import normalise
    from reidlab.data.datasets import dataset_from_config
    from reidlab.data.images import load_images
    from reidlab.models.sap import attention_in_part
    from reidlab.runs.checkpoint import load_checkpoint
    from reidlab.runs.config import build_config
    from reidlab.runs.loop import teacher_noise
    from reidlab.runs.run import resolve_device
    from reidlab.use.trained import build_trained
    ckpt = load_checkpoint(run_dir, "last.pt")
    cfg = build_config(None, [], base=ckpt["config"])
    if cfg.model.name != "sap" or (cfg.model.args or {}).get("partition") == "teacher":
        return {}
    device = resolve_device(cfg.device)
    model = build_trained(cfg, ckpt, device)
    ds = dataset_from_config(cfg)
    samples = ds.query[:images]
    x = normalise(load_images([q.path for q in samples], cfg.data.height, cfg.data.width, cfg.data.workers,
                              resize=cfg.data.resize)).to(device)
    parsing = load_teacher(ds, samples, cfg.data.height, cfg.data.width, ("parsing",), teacher_noise(cfg),
                           cfg.data.workers)["parsing"].to(device)
    with torch.no_grad():
        return {f"attn_{k}": v for k, v in attention_in_part(model, x, parsing).items()}


def model_size_and_speed(run_dir: Path, what: list[str]) -> dict:
    from benchmarks.common import images_per_second
    from reidlab.models import model_from_config
    from reidlab.runs.config import build_config
    from reidlab.runs.run import resolve_device
    cfg = build_config(base=yaml.safe_load((run_dir / "config.yaml").read_text()))
    cfg.model.pretrained = "none"
    device = resolve_device(cfg.device)
    model = model_from_config(cfg, device)
    out = {}
    if "params" in what:
        out["params_M"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    if "inference" in what and not getattr(model, "test_teacher_targets", ()):
        out["inference_images_per_s"] = round(images_per_second(model, device, cfg.data.height, cfg.data.width), 1)
    return out


# what a table's ``measure`` may name: each a function of (run folder, the table's measure list) -> columns
MEASURES = {"params": model_size_and_speed, "inference": model_size_and_speed,
            "sap_attention": lambda run_dir, what: sap_attention(run_dir)}


def measure_model(run_dir: Path, what: list[str]) -> dict:
    out = {}
    for fn in dict.fromkeys(MEASURES[w] for w in what):      # each function once
        out.update(fn(run_dir, what))
    return out


def record(table: Table, row: Row, seed: int, run_dir: Path, minutes: float) -> dict:
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in recs if "mAP" in r]
    last = evaluated[-1] if evaluated else {}
    trained = [r for r in recs if r.get("epoch", 0) > 0]
    line = {"table": table.path.stem, "row": row.name, "seed": seed, "key": run_key(row, seed),
            "run": run_dir.name, "recipe": row.recipe, "sets": row.sets,
            "mAP": last.get("mAP"), "rank1": last.get("rank1"), "mINP": last.get("mINP"),
            "epoch": last.get("epoch"), "clusters": trained[-1].get("num_clusters") if trained else None,
            "by_epoch": {str(r["epoch"]): {"mAP": r["mAP"], "rank1": r["rank1"],
                                           **({"clusters": r["num_clusters"]} if "num_clusters" in r else {})}
                         for r in evaluated},
            "minutes": round(minutes, 1), "paper": row.paper}
    if trained:
        # the last trained epoch's record (its loss parts, e.g. each token's cross-entropy) and the training speed
        line["last_epoch"] = {k: v for k, v in trained[-1].items() if isinstance(v, (int, float))
                              and not isinstance(v, bool)}
        timed = [r for r in trained if r.get("iters") and r.get("train_s")]
        if timed:
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]
            batch = cfg["num_ids"] * cfg["num_instances"]
            seconds = sum(r["train_s"] for r in timed)
            line["train_images_per_s"] = round(sum(r["iters"] * batch for r in timed) / seconds, 1)
    evs = {ev.name: evaluate(run_dir, ev) for ev in table.evaluations if row.name in ev.rows}
    if evs:
        line["evaluations"] = evs
    if table.measure:
        line.update(measure_model(run_dir, table.measure))
    return line


def run_table(table: Table, out: Path, rows: list[str] | None, seeds: list[int] | None, keep: bool,
              dry_run: bool = False) -> int:
    todo = [(row, seed) for row in table.rows if not rows or row.name in rows for seed in (seeds or table.seeds)]
    failed = 0
    for row, seed in todo:
        name = run_name(row, seed)
        done = {(r["row"], r["seed"], r["key"]) for r in results(out)}     # read again: another runner may share
        if (row.name, seed, run_key(row, seed)) in done:
            print(f"{name}: done (results.jsonl)", flush=True)
            continue
        if dry_run:
            print(f"{name}: python main.py --config {row.recipe} --seed {seed} "
                  + " ".join(f"--set {s!r}" for s in row.sets), flush=True)
            continue
        start = time.perf_counter()
        code, run_dir = train(row, seed, out)
        if code:
            print(f"{name}: exit {code} ({'in use by another runner' if code == 2 and run_dir.exists() else 'failed'}"
                  f"; see {run_dir / 'log.txt'})", flush=True)
            failed += 1
            continue
        line = record(table, row, seed, run_dir, (time.perf_counter() - start) / 60)
        with open(out / "results.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)
        if not keep:
            for p in run_dir.glob("*.pt"):
                p.unlink()
    return failed


def _stats(values: list[float]) -> str:
    v = [100 * x for x in values]
    if len(v) == 1:
        return f"{v[0]:.1f}"
    return f"{statistics.mean(v):.1f} ({min(v):.1f}-{max(v):.1f}, sd {statistics.stdev(v):.1f})"


def summary(table: Table, lines: list[dict]) -> str:
    """The markdown table of the finished runs of ``table`` (those of its current rows' keys)."""
    by_name = {r.name: r for r in table.rows}
    mine = [x for x in lines if x["row"] in by_name and x["key"] == run_key(by_name[x["row"]], x["seed"])
            and x.get("mAP") is not None]
    head = ["row", "seeds", "final mAP: mean (min-max, sd)", "rank-1 (mean)", "clusters (mean)"]
    head += [f"mAP at epoch {e}" for e in table.epochs]
    extra = [k for k in ("params_M", "inference_images_per_s") if any(k in x for x in mine)]
    head += extra + [f"paper ({table.paper})" if table.paper else "paper"]
    out = [f"**{table.title}** ({table.path.name})", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

    def line(name: str, got: list[dict], paper: str, get=lambda x: x) -> str:
        vals = [get(x) for x in got]
        seeds = ",".join(str(x["seed"]) for x in got)
        clusters = [x["clusters"] for x in got if x.get("clusters") is not None]
        rank1 = statistics.mean(v["rank1"] for v in vals)
        cells = [name, seeds, _stats([v["mAP"] for v in vals]), f"{100 * rank1:.1f}",
                 f"{statistics.mean(clusters):.0f}" if clusters else "-"]
        for e in table.epochs:
            at = [x["by_epoch"][str(e)]["mAP"] for x in got if str(e) in x.get("by_epoch", {})]
            cells.append(_stats(at) if at else "-")
        cells += [str(statistics.mean(x[k] for x in got if k in x)) if any(k in x for x in got) else "-"
                  for k in extra]
        return "| " + " | ".join(cells + [paper]) + " |"

    for row in table.rows:
        got = sorted((x for x in mine if x["row"] == row.name), key=lambda x: x["seed"])
        if got:
            out.append(line(row.name, got, row.paper))
    for ev in table.evaluations:
        for name in ev.rows:
            got = sorted((x for x in mine if x["row"] == name and ev.name in x.get("evaluations", {})),
                         key=lambda x: x["seed"])
            if got:
                out.append(line(f"{name}, evaluated {ev.name}", got, str(ev.paper.get(name, "")),
                                lambda x, n=ev.name: x["evaluations"][n]))
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", help="a table file, or the name of one under benchmarks/tables/")
    p.add_argument("--rows", nargs="+", help="only these rows (by name)")
    p.add_argument("--seeds", type=int, nargs="+", help="these seeds instead of the table's")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="an override of every row, after the table's (e.g. device=cuda); part of each run's key")
    p.add_argument("--out", help="where the runs and results.jsonl go (default outputs/ablations/<table>)")
    p.add_argument("--keep-checkpoints", action="store_true")
    p.add_argument("--summary", action="store_true", help="print the table of the finished runs only")
    p.add_argument("--dry-run", action="store_true", help="print the runs still to make, make none")
    a = p.parse_args(argv)
    try:
        table = load_table(a.table, a.sets)
        if a.rows and set(a.rows) - {r.name for r in table.rows}:
            raise TableError(f"--rows: {', '.join(sorted(set(a.rows) - {r.name for r in table.rows}))} not in "
                             f"{table.path.name}; its rows: {', '.join(r.name for r in table.rows)}")
    except TableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out or ROOT / "outputs" / "ablations" / table.path.stem)
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    if not a.summary:
        print(f"runs and results.jsonl under {out}", flush=True)
        failed = run_table(table, out, a.rows, a.seeds, a.keep_checkpoints, a.dry_run)
    if not a.dry_run:
        print(summary(table, results(out)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
