"""``python main.py --mode check-data --dataset NAME``: is this copy of a dataset complete and intact?

Counts identities, images and cameras per split next to the published counts, reads every image in
full (unreadable and truncated files), reports names that do not parse and byte-identical images that
appear in two splits. ``check_dataset`` returns the report; it is ``ok`` only when nothing is wrong.
"""
from __future__ import annotations

import hashlib
import io
import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from reidlab.progress import track
from rich.table import Table

from .datasets import DATASETS, FOLDER_AT, MARKET_AT, ReIDDataset, build_dataset, dataset_names
from .images import rgb_image

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
    annotations: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)   # split -> kp, mask, parsing, n
    annotation_problems: list[tuple[str, str]] = field(default_factory=list)           # (image, what is wrong)

    @property
    def ok(self) -> bool:
        partial = any(0 < max(c[:3]) and min(c[:3]) < c[3] for c in self.annotations.values())
        return not (self.mismatches or self.bad_images or self.duplicates or self.annotation_problems or partial
                    or any("parse" in why for why in self.unparsed))

    def table(self) -> Table:
        t = Table(title=f"{self.name}: " + ("found" if self.published is None else "found / published")
                  + " (identities, images, cameras)")
        for col in ("split", "identities", "images", "cameras"):
            t.add_column(col, justify="right")
        for split, found in self.counts.items():
            pub = (self.published or {}).get(split)
            cells = [f"{f}" if pub is None or pub[i] is None else
                     (f"{f} / {pub[i]}" if f == pub[i] else f"[red]{f} / {pub[i]}[/red]") for i, f in enumerate(found)]
            t.add_row(split, *cells)
        return t


def published_counts(name: str, options: dict) -> dict[str, tuple] | None:
    if name.startswith((MARKET_AT, FOLDER_AT)):      # a user's own tree: its counts are what they are
        return None
    if name == "fractals":                          # generated at its own size, whatever the synthetic options
        return DATASETS.info(name).published
    if name in ("synthetic", "synthetic-occluded"):
        from .synthetic import SIZES
        s = SIZES[options.get("synthetic_size", "small")]
        return {"train": (s.train_ids, s.train_images, s.cameras), "query": (None, s.query_images, None),
                "gallery": (None, s.gallery_images - s.junk, None)}
    return DATASETS.info(name).published


def _read(path: str) -> tuple[str, str | None, tuple[int, int] | None]:
    """md5 of the file, the error of decoding it in full (None when it decodes), and its (width, height)."""
    try:
        data = open(path, "rb").read()
    except OSError as e:
        return "", f"cannot read: {e}", None
    digest = hashlib.md5(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as im:
            return digest, None, rgb_image(im).size    # decoded in full as the stores decode it
    except Exception as e:  # PIL raises OSError for truncated files, UnidentifiedImageError, ...
        return digest, f"{type(e).__name__}: {e}", None


def check_annotations(ds: ReIDDataset, splits: dict, sizes: dict[str, tuple[int, int]], report: CheckReport) -> None:
    """Teacher-annotation coverage per split (keypoints, masks, parsing), and the images whose mask or
    parsing is not the image's size or whose found keypoints lie outside it."""
    ann = ds.annotations
    if ann is None:
        return
    table_path = ann / "keypoints.json"
    try:
        table = json.loads(table_path.read_text())["images"] if table_path.is_file() else {}
    except (json.JSONDecodeError, KeyError) as e:
        report.annotation_problems.append((str(table_path), f"not a keypoints file: {e}"))
        table = {}
    for split, samples in splits.items():
        n_kp = n_mask = n_parse = 0
        for s in samples:
            rel = Path(s.path).resolve().relative_to(ds.root.resolve())
            size = sizes.get(s.path)
            kps = table.get(rel.as_posix())
            if kps is not None:
                n_kp += 1
                k = np.asarray(kps, dtype=float).reshape(-1, 3)
                if size and ((k[:, 2] > 0) & ((k[:, 0] < -1) | (k[:, 0] > size[0]) | (k[:, 1] < -1)
                                              | (k[:, 1] > size[1]))).any():
                    report.annotation_problems.append((s.path, "keypoints outside the image"))
            for folder in ("masks", "parsing"):
                f = ann / folder / rel.parent / (rel.stem + ".png")
                if f.is_file():
                    n_mask += folder == "masks"
                    n_parse += folder == "parsing"
                    with Image.open(f) as im:
                        if size and im.size != size:
                            report.annotation_problems.append(
                                (s.path, f"{folder[:-1] if folder == 'masks' else folder} is {im.size[0]} x "
                                         f"{im.size[1]}, the image {size[0]} x {size[1]}"))
        report.annotations[split] = (n_kp, n_mask, n_parse, len(samples))


def check_dataset(ds: ReIDDataset, published: dict | None, workers: int = 4) -> CheckReport:
    splits = {k: getattr(ds, k) for k in SPLITS if getattr(ds, k)}
    counts = {k: ("unlabelled" if k == "train" and not ds.labelled else len({s.pid for s in v}), len(v),
                  len({s.camid for s in v})) for k, v in splits.items()}
    report = CheckReport(ds.name, counts, published, unparsed=dict(ds.skipped))
    for split, pub in (published or {}).items():
        found = counts.get(split, (0, 0, 0))
        for label, f, p in zip(("identities", "images", "cameras"), found, pub):
            if p is not None and f != p:
                report.mismatches.append(f"{split}: {f} {label}, published {p}")
    owners: dict[str, list[tuple[str, str]]] = defaultdict(list)
    jobs = [(split, s.path) for split, v in splits.items() for s in v]
    sizes: dict[str, tuple[int, int]] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = pool.map(lambda j: _read(j[1]), jobs)
        for (split, path), (digest, err, size) in zip(jobs, track(results, total=len(jobs),
                                                                  description="reading images")):
            if err:
                report.bad_images.append((path, err))
            if digest:
                owners[digest].append((split, path))
            if size:
                sizes[path] = size
    for entries in owners.values():
        # a folder's transductive query and gallery are its labelled training images by design: not duplicates
        kinds = {"train" if ds.query_from_train else split for split, _ in entries}
        if len(kinds) > 1:
            report.duplicates.append(tuple(p for _, p in entries[:2]))
    check_annotations(ds, splits, sizes, report)
    return report


def run_check(name: str, root, workers: int = 4, console: Console | None = None, **options) -> list[CheckReport]:
    """Check a dataset (each part of ``a+b``); print the tables and problems on ``console``; return the reports."""
    console = console or Console()
    reports = []
    for part in dataset_names(name):
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
        if r.annotations:
            t = Table("split", "keypoints", "masks", "parsing", title=f"{ds.name}: teacher annotations (annotations/)")
            for split, (kp, mk, pa, n) in r.annotations.items():
                t.add_row(split, *[(f"{c} / {n}" if c == n else f"[yellow]{c} / {n}[/yellow]") for c in (kp, mk, pa)])
            console.print(t)
        else:
            console.print(f"{ds.name}: no teacher annotations (python main.py --mode teachers --dataset {part})")
        for path, what in r.annotation_problems[:20]:
            console.print(f"[red]annotation does not fit[/red] {path}: {what}")
        info = DATASETS.info(part) if part in DATASETS else None
        if part.startswith((MARKET_AT, FOLDER_AT)):
            kind = "market:PATH" if part.startswith(MARKET_AT) else "folder:PATH, no identity labels"
            console.print(f"{ds.name}: a tree of your own ({kind}): counts as found, not compared with a "
                          f"published benchmark")
        if info and info.test_only:
            console.print(f"{part} is test-only: evaluate on it with --test-dataset {part}")
        console.print(f"{ds.name}: " + ("[green]OK[/green]" if r.ok else
                                        f"[red]{len(r.mismatches)} count mismatches, {len(r.bad_images)} bad images, "
                                        f"{len(r.duplicates)} duplicates across splits, "
                                        f"{len(r.annotation_problems)} annotations that do not fit[/red]"))
        reports.append(r)
    return reports
