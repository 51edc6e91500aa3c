"""Parity with Cluster Contrast's own code: its runs beside ours, in the demo's setting, with an interval.

    python -m benchmarks.parity_code --from-logs /path/to/its/logs     # its runs' numbers, from its log.txt files
    python -m benchmarks.parity_code                                   # the comparison

Cluster Contrast's code (github:alibaba/cluster-contrast-reid) runs outside the project, in a scratch folder, on the
CPU (what that takes: docs/results.md, "Parity with Cluster Contrast's code, decided"), with the demo's values on
our synthetic-small given to it as market1501; each run writes a log.txt. ``--from-logs`` reads the figures of
every finished ``s<seed>/log.txt`` under a folder (the clusters of each epoch, the mAP of each evaluated epoch, the
final mAP and rank-1 of its best model, the minutes) into ``benchmarks/results/cluster_contrast_code.jsonl``,
beside the seeds it holds, data the repository keeps; no code of it is read or kept. Our runs are the table
``parity_code`` of the ablation runner (``benchmarks/results/parity_code.jsonl``). The two codes draw different
random streams, so seed s of the one is not seed s of the other: the comparison is of the means, with Welch's 95%
interval (benchmarks/verdicts.py). Seed s of either code starts from the same initial weights (its ``create_model`` and
our model draw the same ResNet-18 under one seed: benchmarks/parity_step.py, stage 1), so the comparison is also
given paired by seed, which removes the spread the initial weights make and no other.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from benchmarks.ablate import results
from benchmarks.ablate_tables import RESULTS, load_table, same_run
from benchmarks.verdicts import paired, welch
from reidlab.data.files import write_atomic

THEIRS = RESULTS / "cluster_contrast_code.jsonl"
COMMAND = ("examples/cluster_contrast_train_usl.py -d market1501 -a resnet18 --height 64 --width 32 -b 64 "
           "--num-instances 4 --iters 100 --epochs 10 --eps 0.4 --momentum 0.1 --step-size 8 --eval-step 2 "
           "(pad 4, one thread; at commit 57b62e9)")


def read_log(path: Path) -> dict | None:
    """The figures of one run's log.txt of Cluster Contrast's code; None for a file without its Args line (not
    such a log)."""
    text = path.read_text(errors="replace")
    args = re.search(r"seed=(\d+)", text)
    if args is None:
        return None
    seed = int(args.group(1))
    clusters = {int(e) + 1: int(c) for e, c in re.findall(r"Statistics for epoch (\d+): (\d+) clusters", text)}
    by_epoch = {str(int(e) + 1): {"mAP": float(m) / 100}
                for e, m in re.findall(r"Finished epoch\s+(\d+)\s+model mAP:\s+([\d.]+)%", text)}
    final = re.search(r"Test with the best model:.*?Mean AP: ([\d.]+)%.*?top-1\s+([\d.]+)%", text, re.S)
    minutes = re.search(r"Total running time:\s+(\d+):(\d+):([\d.]+)", text)
    last = str(max(int(e) for e in by_epoch)) if by_epoch else None
    return {"code": "alibaba/cluster-contrast-reid", "seed": seed, "command": COMMAND,
            "mAP": by_epoch[last]["mAP"] if last else None, "epoch": int(last) if last else None,
            "best_mAP": float(final.group(1)) / 100 if final else None,
            "best_rank1": float(final.group(2)) / 100 if final else None,
            "clusters": clusters.get(int(last)) if last else None, "by_epoch": by_epoch,
            "minutes": round(int(minutes.group(1)) * 60 + int(minutes.group(2)) + float(minutes.group(3)) / 60, 1)
            if minutes else None}


def from_logs(folder: Path) -> list[dict]:
    """The finished runs under ``folder`` into THEIRS, beside the seeds it already holds (a seed read again
    replaces its line; the seeds of earlier sessions, whose logs are gone, stay)."""
    lines = []
    for p in sorted(folder.glob("s*/log.txt")):
        line = read_log(p)
        if line is None:
            print(f"{p}: no seed= in it, not a log of Cluster Contrast's code: left out", file=sys.stderr)
        elif line["best_mAP"] is not None:                               # finished runs only
            lines.append(line)
    kept = {x["seed"]: x for x in theirs()}
    kept.update({x["seed"]: x for x in lines})
    write_atomic(THEIRS, "".join(json.dumps(kept[s]) + "\n" for s in sorted(kept)).encode())
    return lines


def theirs() -> list[dict]:
    return [json.loads(x) for x in THEIRS.read_text().splitlines() if x.strip()] if THEIRS.is_file() else []


def ours() -> list[dict]:
    table = load_table("parity_code")
    row = table.rows[0]
    return [x for x in results(RESULTS / "parity_code.jsonl") if same_run(row, x)]


def compare() -> str:
    their_runs, mine = theirs(), ours()
    if not their_runs or not mine:
        return "no runs of one of the two codes yet"
    out = ["| code | seeds | final mAP: mean (min-max) | mAP at epochs 2 / 4 / 6 / 8 (means) |",
           "| --- | --- | --- | --- |"]
    for name, runs in (("Cluster Contrast's code", their_runs), ("ours, whole-batch BatchNorm", mine)):
        finals = [100 * x["mAP"] for x in runs]
        curve = " / ".join(f"{statistics.mean(100 * x['by_epoch'][str(e)]['mAP'] for x in runs):.1f}"
                           for e in (2, 4, 6, 8))
        out.append(f"| {name} | {','.join(str(x['seed']) for x in sorted(runs, key=lambda x: x['seed']))} | "
                   f"{statistics.mean(finals):.1f} ({min(finals):.1f}-{max(finals):.1f}) | {curve} |")
    w = welch([x["mAP"] for x in their_runs], [x["mAP"] for x in mine])
    by_seed = paired({x["seed"]: x["mAP"] for x in their_runs}, {x["seed"]: x["mAP"] for x in mine})
    out += ["", f"ours - theirs, final mAP: {w.words()} points (Welch's 95% interval, {w.n_a} and {w.n_b} runs): "
                f"{w.verdict}",
            f"paired by seed (seed s gives both codes the same initial weights, benchmarks/parity_step.py; their data "
            f"order and augmentation draws differ): {by_seed.words()} points over seeds "
            f"{','.join(map(str, by_seed.seeds))}: {by_seed.verdict}"]
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from-logs", help="a folder of its runs' s<seed>/log.txt to read first")
    a = p.parse_args(argv)
    if a.from_logs:
        if not Path(a.from_logs).is_dir():
            print(f"error: --from-logs {a.from_logs}: no such folder; give the folder of its runs' s<seed>/log.txt",
                  file=sys.stderr)
            return 2
        got = from_logs(Path(a.from_logs))
        print(f"{len(got)} finished runs of Cluster Contrast's code written to {THEIRS}")
    print(compare())
    return 0


if __name__ == "__main__":
    sys.exit(main())
