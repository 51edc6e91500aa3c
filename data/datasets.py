"""Dataset parsers, registered by name.

A dataset is three lists of ``Sample(path, pid, camid)`` -- ``train``, ``query``, ``gallery`` -- with
0-based camera ids and training identities relabelled 0..N-1. Files that are not images are ignored
and counted in ``skipped``, as are Market's junk images (pid -1).
"""
from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from errors import DatasetError, closest

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass(frozen=True)
class Sample:
    path: str
    pid: int
    camid: int


@dataclass
class ReIDDataset:
    name: str
    root: Path
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    skipped: Counter = field(default_factory=Counter)
    annotations: Path | None = None      # folder of teacher annotations (see data.synthetic), if any

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.train})

    @property
    def num_cams(self) -> int:
        return len({s.camid for s in self.train + self.query + self.gallery})

    def summary(self) -> str:
        def one(split):
            return f"{len({s.pid for s in split})} ids / {len(split)} images / {len({s.camid for s in split})} cams"
        text = (f"{self.name} at {self.root}: train {one(self.train)}; query {one(self.query)}; "
                f"gallery {one(self.gallery)}")
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return text


DATASETS: dict[str, Callable[..., ReIDDataset]] = {}


def register_dataset(name: str):
    def deco(fn):
        DATASETS[name] = fn
        return fn
    return deco


def build_dataset(name: str, root: str | os.PathLike, **options) -> ReIDDataset:
    """Build a registered dataset from ``<root>/<its folder>``."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}{closest(name, DATASETS)}; "
                           f"known datasets: {', '.join(sorted(DATASETS))}")
    ds = DATASETS[name](Path(root), **options)
    log.info(ds.summary())
    return ds


# ---------------------------------------------------------------------------------------------
# Market-1501 and its folder format

MARKET_PATTERN = re.compile(r"([-\d]+)_c(\d)")
MARKET_LAYOUT = """expected layout:
  {root}/
    bounding_box_train/   0002_c1s1_000451_03.jpg ...
    bounding_box_test/
    query/
(the extra level Market-1501-v15.09.15/ inside it is fine)"""


def parse_market_folder(folder: Path, skipped: Counter, relabel: bool = False,
                        pattern: re.Pattern = MARKET_PATTERN) -> list[Sample]:
    """Samples of one Market-format folder: names ``PPPP_cC...``; junk (-1) dropped, distractors (0) kept.

    Camera ids become 0-based. With ``relabel`` the identities become 0..N-1 in sorted order."""
    items = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            skipped["non-image files"] += 1
            continue
        m = pattern.search(path.name)
        if m is None:
            skipped["names that do not parse"] += 1
            continue
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid == -1:
            skipped["junk images (pid -1)"] += 1
            continue
        if cam < 1:
            raise DatasetError(f"{path}: camera ids start at 1 in this naming scheme")
        items.append((str(path), pid, cam - 1))
    if relabel:
        mapping = {pid: i for i, pid in enumerate(sorted({p for _, p, _ in items}))}
        items = [(p, mapping[pid], c) for p, pid, c in items]
    return [Sample(*it) for it in items]


def find_market_root(base: Path, inner: str = "Market-1501-v15.09.15") -> Path:
    """``base`` itself, or its single inner release folder, whichever holds the three folders."""
    for cand in (base, base / inner):
        if all((cand / d).is_dir() for d in ("bounding_box_train", "bounding_box_test", "query")):
            return cand
    hint = "" if base.parent.is_dir() else f" (and {base.parent} does not exist either)"
    raise DatasetError(f"dataset folder not found or incomplete: {base}{hint}\n"
                       + MARKET_LAYOUT.format(root=base)
                       + "\nPut the dataset there, or point --data-root (or env REID_DATA) at its parent.")


def market_format(name: str, root: Path) -> ReIDDataset:
    skipped: Counter = Counter()
    train = parse_market_folder(root / "bounding_box_train", skipped, relabel=True)
    query = parse_market_folder(root / "query", skipped)
    gallery = parse_market_folder(root / "bounding_box_test", skipped)
    if not train or not query or not gallery:
        raise DatasetError(f"{root}: a split is empty (train {len(train)}, query {len(query)}, "
                           f"gallery {len(gallery)} images)\n" + MARKET_LAYOUT.format(root=root))
    ann = root / "annotations"
    return ReIDDataset(name, root, train, query, gallery, skipped, ann if ann.is_dir() else None)


@register_dataset("market1501")
def market1501(data_root: Path, **_) -> ReIDDataset:
    return market_format("market1501", find_market_root(data_root / "market1501"))


def _synthetic(name: str, occluded: bool):
    def build(data_root: Path, synthetic_size: str = "small", seed: int = 0, **_) -> ReIDDataset:
        from .synthetic import SIZES, ensure_synthetic
        if synthetic_size not in SIZES:
            raise DatasetError(f"unknown synthetic size {synthetic_size!r}{closest(synthetic_size, SIZES)}; "
                               f"choose one of {', '.join(SIZES)}")
        root = ensure_synthetic(data_root, synthetic_size, occluded=occluded, seed=seed)
        return market_format(f"{name}-{synthetic_size}", root)
    register_dataset(name)(build)


_synthetic("synthetic", occluded=False)
_synthetic("synthetic-occluded", occluded=True)


def dataset_from_config(cfg, name: str | None = None) -> ReIDDataset:
    """``cfg.data.dataset`` (or ``name``) under the run's data root, with the synthetic options of ``cfg.data``."""
    return build_dataset(name or cfg.data.dataset, cfg.data_root, synthetic_size=cfg.data.synthetic_size,
                         seed=cfg.data.synthetic_seed)
