"""The image store: a dataset's images decoded once into one uint8 tensor (N x 3 x H x W).

Batches are then gathered and augmented on the training device (data.augment), so a GPU run is not
bound by CPU data-loader workers.

``data.resize`` is the filter that brings a decoded file to the run's size: PIL's ``bilinear`` or
``bicubic`` (both antialiased when shrinking, as PIL's ``Image.resize`` is). Cluster Contrast's and
SpCL's code resize with ``T.Resize((h, w), interpolation=3)``, i.e. PIL's bicubic, on every read of a
training or test image; the resize comes before every random augmentation and is deterministic, so
resizing once at load, as the stores do, gives the same pixels.
"""
from __future__ import annotations

import functools
import io
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from reidlab.progress import track

from reidlab.errors import DatasetError

log = logging.getLogger(__name__)

RESIZE_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
# the image files a folder of your own, extract, search and explain read (an animated GIF / WebP: its first frame)
READABLE = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


def resize_filter(name: str):
    try:
        return RESIZE_FILTERS[name]
    except KeyError:
        raise ValueError(f"unknown resize filter {name!r}; choose {', '.join(RESIZE_FILTERS)}") from None


BACKGROUND = (255, 255, 255)             # what transparency is composited over: white, as a viewer or a page
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


FLOAT_OVERSHOOT = 1.25                   # a float image up to this is taken as 0..1 that overshot (resampling)


def _wide_to_l(im: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float gray image as 8-bit gray, full scale to 255: the range of the smallest
    of [0, 1] (floats), [0, 255], [0, 65535] that holds every value (16-bit modes: always 65535), else the
    image's own min..max. A float image whose largest value lies in (1, 1.25] is a 0..1 image whose resampling
    overshot: its range stays 0..1 and the values past 1 read white, with a warning (an earlier version took it
    as 0..255, nearly black). NaN reads 0, values below 0 read 0."""
    a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    a = np.clip(a, 0.0, None)
    top = float(a.max()) if a.size else 0.0
    if im.mode.startswith("I;16"):
        full = 65535.0
    elif im.mode == "F" and 1.0 < top <= FLOAT_OVERSHOOT:
        full = 1.0
        log.warning("a float image of %d x %d holds %d value(s) above 1 (up to %g) among values of 0..1: taken as a "
                    "0..1 image, those read white", im.size[0], im.size[1], int((a > 1.0).sum()), top)
    else:
        full = next((r for r in ((1.0,) if im.mode == "F" else ()) + (255.0, 65535.0) if top <= r), top or 1.0)
    return Image.fromarray(np.clip(np.rint(a * (255.0 / full)), 0, 255).astype(np.uint8), "L")


@functools.lru_cache(maxsize=32)
def _to_srgb(icc: bytes, mode: str):
    """littleCMS's transform from an embedded colour profile to sRGB (one per distinct profile and mode)."""
    from PIL import ImageCms
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    return ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), mode, "RGB")


def _with_profile(im: Image.Image, icc) -> Image.Image | None:
    """An RGB, CMYK or gray image in sRGB through the colour profile ``icc`` (as a colour-managed viewer shows it);
    None when there is none or littleCMS cannot use it (Pillow's conversion then stands)."""
    if not icc or im.mode not in ("RGB", "CMYK", "L"):
        return None
    try:
        from PIL import ImageCms
        return ImageCms.applyTransform(im, _to_srgb(bytes(icc), im.mode))
    except Exception:                            # a damaged or unusual profile (a gray one on RGB): the plain pixels
        return None


def _lab_to_rgb(im: Image.Image) -> Image.Image:
    from PIL import ImageCms
    transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
    return ImageCms.applyTransform(im, transform)


def rgb_image(im: Image.Image) -> Image.Image:
    """Any decoded image as 8-bit RGB, as an image viewer shows it; the one decoding rule of every path that reads
    images (the training, query and gallery stores in memory or on disk, extract, search, explain, check-data,
    the teachers, the Python API; docs/datasets.md, "Images"):

    - EXIF orientation applied (a phone's portrait crop stands upright; Pillow's ``ImageOps.exif_transpose``);
    - transparency composited over white (Pillow's ``alpha_composite``): an alpha channel (RGBA, LA, PA,
      premultiplied RGBa / La), a palette's transparent colour, and a PNG's tRNS key colour on gray or RGB;
    - 16-bit gray (``I;16``: 65535 is white), 32-bit integer and float gray (``I``, ``F``: :func:`_wide_to_l`)
      scaled to 8 bits, not clipped (a float image's few values past 1 read white, with a warning);
    - an embedded colour profile (an Adobe RGB camera, a phone's Display P3 PNG with alpha, a print workflow's
      CMYK) through littleCMS to sRGB, applied to the colours before the transparency is composited, for every
      mode that has colours (RGB, RGBA, gray, gray with alpha, a palette, CMYK);
    - LAB through littleCMS to sRGB; every other mode (``1``, ``CMYK`` without a profile, ``YCbCr``, ``HSV``)
      by Pillow's own ``convert("RGB")``;
    - an animated GIF / WebP / PNG, or a multi-page TIFF: its first frame, as it opens."""
    im = ImageOps.exif_transpose(im)
    icc = im.info.get("icc_profile")
    if im.mode in ("La", "RGBa"):                       # premultiplied: Pillow converts these to straight alpha
        im = im.convert("LA" if im.mode == "La" else "RGBA")
    if im.mode in WIDE_MODES:
        im = _wide_to_l(im)
    elif im.mode == "LAB":
        im = _lab_to_rgb(im)
    if "transparency" in im.info and im.mode in ("P", "L", "RGB"):   # a palette's or tRNS's transparent colour
        im = im.convert("LA" if im.mode == "L" else "RGBA")
    if im.mode == "PA":
        im = im.convert("RGBA")
    elif im.mode == "P":                                # a palette's colours are in the profile's space
        im = im.convert("RGB")
    alpha = None
    if im.mode in ("RGBA", "LA"):
        alpha = im.getchannel("A")
        im = im.convert("RGB" if im.mode == "RGBA" else "L")
    rgb = _with_profile(im, icc)
    if rgb is None:
        rgb = im if im.mode == "RGB" else im.convert("RGB")
    if alpha is None:
        return rgb
    rgba = rgb.copy()
    rgba.putalpha(alpha)
    return Image.alpha_composite(Image.new("RGBA", rgba.size, BACKGROUND + (255,)), rgba).convert("RGB")


def open_rgb(path: str) -> Image.Image:
    """An image file decoded by :func:`rgb_image` at its own size; a clear error if it cannot be read."""
    try:
        with Image.open(path) as im:
            im.seek(0)
            return rgb_image(im)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise DatasetError(f"cannot read image {path}: {e}. Replace or remove the file.") from None


def fit_image(im: Image.Image, height: int, width: int, resize: str = "bilinear") -> np.ndarray:
    """A PIL image (any mode: :func:`rgb_image`) as H x W x 3 uint8 RGB, resized with PIL's ``resize`` filter
    when its size differs."""
    im = rgb_image(im)
    if im.size != (width, height):
        im = im.resize((width, height), resize_filter(resize))
    return np.array(im)  # a writable copy


def decode_image(path: str, height: int, width: int, resize: str = "bilinear") -> np.ndarray:
    """One image file as H x W x 3 uint8 (:func:`rgb_image`), resized with PIL's ``resize`` filter (bilinear or
    bicubic) as the image stores hold it; a clear error if it cannot be read."""
    resize_filter(resize)
    return fit_image(open_rgb(path), height, width, resize)


def load_images(paths: list[str], height: int, width: int, workers: int = 2,
                description: str = "loading images", resize: str = "bilinear") -> torch.Tensor:
    """Decode and resize ``paths`` into a uint8 tensor N x 3 x H x W (on the CPU)."""
    out = torch.empty((len(paths), 3, height, width), dtype=torch.uint8)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        decoded = pool.map(lambda p: decode_image(p, height, width, resize), paths)
        for i, arr in enumerate(track(decoded, total=len(paths), description=description)):
            out[i] = torch.from_numpy(arr).permute(2, 0, 1)
    return out
