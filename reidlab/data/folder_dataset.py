"""``--dataset folder:PATH``: a folder tree of person crops of any names, formats and sizes (a detector's or a
tracker's output) for the unsupervised loop; no identity labels are needed.

Every image under ``PATH`` (recursive; ``data.images.READABLE``: .jpg .jpeg .png .bmp .tif .tiff .webp .gif)
is a training image. Camera ids, optional, come from one source (``data.camera_from``):

- ``none``: one camera for all; the sampler's "other cameras preferred" rule then has nothing to prefer
  and the evaluation's same-camera filter removes nothing (the log says so);
- ``folder``: the first folder level under ``PATH`` (``cam1/frame_0001.png``); a file directly in
  ``PATH`` is listed as not parsed and left out;
- ``pattern``: the first group of ``data.camera_pattern``, a regular expression searched in the path
  relative to ``PATH`` (e.g. ``_c(\\d+)_`` or ``^(\\w+)/``); a path it does not match, or whose group is
  empty (an optional group that matched nothing), is listed and left out;
- ``csv``: the ``camera`` column of ``data.labels_csv``; an image without a camera there is listed and
  left out;
- ``auto`` (the default): the CSV's camera column when a CSV with one is given, else the pattern when one
  is given, else none.

``data.labels_csv`` (read by :func:`read_labels_csv`) is used whatever the camera source: its ``pid`` column
labels the images it names. A CSV may label every image (the folder is then labelled: supervised training
works on it) or only some (the rest stay unlabelled, pid -1 in the training split: ``--mode cluster-sweep``
scores its clusterings on the labelled ones); ``pid -1`` in the CSV marks junk, left out as the Market parser
leaves it out. What a CSV says is used, or refused with the line and what to fix.

Evaluation: the labelled images (all or some) give a query and gallery (:func:`labelled_split`), as
Market-1501 has them: one query per identity and camera, for the identities seen by at least two cameras,
and every labelled image in the gallery (the evaluation removes each query's same-identity same-camera
images, the query itself included). They are training images too: the unsupervised loop trains on them
without their labels (a transductive evaluation, said in the log); a supervised run trains on their labels
and so does not evaluate on them (runs.loop.start). Without any label there is no query or gallery, and a
run records only what can be known without labels, unless ``--test-dataset`` names a labelled set.
"""
from __future__ import annotations

import csv
import logging
import re
from pathlib import Path, PureWindowsPath

from reidlab.errors import DatasetError

from .samples import FOLDER_AT, ReIDDataset, Sample, Skipped, part_label
from .files import walk_files
from .images import READABLE

log = logging.getLogger(__name__)
EXTENSIONS = READABLE
CAMERA_SOURCES = ("auto", "none", "folder", "pattern", "csv")
PID = re.compile(r"^[+-]?\d+(\.0*)?$")           # 12, +12, -1, and a spreadsheet's 12.0


def csv_path(value: str) -> str:
    """A CSV's path cell in the form the folder's files are compared in: ``/`` separators (a Windows
    ``cam1\\img.jpg`` too), no leading ``./`` (an absolute path is made relative to the folder by the caller)."""
    value = value.strip()
    if "\\" in value:
        value = PureWindowsPath(value).as_posix()
    while value.startswith("./"):
        value = value[2:]
    return value


def read_labels_csv(path: Path) -> tuple[dict[str, tuple[str | None, int | None]], bool]:
    """(relative path -> (camera or None, pid or None), whether the CSV has a camera column) of a ``data.labels_csv``:
    a header with ``path`` and ``camera`` and / or ``pid`` (any case and order; other columns are ignored),
    separated by commas, semicolons or tabs, UTF-8 with or without a byte-order mark (as spreadsheets save
    it). A pid is a whole number (``12.0`` reads 12), ``-1`` for junk, or empty where unknown. Any other cell,
    or one path given twice with different labels, is an error naming the line."""
    where = f"data.labels_csv {path}"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{where}: cannot be read ({e}); save it as a UTF-8 CSV with the columns path,camera "
                           f"and pid where known") from None
    lines = text.splitlines()
    header = next((x for x in lines if x.strip()), "")
    delimiter = max(",;\t", key=header.count)
    try:
        rows = list(csv.reader(lines, delimiter=delimiter))
    except csv.Error as e:
        raise DatasetError(f"{where}: not a CSV ({e})") from None
    rows = [(n, r) for n, r in enumerate(rows, 1) if any(c.strip() for c in r)]
    names = [c.strip().lower() for c in rows[0][1]] if rows else []
    if "path" not in names or not ({"camera", "pid"} & set(names)):
        raise DatasetError(f"{where}: needs a header line of path,camera,pid (path and camera or pid or both; pid "
                           f"where known); found {', '.join(names) if names else 'no lines'}")
    col = {name: names.index(name) for name in ("path", "camera", "pid") if name in names}
    out: dict[str, tuple[str | None, int | None]] = {}
    first: dict[str, int] = {}
    for n, row in rows[1:]:
        def cell(name: str) -> str:
            return row[col[name]].strip() if name in col and col[name] < len(row) else ""
        rel = csv_path(cell("path"))
        if not rel:
            raise DatasetError(f"{where}, line {n}: no path; give each image's path relative to the folder")
        pid_text = cell("pid")
        if pid_text and not PID.match(pid_text):
            raise DatasetError(f"{where}, line {n}: pid {pid_text!r} is not a whole number; give the person's "
                               f"number, -1 for junk, or leave it empty where unknown")
        pid = int(pid_text.split(".")[0]) if pid_text else None      # exactly: a float merges pids above 2^53
        if pid is not None and pid < -1:
            raise DatasetError(f"{where}, line {n}: pid {pid} is not allowed; give a number >= 0, -1 for junk, or "
                               f"leave it empty where unknown")
        label = (cell("camera") or None, pid)
        if rel in out and out[rel] != label:
            raise DatasetError(f"{where}, lines {first[rel]} and {n} give {rel} two labels ({out[rel]} and {label}); "
                               f"keep one line per image")
        out[rel], first[rel] = label, first.get(rel, n)
    return out, "camera" in col


def labelled_split(train: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Query and gallery of the labelled training images (pid >= 0), as Market-1501's: the first image (in path
    order) of each identity in each camera is a query, for the identities seen by two cameras or more; every
    labelled image is in the gallery."""
    labelled = sorted((s for s in train if s.pid >= 0), key=lambda s: s.path)
    cams: dict[int, set[int]] = {}
    for s in labelled:
        cams.setdefault(s.pid, set()).add(s.camid)
    query, seen = [], set()
    for s in labelled:
        if len(cams[s.pid]) > 1 and (s.pid, s.camid) not in seen:
            seen.add((s.pid, s.camid))
            query.append(s)
    return query, (labelled if query else [])


def folder_dataset(path: str, camera_from: str = "auto", camera_pattern: str = "",
                   labels_csv: str = "") -> ReIDDataset:
    """The images under ``path``: a training split, and a query and gallery of its labelled images (module
    docstring)."""
    if not path:
        raise DatasetError("folder:PATH needs the folder, e.g. --dataset folder:/data/crops")
    base = Path(path).expanduser()
    if not base.is_dir():
        raise DatasetError(f"--dataset folder:{path}: {base} is not a folder; give the folder that holds the "
                           f"image files (any sub-folders are read too)")
    table, csv_cameras = read_labels_csv(Path(labels_csv).expanduser()) if labels_csv else ({}, False)
    for inside in {base.absolute().as_posix() + "/", base.resolve().as_posix() + "/"}:   # absolute paths in the CSV
        table = {(k[len(inside):] if k.startswith(inside) else k): v for k, v in table.items()}
    if camera_from == "auto":
        camera_from = "csv" if csv_cameras else "pattern" if camera_pattern else "none"
    if camera_from == "csv" and not csv_cameras:
        raise DatasetError(f"data.camera_from=csv: data.labels_csv {labels_csv} has no camera column; add one, or "
                           f"take the cameras from the folders (folder), a pattern (pattern) or none")
    skipped = Skipped()
    files = []
    found_files, repeated = walk_files(base)                 # links to folders followed
    for folder in repeated:
        skipped.add("folders reached a second time through a link (their images read once)", folder)
    for f in found_files:
        if f.suffix.lower() in EXTENSIONS:
            files.append(f)
        else:
            skipped.add("non-image files", f)
    if not files:
        raise DatasetError(f"{base} holds no image files ({', '.join(sorted(EXTENSIONS))}) in any sub-folder")
    pattern = re.compile(camera_pattern) if camera_from == "pattern" else None
    found: list[tuple[str, str, int | None]] = []
    listed = set()
    for f in files:
        rel = f.relative_to(base).as_posix()
        camera, pid = table.get(rel, (None, None))
        listed.add(rel)
        if pid == -1:
            skipped.add("junk images (pid -1 in data.labels_csv)", f)
            continue
        if camera_from == "folder":
            if "/" not in rel:
                skipped.add("names that do not parse (a file outside the camera folders)", f)
                continue
            camera = rel.split("/", 1)[0]
        elif camera_from == "pattern":
            m = pattern.search(rel)
            if m is None or m.group(1) is None:
                skipped.add("names that do not parse (data.camera_pattern does not match, or its group is empty)", f)
                continue
            camera = m.group(1)
        elif camera_from == "csv":
            if camera is None:
                skipped.add("names that do not parse (no camera for them in data.labels_csv)", f)
                continue
        else:
            camera = ""
        found.append((str(f), camera, pid))
    for rel in sorted(set(table) - listed):
        skipped.add("lines of data.labels_csv that name no image under the folder", rel)
    if not found:
        raise DatasetError(f"none of the {len(files)} images under {base} has a camera by data.camera_from="
                           f"{camera_from}; check data.camera_pattern / data.labels_csv, or give camera_from none")
    cameras = {c: i for i, c in enumerate(sorted({c for _, c, _ in found}))}
    known = sorted({p for _, _, p in found if p is not None})
    ids = {p: i for i, p in enumerate(known)}
    train = [Sample(p, ids[pid] if pid is not None else -1, cameras[c]) for p, c, pid in found]
    labelled = bool(known) and all(pid is not None for _, _, pid in found)
    query, gallery = labelled_split(train) if known else ([], [])
    if not known:
        train = [Sample(s.path, 0, s.camid) for s in train]
    name = part_label(FOLDER_AT + path)
    if known:
        words = (f"{name}: {len(known)} persons labelled in {sum(p is not None for _, _, p in found)} of "
                 f"{len(found)} images")
        if query:
            log.info("%s: query %d, gallery %d of those images, which the unsupervised loop also trains on without "
                     "their labels (a transductive evaluation)", words, len(query), len(gallery))
        else:
            log.info("%s, none of them seen by two cameras: no query with a match in another camera, so no "
                     "evaluation (give cameras, or --test-dataset)", words)
    return ReIDDataset(name, base, train, query, gallery, skipped, labelled=labelled,
                       query_from_train=bool(query))
