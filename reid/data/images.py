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

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from reid.progress import track

from reid.errors import DatasetError


RESIZE_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def resize_filter(name: str):
    try:
        return RESIZE_FILTERS[name]
    except KeyError:
        raise ValueError(f"unknown resize filter {name!r}; choose {', '.join(RESIZE_FILTERS)}") from None


def fit_image(im: Image.Image, height: int, width: int, resize: str = "bilinear") -> np.ndarray:
    """A PIL image as H x W x 3 uint8 RGB, resized with PIL's ``resize`` filter when its size differs."""
    im = im.convert("RGB")
    if im.size != (width, height):
        im = im.resize((width, height), resize_filter(resize))
    return np.array(im)  # a writable copy


def decode_image(path: str, height: int, width: int, resize: str = "bilinear") -> np.ndarray:
    """One image file as H x W x 3 uint8, resized with PIL's ``resize`` filter (bilinear or bicubic) as the
    image stores hold it; a clear error if it cannot be read."""
    resize_filter(resize)
    try:
        with Image.open(path) as im:
            return fit_image(im, height, width, resize)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DatasetError(f"cannot read image {path}: {e}. Replace or remove the file.") from None


def load_images(paths: list[str], height: int, width: int, workers: int = 2,
                description: str = "loading images", resize: str = "bilinear") -> torch.Tensor:
    """Decode and resize ``paths`` into a uint8 tensor N x 3 x H x W (on the CPU)."""
    out = torch.empty((len(paths), 3, height, width), dtype=torch.uint8)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        decoded = pool.map(lambda p: decode_image(p, height, width, resize), paths)
        for i, arr in enumerate(track(decoded, total=len(paths), description=description)):
            out[i] = torch.from_numpy(arr).permute(2, 0, 1)
    return out


def load_dataset_images(ds, height: int, width: int, workers: int = 2, device: torch.device | str = "cpu",
                        budget_gb: float = 0.0, resize: str = "bilinear"):
    """The train (on ``device``), query and gallery (on the CPU) image stores of a dataset, resized with the
    ``resize`` filter: in memory, or on disk beyond the memory budget (data.store)."""
    from .store import budget_bytes, image_store
    device = torch.device(device)
    folder = Path(ds.root) / ".store"
    train = image_store([s.path for s in ds.train], height, width, workers, device, budget_bytes(budget_gb, device),
                        folder, "train", resize)
    host = budget_bytes(budget_gb, torch.device("cpu"))
    cpu = torch.device("cpu")
    query = image_store([s.path for s in ds.query], height, width, workers, cpu, host, folder, "query", resize)
    gallery = image_store([s.path for s in ds.gallery], height, width, workers, cpu, host, folder, "gallery", resize)
    return train, query, gallery
