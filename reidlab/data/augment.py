"""Augmentation of whole uint8 batches on the training device (Cluster Contrast's train transform).

Per image, as torchvision's RandomHorizontalFlip, Pad(10) + RandomCrop, Normalize and the re-ID
RandomErasing (p 0.5, area 2-40%, aspect 0.3-3.3, filled with the ImageNet mean values after
normalisation, as the Cluster Contrast code does), but vectorised over the batch.

The erasing box, ``aug.erasing_box``:
  - ``redraw``: Zhong et al.'s RandomErasing as the Cluster Contrast, SpCL and Bag of Tricks code run it.
    With probability p, up to 100 attempts each draw the area fraction uniformly in [0.02, 0.4] and the
    aspect ratio h / w *uniformly* in [0.3, 1 / 0.3], h = round(sqrt(area * aspect)),
    w = round(sqrt(area / aspect)) (Python's round, half to even, as ``torch.round``); the first attempt
    with h < H and w < W (strictly) is erased at a uniform corner (y0 in [0, H - h], x0 in [0, W - w]);
    when no attempt fits, nothing is erased. Here the 100 attempts are drawn at once for the whole batch
    and the first fitting one is taken, which is the same distribution. Tall boxes (aspect > 1) are then
    the majority (about 81% of erased images at 64 x 32), and a box never spans the full width.
  - ``torchvision``: torchvision's ``transforms.RandomErasing`` (3C's code): with probability p, up to 10 attempts
    each draw the area fraction uniformly in [0.02, 0.4] and the aspect ratio *log-uniformly* in [0.3, 1 / 0.3]
    (h and w rounded as above); the first attempt with h < H and w < W is erased at a uniform corner; none, nothing.
  - ``clip``: this project's earlier rule: one draw, the aspect ratio log-uniform in [0.3, 1 / 0.3], the box
    clipped to the image where it does not fit (at 64 x 32 about 17% of erased images lose a full-width
    band; tall boxes about half of the time).

The random draws (``Streams``, made by ``batch_streams`` for each training batch): the flip, the crop and the
erasing each draw from a generator of their own, seeded from (seed, epoch, batch, transform). So two runs with
one seed draw the same flips and crops whatever else differs between them (random erasing on or off, its box
rule, the model, the loss), batch by batch: the paired rows of an ablation table see the same augmentation.
A single ``torch.Generator`` still works (every draw from it, in the order flip, crop, erasing).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """uint8 B x 3 x H x W -> float, ImageNet-normalised."""
    x = batch.float().div_(255)
    mean = torch.tensor(MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _rand(n: int, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device).to(device)


class Streams(NamedTuple):
    """A batch's generators, one per random transform."""
    flip: torch.Generator
    crop: torch.Generator
    erasing: torch.Generator


def batch_streams(seed: int, epoch: int, batch: int, device) -> Streams:
    """The generators of the ``batch``-th training batch of ``epoch``: a function of (seed, epoch, batch) alone,
    each transform's its own (module docstring), on ``device`` (what the loop draws on)."""
    state = np.random.SeedSequence([seed, epoch, batch, 0xA06]).generate_state(3 * 2)
    return Streams(*(torch.Generator(device=device).manual_seed(int(state[2 * i]) << 32 | int(state[2 * i + 1]))
                     for i in range(3)))


def _streams(gen: torch.Generator | Streams) -> Streams:
    return gen if isinstance(gen, Streams) else Streams(gen, gen, gen)


ERASING_AREA = (0.02, 0.4)
ERASING_ASPECT = 0.3          # h / w in [0.3, 1 / 0.3]
ERASING_ATTEMPTS = 100
TORCHVISION_ATTEMPTS = 10     # torchvision's RandomErasing.get_params


def train_augment(batch: torch.Tensor, gen: torch.Generator | Streams, flip: float = 0.5, pad: int = 10,
                  erasing: float = 0.5, erasing_box: str = "clip") -> torch.Tensor:
    """Augment a uint8 batch on its device. ``gen`` (one generator, or a batch's ``Streams``) makes it
    reproducible."""
    return augment_with_teacher(batch, {}, gen, flip, pad, erasing, erasing_box)[0]


def erasing_boxes(B: int, H: int, W: int, gen: torch.Generator, device, p: float = 0.5, rule: str = "clip"):
    """(erase, y0, x0, h, w) of B images: whether each is erased and its box (float tensors of B values),
    by the ``rule`` of the module docstring (``redraw`` or ``clip``)."""
    lo, hi = ERASING_AREA
    if rule in ("redraw", "torchvision"):
        n = ERASING_ATTEMPTS if rule == "redraw" else TORCHVISION_ATTEMPTS
        area = (_rand(B * n, gen, device) * (hi - lo) + lo).view(B, n) * (H * W)
        if rule == "redraw":
            aspect = (_rand(B * n, gen, device) * (1 / ERASING_ASPECT - ERASING_ASPECT) + ERASING_ASPECT).view(B, n)
        else:
            log_lo = torch.log(torch.tensor(ERASING_ASPECT))
            aspect = torch.exp(_rand(B * n, gen, device) * (-2 * log_lo) + log_lo).view(B, n)
        h_all, w_all = torch.sqrt(area * aspect).round(), torch.sqrt(area / aspect).round()
        fits = (h_all < H) & (w_all < W)
        first = fits.to(torch.uint8).argmax(1, keepdim=True)            # the first attempt that fits
        eh, ew = h_all.gather(1, first).squeeze(1), w_all.gather(1, first).squeeze(1)
        erase = fits.any(1)
    elif rule == "clip":
        area = _rand(B, gen, device) * (hi - lo) + lo
        aspect = torch.exp(_rand(B, gen, device) * (torch.log(torch.tensor(1 / ERASING_ASPECT)) * 2)
                           + torch.log(torch.tensor(ERASING_ASPECT)))
        eh = torch.sqrt(area * H * W * aspect).round().clamp(1, H)
        ew = torch.sqrt(area * H * W / aspect).round().clamp(1, W)
        erase = torch.ones(B, dtype=torch.bool, device=device)
    else:
        raise ValueError(f"aug.erasing_box: 'redraw', 'torchvision' or 'clip', not {rule!r}")
    y0 = (_rand(B, gen, device) * (H - eh + 1)).floor()
    x0 = (_rand(B, gen, device) * (W - ew + 1)).floor()
    erase &= _rand(B, gen, device) < p
    return erase, y0, x0, eh, ew


def augment_with_teacher(batch: torch.Tensor, teacher: dict[str, torch.Tensor], gen: torch.Generator | Streams,
                         flip: float = 0.5, pad: int = 10, erasing: float = 0.5, erasing_box: str = "clip"):
    """``train_augment`` that moves the teacher targets with the image (data.annotations).

    ``teacher`` may hold ``mask`` and ``parsing`` (B x 1 x H x W; padding is background, 0) and
    ``keypoints`` (B x K x 3: x, y in pixels, v). The synthetic and derived part labels have no left and
    right, so a flipped parsing map keeps its labels.
    Flip and pad-crop apply to them too (a flipped image's left and right COCO keypoints swap; a keypoint
    cropped out gets v = 0); random erasing changes the image only, as an occluder hides the person but
    the teacher still saw it. Returns the image batch and the moved targets."""
    x = normalise(batch)
    B, C, H, W = x.shape
    dev = x.device
    out = dict(teacher)
    gens = _streams(gen)
    do = _rand(B, gens.flip, dev) < flip if flip > 0 else None
    if pad > 0:
        oy = (_rand(B, gens.crop, dev) * (2 * pad + 1)).long().clamp_(max=2 * pad)
        ox = (_rand(B, gens.crop, dev) * (2 * pad + 1)).long().clamp_(max=2 * pad)
    if do is not None:
        x = torch.where(do.view(B, 1, 1, 1), x.flip(-1), x)
        for key in ("mask", "parsing"):
            if key in out:
                out[key] = torch.where(do.view(B, 1, 1, 1), out[key].flip(-1), out[key])
        if "keypoints" in out:
            from .annotations import FLIP_PERMUTATION
            k = out["keypoints"]
            kf = k[:, FLIP_PERMUTATION].clone()
            kf[..., 0] = W - 1 - kf[..., 0]
            out["keypoints"] = torch.where(do.view(B, 1, 1), kf, k)
    if pad > 0:
        # zero padding of the *unnormalised* image, as Pad(10) before ToTensor/Normalize does
        zero = normalise(torch.zeros(1, 3, 1, 1, dtype=torch.uint8, device=dev))
        x = _crop(F.pad(x - zero, (pad, pad, pad, pad)) + zero, oy, ox, H, W)
        for key in ("mask", "parsing"):
            if key in out:
                out[key] = _crop(F.pad(out[key], (pad, pad, pad, pad)), oy, ox, H, W)
        if "keypoints" in out:
            k = out["keypoints"].clone()
            k[..., 0] += pad - ox.view(B, 1).to(k.dtype)
            k[..., 1] += pad - oy.view(B, 1).to(k.dtype)
            outside = (k[..., 0] < -0.5) | (k[..., 0] > W - 0.5) | (k[..., 1] < -0.5) | (k[..., 1] > H - 0.5)
            k[..., 2] = torch.where(outside, torch.zeros((), dtype=k.dtype, device=k.device), k[..., 2])
            out["keypoints"] = k
    if erasing > 0:
        erase, y0, x0, eh, ew = erasing_boxes(B, H, W, gens.erasing, dev, erasing, erasing_box)
        ar_h = torch.arange(H, device=dev).view(1, H, 1)
        ar_w = torch.arange(W, device=dev).view(1, 1, W)
        box = ((ar_h >= y0.view(B, 1, 1)) & (ar_h < (y0 + eh).view(B, 1, 1))
               & (ar_w >= x0.view(B, 1, 1)) & (ar_w < (x0 + ew).view(B, 1, 1)))
        box &= erase.view(B, 1, 1)
        fill = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1)
        x = torch.where(box.unsqueeze(1), fill, x)
    return x, out


def _crop(xp: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """Per-image H x W windows of a padded batch at offsets (oy, ox)."""
    B, dev = xp.shape[0], xp.device
    rows = oy[:, None] + torch.arange(H, device=dev)          # B x H
    cols = ox[:, None] + torch.arange(W, device=dev)          # B x W
    b = torch.arange(B, device=dev)[:, None, None]
    return xp[b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # B x C x H x W
