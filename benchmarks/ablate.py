"""One runner for every ablation table: a table is data, a YAML file under benchmarks/tables/.

    python -m benchmarks.ablate bot_ladder                                       # every row and seed
    python -m benchmarks.ablate bot_ladder --regime paper --jobs 2               # the papers' regime, 2 runs at once
    python -m benchmarks.ablate TABLE --rows baseline full --seeds 2 3           # a part of it
    python -m benchmarks.ablate TABLE --set device=cuda --set data.synthetic_size=market   # every row, at scale
    python -m benchmarks.ablate TABLE --summary                                  # the tables of finished runs
    python -m benchmarks.ablate TABLE --dry-run                                  # the runs it would make

The table format, the two regimes (``short``: the table as written; ``paper``: each recipe's own schedule,
optimiser and batch on the table's data, from the other domain's start) and the runs' keys:
benchmarks/ablate_tables.py. The paired verdicts of a table's ``comparisons``: benchmarks/verdicts.py.

Every run is a ``python main.py`` process of its own, in ``OUT/<row>-s<seed>-<key>`` (``--out``, default
``outputs/ablations/<table>``). When a run ends, one JSON line (mAP, rank-1, clusters at every evaluated epoch,
the extra evaluations, minutes) goes to the table's results file, ``benchmarks/results/<table>.jsonl`` (``--results``),
which is data the repository keeps; the run's checkpoints are deleted (``--keep-checkpoints`` keeps them). So a
table is resumable: a finished run is skipped, a killed one continues from its last checkpoint, and several
runners can share a table (a run another runner holds is skipped, and is not a failure). ``--jobs N`` runs N at a
time, each at (cores / N) threads unless the table sets ``train.threads``. After the table's seeds, a comparison
still undecided gets one more seed at a time, for both of its rows, up to the table's ``max_seeds``.

The summary: per regime, per row (and evaluation), the seeds, the mean final mAP, its min-max and standard
deviation, the mean rank-1, clusters and minutes, and the paper's column; then each comparison's paired
difference with its 95% interval and verdict.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from benchmarks.ablate_measures import measure_model
from benchmarks.ablate_tables import (RESULTS, ROOT, TABLES, Evaluation, Row, Table, TableError, file_digest,
                                      latest_starts, load_table, run_key, same_run, start_path)
from benchmarks.verdicts import next_seed, paired

__all__ = ["TABLES", "Evaluation", "Row", "Table", "TableError", "load_table", "main", "results", "run_key"]
LINE_KEYS = {"table", "row", "seed", "key", "mAP"}
_append = threading.Lock()


def run_name(row: Row, seed: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", row.name).strip("-").lower()[:60] or "row"
    return f"{slug}-s{seed}-{run_key(row, seed)}"


def results(path: Path, warn: bool = False) -> list[dict]:
    """The run records of a results file; a line that is not one (a killed runner's half line, a hand edit) is
    left out, with a word when ``warn``."""
    if path.is_dir():                                   # an --out folder of an earlier version
        path = path / "results.jsonl"
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if not isinstance(rec, dict) or not LINE_KEYS <= set(rec):
            if warn:
                print(f"{path}: line {n} is not a run's record (a killed runner's half line?); left out", flush=True)
            continue
        out.append(rec)
    return out


def main_py(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, text=True,
                          capture_output=capture)


def _locked(lock: Path) -> bool:
    import fcntl
    try:
        with open(lock, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def held(run_dir: Path) -> bool:
    """Whether another process (another runner's run) holds the run folder's lock now."""
    return (run_dir / "run.lock").is_file() and _locked(run_dir / "run.lock")


def train(row: Row, seed: int, out: Path, threads: int = 0) -> tuple[str, Path]:
    """Train one row at one seed (or continue it from its last checkpoint): ("trained" | "held" | "failed", run
    folder); "held": another runner has it."""
    run_dir = out / run_name(row, seed)
    if held(run_dir):
        return "held", run_dir
    extra = ["--set", f"train.threads={threads}"] if threads else []
    if (run_dir / "last.pt").is_file():
        print(f"continuing {run_dir.name} from its last checkpoint", flush=True)
        code = main_py("--resume", str(run_dir), "--quiet", *extra).returncode
    else:
        if run_dir.exists():                 # made by a runner that died before epoch 0's checkpoint
            shutil.rmtree(run_dir)
        args = ["--config", row.recipe, "--seed", str(seed), "--output", str(out), "--name", run_dir.name, "--quiet"]
        for s in row.sets:
            args += ["--set", s]
        code = main_py(*args, *extra).returncode
    if code and held(run_dir):               # another runner took it between the check and our start
        return "held", run_dir
    return ("failed" if code else "trained"), run_dir


def evaluate(run_dir: Path, ev: Evaluation) -> dict:
    args = ["--mode", "evaluate", "--checkpoint", str(run_dir / "best.pt")]
    for s in ev.sets:
        args += ["--set", s]
    done = main_py(*args, capture=True)
    if done.returncode:
        raise RuntimeError(f"evaluation {ev.name} of {run_dir} failed:\n{done.stderr[-2000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    return {"mAP": round(r["mAP"], 4), "rank1": round(r["rank1"], 4)}


def record(table: Table, row: Row, seed: int, run_dir: Path, minutes: float) -> dict:
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    evaluated = [r for r in recs if "mAP" in r]
    last = evaluated[-1] if evaluated else {}
    trained = [r for r in recs if r.get("epoch", 0) > 0]
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    line = {"table": table.stem, "regime": table.regime, "row": row.name, "seed": seed, "key": run_key(row, seed),
            "run": run_dir.name, "recipe": row.recipe, "sets": row.sets,
            "mAP": last.get("mAP"), "rank1": last.get("rank1"), "mINP": last.get("mINP"),
            "epoch": last.get("epoch"), "clusters": trained[-1].get("num_clusters") if trained else None,
            "by_epoch": {str(r["epoch"]): {"mAP": r["mAP"], "rank1": r["rank1"],
                                           **({"clusters": r["num_clusters"]} if "num_clusters" in r else {})}
                         for r in evaluated},
            "minutes": round(minutes, 1), "threads": (cfg.get("train") or {}).get("threads"), "paper": row.paper}
    weights = start_path(row.recipe, row.sets)
    if weights is not None and Path(weights).is_file():
        line["start"] = file_digest(weights)           # the start's bytes (same_run pairs runs of one start only)
    if trained:
        # the last trained epoch's record (its loss parts, e.g. each token's cross-entropy) and the training speed
        line["last_epoch"] = {k: v for k, v in trained[-1].items() if isinstance(v, (int, float))
                              and not isinstance(v, bool)}
        timed = [r for r in trained if r.get("iters") and r.get("train_s")]
        if timed:
            batch = cfg["train"]["num_ids"] * cfg["train"]["num_instances"]
            seconds = sum(r["train_s"] for r in timed)
            line["train_images_per_s"] = round(sum(r["iters"] * batch for r in timed) / seconds, 1)
    evs = {ev.name: evaluate(run_dir, ev) for ev in table.evaluations if row.name in ev.rows}
    if evs:
        line["evaluations"] = evs
    if table.measure:
        line.update(measure_model(run_dir, table.measure))
    return line


def done_keys(results_file: Path) -> set:
    return {(r["row"], r["seed"], r["key"]) for r in results(results_file)}


def run_one(table: Table, row: Row, seed: int, out: Path, results_file: Path, keep: bool, threads: int) -> str:
    """One run, unless its line is already in the results (read again now: another runner may share the
    table): "done", "trained", "held" or "failed"."""
    name = run_name(row, seed)
    if (row.name, seed, run_key(row, seed)) in done_keys(results_file):
        print(f"{name}: done ({results_file.name})", flush=True)
        return "done"
    start = time.perf_counter()
    status, run_dir = train(row, seed, out, threads)
    if status == "held":
        print(f"{name}: in use by another runner; skipped", flush=True)
        return status
    if status == "failed":
        print(f"{name}: failed (see {run_dir / 'log.txt'})", flush=True)
        return status
    try:
        line = record(table, row, seed, run_dir, (time.perf_counter() - start) / 60)
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        print(f"{name}: trained, but its record could not be made ({e}); its checkpoints are kept, run the table "
              f"again to retry", flush=True)
        return "failed"
    with _append:
        with open(results_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")
    print(json.dumps(line), flush=True)
    if not keep:
        for p in run_dir.glob("*.pt"):
            p.unlink()
    return "trained"


def run_all(table: Table, todo: list[tuple[Row, int]], out: Path, results_file: Path, keep: bool, jobs: int,
            dry_run: bool) -> dict[str, int]:
    counts: dict[str, int] = {}
    if dry_run:
        done = done_keys(results_file)
        for row, seed in todo:
            state = "done" if (row.name, seed, run_key(row, seed)) in done else "to run"
            print(f"{run_name(row, seed)} ({state}): python main.py --config {row.recipe} --seed {seed} "
                  + " ".join(f"--set {s!r}" for s in row.sets), flush=True)
        return counts
    sets_threads = any(s.startswith("train.threads=") for row, _ in todo for s in row.sets)
    threads = 0 if sets_threads or jobs == 1 else max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for status in pool.map(lambda rs: run_one(table, rs[0], rs[1], out, results_file, keep, threads), todo):
            counts[status] = counts.get(status, 0) + 1
    return counts


def metric_by_seed(lines: list[dict], row: Row) -> dict[int, float]:
    latest = latest_starts(lines)
    return {x["seed"]: x["mAP"] for x in lines
            if x["row"] == row.name and same_run(row, x, latest) and x.get("mAP") is not None}


def run_table(table: Table, out: Path, results_file: Path, rows: list[str] | None = None,
              seeds: list[int] | None = None, keep: bool = False, dry_run: bool = False, jobs: int = 1) -> int:
    """The table's runs, then seeds for undecided comparisons; the number of failed runs."""
    chosen = [row for row in table.rows if not rows or row.name in rows]
    counts = run_all(table, [(row, seed) for row in chosen for seed in (seeds or table.seeds)], out, results_file,
                     keep, jobs, dry_run)
    by_name = {r.name: r for r in table.rows}
    while table.comparisons and table.max_seeds and not dry_run and not seeds:
        lines = results(results_file)
        todo = []
        for c in table.comparisons:
            if rows and not {c.a, c.b} <= set(rows):
                continue
            a, b = metric_by_seed(lines, by_name[c.a]), metric_by_seed(lines, by_name[c.b])
            p = paired(a, b)
            if p.verdict == "undecided" and p.n < table.max_seeds and p.n >= len(table.seeds):
                s = next_seed(p, set(a) | set(b))
                print(f"{c.name}: undecided over seeds {', '.join(map(str, p.seeds))} ({p.words()} points); "
                      f"adding seed {s}", flush=True)
                todo += [(by_name[c.a], s), (by_name[c.b], s)]
        todo = list(dict.fromkeys((r.name, s) for r, s in todo))
        if not todo:
            break
        more = run_all(table, [(by_name[n], s) for n, s in todo], out, results_file, keep, jobs, False)
        for k, v in more.items():
            counts[k] = counts.get(k, 0) + v
        if not more.get("trained"):
            break                            # nothing new (failed, or held by another runner): stop asking
    if counts.get("held"):
        print(f"{counts['held']} run(s) held by another runner were skipped; --summary once it ends", flush=True)
    return counts.get("failed", 0)


def _stats(values: list[float]) -> str:
    v = [100 * x for x in values]
    if len(v) == 1:
        return f"{v[0]:.1f}"
    return f"{statistics.mean(v):.1f} ({min(v):.1f}-{max(v):.1f}, sd {statistics.stdev(v):.1f})"


def summary(table: Table, lines: list[dict]) -> str:
    """The markdown tables of the finished runs of ``table`` (its current rows' keys, in its regime): the rows,
    then the comparisons' paired verdicts."""
    by_name = {r.name: r for r in table.rows}
    latest = latest_starts(lines)
    mine = [x for x in lines if x["row"] in by_name and same_run(by_name[x["row"]], x, latest)
            and x.get("mAP") is not None]
    head = ["row", "seeds", "final mAP: mean (min-max, sd)", "rank-1 (mean)", "clusters (mean)", "minutes (mean)"]
    head += [f"mAP at epoch {e}" for e in table.epochs]
    extra = [k for k in ("params_M", "inference_images_per_s") if any(k in x for x in mine)]
    head += extra + [f"paper ({table.paper})" if table.paper else "paper"]
    out = [f"**{table.title}** ({table.path.name}, {table.regime} regime)", "", "| " + " | ".join(head) + " |",
           "|" + " --- |" * len(head)]

    def line(name: str, got: list[dict], paper: str, get=None) -> str:
        timed, get = get is None, get or (lambda x: x)     # an evaluation's line has no minutes of its own
        vals = [get(x) for x in got]
        seeds = ",".join(str(x["seed"]) for x in got)
        clusters = [x["clusters"] for x in got if x.get("clusters") is not None]
        minutes = [x["minutes"] for x in got if x.get("minutes") is not None]
        rank1 = statistics.mean(v["rank1"] for v in vals)
        cells = [name, seeds, _stats([v["mAP"] for v in vals]), f"{100 * rank1:.1f}",
                 f"{statistics.mean(clusters):.0f}" if clusters else "-",
                 f"{statistics.mean(minutes):.0f}" if minutes and timed else "-"]
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
    if table.comparisons:
        out += ["", "| comparison (b vs a) | paired seeds | b - a, mAP points: mean [95% interval] | verdict | "
                    "published |", "| --- | --- | --- | --- | --- |"]
        for c in table.comparisons:
            p = paired(metric_by_seed(mine, by_name[c.a]), metric_by_seed(mine, by_name[c.b]))
            out.append(f"| {c.name} | {','.join(map(str, p.seeds)) or '-'} | {p.words()} | "
                       f"{p.verdict if p.n else '-'} | {c.paper} |")
    return "\n".join(out)


def positive_seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed: give whole numbers >= 0") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} is not a seed: give whole numbers >= 0 (numpy's seeds are)")
    return v


def writable_folder(path: Path, what: str) -> None:
    """``path`` is (or can be made) a folder this process writes in; else a TableError that says what to give."""
    if path.exists() and not path.is_dir():
        raise TableError(f"{what} {path} is a file: give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".ablate-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise TableError(f"{what} {path} cannot be written ({e.strerror}): give a folder you can write in") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", help="a table file, or the name of one under benchmarks/tables/")
    p.add_argument("--regime", choices=("short", "paper"), default="short",
                   help="short: the table as written; paper: each recipe's own schedule from the table's start")
    p.add_argument("--start", help="the papers' regime's start instead of the table's (a weight file, or a "
                                   "pretraining recipe's run)")
    p.add_argument("--rows", nargs="+", help="only these rows (by name)")
    p.add_argument("--seeds", type=positive_seed, nargs="+", help="these seeds instead of the table's")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="an override of every row, after the table's (e.g. device=cuda); part of each run's key")
    p.add_argument("--out", help="where the run folders go (default outputs/ablations/<table>)")
    p.add_argument("--results", help="the results file (default benchmarks/results/<table>.jsonl)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (each at cores / jobs threads)")
    p.add_argument("--keep-checkpoints", action="store_true")
    p.add_argument("--summary", action="store_true", help="print the tables of the finished runs only")
    p.add_argument("--dry-run", action="store_true", help="print the runs, make none")
    a = p.parse_args(argv)
    try:
        if a.jobs < 1:
            raise TableError(f"--jobs {a.jobs}: give 1 or more")
        table = load_table(a.table, a.sets, a.regime, a.start, check=not a.summary)
        if a.rows and set(a.rows) - {r.name for r in table.rows}:
            raise TableError(f"--rows: {', '.join(sorted(set(a.rows) - {r.name for r in table.rows}))} not in "
                             f"{table.path.name}; its rows: {', '.join(r.name for r in table.rows)}")
        out = Path(a.out or ROOT / "outputs" / "ablations" / table.stem)
        results_file = Path(a.results) if a.results else RESULTS / f"{table.stem}.jsonl"
        if results_file.is_dir():
            raise TableError(f"--results {results_file} is a folder: give a file (e.g. {results_file / 'x.jsonl'})")
        if not a.summary and not a.dry_run:
            writable_folder(out, "--out")
            writable_folder(results_file.parent, "the results file's folder")
    except TableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    if not a.summary:
        print(f"{table.regime} regime; runs under {out}, results in {results_file}", flush=True)
        failed = run_table(table, out, results_file, a.rows, a.seeds, a.keep_checkpoints, a.dry_run, a.jobs)
    if not a.dry_run:
        print(summary(table, results(results_file, warn=True)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
