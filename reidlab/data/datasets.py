"""Dataset parsers, registered by name.

A dataset is three lists of ``Sample(path, pid, camid)`` -- ``train``, ``query``, ``gallery`` -- with
0-based camera ids and training identities relabelled 0..N-1. Files that are not images are ignored
and counted in ``skipped``, as are Market's junk images (pid -1).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from reidlab.errors import ConfigError, DatasetError, closest
from reidlab.registry import Registry

from .combine import combine
from .folder_dataset import folder_dataset
from .samples import (FOLDER_AT, IMAGE_EXTENSIONS, MARKET_AT, ReIDDataset, Sample, Skipped,  # noqa: F401
                      part_label, require_training_split)
from .synthetic import SIZES, ensure_synthetic
from .synthetic.fractals import ensure_fractals
from .synthetic.generate import hard_suffix

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    """What the README and ``--mode check-data`` say about a registered dataset."""
    published: dict[str, tuple[int, int, int]] | None = None   # split -> (identities, images, cameras)
    test_only: bool = False              # no training split: evaluation only (e.g. trained on Market-1501)
    layout: str = ""                     # the expected folder layout, for errors and the README
    source: str = ""                     # where the published counts come from


DATASETS: Registry = Registry("dataset", DatasetError)


def register_dataset(name: str, info: DatasetInfo | None = None):
    """Register a parser ``fn(data_root, **options) -> ReIDDataset`` with what is known of the dataset."""
    return DATASETS.register(name, info or DatasetInfo())




def dataset_names(name: str) -> list[str]:
    """The datasets of ``a+b``: split at each ``+`` that starts another dataset (a registered name, or a
    ``market:`` / ``folder:`` path), so that a path holding ``+`` (``folder:/data/cam+lobby``) stays whole."""
    out: list[str] = []
    for piece in name.split("+"):
        starts = piece in DATASETS or piece.startswith((MARKET_AT, FOLDER_AT))
        if out and out[-1].startswith((MARKET_AT, FOLDER_AT)) and not starts:
            out[-1] += "+" + piece
        else:
            out.append(piece)
    return out


def dataset_label(name: str) -> str:
    """A dataset's name as a file name can hold it: ``market:/data/cams/site_a`` -> ``site_a`` (each part of
    ``a+b``: samples.part_label)."""
    return "+".join(part_label(part) for part in dataset_names(name))


def market_at(path: str) -> ReIDDataset:
    """``market:PATH``: the Market-format tree at ``PATH`` (or its inner release folder), named by its folder;
    its counts are the tree's own (``check-data`` compares them with no published benchmark)."""
    if not path:
        raise DatasetError("market:PATH needs the folder, e.g. --dataset market:/data/my_cameras")
    base = Path(path).expanduser()
    root = find_market_root(base, fix=f"Give the folder that holds these three with --dataset {MARKET_AT}PATH.")
    return market_format(dataset_label(MARKET_AT + path), root)


def build_dataset(name: str, root: str | os.PathLike, **options) -> ReIDDataset:
    """Build a registered dataset from ``<root>/<its folder>``; ``a+b`` trains on both (data.combine);
    ``market:PATH`` is a Market-format tree at PATH (the data root does not apply)."""
    names = dataset_names(name)
    if len(names) > 1:
        return combine([build_dataset(n, root, **options) for n in names])
    if name.startswith(MARKET_AT):
        ds = market_at(name[len(MARKET_AT):])
    elif name.startswith(FOLDER_AT):
        ds = folder_dataset(name[len(FOLDER_AT):], options.get("camera_from", "auto"),
                            options.get("camera_pattern", ""), options.get("labels_csv", ""))
    else:
        ds = DATASETS.get(name)(Path(root), **options)
    log.info(ds.summary())
    warn_skipped(ds)
    return ds


def warn_skipped(ds: ReIDDataset) -> None:
    """A warning, with the count and one example, for files left out because they could not be parsed
    (a misnamed image is a mistake worth seeing; junk images and stray non-image files are expected)."""
    for reason, n in sorted(ds.skipped.items()):
        if "parse" in reason:
            example = getattr(ds.skipped, "examples", {}).get(reason, "?")
            log.warning("%s: %d %s were left out, e.g. %s; rename them in the dataset's naming scheme to use them",
                        ds.name, n, reason, example)


# ---------------------------------------------------------------------------------------------
# Market-1501 and its folder format

MARKET_PATTERN = re.compile(r"^(-1|\d+)_c(\d+)")      # identity (or -1: junk), camera; from the name's start
MARKET_LAYOUT = """expected layout:
  {root}/
    bounding_box_train/   0002_c1s1_000451_03.jpg ...
    bounding_box_test/
    query/
(the extra level {inner}/ inside it is fine)"""


def parse_market_folder(folder: Path, skipped: Skipped, relabel: bool = False,
                        pattern: re.Pattern = MARKET_PATTERN) -> list[Sample]:
    """Samples of one Market-format folder: names ``PPPP_cC...``; junk (-1) dropped, distractors (0) kept.

    Camera ids become 0-based. With ``relabel`` the identities become 0..N-1 in sorted order."""
    items = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            skipped.add("non-image files", path)
            continue
        m = pattern.search(path.name)
        if m is None:
            skipped.add("names that do not parse (PPPP_cC...)", path)
            continue
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid == -1:
            skipped.add("junk images (pid -1)", path)
            continue
        if cam < 1:
            skipped.add("names that do not parse (camera 0: cameras count from c1)", path)
            continue
        items.append((str(path), pid, cam - 1))
    if relabel:
        mapping = {pid: i for i, pid in enumerate(sorted({p for _, p, _ in items}))}
        items = [(p, mapping[pid], c) for p, pid, c in items]
    return [Sample(*it) for it in items]


DATA_ROOT_FIX = "Put the dataset there, or point --data-root (or env REID_DATA) at its parent."


def find_market_root(base: Path, inner: str = "Market-1501-v15.09.15", aliases: tuple[str, ...] = (),
                     folders: tuple[str, ...] = ("bounding_box_train", "bounding_box_test", "query"),
                     fix: str = DATA_ROOT_FIX) -> Path:
    """``base`` (or a sibling named as one of ``aliases``), or the inner release folder in it, whichever
    holds ``folders``."""
    for b in (base, *(base.parent / a for a in aliases)):
        for cand in (b, b / inner):
            if all((cand / d).is_dir() for d in folders):
                return cand
    hint = "" if base.parent.is_dir() else f" (and {base.parent} does not exist either)"
    also = f" (or {', '.join(str(base.parent / a) for a in aliases)})" if aliases else ""
    raise DatasetError(f"dataset folder not found or incomplete: {base}{also}{hint}\n"
                       + MARKET_LAYOUT.format(root=base, inner=inner) + "\n" + fix)


def market_format(name: str, root: Path) -> ReIDDataset:
    skipped = Skipped()
    train = parse_market_folder(root / "bounding_box_train", skipped, relabel=True)
    query = parse_market_folder(root / "query", skipped)
    gallery = parse_market_folder(root / "bounding_box_test", skipped)
    if not train or not query or not gallery:
        raise DatasetError(f"{root}: a split is empty (train {len(train)}, query {len(query)}, "
                           f"gallery {len(gallery)} images)\n" + MARKET_LAYOUT.format(root=root, inner="..."))
    ann = root / "annotations"
    return ReIDDataset(name, root, train, query, gallery, skipped, ann if ann.is_dir() else None)


@register_dataset("market1501", DatasetInfo(
    {"train": (751, 12936, 6), "query": (750, 3368, 6), "gallery": (751, 15913, 6)},
    layout="market1501/[Market-1501-v15.09.15/]{bounding_box_train,bounding_box_test,query}/0002_c1s1_000451_03.jpg",
    source="Zheng et al. 2015; gallery without the 2,798 junk images (-1), with the distractors (0000)"))
def market1501(data_root: Path, **_) -> ReIDDataset:
    return market_format("market1501", find_market_root(data_root / "market1501"))


def _synthetic(name: str, occluded: bool):
    layout = f"{name}-<size>/ (generated on first use; data/synthetic/)"
    def build(data_root: Path, synthetic_size: str = "small", seed: int = 0, hard=(), **_) -> ReIDDataset:
        if synthetic_size not in SIZES:
            raise DatasetError(f"unknown synthetic size {synthetic_size!r}{closest(synthetic_size, SIZES)}; "
                               f"choose one of {', '.join(SIZES)}")
        root = ensure_synthetic(data_root, synthetic_size, occluded=occluded, seed=seed, hard=hard)
        return market_format(f"{name}-{synthetic_size}{hard_suffix(hard)}", root)
    register_dataset(name, DatasetInfo(layout=layout))(build)


_synthetic("synthetic", occluded=False)
_synthetic("synthetic-occluded", occluded=True)


@register_dataset("fractals", DatasetInfo(
    {"train": (1000, 30000, 1), "query": (100, 200, 1), "gallery": (100, 800, 1)},
    layout="fractals/ (generated on first use; data/synthetic/fractals.py)",
    source="FractalDB-style categories of iterated function systems (Kataoka et al., ACCV 2020): the "
           "pretrain_fractal_* recipes' start from another domain, as ImageNet is to Market-1501"))
def fractals(data_root: Path, seed: int = 0, **_) -> ReIDDataset:
    return market_format("fractals", ensure_fractals(data_root, seed))


def dataset_from_config(cfg, name: str | None = None) -> ReIDDataset:
    """``cfg.data.dataset`` (or ``name``) under the run's data root, with the synthetic options of ``cfg.data``.

    With ``cfg.data.test_dataset`` the query and gallery come from that dataset instead (cross-domain)."""
    d = cfg.data
    opts = dict(synthetic_size=d.synthetic_size, seed=d.synthetic_seed, hard=tuple(getattr(d, "synthetic_hard", ())),
                camera_from=getattr(d, "camera_from", "auto"),
                camera_pattern=getattr(d, "camera_pattern", ""), labels_csv=getattr(d, "labels_csv", ""))
    ds = build_dataset(name or cfg.data.dataset, cfg.data_root, **opts)
    test = getattr(cfg.data, "test_dataset", "")
    if test and name is None and test != cfg.data.dataset:
        t = build_dataset(test, cfg.data_root, **opts)
        log.info("training on %s, evaluating on %s", ds.name, t.name)
        ds = dataclasses.replace(ds, name=f"{ds.name}->{t.name}", query=t.query, gallery=t.gallery,
                                 query_from_train=False)
    return ds


def require_cameras(ds: ReIDDataset, cfg, training: bool = True) -> None:
    """CA-Jaccard (``cluster.distance`` when ``training``, ``test.rerank_distance``) compares each image with
    its own camera's images and with the others': with one camera there are no others, so the run stops
    before it starts."""
    from reidlab.clustering.methods import resolve_distance
    from reidlab.memory.updates import CAMERA_UPDATES
    wants = []
    if training and cfg.mode == "unsup" and getattr(resolve_distance(cfg.cluster.distance), "needs_cameras", False):
        wants.append((f"cluster.distance={cfg.cluster.distance}", "training", ds.train, "cluster.distance=jaccard"))
    if training and cfg.mode == "unsup" and cfg.memory.update in CAMERA_UPDATES:
        wants.append((f"memory.update={cfg.memory.update}", "training", ds.train, "memory.update=hard (or mean)"))
    if training and cfg.mode == "unsup" and cfg.memory.camera_weighted:
        wants.append(("memory.camera_weighted=true", "training", ds.train, "memory.camera_weighted=false"))
    if cfg.test.rerank and cfg.test.rerank_distance == "ca-jaccard" and ds.query and ds.gallery:
        wants.append(("test.rerank_distance=ca-jaccard", "query and gallery", ds.query + ds.gallery,
                      "test.rerank_distance=jaccard"))
    for key, split, samples, fix in wants:
        cams = {s.camid for s in samples}
        if len(cams) < 2:
            raise ConfigError(f"{key} needs images from two cameras or more, and {ds.name}'s {split} "
                              f"images come from {len(cams)}: give the cameras (a folder's data.camera_from / "
                              f"data.camera_pattern, or a camera column in data.labels_csv), or set {fix}")


