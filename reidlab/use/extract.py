"""``--mode extract``: features of every image under a folder (recursive), saved as ``.npz``.

The file holds ``features`` (N x D float32, L2-normalised: the model's eval feature, as the evaluation
computes it), ``paths`` (relative to the folder), ``height``/``width`` (the checkpoint's input size),
``dim``, ``checkpoint``, ``flip`` and ``model_digest`` (of the weights: a search with another model's
checkpoint refuses the file). Images are decoded and resized exactly as the evaluation's image
store does and run in batches on the device; unreadable files are listed and skipped, never fatal.
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from reidlab.progress import track

from reidlab.data.images import READABLE, decode_image
from reidlab.errors import DatasetError, ReIDError
from reidlab.evaluation import extract_features
from reidlab.runs.checkpoint import describe_file, state_digest
from reidlab.data.files import check_free_space, walk_files, write_atomically

log = logging.getLogger("reidlab.use")
EXTENSIONS = READABLE


def image_files(where: str | Path) -> tuple[Path, list[Path]]:
    """(base folder, image files) of a folder (recursive, sorted) or of one image file."""
    if not str(where).strip():
        raise ReIDError("an empty path: give an image file or a folder of images")
    p = Path(where).expanduser()
    if p.is_file():
        if p.suffix.lower() not in EXTENSIONS:
            raise ReIDError(f"{p} is not an image file ({', '.join(sorted(EXTENSIONS))}); give an image or a folder")
        return p.parent, [p]
    if not p.is_dir():
        raise ReIDError(f"no image or folder at {p}")
    found, repeated = walk_files(p)                   # links to folders followed
    if repeated:
        log.info("%d folder(s) under %s reached a second time through a link, read once (e.g. %s)", len(repeated),
                 p, repeated[0])
    files = [f for f in found if f.suffix.lower() in EXTENSIONS]
    if not files:
        raise ReIDError(f"{p} holds no image files ({', '.join(sorted(EXTENSIONS))}), in any sub-folder")
    return p, files


def decode_all(files: list[Path], height: int, width: int, workers: int = 2, resize: str = "bilinear"):
    """uint8 N x 3 x H x W of the readable files (resized with the ``resize`` filter the model was trained
    with, data.images), their indices, and (path, error) of the others."""
    def one(f):
        try:
            return decode_image(str(f), height, width, resize), None
        except DatasetError as e:
            return None, str(e)
    arrays, keep, bad = [], [], []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i, (arr, err) in enumerate(pool.map(one, files)):
            if arr is None:
                bad.append((str(files[i]), err))
            else:
                arrays.append(torch.from_numpy(arr).permute(2, 0, 1))
                keep.append(i)
    stack = torch.stack(arrays) if arrays else torch.empty(0, 3, height, width, dtype=torch.uint8)
    return stack, keep, bad


def extract_folder(model, cfg, device, where: str | Path, chunk: int = 2048, progress: bool = True):
    """(features N x D on the CPU, relative paths, unreadable (path, error), base folder) of the images under
    ``where``; ``progress``: one progress bar (per chunk of images when there are several chunks)."""
    base, files = image_files(where)
    feats, names, bad = [], [], []
    chunks = range(0, len(files), chunk)
    for s in track(chunks, description=f"features of {len(files)} images", disable=not progress or len(chunks) < 2):
        part = files[s:s + chunk]
        images, keep, unreadable = decode_all(part, cfg.data.height, cfg.data.width, cfg.data.workers,
                                                   cfg.data.resize)
        bad += unreadable
        if len(keep):
            feats.append(extract_features(model, images, device, cfg.test.batch_size, cfg.test.flip,
                                          description=f"features of {len(files)} images",
                                          progress=progress and len(chunks) < 2, amp=cfg.train.amp).cpu())
            names += [part[i].relative_to(base).as_posix() for i in keep]
    for path, err in bad[:20]:
        log.warning("skipped unreadable %s (%s)", path, err)
    if len(bad) > 20:
        log.warning("... and %d more unreadable files", len(bad) - 20)
    if not names:
        raise ReIDError(f"none of the {len(files)} image files under {where} could be read")
    return torch.cat(feats), names, bad, base


def save_features(path: str | Path, feats: torch.Tensor, names: list[str], size: tuple[int, int], flip: bool,
                  checkpoint: str, base: Path, digest: str = "") -> Path:
    """The ``.npz`` (checked to be one by runs.files.check_file_output), written atomically; ``size``: the
    model's input (height, width); ``digest``: the model's weights (runs.checkpoint.state_digest), which a
    search compares with its own model's."""
    def write(tmp: Path) -> None:
        np.savez(tmp, features=feats.numpy().astype(np.float32), paths=np.array(names), base=str(base.resolve()),
                 height=size[0], width=size[1], dim=feats.shape[1], checkpoint=str(checkpoint), flip=flip,
                 model_digest=digest)
    return write_atomically(path, write, "the features file")


def load_features(path: str | Path) -> dict:
    """A features file of ``--mode extract`` (a clear error for anything else)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except ValueError:                   # numpy's "allow_pickle" hint for text and foreign files misleads
        raise ReIDError(f"{path} is not a features file of --mode extract (not a .npz archive of arrays: "
                        f"{describe_file(Path(path))}); make one with --mode extract --output FILE.npz") from None
    except Exception as e:
        raise ReIDError(f"{path} is not a features file of --mode extract ({type(e).__name__}: {e})") from None
    missing = {"features", "paths", "height", "width"} - set(out)
    if missing:
        raise ReIDError(f"{path} is not a features file of --mode extract (no {', '.join(sorted(missing))})")
    return out


def run_extract(model, cfg, ckpt, device, images: str, output: str) -> Path:
    _, files = image_files(images)
    size = len(files) * (4 * sum(model.feature_splits) + 4 * max(len(str(f)) for f in files))
    check_free_space(Path(output).parent, size, f"the features of {len(files)} images")
    feats, names, bad, base = extract_folder(model, cfg, device, images)
    path = save_features(output, feats, names, (cfg.data.height, cfg.data.width), cfg.test.flip, ckpt["path"], base,
                         state_digest(model.state_dict()))
    log.info("%d features of dimension %d (input %d x %d) written to %s; %d unreadable files skipped",
             len(names), feats.shape[1], cfg.data.height, cfg.data.width, path, len(bad))
    return path
