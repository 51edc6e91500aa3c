"""What a dataset is: three lists of ``Sample(path, pid, camid)`` -- ``train``, ``query``, ``gallery`` -- with 0-based
camera ids and training identities relabelled 0..N-1, and the files left out, counted by reason (``Skipped``).

This module imports nothing of ``reidlab.data`` (only the package's error classes), so that every parser, generator
and reader of annotations can import it while ``datasets`` (the registry) imports them: the arrows run one way.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from reidlab.errors import DatasetError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp"}
MARKET_AT = "market:"                # market:PATH, a Market-format tree at any path, under any name
FOLDER_AT = "folder:"                # folder:PATH, unlabelled crops (data.folder_dataset)


class Skipped(Counter):
    """Files left out of a dataset, counted by reason, with the first example of each reason."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.examples: dict[str, str] = {}

    def add(self, reason: str, example) -> None:
        self[reason] += 1
        self.examples.setdefault(reason, str(example))

    def merge(self, other: "Skipped") -> None:
        self.update(other)
        for reason, example in getattr(other, "examples", {}).items():
            self.examples.setdefault(reason, example)


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
    skipped: Skipped = field(default_factory=Skipped)
    annotations: Path | None = None      # folder of teacher annotations (see data.annotations), if any
    parts: list["ReIDDataset"] = field(default_factory=list)   # the datasets a combined one was made of
    labelled: bool = True                # False: a folder of crops without identity labels (data.folder_dataset)
    query_from_train: bool = False       # query and gallery are labelled training images (data.folder_dataset)

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.train})

    @property
    def num_cams(self) -> int:
        return len({s.camid for s in self.train + self.query + self.gallery})

    def summary(self) -> str:
        def one(split):
            return f"{len({s.pid for s in split})} ids / {len(split)} images / {len({s.camid for s in split})} cams"
        if not self.labelled:
            text = (f"{self.name} at {self.root}: train {len(self.train)} images without identity labels / "
                    f"{len({s.camid for s in self.train})} cams")
        else:
            text = f"{self.name} at {self.root}: train {one(self.train)}"
        text += f"; query {one(self.query)}; gallery {one(self.gallery)}" if self.query or self.gallery else \
            "; no query or gallery"
        if self.query_from_train:
            text += " (labelled training images: a transductive evaluation)"
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return text


def part_label(part: str) -> str:
    """One dataset's name as a file name can hold it: ``market:/data/cams/site_a`` -> ``site_a``."""
    for prefix in (MARKET_AT, FOLDER_AT):
        if part.startswith(prefix):
            part = Path(part[len(prefix):]).expanduser().resolve().name or prefix[:-1]
    return re.sub(r"[^\w.-]+", "_", part)


def require_training_split(ds: ReIDDataset) -> None:
    """A clear error when a test-only dataset (Occluded-REID, Partial-REID, ...) is asked to train."""
    if not ds.train:
        raise DatasetError(f"{ds.name} is a test-only dataset (no training split); train on another one and "
                           f"evaluate on it with --test-dataset {ds.name}")
