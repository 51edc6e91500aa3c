"""Teacher annotations: person masks and COCO keypoints of the training images, by image name.

Format (what ``data.synthetic`` writes, and what a pose estimator / person segmenter run over a real
dataset should write), under ``<dataset>/annotations/``::

    keypoints.json            {"keypoint_names": [17 COCO names],
                               "images": {"bounding_box_train/0002_c1s1_000451_03.jpg": [[x, y, v] x 17], ...}}
    masks/<folder>/<stem>.png person mask, 0 = background, > 0 = person

x, y are pixels of the original image; v follows COCO (0 not found, 1 found but occluded, 2 visible).
``load_teacher`` reads them at the training resolution: masks as uint8 0/1 (N x 1 x H x W), keypoints
as float32 (N x 17 x 3) with x, y rescaled to H x W. With ``noise`` they are degraded once per image,
deterministically from its seed, as an off-the-shelf detector's output is imperfect (``degrade``).
"""
from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from reidlab.progress import track

from reidlab.errors import DatasetError

from .samples import ReIDDataset, Sample

log = logging.getLogger(__name__)

COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)

# COCO keypoints that swap under a horizontal flip (left <-> right)
FLIP_PAIRS = [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)]
FLIP_PERMUTATION = list(range(17))
for a, b in FLIP_PAIRS:
    FLIP_PERMUTATION[a], FLIP_PERMUTATION[b] = b, a

FORMAT_HINT = ("write annotations/keypoints.json and annotations/masks/<folder>/<stem>.png next to the images "
               "(format in data/annotations.py), e.g. from a COCO pose estimator and person segmenter")


@dataclass
class TeacherNoise:
    """How a detector's errors are simulated (all sizes relative to the image height)."""
    jitter: float = 0.04      # keypoint position noise, standard deviation
    drop: float = 0.15        # probability that a found keypoint is missed (v -> 0)
    morph: float = 0.03       # masks eroded or dilated by a radius drawn up to this
    holes: int = 2            # up to this many rectangular holes (missed parts) per mask
    seed: int = 0


def _relative(ds: ReIDDataset, s: Sample) -> tuple[str, str]:
    rel = Path(s.path).resolve().relative_to(ds.root.resolve())
    return rel.as_posix(), (rel.parent / (rel.stem + ".png")).as_posix()


def _image_size(path: str) -> tuple[int, int]:
    """(width, height) as the image is shown: an EXIF orientation of 5-8 (a phone's sideways portrait) swaps the
    stored sides, as the image stores and the teachers' detectors read it upright (data.images); headers only."""
    with Image.open(path) as im:
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _read_map(path: Path, height: int, width: int, what: str = "mask") -> np.ndarray:
    """A label map (uint8) resized with the nearest label: a person mask as 0/1, a part parsing as it is."""
    try:
        with Image.open(path) as im:
            im = im.convert("L")
            if im.size != (width, height):
                im = im.resize((width, height), Image.NEAREST)
            labels = np.array(im, dtype=np.uint8)
    except OSError as e:
        raise DatasetError(f"cannot read {what} {path}: {e}") from None
    return (labels > 0).astype(np.uint8) if what == "mask" else labels


def load_teacher(ds: ReIDDataset, samples: list[Sample], height: int, width: int, need=("mask", "keypoints"),
                 noise: TeacherNoise | None = None, workers: int = 2) -> dict[str, torch.Tensor]:
    """The teacher targets ``need`` of ``samples`` at ``height x width`` (see the module docstring).

    For a combined dataset (``a+b``) each part's samples come from that part's annotations."""
    if ds.parts:
        chunks, start = [], 0
        for part in ds.parts:
            n = len(part.train)
            chunks.append(load_teacher(part, part.train, height, width, need, None, workers))
            start += n
        if start != len(samples):
            raise ValueError("load_teacher on a combined dataset expects its whole training list")
        out = {k: torch.cat([c[k] for c in chunks]) for k in chunks[0]}
        return degrade(out, noise) if noise is not None else out
    if ds.annotations is None:
        raise DatasetError(f"this model learns from teacher annotations, but {ds.root} has no annotations/ "
                           f"folder; {FORMAT_HINT}")
    ann = ds.annotations
    keys = [_relative(ds, s) for s in samples]
    out: dict[str, torch.Tensor] = {}
    if "keypoints" in need:
        path = ann / "keypoints.json"
        if not path.is_file():
            raise DatasetError(f"no {path}; {FORMAT_HINT}")
        table = json.loads(path.read_text())["images"]
        missing = [k for k, _ in keys if k not in table]
        if missing:
            raise DatasetError(f"{path}: no keypoints for {len(missing)} of {len(keys)} training images "
                               f"(e.g. {missing[0]}); run the pose estimator on all of them")
        kps = torch.tensor([table[k] for k, _ in keys], dtype=torch.float32).view(len(keys), -1, 3)
        with ThreadPoolExecutor(max(1, workers)) as pool:     # original sizes (DukeMTMC's vary): headers only
            wh = torch.tensor(list(pool.map(_image_size, [s.path for s in samples])), dtype=torch.float32)
        wh = wh.view(-1, 1, 2)
        kps[..., 0] = (kps[..., 0] + 0.5) * width / wh[..., 0] - 0.5
        kps[..., 1] = (kps[..., 1] + 0.5) * height / wh[..., 1] - 0.5
        out["keypoints"] = kps
    if "parsing" in need:
        paths = [ann / "parsing" / m for _, m in keys]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise DatasetError(f"no part parsing for {len(absent)} of {len(paths)} images (e.g. {absent[0]}); write "
                               f"annotations/parsing/ with a human parser, or run --mode teachers (which derives it)")
        parsing = torch.empty((len(paths), 1, height, width), dtype=torch.uint8)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            maps = pool.map(lambda p: _read_map(p, height, width, "part parsing"), paths)
            for i, m in enumerate(track(maps, total=len(paths), description="teacher parsing")):
                parsing[i, 0] = torch.from_numpy(m)
        out["parsing"] = parsing
    if "mask" in need:
        paths = [ann / "masks" / m for _, m in keys]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise DatasetError(f"no person mask for {len(absent)} of {len(paths)} training images (e.g. {absent[0]}); "
                               + FORMAT_HINT)
        masks = torch.empty((len(paths), 1, height, width), dtype=torch.uint8)
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for i, m in enumerate(track(pool.map(lambda p: _read_map(p, height, width), paths), total=len(paths),
                                        description="teacher masks")):
                masks[i, 0] = torch.from_numpy(m)
        out["mask"] = masks
    if noise is not None:
        out = degrade(out, noise)
    log.info("teacher annotations for %d images: %s%s", len(samples), ", ".join(out),
             " (degraded as a noisy detector's)" if noise is not None else "")
    return out


def degrade(teacher: dict[str, torch.Tensor], noise: TeacherNoise, chunk: int = 512) -> dict[str, torch.Tensor]:
    """Noisy-teacher copies: keypoints jittered and dropped; masks eroded or dilated, with holes; part
    parsing shifted (a human parser's boundaries are off by a few pixels) and with holes (parts missed)."""
    gen = torch.Generator().manual_seed(noise.seed)
    out = dict(teacher)
    if "parsing" in teacher:
        out["parsing"] = degrade_parsing(teacher["parsing"], noise, torch.Generator().manual_seed(noise.seed + 1))
    if "keypoints" in teacher:
        k = teacher["keypoints"].clone()
        N, K, _ = k.shape
        H = teacher["mask"].shape[-2] if "mask" in teacher else None
        scale = noise.jitter * (H if H is not None else float(k[..., 1].max().clamp(min=1)))
        k[..., :2] += torch.randn(N, K, 2, generator=gen) * scale
        k[..., 2] = torch.where(torch.rand(N, K, generator=gen) < noise.drop, torch.zeros(()), k[..., 2])
        out["keypoints"] = k
    if "mask" in teacher:
        m = teacher["mask"].clone()
        N, _, H, W = m.shape
        rmax = max(0, round(noise.morph * H))
        radius = torch.randint(-rmax, rmax + 1, (N,), generator=gen)
        holes = torch.randint(0, noise.holes + 1, (N,), generator=gen)
        boxes = torch.rand(N, max(noise.holes, 1), 4, generator=gen)
        ys, xs = torch.arange(H).view(1, H, 1), torch.arange(W).view(1, 1, W)
        for s in range(0, N, chunk):
            mf = m[s:s + chunk].float()
            r = radius[s:s + chunk]
            for v in r.unique().tolist():
                if v == 0:
                    continue
                sel = r == v
                k = 2 * abs(v) + 1
                x = mf[sel] if v > 0 else 1 - mf[sel]                # erosion = dilation of the background
                x = F.max_pool2d(x, k, stride=1, padding=abs(v))
                mf[sel] = x if v > 0 else 1 - x
            for h in range(noise.holes):                              # holes of 10-30% of each side
                b = boxes[s:s + chunk, h]
                hh, ww = (0.1 + 0.2 * b[:, 2]) * H, (0.1 + 0.2 * b[:, 3]) * W
                y0, x0 = b[:, 0] * (H - hh), b[:, 1] * (W - ww)
                inside = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + hh).view(-1, 1, 1))
                          & (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + ww).view(-1, 1, 1)))
                inside &= (holes[s:s + chunk] > h).view(-1, 1, 1)
                mf[:, 0][inside] = 0
            m[s:s + chunk] = mf.round().to(torch.uint8)
        out["mask"] = m
    return out


def degrade_parsing(parsing: torch.Tensor, noise: TeacherNoise, gen: torch.Generator) -> torch.Tensor:
    """Each N x 1 x H x W label map shifted by up to ``morph`` of its height in each direction (the shifted-in
    border is background) and given up to ``holes`` rectangles of background (10-30% of each side)."""
    N, _, H, W = parsing.shape
    r = max(1, round(noise.morph * H))
    out = torch.zeros_like(parsing)
    shifts = torch.randint(-r, r + 1, (N, 2), generator=gen)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        src = parsing[i, 0, max(0, -dy):H - max(0, dy), max(0, -dx):W - max(0, dx)]
        out[i, 0, max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    holes = torch.randint(0, noise.holes + 1, (N,), generator=gen)
    boxes = torch.rand(N, max(noise.holes, 1), 4, generator=gen)
    for i in range(N):
        for h in range(int(holes[i])):
            b = boxes[i, h]
            hh, ww = int((0.1 + 0.2 * b[2]) * H), int((0.1 + 0.2 * b[3]) * W)
            y0, x0 = int(b[0] * (H - hh)), int(b[1] * (W - ww))
            out[i, 0, y0:y0 + hh, x0:x0 + ww] = 0
    return out
