"""Part parsing derived from a person's COCO keypoints and mask: the coarse, noisy semantic teacher that
SAP learns from, for datasets that have no human parser's output (``--mode teachers``).

The rule: every pixel inside the mask takes the label of the nearest *limb segment* between two found
keypoints (v > 0). Two adjustments, measured on the synthetic benchmark's ground truth (below): the
torso's outline segments are drawn 30% of the way in towards the torso's centre (else the arms that hang
beside and in front of the body go to the torso: 84% agreement against 79%), and the foot segment starts
a little above the ankle (so a shoe is not split with the lower leg).

| label | part | segments (COCO keypoint indices) |
| --- | --- | --- |
| 1 | head | nose-eyes, eyes-ears, nose-ears (0-1, 0-2, 1-3, 2-4, 0-3, 0-4) |
| 2 | torso | shoulders (5-6), hips (11-12), sides (5-11, 6-12), each drawn 30% in; the shoulders-to-hips midline |
| 3 | upper arms | shoulder-elbow (5-7, 6-8) |
| 4 | lower arms | elbow-wrist (7-9, 8-10) |
| 5 | upper legs | hip-knee (11-13, 12-14) |
| 6 | lower legs | knee-ankle (13-15, 14-16) |
| 7 | feet | past each ankle (15, 16), from -0.12 to 0.4 of its lower leg's length |

0 is the background (outside the mask). A segment with an endpoint not found is left out; a lone found
keypoint counts as a zero-length segment of its part. A mask with no keypoint at all is cut by height
instead (head 15%, torso to 50%, upper legs to 75%, lower legs to 95%, then feet), as a standing person's.
Ties go to the segment listed first. On the synthetic benchmark's training persons (ground-truth
keypoints and masks in, coarse labels compared), 84% of the foreground pixels get the ground truth's
part; a bag (4% of the pixels) has no keypoints and is always wrong (tests/test_teachers.py).
"""
from __future__ import annotations

import numpy as np

PART_NAMES = ("background", "head", "torso", "upper arms", "lower arms", "upper legs", "lower legs", "feet")
HEAD, TORSO, UPPER_ARM, LOWER_ARM, UPPER_LEG, LOWER_LEG, FEET = range(1, 8)
SEGMENTS = [
    (0, 1, HEAD), (0, 2, HEAD), (1, 3, HEAD), (2, 4, HEAD), (0, 3, HEAD), (0, 4, HEAD),
    (5, 6, TORSO), (11, 12, TORSO), (5, 11, TORSO), (6, 12, TORSO),
    (5, 7, UPPER_ARM), (6, 8, UPPER_ARM), (7, 9, LOWER_ARM), (8, 10, LOWER_ARM),
    (11, 13, UPPER_LEG), (12, 14, UPPER_LEG), (13, 15, LOWER_LEG), (14, 16, LOWER_LEG),
]
PART_OF_KEYPOINT = [HEAD] * 5 + [TORSO, TORSO, UPPER_ARM, UPPER_ARM, LOWER_ARM, LOWER_ARM, TORSO, TORSO,
                                 LOWER_LEG, LOWER_LEG, FEET, FEET]
INSET = 0.3          # the torso's outline segments are drawn this far in towards its centre
FOOT, FOOT_START = 0.4, -0.3   # the foot segment: from 0.12 to 0.4 of the lower leg's length past the ankle
HEIGHT_CUTS = [(0.15, HEAD), (0.50, TORSO), (0.75, UPPER_LEG), (0.95, LOWER_LEG), (1.01, FEET)]


def limb_segments(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts S x 2, ends S x 2, labels S) of the segments between found keypoints (17 x 3: x, y, v)."""
    k = np.asarray(keypoints, dtype=np.float64)
    found = k[:, 2] > 0
    starts, ends, labels = [], [], []
    centre = None
    if found[[5, 6, 11, 12]].all():
        centre = k[[5, 6, 11, 12], :2].mean(0)
    for a, b, part in SEGMENTS:
        if found[a] and found[b]:
            pa, pb = k[a, :2], k[b, :2]
            if part == TORSO and centre is not None:             # the torso's outline, drawn in a little
                pa, pb = pa + INSET * (centre - pa), pb + INSET * (centre - pb)
            starts.append(pa)
            ends.append(pb)
            labels.append(part)
    if found[[5, 6, 11, 12]].all():                               # the torso's midline
        starts.append((k[5, :2] + k[6, :2]) / 2)
        ends.append((k[11, :2] + k[12, :2]) / 2)
        labels.append(TORSO)
    for ankle, knee in ((15, 13), (16, 14)):                      # feet: down from the ankle
        if found[ankle]:
            down = FOOT * (k[ankle, :2] - k[knee, :2]) if found[knee] else np.array([0.0, 0.0])
            starts.append(k[ankle, :2] + FOOT_START * down)
            ends.append(k[ankle, :2] + down)
            labels.append(FEET)
    covered = {i for a, b, _ in SEGMENTS if found[a] and found[b] for i in (a, b)} | {15, 16}
    for i in np.flatnonzero(found):                               # lone keypoints: zero-length segments
        if i not in covered:
            starts.append(k[i, :2])
            ends.append(k[i, :2])
            labels.append(PART_OF_KEYPOINT[i])
    if not starts:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    return np.array(starts), np.array(ends), np.array(labels)


def derive_parsing(keypoints: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """H x W uint8 part labels (``PART_NAMES``) of a person from its 17 x 3 keypoints (pixels of the mask's
    image) and its H x W mask (> 0 = person), by the rule of the module docstring."""
    mask = np.asarray(mask) > 0
    H, W = mask.shape
    out = np.zeros((H, W), dtype=np.uint8)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return out
    starts, ends, labels = limb_segments(keypoints)
    if labels.size == 0:
        top, bottom = ys.min(), ys.max() + 1
        rel = (ys - top) / max(bottom - top, 1)
        out[ys, xs] = np.select([rel < cut for cut, _ in HEIGHT_CUTS], [part for _, part in HEIGHT_CUTS])
        return out
    p = np.stack([xs, ys], axis=1).astype(np.float64)[:, None, :]             # P x 1 x 2
    a, d = starts[None], (ends - starts)[None]                                # 1 x S x 2
    t = np.clip(((p - a) * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-12), 0, 1)
    dist = (((a + t[..., None] * d) - p) ** 2).sum(-1)                        # P x S squared distances
    label = labels[dist.argmin(axis=1)]
    out[ys, xs] = label
    return out


# the synthetic benchmark's ground-truth parsing (data.synthetic.render.PARTS) in these labels' terms:
# 1 head, 2 torso, 3 arms (upper and lower), 4 legs (upper and lower), 5 feet; 6 (bag) has no keypoints
TO_SYNTHETIC = np.array([0, 1, 2, 3, 3, 4, 4, 5], dtype=np.uint8)


def agreement_with_ground_truth(derived: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of the ground truth's foreground pixels whose synthetic-benchmark label the derived map gives."""
    fg = truth > 0
    return float((TO_SYNTHETIC[derived][fg] == truth[fg]).mean()) if fg.any() else 1.0
