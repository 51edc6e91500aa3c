"""The Python API of a trained model (docs/api.md): load a run or checkpoint, extract features, search.

    from reidlab.use.api import TrainedModel

    model = TrainedModel.load("outputs/demo")            # a run folder (its best.pt, else last.pt) or a .pt
    gallery = model.extract("my_crops/")                 # a folder (recursive), a file, a list of paths,
    query = model.extract(["q1.jpg", "q2.png"])          # PIL images, or a uint8 tensor N x 3 x H x W
    for matches in model.search(query, gallery, topk=5):
        print([(m.path, round(m.distance, 3)) for m in matches])
    gallery.save("gallery.npz")                          # the file --mode extract writes (and search reads)

Features are the model's evaluation feature, computed as ``--mode evaluate`` and ``--mode extract`` compute
them (same decoding, resize filter, batch size and flip), L2-normalised; distances are cosine distances.
A library call shows no progress bar and configures no logging unless asked (``progress=True``); warnings
(unreadable files in a folder) go to the ``reidlab`` logger, which an application configures as it likes.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reidlab.errors import ReIDError
from reidlab.evaluation import extract_features

from .extract import decode_all, extract_folder, load_features, save_features
from .trained import load_trained


@dataclass
class Features:
    """L2-normalised features (N x D float32, on the CPU) and a name per row: the path relative to the folder
    for a folder, the path as given for a list of paths, ``image_<i>`` for images given in memory.
    ``skipped``: (path, error) of the files in a folder that could not be read."""
    features: torch.Tensor
    paths: list[str]
    base: Path | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    checkpoint: str = ""
    digest: str = ""
    size: tuple[int, int] = (0, 0)           # the model's input (height, width)
    flip: bool = False

    def __len__(self) -> int:
        return len(self.paths)

    def save(self, path: str | Path) -> Path:
        """The ``.npz`` of ``--mode extract`` (written atomically), which ``--mode search --gallery`` and
        :meth:`TrainedModel.search` read back."""
        from reidlab.data.files import check_file_output
        check_file_output(path, "the features file", [".npz"], "gallery.npz", flag="path")
        return save_features(path, self.features, self.paths, self.size, self.flip, self.checkpoint,
                             self.base or Path("."), self.digest)

    @classmethod
    def load(cls, path: str | Path) -> Features:
        """A features file of ``--mode extract`` (or :meth:`save`)."""
        z = load_features(path)
        return cls(torch.from_numpy(z["features"]), [str(p) for p in z["paths"]], Path(str(z.get("base", "."))),
                   checkpoint=str(z.get("checkpoint", "")), digest=str(z.get("model_digest", "")),
                   size=(int(z["height"]), int(z["width"])), flip=bool(z.get("flip", False)))


def array_image(a: np.ndarray, i: int = 0):
    """A numpy image as PIL reads it: uint8 H x W x 3 (RGB), H x W x 4 (RGBA), H x W or H x W x 1 (gray), uint16
    H x W (16-bit gray) or float32 H x W (gray, 0..1); data.images.rgb_image then decodes it as a file's."""
    from PIL import Image
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    fits = ((a.dtype == np.uint8 and (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))))
            or (a.dtype in (np.uint16, np.float32) and a.ndim == 2))
    if not fits or 0 in a.shape:
        raise ReIDError(f"image {i}: a numpy image must be uint8 H x W x 3 (RGB), H x W x 4 (RGBA) or H x W (gray), "
                        f"or a uint16 / float32 H x W gray image, of at least 1 x 1 pixels; got {a.dtype} {a.shape}")
    return Image.fromarray(np.ascontiguousarray(a))


def fit_pil(im, i: int, height: int, width: int, resize: str) -> np.ndarray:
    """A PIL image of any mode at the model's size (data.images.fit_image), or a ReIDError that says what is wrong
    with it: no pixels (0 x 0), or closed (read after the ``with Image.open(...)`` block that opened it ended)."""
    from reidlab.data.images import fit_image
    if 0 in im.size:
        raise ReIDError(f"image {i}: a PIL image of {im.size[0]} x {im.size[1]} pixels: give images of at least "
                        f"1 x 1 pixels")
    try:
        return fit_image(im, height, width, resize)
    except (AssertionError, ValueError) as e:
        if getattr(im, "_im", True) is None or "closed" in str(e):
            raise ReIDError(f"image {i}: the PIL image was closed before its pixels were read (the with "
                            f"Image.open(...) block that opened it has ended): extract inside the block, call "
                            f"im.load() inside it, or give the path") from None
        raise ReIDError(f"image {i}: a PIL image ({im.mode}, {im.size[0]} x {im.size[1]}) that cannot be decoded "
                        f"({type(e).__name__}: {e})") from None


@dataclass
class Match:
    """One gallery image ranked for a query: its name (``Features.paths``), row and cosine distance."""
    path: str
    index: int
    distance: float


class TrainedModel:
    """A trained re-ID model in eval mode on its device (:meth:`load`)."""

    def __init__(self, model: torch.nn.Module, config, checkpoint: dict, device: torch.device):
        self.model, self.config, self.checkpoint, self.device = model, config, checkpoint, device
        from reidlab.runs.checkpoint import state_digest
        self.digest = state_digest(model.state_dict())

    @classmethod
    def load(cls, checkpoint: str | Path, device: str | None = None, **config) -> TrainedModel:
        """A run folder (its ``best.pt``, else its ``last.pt``) or a checkpoint file. ``device``: ``cpu``,
        ``cuda``, ``cuda:N`` (default: the checkpoint's config, ``auto``). ``config``: test-time keys as
        ``section={key: value}``, e.g. ``test={"batch_size": 64, "flip": True}``."""
        overrides = [dict(config)] if config else []
        if device is not None:
            overrides.append({"device": device})
        model, cfg, ckpt, dev = load_trained(str(checkpoint), overrides, images_only=True)
        return cls(model, cfg, ckpt, dev)

    @property
    def dim(self) -> int:
        return int(sum(self.model.feature_splits))

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the model reads; any image is resized to it."""
        return self.config.data.height, self.config.data.width

    def _stack(self, images) -> tuple[torch.Tensor, list[str]]:
        """uint8 N x 3 x H x W at the model's input size, and names, of images given in memory or as a list
        of paths (an unreadable path is an error that names it)."""
        from PIL import Image

        from reidlab.data.images import fit_image
        H, W = self.input_size
        resize = self.config.data.resize
        if isinstance(images, torch.Tensor):
            if images.dtype != torch.uint8 or images.dim() not in (3, 4) or images.shape[-3] != 3:
                raise ReIDError(f"a tensor of images must be uint8 N x 3 x H x W (or 3 x H x W) with values "
                                f"0-255, got {images.dtype} of shape {tuple(images.shape)}")
            x = images[None] if images.dim() == 3 else images
            if x.numel() == 0:
                raise ReIDError(f"a tensor of no images (shape {tuple(images.shape)}): give at least one image "
                                f"of at least 1 x 1 pixels")
            if tuple(x.shape[-2:]) != (H, W):
                x = torch.stack([torch.from_numpy(fit_image(Image.fromarray(i.permute(1, 2, 0).cpu().numpy()),
                                                            H, W, resize)).permute(2, 0, 1) for i in x])
            return x.cpu(), [f"image_{i}" for i in range(len(x))]
        if isinstance(images, (Image.Image, np.ndarray)):
            images = [images]
        items = list(images)
        if not items:
            raise ReIDError("no images given (an empty list)")
        if all(isinstance(i, (str, Path)) for i in items):
            x, keep, bad = decode_all([Path(p) for p in items], H, W, self.config.data.workers, resize)
            if bad:
                raise ReIDError(f"{len(bad)} of the {len(items)} images cannot be read, e.g. {bad[0][1]}")
            return x, [str(p) for p in items]
        arrays = []
        for i, im in enumerate(items):
            if isinstance(im, np.ndarray):
                im = array_image(im, i)
            if not isinstance(im, Image.Image):
                raise ReIDError(f"image {i} is a {type(im).__name__}: give paths, PIL images, uint8 H x W x 3 "
                                f"numpy arrays or a uint8 N x 3 x H x W tensor (not a mixture of paths and images)")
            arrays.append(torch.from_numpy(fit_pil(im, i, H, W, resize)).permute(2, 0, 1))
        return torch.stack(arrays), [f"image_{i}" for i in range(len(arrays))]

    def extract(self, images, progress: bool = False) -> Features:
        """Features of ``images``: a folder (every image under it, recursive; unreadable files skipped and
        listed in ``skipped``), an image file, a list of paths, a PIL image or a list of them, uint8 H x W x 3
        numpy arrays, or a uint8 tensor N x 3 x H x W (3 x H x W for one)."""
        cfg = self.config
        made = dict(checkpoint=str(self.checkpoint["path"]), digest=self.digest, size=self.input_size,
                    flip=cfg.test.flip)
        if isinstance(images, (str, Path)):
            feats, names, bad, base = extract_folder(self.model, cfg, self.device, images, progress=progress)
            return Features(feats, names, base, bad, **made)
        x, names = self._stack(images)
        feats = extract_features(self.model, x, self.device, cfg.test.batch_size, cfg.test.flip,
                                 description=f"features of {len(names)} images", progress=progress,
                                 amp=cfg.train.amp).cpu()
        return Features(feats, names, None, [], **made)

    def _features(self, what) -> Features:
        if isinstance(what, Features):
            got = what
        elif isinstance(what, (str, Path)) and str(what).lower().endswith(".npz"):
            got = Features.load(what)
        else:
            return self.extract(what)
        if got.features.shape[1] != self.dim or tuple(got.size) != self.input_size:
            raise ReIDError(f"these are {got.features.shape[1]}-d features of {got.size[0]} x {got.size[1]} images, "
                            f"this model gives {self.dim}-d features of {self.input_size[0]} x {self.input_size[1]} "
                            f"images: extract them with this model")
        if got.digest and got.digest != self.digest:
            raise ReIDError(f"these features come from another model (weights {got.digest}, from "
                            f"{got.checkpoint or '?'}), not from {self.checkpoint['path']} (weights {self.digest}); "
                            f"distances between two models' features mean nothing: extract them with this model")
        return got

    def distances(self, query, gallery) -> torch.Tensor:
        """Cosine distances (Q x G, on the CPU) between two sets of images or :class:`Features`."""
        q, g = self._features(query), self._features(gallery)
        return (1 - q.features.float() @ g.features.float().T).clamp(min=0)

    def search(self, query, gallery, topk: int = 10) -> list[list[Match]]:
        """For each query image, its ``topk`` nearest gallery images, nearest first (ties in gallery order).
        ``query`` and ``gallery``: anything :meth:`extract` takes, :class:`Features`, or a ``.npz`` of them."""
        if isinstance(topk, bool) or not isinstance(topk, numbers.Integral) or topk < 1:
            raise ReIDError(f"topk={topk!r}: give a whole number of at least 1")
        topk = int(topk)
        g = self._features(gallery)
        if len(g) == 0:
            raise ReIDError("the gallery holds no images (0 features): extract a gallery of at least one image")
        dist = self.distances(query, g).numpy()
        order = np.argsort(dist, axis=1, kind="stable")[:, :min(topk, len(g))]
        return [[Match(g.paths[j], int(j), float(dist[i, j])) for j in row] for i, row in enumerate(order)]
