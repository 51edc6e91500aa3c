"""``python main.py --mode check-data --dataset NAME``: is this copy of a dataset complete and intact?

Counts identities, images and cameras per split next to the published counts, reads every image in
full (unreadable and truncated files), reports names that do not parse and byte-identical images that
appear in two splits. ``check_dataset`` returns the report; it is ``ok`` only when nothing is wrong.
"""
from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from PIL import Image
from rich.console import Console
from rich.progress import track
from rich.table import Table

from .datasets import DATASETS, ReIDDataset, build_dataset

SPLITS = ("train", "query", "gallery")


@dataclass
class CheckReport:
    name: str
    counts: dict[str, tuple[int, int, int]]
    published: dict[str, tuple] | None
    mismatches: list[str] = field(default_factory=list)
    bad_images: list[tuple[str, str]] = field(default_factory=list)     # (path, error)
    unparsed: dict[str, int] = field(default_factory=dict)               # ds.skipped, reasons -> count
    duplicates: list[tuple[str, str]] = field(default_factory=list)      # same bytes in two splits

    @property
    def ok(self) -> bool:
        return not (self.mismatches or self.bad_images or self.duplicates
                    or any("parse" in why for why in self.unparsed))

    def table(self) -> Table:
        t = Table(title=f"{self.name}: found / published (identities, images, cameras)")
        for col in ("split", "identities", "images", "cameras"):
            t.add_column(col, justify="right")
        for split, found in self.counts.items():
            pub = (self.published or {}).get(split)
            cells = [f"{f}" if pub is None or pub[i] is None else
                     (f"{f} / {pub[i]}" if f == pub[i] else f"[red]{f} / {pub[i]}[/red]") for i, f in enumerate(found)]
            t.add_row(split, *cells)
        return t


def published_counts(name: str, options: dict) -> dict[str, tuple] | None:
    if name in ("synthetic", "synthetic-occluded"):
        from .synthetic import SIZES
        s = SIZES[options.get("synthetic_size", "small")]
        return {"train": (s.train_ids, s.train_images, s.cameras), "query": (None, s.query_images, None),
                "gallery": (None, s.gallery_images - s.junk, None)}
    return DATASETS.info(name).published


def _read(path: str) -> tuple[str, str | None]:
    """md5 of the file and the error of decoding it in full (None when it decodes)."""
    try:
        data = open(path, "rb").read()
    except OSError as e:
        return "", f"cannot read: {e}"
    digest = hashlib.md5(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as e:  # PIL raises OSError for truncated files, UnidentifiedImageError, ...
        return digest, f"{type(e).__name__}: {e}"
    return digest, None


def check_dataset(ds: ReIDDataset, published: dict | None, workers: int = 4) -> CheckReport:
    splits = {k: getattr(ds, k) for k in SPLITS if getattr(ds, k)}
    counts = {k: (len({s.pid for s in v}), len(v), len({s.camid for s in v})) for k, v in splits.items()}
    report = CheckReport(ds.name, counts, published, unparsed=dict(ds.skipped))
    for split, pub in (published or {}).items():
        found = counts.get(split, (0, 0, 0))
        for label, f, p in zip(("identities", "images", "cameras"), found, pub):
            if p is not None and f != p:
                report.mismatches.append(f"{split}: {f} {label}, published {p}")
    owners: dict[str, list[tuple[str, str]]] = defaultdict(list)
    jobs = [(split, s.path) for split, v in splits.items() for s in v]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda j: _read(j[1]), jobs)
        for (split, path), (digest, err) in zip(jobs, track(results, total=len(jobs), description="reading images")):
            if err:
                report.bad_images.append((path, err))
            if digest:
                owners[digest].append((split, path))
    for entries in owners.values():
        if len({split for split, _ in entries}) > 1:
            report.duplicates.append(tuple(p for _, p in entries[:2]))
    return report


def run_check(name: str, root, workers: int = 4, console: Console | None = None, **options) -> list[CheckReport]:
    """Check a dataset (each part of ``a+b``); print the tables and problems on ``console``; return the reports."""
    console = console or Console()
    reports = []
    for part in name.split("+"):
        ds = build_dataset(part, root, **options)
        r = check_dataset(ds, published_counts(part, options), workers)
        console.print(r.table())
        for m in r.mismatches:
            console.print(f"[red]count mismatch[/red] {m}")
        for why, n in sorted(r.unparsed.items()):
            console.print(f"{'[red]' if 'parse' in why else ''}skipped{'[/red]' if 'parse' in why else ''}: {n} {why}")
        for path, err in r.bad_images[:20]:
            console.print(f"[red]bad image[/red] {path}: {err}")
        if len(r.bad_images) > 20:
            console.print(f"... and {len(r.bad_images) - 20} more bad images")
        for a, b in r.duplicates[:20]:
            console.print(f"[red]same image in two splits[/red] {a} == {b}")
        info = DATASETS.info(part) if part in DATASETS else None
        if info and info.test_only:
            console.print(f"{part} is test-only: evaluate on it with --test-dataset {part}")
        console.print(f"{ds.name}: " + ("[green]OK[/green]" if r.ok else
                                        f"[red]{len(r.mismatches)} count mismatches, {len(r.bad_images)} bad images, "
                                        f"{len(r.duplicates)} duplicates across splits[/red]"))
        reports.append(r)
    return reports
