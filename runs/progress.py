"""Rich progress bars for long work, and the end-of-run table."""
from __future__ import annotations

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

console = Console()


def progress_bar() -> Progress:
    """A bar with a free text field ``info`` (e.g. the running loss)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console)


def metrics_table(records: list[dict], title: str) -> Table:
    """The evaluated epochs; cluster columns only for runs that cluster (the unsupervised loop)."""
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
        def count(k):
            return "-" if r.get(k) is None else str(r[k])
        row = [str(r["epoch"])] + ([count("num_clusters"), count("num_outliers")] if clusters else [])
        row += [f"{r['loss']:.3f}" if r.get("loss") is not None else "", pct(r, "mAP"), pct(r, "rank1"),
                pct(r, "rank5"), pct(r, "mINP")]
        table.add_row(*row)
    return table
