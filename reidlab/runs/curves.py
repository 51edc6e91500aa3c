"""``curves.png`` of a run: mAP and rank-1, the loss, and (unsupervised) clusters and outliers per epoch,
drawn with matplotlib's object-oriented API at a fixed size (``CURVES_SIZE``)."""
from __future__ import annotations

from pathlib import Path

CURVES_SIZE = (1500, 400)                     # pixels
DPI = 100


def plot_curves(records: list[dict], path: str | Path, title: str = "") -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    fig = Figure(figsize=(CURVES_SIZE[0] / DPI, CURVES_SIZE[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    clusters = any(r.get("num_clusters") is not None for r in records)
    axes = fig.subplots(1, 3 if clusters else 2)
    evaluated = [r for r in records if "mAP" in r]
    ax = axes[0]
    for key, label in (("mAP", "mAP"), ("rank1", "rank-1")):
        ax.plot([r["epoch"] for r in evaluated], [100 * r[key] for r in evaluated], marker="o", label=label)
    ax.set(xlabel="epoch", ylabel="%", title="evaluation")
    ax.legend()
    trained = [r for r in records if r.get("loss") is not None]
    ax = axes[1]
    ax.plot([r["epoch"] for r in trained], [r["loss"] for r in trained], marker="o", color="#d62728")
    ax.set(xlabel="epoch", ylabel="loss", title="training loss")
    if clusters:
        ax = axes[2]
        rows = [r for r in records if r.get("num_clusters") is not None]
        ax.plot([r["epoch"] for r in rows], [r["num_clusters"] for r in rows], marker="o", label="clusters")
        ax.plot([r["epoch"] for r in rows], [r["num_outliers"] for r in rows], marker="o", label="outliers")
        ax.set(xlabel="epoch", title="pseudo-labels")
        ax.legend()
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    return path
