"""``--dataset folder:PATH``: a folder tree of person crops of any names, formats and sizes (a detector's or a
tracker's output) for the unsupervised loop; no identity labels are needed.

Every image under ``PATH`` (recursive; .jpg .jpeg .png .bmp .tif .tiff .webp) is a training image. Camera
ids, optional, come from one source (``data.camera_from``):

- ``none``: one camera for all; the sampler's "other cameras preferred" rule then has nothing to prefer
  and the evaluation's same-camera filter removes nothing (the log says so);
- ``folder``: the first folder level under ``PATH`` (``cam1/frame_0001.png``); a file directly in
  ``PATH`` is listed as not parsed and left out;
- ``pattern``: the first group of ``data.camera_pattern``, a regular expression searched in the path
  relative to ``PATH`` (e.g. ``_c(\\d+)_`` or ``^(\\w+)/``); a path it does not match is listed and left out;
- ``csv``: ``data.labels_csv``, a CSV with the columns ``path,camera`` and optionally ``pid`` (paths
  relative to ``PATH``); an image not in it is listed and left out, and with ``pid`` the folder has
  identity labels.

Camera names become ids 0..C-1 in sorted order. There is no query or gallery: a run on a folder evaluates
on ``--test-dataset`` when one is given, and otherwise records only what can be known without labels.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from reid.errors import DatasetError

from .datasets import FOLDER_AT, ReIDDataset, Sample, Skipped, dataset_label

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
CAMERA_SOURCES = ("auto", "none", "folder", "pattern", "csv")   # auto: pattern / csv when given, else none


def _read_csv(path: Path) -> dict[str, tuple[str, int | None]]:
    """relative path -> (camera, pid or None) of a ``path,camera[,pid]`` CSV."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"data.labels_csv {path}: cannot be read ({e}); give a UTF-8 CSV with the columns "
                           f"path,camera (and pid where known)") from None
    if not rows or not {"path", "camera"} <= set(rows[0]):
        raise DatasetError(f"data.labels_csv {path}: needs a header with the columns path,camera (and pid "
                           f"where known); found {', '.join(rows[0]) if rows else 'no rows'}")
    out = {}
    for n, row in enumerate(rows, 2):
        pid = (row.get("pid") or "").strip()
        if pid and not pid.lstrip("-").isdigit():
            raise DatasetError(f"data.labels_csv {path}, line {n}: pid {pid!r} is not a whole number")
        out[Path(row["path"].strip()).as_posix()] = ((row["camera"] or "").strip(), int(pid) if pid else None)
    return out


def folder_dataset(path: str, camera_from: str = "auto", camera_pattern: str = "",
                   labels_csv: str = "") -> ReIDDataset:
    """The training split of the images under ``path`` (see the module docstring)."""
    if camera_from == "auto":
        camera_from = "pattern" if camera_pattern else "csv" if labels_csv else "none"
    if not path:
        raise DatasetError("folder:PATH needs the folder, e.g. --dataset folder:/data/crops")
    base = Path(path).expanduser()
    if not base.is_dir():
        raise DatasetError(f"--dataset folder:{path}: {base} is not a folder; give the folder that holds the "
                           f"image files (any sub-folders are read too)")
    skipped = Skipped()
    files = []
    for f in sorted(base.rglob("*")):
        if not f.is_file():
            continue
        if f.suffix.lower() in EXTENSIONS:
            files.append(f)
        else:
            skipped.add("non-image files", f)
    if not files:
        raise DatasetError(f"{base} holds no image files ({', '.join(sorted(EXTENSIONS))}) in any sub-folder")
    table = _read_csv(Path(labels_csv).expanduser()) if camera_from == "csv" else {}
    pattern = re.compile(camera_pattern) if camera_from == "pattern" else None
    found: list[tuple[str, str, int | None]] = []
    for f in files:
        rel = f.relative_to(base).as_posix()
        pid = None
        if camera_from == "folder":
            if "/" not in rel:
                skipped.add("names that do not parse (a file outside the camera folders)", f)
                continue
            camera = rel.split("/", 1)[0]
        elif camera_from == "pattern":
            m = pattern.search(rel)
            if m is None:
                skipped.add("names that do not parse (data.camera_pattern does not match)", f)
                continue
            camera = m.group(1)
        elif camera_from == "csv":
            if rel not in table:
                skipped.add("names that do not parse (not in data.labels_csv)", f)
                continue
            camera, pid = table[rel]
        else:
            camera = ""
        found.append((str(f), camera, pid))
    if not found:
        raise DatasetError(f"none of the {len(files)} images under {base} has a camera by data.camera_from="
                           f"{camera_from}; check data.camera_pattern / data.labels_csv, or give camera_from none")
    cameras = {c: i for i, c in enumerate(sorted({c for _, c, _ in found}))}
    labelled = all(pid is not None for _, _, pid in found)
    if labelled:
        ids = {p: i for i, p in enumerate(sorted({p for _, _, p in found}))}
        train = [Sample(p, ids[pid], cameras[c]) for p, c, pid in found]
    else:
        train = [Sample(p, 0, cameras[c]) for p, c, _ in found]
    return ReIDDataset(dataset_label(FOLDER_AT + path), base, train, [], [], skipped, labelled=labelled)
