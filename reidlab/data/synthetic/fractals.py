"""Fractal images to pretrain on: a start from another domain, as ImageNet is to Market-1501.

The papers fine-tune from ImageNet weights, learnt on images that hold neither their benchmark's persons nor its
look. No weight can be downloaded here, so the ``pretrain_fractal_*`` recipes learn that start on formula-driven
images instead, after FractalDB (Kataoka et al., "Pre-training without Natural Images", ACCV 2020; IJCV 2022),
which pretrains a classifier on categories of iterated function systems (IFS) as a stand-in for ImageNet
pretraining (its abstract: models pretrained so "partially surpass the accuracy of ImageNet/Places pre-trained
models"; Anderson and Farrell, WACV 2022, fine-tune fractal-pretrained networks to 92.7-98.1% of ImageNet-pretrained
accuracy). Nothing here is a person, a street scene, a camera's cast or a JPEG of a pedestrian.

FractalDB's construction, which this follows:
  - a category is one IFS of N affine maps x -> A x + t, each with six parameters (a, b, c, d, e, f);
  - its image is drawn by the chaos game, map i chosen with probability proportional to |det A_i| (= |ad - bc|);
  - a category is kept only if its points fill enough of the frame (the paper's filling rate);
  - the instances of a category weight its parameters a little (the paper's intra-category augmentation) and
    flip it.
The values are ours (we could not check the paper's text from here, and its sizes do not fit a 2-core CPU):
  - N uniform in [2, 8], the parameters uniform in [-1, 1], each map drawn again until it contracts (largest
    singular value < 1), so every chaos game converges; a filling rate of at least 0.2 of a 64 x 64 frame;
  - an instance weights one parameter of one map by a factor uniform in [0.8, 1.2] (kept only while the map still
    contracts), is flipped half of the time, rotated by a random angle, placed at 70-100% of the frame, and its
    points are coloured by the map that drew them, from a random palette, on black;
  - 1,000 training categories (FractalDB-1k's count) x 30 instances at 128 x 128 pixels: 30,000 images, the
    count of the synthetic pretraining population;
  - 100 further categories make a small test split (query: 2 instances each, camera 1; gallery: 8, camera 2),
    to watch the pretraining on categories it never saw.

Layout (Market-1501's, so the supervised loop reads it as any labelled benchmark; a category is an identity)::

    fractals[-seed<N>]/bounding_box_train/CCCC_c1s1_IIIIII_00.jpg, query/..., bounding_box_test/...
    README.txt, .complete
"""
from __future__ import annotations

import colorsys
import logging
import math
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
from PIL import Image

from reidlab.progress import track

log = logging.getLogger(__name__)
FRACTALS_VERSION = 1
SIZE = 128                    # pixels of a square image
TRAIN_CLASSES, PER_CLASS = 1000, 30
TEST_CLASSES, QUERY_PER_CLASS, GALLERY_PER_CLASS = 100, 2, 8
MIN_FILL = 0.2                # FractalDB's filling rate
CHAINS, STEPS, BURN_IN = 2000, 40, 10    # chaos games run side by side: 60,000 points an image


def fractals_dir(root: str | os.PathLike, seed: int = 0) -> Path:
    return Path(root) / ("fractals" if seed == 0 else f"fractals-seed{seed}")


def contracting_map(rng: np.random.Generator) -> np.ndarray:
    """Six parameters (a, b, c, d, e, f) uniform in [-1, 1], drawn again until [[a, b], [c, d]] contracts."""
    while True:
        p = rng.uniform(-1.0, 1.0, 6)
        if np.linalg.norm(p[:4].reshape(2, 2), 2) < 1.0:
            return p


def points(ifs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The chaos game of ``ifs`` (N x 6): CHAINS games of STEPS steps side by side, the first BURN_IN steps of
    each dropped; (M x 2 points, M map indices)."""
    det = np.abs(ifs[:, 0] * ifs[:, 3] - ifs[:, 1] * ifs[:, 2])
    prob = det / det.sum() if det.sum() > 0 else np.full(len(ifs), 1.0 / len(ifs))
    xy = rng.uniform(-1.0, 1.0, (CHAINS, 2))
    out, which = [], []
    for step in range(STEPS):
        k = rng.choice(len(ifs), size=CHAINS, p=prob)
        a, b, c, d, e, f = (ifs[k, j] for j in range(6))
        xy = np.stack([a * xy[:, 0] + b * xy[:, 1] + e, c * xy[:, 0] + d * xy[:, 1] + f], 1)
        if step >= BURN_IN:
            out.append(xy)
            which.append(k)
    return np.concatenate(out), np.concatenate(which)


def _to_frame(xy: np.ndarray, size: int, scale: float = 1.0, angle: float = 0.0,
              offset=(0.0, 0.0)) -> np.ndarray:
    """Points rotated by ``angle``, fitted into the frame (their box's longer side ``scale`` of it), moved by
    ``offset`` (fractions of the room left), as integer pixel positions."""
    c, s = math.cos(angle), math.sin(angle)
    xy = xy @ np.array([[c, -s], [s, c]])
    lo, hi = xy.min(0), xy.max(0)
    span = float((hi - lo).max()) or 1.0
    px = (xy - lo) / span * (scale * (size - 1))
    room = (size - 1) - px.max(0)
    px += room * (0.5 + 0.5 * np.asarray(offset))
    return np.clip(np.round(px), 0, size - 1).astype(np.int64)


def filling_rate(ifs: np.ndarray, rng: np.random.Generator, size: int = 64) -> float:
    """The share of a size x size frame the category's points cover (FractalDB's filling rate)."""
    xy, _ = points(ifs, rng)
    px = _to_frame(xy, size)
    return len(np.unique(px[:, 1] * size + px[:, 0])) / (size * size)


def category(rng: np.random.Generator) -> np.ndarray:
    """One category's IFS: N maps (N uniform in [2, 8]), kept when it fills at least MIN_FILL of the frame."""
    while True:
        ifs = np.stack([contracting_map(rng) for _ in range(int(rng.integers(2, 9)))])
        if filling_rate(ifs, rng) >= MIN_FILL:
            return ifs


def instance(ifs: np.ndarray, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """One image (size x size x 3, uint8) of a category: one parameter of one map weighted by [0.8, 1.2] (kept
    only while the map still contracts), flipped half of the time, rotated, scaled, placed, coloured by map."""
    ifs = ifs.copy()
    i, j = int(rng.integers(len(ifs))), int(rng.integers(6))
    weighted = ifs[i].copy()
    weighted[j] *= rng.uniform(0.8, 1.2)
    if np.linalg.norm(weighted[:4].reshape(2, 2), 2) < 1.0:
        ifs[i] = weighted
    xy, which = points(ifs, rng)
    if rng.random() < 0.5:
        xy = xy * np.array([-1.0, 1.0])
    px = _to_frame(xy, size, rng.uniform(0.7, 1.0), rng.uniform(0, 2 * math.pi), rng.uniform(-1, 1, 2))
    palette = np.array([colorsys.hsv_to_rgb(h, s, 1.0) for h, s in rng.uniform((0, 0.5), (1, 1), (len(ifs), 2))])
    canvas = np.zeros((size * size, 3))
    np.add.at(canvas, px[:, 1] * size + px[:, 0], palette[which])
    density = np.log1p(canvas) / max(np.log1p(canvas).max(), 1e-9)
    return (255 * density.reshape(size, size, 3)).astype(np.uint8)


_CATEGORIES: dict = {}


def _render(job: tuple) -> None:
    out, folder, name, cls, seed = job
    rng = np.random.default_rng(seed)
    Image.fromarray(instance(_CATEGORIES["ifs"][cls], rng)).save(Path(out) / folder / name, quality=95)


def generate_fractals(out: Path, seed: int = 0, workers: int | None = None, classes: int = TRAIN_CLASSES,
                      per_class: int = PER_CLASS, test_classes: int = TEST_CLASSES) -> None:
    """Write the tree (module docstring) into ``out``; deterministic from ``seed``."""
    rng = np.random.default_rng([seed, 0xF4AC])
    total = classes + test_classes
    ifs = [category(rng) for _ in track(range(total), total=total, description="drawing fractal categories")]
    jobs = []
    for c in range(total):
        pid = c + 1
        if c < classes:
            plan = [("bounding_box_train", 1)] * per_class
        else:
            plan = [("query", 1)] * QUERY_PER_CLASS + [("bounding_box_test", 2)] * GALLERY_PER_CLASS
        for n, (folder, cam) in enumerate(plan):
            jobs.append((str(out), folder, f"{pid:04d}_c{cam}s1_{n:06d}_00.jpg", c, [seed, c, n]))
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    _CATEGORIES["ifs"] = ifs
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    label = f"rendering {out.name} ({len(jobs)} images)"
    if workers > 1 and "fork" in mp.get_all_start_methods():
        with mp.get_context("fork").Pool(workers) as pool:
            for _ in track(pool.imap_unordered(_render, jobs, chunksize=64), total=len(jobs), description=label):
                pass
    else:
        for job in track(jobs, description=label):
            _render(job)
    (out / "README.txt").write_text(__doc__)
    log.info("generated %s: %d images of %d categories", out.name, len(jobs), total)


def ensure_fractals(root: str | os.PathLike, seed: int = 0, workers: int | None = None) -> Path:
    """The fractal tree under ``root``, generated first if it is missing (as the synthetic benchmark is)."""
    from .generate import ensure_tree
    out = fractals_dir(root, seed)
    params = {"version": FRACTALS_VERSION, "seed": seed, "size": SIZE, "classes": TRAIN_CLASSES,
              "per_class": PER_CLASS, "test_classes": TEST_CLASSES}
    return ensure_tree(out, params, lambda tmp: generate_fractals(tmp, seed, workers), "the fractal images")
