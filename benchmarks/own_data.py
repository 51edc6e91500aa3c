"""Your own data, measured (README "Your own data"): the demo recipe trained on ``synthetic-small``'s training
images as a user's folder would hold them (names scrambled, nested per camera and day, half of them .png, no
identity labels: ``--dataset folder:PATH``), evaluated on the labelled synthetic test split
(``--test-dataset synthetic``), beside the same recipe on the labelled dataset.

    python -m benchmarks.own_data --make-folder /tmp/crops       # only the folder, for trying the README's path
    python -m benchmarks.own_data                                 # the measurement: rows x seeds 1-3
    python -m benchmarks.own_data --rows folder-no-cameras --seeds 1
    python -m benchmarks.own_data --summary OUT/own_data.jsonl    # the table of finished runs

Rows (every other value is the demo recipe's, runs/recipes/demo.yaml):

    labelled            --dataset synthetic (synthetic_size small)
    folder              --dataset folder:CROPS --set data.camera_from=folder   (cam<k>/ gives the cameras)
    folder-no-cameras   --dataset folder:CROPS                                  (one camera for all)

The folder's images are the labelled training images, pixel for pixel (a .jpg is copied byte for byte, a
.png is the lossless copy of the decoded .jpg); what differs is the names, the order the files are read in
(sorted by their new paths, so the sampler draws other batches), and, in the last row, the cameras. Each run
appends one JSON line to ``OUT/own_data.jsonl`` when it ends (the format of benchmarks.common.summary).
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

from benchmarks.common import output_folder, train_run
from benchmarks.common import print_summary, read_lines, run_arguments, summary

ROWS = {
    "labelled": ["data.dataset=synthetic"],
    "folder": ["data.dataset=folder:{crops}", "data.camera_from=folder", "data.test_dataset=synthetic"],
    "folder-no-cameras": ["data.dataset=folder:{crops}", "data.camera_from=none", "data.test_dataset=synthetic"],
}


def scrambled_copy(train_folder: str | Path, out: str | Path, seed: int = 0,
                   vary_sizes: bool = False) -> list[tuple[str, str, int]]:
    """Copy a Market-format ``bounding_box_train`` folder to ``out`` as a detector would leave it:
    ``cam<k>/day<d>/frame_<random>_det<j>.jpg|png``, identities dropped. ``vary_sizes``: each image is resized
    by a few pixels (so the pixels change too). Returns (relative path, camera name, true pid) of each file, in
    the source's sorted order, for a CSV of ``path,camera[,pid]``."""
    from PIL import Image

    src = sorted(Path(train_folder).glob("*.jpg"))
    if not src:
        raise SystemExit(f"{train_folder} holds no .jpg files: give a Market-format bounding_box_train folder")
    out = Path(out)
    rnd = random.Random(seed)
    frames = rnd.sample(range(10 ** 6), len(src))
    rows = []
    for i, f in enumerate(src):
        pid, rest = f.name.split("_c", 1)
        cam = rest.split("s", 1)[0]
        rel = f"cam{cam}/day{i % 3}/frame_{frames[i]:06d}_det{i % 5}{'.png' if i % 2 else '.jpg'}"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        if i % 2 == 0 and not vary_sizes:
            shutil.copyfile(f, out / rel)
        else:
            with Image.open(f) as im:
                im = im.convert("RGB")
                (im.resize((im.width + i % 7, im.height + i % 5)) if vary_sizes else im).save(out / rel)
        rows.append((rel, f"c{cam}", int(pid)))
    return rows


KINDS = ("jpg", "png", "rgba", "tif", "sideways", "webp", "gray16", "gif")


def as_it_comes(src: Path, dest: Path, kind: str) -> Path:
    """``src`` saved as one of the kinds of file real crops arrive in (``KINDS``; docs/datasets.md, "Images"):
    a PNG with an alpha channel (opaque), a TIFF, a phone's JPEG stored sideways with its EXIF orientation, a
    lossless WebP, a 16-bit gray PNG of an industrial camera, a GIF's palette. Returns the file written."""
    import numpy as np
    from PIL import Image

    suffix = {"rgba": ".png", "sideways": ".jpg", "gray16": ".png"}.get(kind, f".{kind}")
    dest = dest.with_suffix(suffix)
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    if kind == "rgba":
        rgb.convert("RGBA").save(dest)
    elif kind == "sideways":
        exif = Image.Exif()
        exif[0x0112] = 6                             # turn 90 degrees clockwise to view
        rgb.rotate(90, expand=True).save(dest, exif=exif, quality=95)
    elif kind == "gray16":
        Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).save(dest)
    elif kind == "webp":
        rgb.save(dest, lossless=True)
    else:
        rgb.save(dest)
    return dest


def mixed_copy(out: Path, rows: list[tuple[str, str, int]], seed: int = 0) -> list[tuple[str, str, int]]:
    """The scrambled folder's files turned into the kinds of ``KINDS`` in turn, and a CSV beside the folder as a
    spreadsheet saves it (``<folder>.csv``: a byte-order mark, semicolons, Windows paths, CRLF) with the cameras
    of all images and the persons of every fourth one."""
    mixed = []
    for i, (rel, cam, pid) in enumerate(rows):
        src = out / rel
        kind = KINDS[i % len(KINDS)]
        if kind not in ("jpg", "png"):
            dest = as_it_comes(src, src, kind)
            if dest != src:
                src.unlink()
            rel = dest.relative_to(out).as_posix()
        mixed.append((rel, cam, pid))
    lines = ["path;camera;pid"] + [f"{rel.replace('/', chr(92))};{cam};{pid if i % 4 == 0 else ''}"
                                    for i, (rel, cam, pid) in enumerate(mixed)]
    Path(f"{out}.csv").write_text("\ufeff" + "\r\n".join(lines) + "\r\n", encoding="utf-8")
    return mixed


def make_folder(out: str | Path, data_root: str | None = None, size: str = "small", mixed: bool = True) -> Path:
    """The scrambled folder of the synthetic benchmark's training images (generated first if missing); ``mixed``:
    in the kinds of file real crops arrive in, with a spreadsheet's CSV of cameras and some persons beside it
    (:func:`mixed_copy`; the measurement's rows use the plain copy)."""
    from reidlab.data import dataset_from_config
    from reidlab.runs.config import build_config
    sets = [{"data": {"dataset": "synthetic", "synthetic_size": size, **({"root": data_root} if data_root else {})}}]
    cfg = build_config("demo", sets)
    ds = dataset_from_config(cfg)
    train = Path(ds.train[0].path).parent
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty: give a new folder")
    rows = scrambled_copy(train, out)
    if mixed:
        rows = mixed_copy(out, rows)
    print(f"{len(rows)} images of {train} under {out}, in {len({r[1] for r in rows})} camera folders, without "
          f"identity labels" + (f"; as {', '.join(KINDS)} files in turn, and {out}.csv (cameras, and the persons of "
                                f"every fourth image)" if mixed else ""), flush=True)
    return out


def run_row(name: str, seed: int, crops: Path, a, out: str) -> dict:
    sets = [s.format(crops=crops) for s in ROWS[name]]
    sets += [f"seed={seed}", f"device={a.device}", f"output={out}", f"name=own-{name}-seed{seed}",
             "data.synthetic_size=small"]
    if a.data_root:
        sets.append(f"data.root={a.data_root}")
    cfg, records, minutes = train_run("demo", sets)
    evaluated = [r for r in records if "mAP" in r and r["epoch"] > 0]
    return {"benchmark": "own_data", "row": name, "seed": seed, "epochs": [r["epoch"] for r in evaluated],
            "mAP": [round(r["mAP"], 4) for r in evaluated], "rank1": [round(r["rank1"], 4) for r in evaluated],
            "clusters": [r.get("num_clusters") for r in evaluated],
            "outliers": [r.get("num_outliers") for r in evaluated], "minutes": round(minutes, 1)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--make-folder", metavar="DIR", help="only write the scrambled folder to DIR and stop")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    run_arguments(p)
    a = p.parse_args(argv)
    if a.summary:
        print_summary(summary(read_lines(a.summary), list(ROWS)))
        return
    if a.make_folder:
        make_folder(a.make_folder, a.data_root)
        return
    from reidlab.runs.run import setup_logging
    setup_logging()
    out = output_folder(a.output, "own_data_")
    crops = Path(out, "crops")
    if not crops.is_dir():
        make_folder(crops, a.data_root, mixed=False)
    results = Path(out, "own_data.jsonl")
    for name in a.rows:
        for seed in a.seeds:
            row = run_row(name, seed, crops, a, out)
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print_summary(summary(read_lines(results), list(ROWS)))


if __name__ == "__main__":
    main()
