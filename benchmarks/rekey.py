"""Rewrite the keys of results files that an earlier version of the runner keyed otherwise.

    python -m benchmarks.rekey benchmarks/results/bot_ladder.jsonl [more files]

Each line's key is made again from the recipe, sets and seed the line stores, by this version's rule
(benchmarks/ablate_tables.py, "The key of a run"), so that the runner reports the line as its row's and does not
run it again. The file is replaced whole (a half-written file is never left); a line whose config cannot be built
now (a recipe since removed, a start file gone) keeps its key, and is named. Rekey only results whose runs this
version's code would make the same: the key holds the config, not the code.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.ablate_tables import TableError, config_digest, key_of
from reidlab.data.files import write_atomic
from reidlab.errors import ReIDError


def new_key(line: dict) -> str:
    return key_of(config_digest(line["recipe"], line["sets"]), line["seed"])


def rekey(path: Path) -> tuple[int, list[str]]:
    """The number of keys changed, and a line per line that kept its key (why)."""
    out, changed, kept = [], 0, []
    for n, text in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            line = json.loads(text)
        except json.JSONDecodeError:
            if text.strip():
                kept.append(f"{path.name}:{n}: not a JSON line, left as it is")
            out.append(text)
            continue
        try:
            key = new_key(line)
        except (TableError, KeyError, OSError, TypeError) as e:
            kept.append(f"{path.name}:{n} ({line.get('row')}, seed {line.get('seed')}): key kept: {e}")
            out.append(text)
            continue
        changed += key != line.get("key")
        line["key"] = key
        out.append(json.dumps(line))
    write_atomic(path, ("\n".join(out) + "\n").encode("utf-8"))
    return changed, kept


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    a = p.parse_args(argv)
    missing = [str(f) for f in a.files if not f.is_file()]
    if missing:
        print(f"error: {', '.join(missing)}: no such file; give results files (benchmarks/results/*.jsonl)",
              file=sys.stderr)
        return 2
    for f in a.files:
        try:
            changed, kept = rekey(f)
        except ReIDError as e:                  # a full disk, a read-only folder: the file stays as it was
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{f}: {changed} keys rewritten" + "".join(f"\n  {k}" for k in kept))
    return 0


if __name__ == "__main__":
    sys.exit(main())
