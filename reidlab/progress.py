"""Progress for long work, and the tables a run prints.

On a terminal: rich progress bars. When stdout is not a terminal (a pipe, a file, a CI log): no bars, no
wrapping; a task that runs long says how far it is in an occasional plain line (every ``PLAIN_EVERY``
seconds, and once at its end when it took that long). ``--quiet`` turns progress off altogether."""
from __future__ import annotations

import io
import logging
import os
import sys
import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.progress import track as rich_track
from rich.table import Table

PLAIN_EVERY = 30.0                     # seconds between two plain progress lines
console = Console() if sys.stdout.isatty() else Console(width=int(os.environ.get("COLUMNS", 0) or 160),
                                                        soft_wrap=True)
quiet = {"progress": False}            # --quiet: no progress at all (runs.run.setup_logging)
log = logging.getLogger("reidlab")


def interactive() -> bool:
    return console.is_terminal and not console.quiet


class PlainProgress:
    """What a rich Progress offers this project (add_task, update, advance), as occasional plain lines."""

    def __init__(self):
        self.tasks: dict[int, dict] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for task in self.tasks.values():
            if exc[0] is None and time.monotonic() - task["start"] >= PLAIN_EVERY:
                self._line(task, done=True)
        return False

    def add_task(self, description: str, total: float | None = None, **fields) -> int:
        now = time.monotonic()
        self.tasks[len(self.tasks)] = {"description": description, "total": total, "done": 0, "fields": fields,
                                       "start": now, "last": now}
        return len(self.tasks) - 1

    def update(self, task_id: int, advance: float = 0, description: str | None = None, **fields) -> None:
        task = self.tasks[task_id]
        task["done"] += advance
        task["fields"].update(fields)
        if description:
            task["description"] = description
        if time.monotonic() - task["last"] >= PLAIN_EVERY:
            self._line(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance)

    @staticmethod
    def _line(task: dict, done: bool = False) -> None:
        task["last"] = now = time.monotonic()
        total = task["total"]
        where = f"{task['done']:g}/{total:g}" if total else f"{task['done']:g}"
        pct = f" ({100 * task['done'] / total:.0f}%)" if total else ""
        info = task["fields"].get("info", "")
        console.print(f"{time.strftime('%H:%M:%S')} {task['description']}: {'done, ' if done else ''}{where}{pct}, "
                      f"{now - task['start']:.0f} s{', ' + info if info else ''}", highlight=False, markup=False)


def track(sequence, description: str = "working", total: float | None = None, disable: bool = False):
    """rich's ``track`` on a terminal; occasional plain lines otherwise; nothing with ``disable`` or --quiet."""
    if disable or quiet["progress"] or console.quiet:
        yield from sequence
        return
    if console.is_terminal:
        yield from rich_track(sequence, description=description, total=total, console=console)
        return
    if total is None and hasattr(sequence, "__len__"):
        total = len(sequence)
    with PlainProgress() as bar:
        task = bar.add_task(description, total=total)
        for item in sequence:
            yield item
            bar.update(task, advance=1)


def progress_bar():
    """A bar with a free text field ``info`` (e.g. the running loss); plain lines when not on a terminal."""
    if not console.is_terminal or quiet["progress"]:
        return PlainProgress() if not quiet["progress"] else SilentProgress()
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console)


class SilentProgress(PlainProgress):
    @staticmethod
    def _line(task: dict, done: bool = False) -> None:
        pass


def stage_progress():
    """A short transient bar of a few named stages (the clustering step's); none when not on a terminal."""
    return Progress(transient=True, console=console, disable=not interactive() or quiet["progress"])


def show(renderable) -> None:
    """Print a table on the console and put the same text in the run's log.txt (not twice on the console)."""
    console.print(renderable)
    buffer = io.StringIO()
    Console(file=buffer, width=160, no_color=True, soft_wrap=True).print(renderable)
    log.info("%s", "\n" + buffer.getvalue().rstrip(), extra={"file_only": True})


def metrics_table(records: list[dict], title: str) -> Table:
    """The evaluated epochs; cluster columns only for runs that cluster (the unsupervised loop). A run that
    never evaluates (no query and gallery) shows every epoch with what is known without labels instead."""
    if records and not any("mAP" in r for r in records) and any("num_clusters" in r for r in records):
        return label_free_table(records, title)
    table = Table(title=title)
    clusters = any("num_clusters" in r for r in records)
    cols = ["epoch"] + (["clusters", "outliers"] if clusters else []) + ["loss", "mAP", "rank-1", "rank-5", "mINP"]
    for col in cols:
        table.add_column(col, justify="right")

    def pct(r, k):
        return f"{100 * r[k]:.1f}" if k in r else ""
    for r in records:
        if "mAP" not in r:
            continue
        row = [str(r["epoch"])] + ([count(r, "num_clusters"), count(r, "num_outliers")] if clusters else [])
        row += [f"{r['loss']:.3f}" if r.get("loss") is not None else "", pct(r, "mAP"), pct(r, "rank1"),
                pct(r, "rank5"), pct(r, "mINP")]
        table.add_row(*row)
    return table


def count(r: dict, k: str) -> str:
    return "-" if r.get(k) is None else str(r[k])


def label_free_table(records: list[dict], title: str) -> Table:
    """Every epoch of a run without labels: clusters, outliers, the median size and largest share of the
    clusters, the mean intra-cluster cosine, the pseudo-labels that moved, the loss (unsup/label_free.py)."""
    table = Table(title=f"{title} (no labels: what the clustering says)")
    for col in ("epoch", "clusters", "outliers", "median", "largest", "intra-cos", "moved", "loss"):
        table.add_column(col, justify="right")
    for r in records:
        if "num_clusters" not in r:
            continue
        table.add_row(str(r["epoch"]), count(r, "num_clusters"), count(r, "num_outliers"),
                      f"{r.get('cluster_size_median', 0):g}", f"{100 * r.get('largest_cluster_share', 0):.1f}%",
                      f"{r.get('intra_sim_mean', float('nan')):.3f}", count(r, "labels_changed"),
                      f"{r['loss']:.3f}" if r.get("loss") is not None else "")
    return table
