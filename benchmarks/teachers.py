"""Throughput of ``--mode teachers`` (images per second, both detectors, batch as used) and a picture of
teacher annotations drawn over a few images.

    python -m benchmarks.teachers                          # CPU: 64 synthetic-small images, random weights
    python -m benchmarks.teachers --device cuda --images 512
    python -m benchmarks.teachers --picture docs/teachers.png   # annotations of synthetic-small, drawn

Random weights cost what the COCO weights cost (the same networks; the detectors keep 5 detections
whatever their scores), so the timing holds for real annotation runs; the rows say which were used.
The picture draws a dataset's annotations folder as ``data.annotations`` reads it: the synthetic
benchmark's ground-truth keypoints and masks, and the part parsing derived from them by ``data.parsing``
(the rule ``--mode teachers`` applies to the detectors' outputs).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from reidlab.data.parsing import PART_NAMES, derive_parsing


def throughput(images: int, batch: int, min_size: int, device: str, size: str = "small") -> dict:
    from reidlab.data import build_dataset
    from reidlab.data.teachers import _read, build_detector
    from reidlab.runs.run import resolve_device
    dev = resolve_device(device)
    ds = build_dataset("synthetic", "datasets", synthetic_size=size)
    pictures = [_read(s.path) for s in ds.train[:images]]
    row = {"benchmark": "teachers", "device": str(dev), "weights": "random (same cost as COCO)",
           "min_size": min_size, "batch": batch, "image": f"{pictures[0].shape[1]}x{pictures[0].shape[2]}"}
    for kind, name in (("pose", "keypointrcnn"), ("mask", "maskrcnn")):
        model = build_detector(kind, name, "random", min_size, dev)
        with torch.no_grad():
            model([p.to(dev) for p in pictures[:batch]])          # warm-up
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for s in range(0, len(pictures), batch):
                model([p.to(dev) for p in pictures[s:s + batch]])
            if dev.type == "cuda":
                torch.cuda.synchronize()
        row[f"{name}_images_per_s"] = round(len(pictures) / (time.perf_counter() - start), 2)
    both = 1 / (1 / row["keypointrcnn_images_per_s"] + 1 / row["maskrcnn_images_per_s"])
    row["both_images_per_s"] = round(both, 2)
    row["minutes_per_1000_images"] = round(1000 / both / 60, 1)
    return row


def picture(path: str, dataset_root: str, count: int = 6) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image
    from reidlab.data.parsing import SEGMENTS
    root = Path(dataset_root)
    table = json.loads((root / "annotations" / "keypoints.json").read_text())["images"]
    names = [n for n in sorted(table) if n.startswith("bounding_box_train")][::97][:count]
    fig = Figure(figsize=(count * 1.2, 3 * 2.2 + 0.3), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, count)
    for c, name in enumerate(names):
        image = np.asarray(Image.open(root / name).convert("RGB"))
        mask = np.asarray(Image.open(root / "annotations" / "masks" / (name[:-4] + ".png"))) > 0
        k = np.array(table[name])
        parsing = derive_parsing(k, mask)
        for r, (title, layer) in enumerate((("keypoints", None), ("mask", mask), ("derived parsing", parsing))):
            ax = axes[r, c]
            ax.imshow(image)
            if r == 0:
                for a, b, _ in SEGMENTS:
                    if k[a, 2] > 0 and k[b, 2] > 0:
                        ax.plot([k[a, 0], k[b, 0]], [k[a, 1], k[b, 1]], color="yellow", linewidth=1)
                seen = k[:, 2] > 0
                ax.scatter(k[seen, 0], k[seen, 1], s=6, c=np.where(k[seen, 2] == 2, "lime", "red"))
            elif r == 1:
                ax.imshow(np.ma.masked_where(~layer, layer), cmap="autumn", alpha=0.5)
            else:
                ax.imshow(np.ma.masked_where(layer == 0, layer), cmap="tab10", vmin=0, vmax=9, alpha=0.6,
                          interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(title, fontsize=9)
    fig.suptitle("keypoints (green visible, red hidden), person mask, derived part parsing\n"
                 + ", ".join(f"{i} {n}" for i, n in enumerate(PART_NAMES) if i), fontsize=7)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    Image.open(out).convert("RGB").quantize(128).save(out, optimize=True)     # a small file for the README
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--min-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--picture", default=None, help="draw annotations of synthetic-small into this PNG instead")
    a = p.parse_args(argv)
    if a.picture:
        from reidlab.data.synthetic import ensure_synthetic
        print(picture(a.picture, ensure_synthetic("datasets", "small")))
        return
    print(json.dumps(throughput(a.images, a.batch, a.min_size, a.device)), flush=True)


if __name__ == "__main__":
    main()
