"""How far apart do runs of the demo fall at one seed, next to the spread over seeds? (runs/determinism.py)

    python -m benchmarks.noise_floor                                # both parts below
    python -m benchmarks.noise_floor --threads 1 2 --seeds          # two non-deterministic runs only
    python -m benchmarks.noise_floor --summary OUT/noise_floor.jsonl

  noise   seed 1, ``train.deterministic=false``, once per ``--threads`` entry (default 1 2 3 4 2: the
          thread count is what differs between two machines or two settings of OMP_NUM_THREADS; the
          second 2 repeats the first)
  seeds   ``train.deterministic=true`` at 2 threads (the demo recipe as shipped), seeds ``--seeds``
          (default 1-5)

One JSON line per run in ``OUT/noise_floor.jsonl``: the mAP curve, the final rank-1 and clusters, the
thread count, and a digest of the final weights (two runs with one digest are the same run bit for
bit), then the table of benchmarks.common.summary per part and one line per run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


from benchmarks.common import drop_checkpoints, output_folder, print_summary, summary, train_run
from reidlab.runs.checkpoint import load_checkpoint, state_digest
from reidlab.runs.run import setup_logging

ROWS = ("seed 1, default kernels, threads as listed", "deterministic, 2 threads, seeds as listed")


def weights_digest(run_dir: Path) -> str:
    return state_digest(load_checkpoint(Path(run_dir, "last.pt"))["model"])


def report(lines: list[dict]) -> None:
    print_summary(summary(lines, list(ROWS)))
    for r in lines:
        print(f"{r['row']}: seed {r['seed']}, {r['threads']} threads, final mAP {100 * r['mAP'][-1]:.1f}, "
              f"rank-1 {100 * r['rank1'][-1]:.1f}, weights {r['weights']}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2, 3, 4, 2], help="noise part: one run per entry")
    p.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5], help="seeds part: one run per seed")
    p.add_argument("--recipe", default="demo")
    p.add_argument("--data-root", default=None)
    p.add_argument("--output", default=None)
    p.add_argument("--summary", default=None, metavar="JSONL", help="print the table of the runs in this file and stop")
    a = p.parse_args(argv)
    if a.summary:
        report([json.loads(x) for x in Path(a.summary).read_text().splitlines() if x.strip()])
        return
    setup_logging()
    out = output_folder(a.output, "noise_floor_")
    results = Path(out, "noise_floor.jsonl")
    plan = [(ROWS[0], 1, n, False) for n in a.threads] + [(ROWS[1], s, 2, True) for s in a.seeds]
    for i, (row, seed, threads, deterministic) in enumerate(plan):
        sets = [f"seed={seed}", f"train.threads={threads}", f"train.deterministic={str(deterministic).lower()}",
                "device=cpu", f"output={out}", f"name=noise-{i}-seed{seed}-threads{threads}"]
        cfg, records, minutes = train_run(a.recipe, sets + ([f"data.root={a.data_root}"] if a.data_root else []),
                                          keep_checkpoints=True)
        run_dir = Path(out, cfg.name)
        digest = weights_digest(run_dir)
        drop_checkpoints(run_dir, False)
        evaluated = [r for r in records if "mAP" in r and r["epoch"] > 0]
        line = {"benchmark": "noise_floor", "row": row, "seed": seed, "threads": threads,
                "deterministic": deterministic, "epochs": [r["epoch"] for r in evaluated],
                "mAP": [r["mAP"] for r in evaluated], "rank1": [r["rank1"] for r in evaluated],
                "clusters": [r.get("num_clusters") for r in evaluated], "weights": digest,
                "minutes": round(minutes, 1)}
        with results.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)
    report([json.loads(x) for x in results.read_text().splitlines() if x.strip()])


if __name__ == "__main__":
    main()
