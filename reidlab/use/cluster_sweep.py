"""``--mode cluster-sweep``: choose eps, k1 and min_samples (DBSCAN), or the number of clusters (HDC, ``--clusters``),
by looking, not guessing.

A trained (or any) checkpoint's features of a dataset's training images are extracted once, as the
unsupervised loop extracts them at the start of an epoch; then for a grid of eps (and k1, min_samples) the
clustering of ``clustering.sweep`` gives, per setting: clusters, outliers, the largest cluster's share and
the median cluster size, and, where the training images have identity labels (a benchmark, or a
``folder:`` with a pid column), the adjusted Rand index and the adjusted mutual
information against them (each outlier counted as a
cluster of its own). The Jaccard graph is computed once per k1 and reused for every eps and min_samples.

With ``--clusters`` (a comma list or start:stop:step of numbers of clusters) it runs HDC (3C's clustering, with the
config's ``cluster.hdc_*`` settings) at each number instead, on one graph of the config's ``cluster.distance`` at its
k1: the value a user of their own data cannot know. The same columns, ``asked`` first.

It prints a table (the config's own setting marked ``*``), writes a plot (``--output``, default
``cluster_sweep.png``) and the same rows as JSON beside it (``cluster_sweep.json``).
"""
from __future__ import annotations

import math

import json
import logging
from pathlib import Path

import numpy as np
from rich.table import Table

from reidlab.clustering.ca_jaccard import ca_arguments
from reidlab.clustering.sweep import sweep
from reidlab.data import dataset_from_config
from reidlab.data.datasets import require_cameras, require_training_split
from reidlab.data.files import write_atomically
from reidlab.data.images import load_images
from reidlab.errors import ReIDError
from reidlab.evaluation import extract_features

log = logging.getLogger("reidlab.use")
DEFAULT_EPS = "0.2:0.7:0.05"


def parse_grid(text: str | None, flag: str, kind: type, low: float, high: float | None = None,
               default: list | None = None) -> list:
    """A comma list (``0.4,0.5``) or a range ``start:stop:step`` (start, start + step, ... up to
    stop, included when the steps reach it, never past it) of values in [low, high) (``high`` None: no upper
    bound), at most 200 (counted before any is made); a clear error for anything else."""
    if text is None:
        return list(default or [])
    most = 200
    try:
        if ":" in text:
            a, b, step = (kind(x) for x in text.split(":"))
            if not all(math.isfinite(x) for x in (a, b, step)) or step <= 0 or b < a:
                raise ValueError
            count = math.floor((b - a) / step + 1e-9) + 1      # the last step that does not pass stop
            if count > most:
                raise ReIDError(f"{flag} {text!r} is {count:.3g} values; give at most {most} (a larger step)")
            values = [kind(round(a + i * step, 6)) for i in range(count)]
        else:
            values = [kind(x) for x in text.split(",") if x.strip()]
            if kind is float and not all(math.isfinite(v) for v in values):
                raise ValueError
    except ValueError:
        form = "0.3,0.4,0.5 or 0.2:0.7:0.05 (start:stop:step)" if kind is float else "20,30 or 150:300:25"
        raise ReIDError(f"{flag} {text!r}: give a comma list or a range of "
                        f"{'numbers' if kind is float else 'whole numbers'}, e.g. {flag} {form}") from None
    bad = [v for v in values if not (v >= low and (high is None or v < high))] or ([] if values else ["none"])
    if bad or len(values) > most:
        span = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ReIDError(f"{flag} {text!r}: each value must be {span}, up to 200 of them "
                        f"(got {', '.join(map(str, bad)) or f'{len(values)} values'})")
    return sorted(set(values))


def plot(path: Path, rows: list[dict], own_eps: float, true_ids: int | None) -> None:
    """Clusters, outlier and largest-cluster shares, and (with labels) ARI / AMI against eps, a line per
    (k1, min_samples)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    scored = "ari" in rows[0]
    fig = Figure(figsize=(5 * (3 if scored else 2), 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3 if scored else 2)
    groups = sorted({(r["k1"], r["min_samples"]) for r in rows})
    for n, (k, m) in enumerate(groups):
        rs = [r for r in rows if (r["k1"], r["min_samples"]) == (k, m)]
        eps, colour, name = [r["eps"] for r in rs], f"C{n % 10}", f"k1 {k}, min_samples {m}"
        axes[0].plot(eps, [r["clusters"] for r in rs], "o-", color=colour, label=name)
        axes[1].plot(eps, [r["outlier_share"] for r in rs], "o-", color=colour, label=name)
        axes[1].plot(eps, [r["largest_cluster_share"] for r in rs], "s--", color=colour)
        if scored:
            axes[2].plot(eps, [r["ari"] for r in rs], "o-", color=colour, label=name)
            axes[2].plot(eps, [r["ami"] for r in rs], "s--", color=colour)
    if true_ids:
        axes[0].axhline(true_ids, color="grey", linestyle=":", label=f"{true_ids} true identities")
    titles = ("clusters", "share of the images: outliers (solid), largest cluster (dashed)",
              "against the identities: ARI (solid), AMI (dashed)")
    for ax, title in zip(axes, titles):
        ax.axvline(own_eps, color="black", linestyle=":", linewidth=1)
        ax.set_xlabel("eps (dotted: the config's)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.savefig(path)


def print_rows(rows: list[dict], own: tuple, console) -> None:
    scored = "ari" in rows[0]
    t = Table("k1", "min_s", "eps", "clusters", "outliers", "largest", "median", *(("ARI", "AMI") if scored else ()),
              title="clustering at each setting (* the config's own; largest: the largest cluster's share; "
                    "median: cluster size)")
    for r in rows:
        mark = "*" if (r["k1"], r["min_samples"], r["eps"]) == own else ""
        t.add_row(str(r["k1"]), str(r["min_samples"]), f"{r['eps']:g}{mark}", str(r["clusters"]),
                  f"{100 * r['outlier_share']:.1f}%", f"{100 * r['largest_cluster_share']:.1f}%",
                  f"{r['cluster_size_median']:g}", *((f"{r['ari']:.3f}", f"{r['ami']:.3f}") if scored else ()))
    console.print(t)


def train_features(model, cfg, device):
    """(dataset, L2-normalised features of its training images) as the unsupervised loop extracts them at
    the start of an epoch (unsup/trainer.py)."""
    ds = dataset_from_config(cfg)
    require_training_split(ds)
    images = load_images([s.path for s in ds.train], cfg.data.height, cfg.data.width, cfg.data.workers,
                         "loading training images", cfg.data.resize)
    return ds, extract_features(model, images, device, cfg.test.batch_size, description="train features",
                                amp=cfg.train.amp)


def plot_counts(path: Path, rows: list[dict], own: int, true_ids: int | None) -> None:
    """Clusters found, outlier and largest-cluster shares, and (with labels) ARI / AMI against the number asked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    scored = "ari" in rows[0]
    fig = Figure(figsize=(5 * (3 if scored else 2), 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3 if scored else 2)
    asked = [r["asked"] for r in rows]
    axes[0].plot(asked, [r["clusters"] for r in rows], "o-", label="clusters kept (min_samples)")
    axes[0].plot(asked, asked, ":", color="grey", label="asked")
    if true_ids:
        axes[0].axhline(true_ids, color="grey", linestyle="--", label=f"{true_ids} true identities")
    axes[1].plot(asked, [r["outlier_share"] for r in rows], "o-", label="outliers")
    axes[1].plot(asked, [r["largest_cluster_share"] for r in rows], "s--", label="largest cluster")
    if scored:
        axes[2].plot(asked, [r["ari"] for r in rows], "o-", label="ARI")
        axes[2].plot(asked, [r["ami"] for r in rows], "s--", label="AMI")
    for ax, title in zip(axes, ("clusters", "share of the images", "against the identities")):
        ax.axvline(own, color="black", linestyle=":", linewidth=1)
        ax.set_xlabel("clusters asked of HDC (dotted: the config's)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.savefig(path)


def run_cluster_sweep(model, cfg, ckpt, device, eps: list[float], k1: list[int], min_samples: list[int],
                      output: str, console, clusters: list[int] | None = None) -> Path:
    ds, feats = train_features(model, cfg, device)
    too_big = [k for k in k1 if k >= len(ds.train)]
    if too_big:
        raise ReIDError(f"--k1 {too_big[0]}: {ds.name} has {len(ds.train)} training images; give k1 below that")
    truth = np.array([s.pid for s in ds.train]) if ds.labelled or ds.query_from_train else None
    ids = None if truth is None else len(set(truth[truth >= 0].tolist()))
    c = cfg.cluster
    log.info("%s: %d training images%s; %d settings (%d Jaccard graphs)", ds.name, len(ds.train),
             f" of {ids} identities" + ("" if ds.labelled else f" in the {int((truth >= 0).sum())} labelled")
             if truth is not None else " without identity labels",
             len(eps) * len(k1) * len(min_samples), len(k1))
    if clusters:
        return count_sweep(ds, feats, cfg, ckpt, clusters, truth, ids, output, console)
    ca = None
    if c.distance == "ca-jaccard":                    # as the loop clusters after its first epoch
        require_cameras(ds, cfg)
        ca = ca_arguments(c)
        log.info("CA-Jaccard graphs (the config's cluster.distance): %s", ca)
    rows, _ = sweep(feats, eps, k1, min_samples, c.k2, c.knn, truth, progress=log.info,
                    cams=np.array([s.camid for s in ds.train]), ca=ca)
    print_rows(rows, (c.k1, c.min_samples, c.eps), console)
    return write_sweep(output, lambda tmp: plot(tmp, rows, c.eps, ids), rows, ckpt, ds, truth,
                       {"k1": c.k1, "k2": c.k2, "eps": c.eps, "min_samples": c.min_samples})


def write_sweep(output: str, draw, rows: list[dict], ckpt, ds, truth, config: dict) -> Path:
    """The sweep's plot (``draw(path)``) at ``output`` and its rows as JSON beside it, both written atomically."""
    path = write_atomically(output, draw, "the sweep's plot")
    header = {"checkpoint": str(ckpt["path"]), "dataset": ds.name, "images": len(ds.train),
              "labelled": truth is not None, "config": config}
    table = Path(output).with_suffix(".json")
    write_atomically(table, lambda tmp: tmp.write_text(json.dumps({**header, "rows": rows}, indent=1)),
                     "the sweep's table")
    log.info("plot written to %s, the rows to %s", path, table)
    return path


def count_sweep(ds, feats, cfg, ckpt, clusters: list[int], truth, ids, output: str, console) -> Path:
    """``--clusters``: HDC at each number of clusters on the config's distance graph (module docstring)."""
    from reidlab.clustering.methods import resolve_distance
    from reidlab.clustering.sweep import sweep_counts
    c = cfg.cluster
    too_many = [n for n in clusters if n > len(ds.train)]
    if too_many:
        raise ReIDError(f"--clusters {too_many[0]}: {ds.name} has {len(ds.train)} training images; give at most that")
    distance = resolve_distance(c.distance)(c)
    cams = np.array([s.camid for s in ds.train])
    if getattr(distance, "needs_cameras", False):
        require_cameras(ds, cfg)
    log.info("%s graph of %d features (k1 %d), then HDC at %d numbers of clusters", c.distance, len(feats), c.k1,
             len(clusters))
    graph = distance.graph(feats, cams, 2)            # as the loop after its first epoch
    rows, _ = sweep_counts(feats, graph, clusters, c, cfg.seed, truth, progress=log.info)
    scored = "ari" in rows[0]
    t = Table("asked", "clusters", "outliers", "largest", "median", *(("ARI", "AMI") if scored else ()), "seconds",
              title=f"HDC at each number of clusters (* the config's own, {c.hdc_num_clusters}; kept: clusters of "
                    f"{c.min_samples} or more)")
    for r in rows:
        t.add_row(f"{r['asked']}{'*' if r['asked'] == c.hdc_num_clusters else ''}", str(r["clusters"]),
                  f"{100 * r['outlier_share']:.1f}%", f"{100 * r['largest_cluster_share']:.1f}%",
                  f"{r['cluster_size_median']:g}", *((f"{r['ari']:.3f}", f"{r['ami']:.3f}") if scored else ()),
                  f"{r['hdc_s']:.1f}")
    console.print(t)
    return write_sweep(output, lambda tmp: plot_counts(tmp, rows, c.hdc_num_clusters, ids), rows, ckpt, ds, truth,
                       {"distance": c.distance, "k1": c.k1, "k2": c.k2, "min_samples": c.min_samples})
