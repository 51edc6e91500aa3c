"""Image stores: a split's images decoded once, uint8 N x 3 x H x W, in memory (on the training device)
or, when that would exceed the memory budget, in a file on disk.

The disk store is built once per dataset, split and size, next to the dataset
(``<dataset>/.store/<split>-<H>x<W>[-bicubic]-<hash of the file list>.u8``: a flat uint8 array, written through a
memory map into a temporary file renamed into place, under a lock), and read back one image at a time
with ``os.pread`` into the batch: the kernel's page cache keeps what it can, and the process's resident
memory holds only the batches (a memory map read back would count every touched page as resident).
``prefetch`` gathers the next batch in a thread while the device trains on the current one. Either
store gives the same bytes, so the same run.

``data.memory_budget`` (GB; 0: automatic) bounds the in-memory stores: automatically half of the free
memory of the device the training images go to (GPU memory for a CUDA run, else the host's available
memory), and half of the host's for query and gallery.
"""
from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from reidlab.progress import track

from reidlab.errors import DatasetError

from .files import check_free_space, disk_error, locked
from .images import decode_image, load_images

log = logging.getLogger(__name__)


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def budget_bytes(budget_gb: float, device: torch.device) -> int:
    return int(budget_gb * 2 ** 30) if budget_gb > 0 else free_bytes(device) // 2


class DiskStore:
    """A uint8 N x 3 x H x W image array in a file, indexed like a tensor (rows, slices, index tensors)."""

    def __init__(self, path: Path, n: int, height: int, width: int):
        self.path, self.n, self.h, self.w = Path(path), n, height, width
        self.item = 3 * height * width
        self.fd = os.open(self.path, os.O_RDONLY)
        if os.fstat(self.fd).st_size != n * self.item:
            raise OSError(f"{self.path} is not a store of {n} images of {height} x {width}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.n, 3, self.h, self.w)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, slice):
            rows = range(*index.indices(self.n))
        else:
            rows = torch.as_tensor(index).reshape(-1).tolist()
        out = np.empty((len(rows), 3, self.h, self.w), dtype=np.uint8)
        flat = out.reshape(len(rows), self.item)
        for i, r in enumerate(rows):
            data = os.pread(self.fd, self.item, r * self.item)
            flat[i] = np.frombuffer(data, dtype=np.uint8)
        return torch.from_numpy(out)

    def __del__(self):
        try:
            os.close(self.fd)
        except (OSError, AttributeError):
            pass


def store_folder(folder: Path) -> Path:
    """Where a disk store goes: ``folder`` (``<dataset>/.store``) when it can be written; else, for a dataset on a
    read-only share, a folder of the user's cache (``$REID_CACHE``, else ``$XDG_CACHE_HOME/reidlab``, else
    ``~/.cache/reidlab``) named by the dataset's path, which the log names."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK | os.X_OK):
            return folder
    except OSError:
        pass
    cache = os.environ.get("REID_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "reidlab"
    cache = Path(cache)
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:12]
    other = cache / "stores" / f"{folder.parent.name}-{key}"
    try:
        other.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"the disk image store can be written neither beside the dataset ({folder}: read-only) nor "
                           f"in {other} ({e.strerror}); set REID_CACHE to a writable folder, or raise "
                           f"data.memory_budget so the images stay in memory") from None
    log.info("%s cannot be written (a read-only dataset?): the disk image store goes to %s", folder, other)
    return other


def build_disk_store(paths: list[str], height: int, width: int, folder: Path, split: str, workers: int,
                     resize: str = "bilinear") -> DiskStore:
    digest = hashlib.sha1("\n".join(paths).encode()).hexdigest()[:12]
    folder = store_folder(folder)
    size = f"{height}x{width}" + ("" if resize == "bilinear" else f"-{resize}")   # the filter is part of the bytes
    path = folder / f"{split}-{size}-{digest}.u8"
    item = 3 * height * width
    with locked(folder / f".{path.name}.lock"):
        if not path.is_file() or path.stat().st_size != len(paths) * item:
            tmp = folder / f".{path.name}.tmp-{os.getpid()}"
            check_free_space(folder, len(paths) * item, f"the disk image store of {len(paths)} {split} images",
                             flag="the image store folder")
            try:
                array = np.memmap(tmp, dtype=np.uint8, mode="w+", shape=(len(paths), 3, height, width))
                with ThreadPoolExecutor(max(1, workers)) as pool:
                    decoded = pool.map(lambda p: decode_image(p, height, width, resize), paths)
                    for i, arr in enumerate(track(decoded, total=len(paths), description=f"{split} images to disk")):
                        array[i] = arr.transpose(2, 0, 1)
                array.flush()
                del array
                os.replace(tmp, path)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise disk_error(e, path, f"the disk image store of {len(paths)} {split} images") from None
            log.info("built the disk image store %s (%.2f GB)", path, len(paths) * item / 2 ** 30)
    return DiskStore(path, len(paths), height, width)


def image_store(paths: list[str], height: int, width: int, workers: int, device: torch.device, budget: int,
                folder: Path, split: str, resize: str = "bilinear"):
    """An in-memory uint8 tensor on ``device`` when ``len(paths)`` images fit in ``budget`` bytes, else a
    ``DiskStore`` under ``folder`` (the images then go to the device batch by batch); resized with PIL's
    ``resize`` filter (data.images)."""
    size = len(paths) * 3 * height * width
    if size <= budget:
        return load_images(paths, height, width, workers, f"{split} images", resize).to(device)
    log.info("%s: %d images of %d x %d take %.2f GB, over the memory budget of %.2f GB: they are read from a disk "
             "store", split, len(paths), height, width, size / 2 ** 30, budget / 2 ** 30)
    return build_disk_store(paths, height, width, folder, split, workers, resize)


def gather(store, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The images ``idx`` of a store, on ``device``."""
    if isinstance(store, DiskStore):
        return store[idx.cpu()].to(device, non_blocking=True)
    return store[idx.to(store.device)]


def prefetch(batches, store, device: torch.device):
    """(indices, images) of each batch, the next batch's images gathered in a thread meanwhile."""
    if not isinstance(store, DiskStore):
        for b in batches:
            idx = torch.as_tensor(b, device=device)
            yield b, gather(store, idx, device)
        return
    with ThreadPoolExecutor(1) as pool:
        pending = None
        for b in batches:
            future = pool.submit(gather, store, torch.as_tensor(b), device)
            if pending is not None:
                yield pending[0], pending[1].result()
            pending = (b, future)
        if pending is not None:
            yield pending[0], pending[1].result()


def load_dataset_images(ds, height: int, width: int, workers: int = 2, device: torch.device | str = "cpu",
                        budget_gb: float = 0.0, resize: str = "bilinear"):
    """The train (on ``device``), query and gallery (on the CPU) image stores of a dataset, resized with the
    ``resize`` filter: in memory, or on disk beyond the memory budget (data.store)."""
    device = torch.device(device)
    folder = Path(ds.root) / ".store"       # the first place a disk store is made (data.store.store_folder)
    train = image_store([s.path for s in ds.train], height, width, workers, device, budget_bytes(budget_gb, device),
                        folder, "train", resize)
    host = budget_bytes(budget_gb, torch.device("cpu"))
    cpu = torch.device("cpu")
    query = image_store([s.path for s in ds.query], height, width, workers, cpu, host, folder, "query", resize)
    gallery = image_store([s.path for s in ds.gallery], height, width, workers, cpu, host, folder, "gallery", resize)
    return train, query, gallery
