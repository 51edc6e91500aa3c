"""``--mode explain``: what a trained model looks at, drawn over each image (one PNG per image).

The maps come from the model itself, ``model.explain(images)``: a dict of name -> (B x h x w tensor,
kind), kind ``"heat"`` (values in [0, 1], drawn as a translucent heat map) or ``"labels"`` (integer part
labels, drawn as translucent colours). The ResNet gives its activation map and the pixel weights of
any PLA block (MLA); DAAF adds its predicted person mask and keypoint heat maps; the transformers give
their [CLS] attention and AAformer its patch-to-[PART] assignment. This mode never asks which model it is.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from reidlab.data.augment import normalise
from reidlab.errors import ReIDError
from reidlab.data.files import check_free_space, write_atomically

from .extract import decode_all, image_files

log = logging.getLogger("reidlab.use")
PANEL_W, PANEL_H, DPI = 160, 320, 100
PICTURE_BYTES = 200_000                     # an upper bound on one picture's PNG (measured: 40-90 kB)


def overlay_figure(path: Path, image: np.ndarray, maps: dict[str, tuple[np.ndarray, str]]) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    n = 1 + len(maps)
    fig = Figure(figsize=(n * PANEL_W / DPI, PANEL_H / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    H, W = image.shape[:2]
    for i, (title, (m, kind)) in enumerate([("image", (None, "")), *maps.items()]):
        ax = fig.add_axes((i / n + 0.02 / n, 0.02, 0.96 / n, 0.88))
        ax.imshow(image)
        if m is not None:
            extent = (-0.5, W - 0.5, H - 0.5, -0.5)
            if kind == "labels":
                ax.imshow(m, cmap="tab10", vmin=0, vmax=9, alpha=0.5, extent=extent, interpolation="nearest")
            else:
                ax.imshow(m, cmap="jet", vmin=0, vmax=1, alpha=0.5, extent=extent, interpolation="bilinear")
        ax.set_title(title, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    return write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=DPI), "a picture")


def picture_names(base: Path, files: list[Path]) -> list[str]:
    """``<name>_explain.png`` for each image: its path under ``base`` with folders joined by ``__`` (two
    cameras' ``0001.jpg`` do not overwrite each other), cut to fit a file system's 255 bytes."""
    out = []
    for f in files:
        stem = "__".join(f.relative_to(base).with_suffix("").parts) if f != base else f.stem
        while len(stem.encode()) > 200:
            stem = stem[1:]
        out.append(f"{stem}_explain.png")
    return out


def run_explain(model, cfg, ckpt, device, images: str, output: str) -> list[Path]:
    if not hasattr(model, "explain"):
        raise ReIDError(f"model {cfg.model.name!r} has no explain() method: it cannot show what it looks at")
    base, files = image_files(images)
    out = Path(output)
    check_free_space(out, len(files) * PICTURE_BYTES, f"{len(files)} pictures")
    names = picture_names(base, files)
    written = []
    for s in range(0, len(files), cfg.test.batch_size):
        part = files[s:s + cfg.test.batch_size]
        batch, keep, bad = decode_all(part, cfg.data.height, cfg.data.width, cfg.data.workers, cfg.data.resize)
        for p, err in bad:
            log.warning("skipped unreadable %s (%s)", p, err)
        if not keep:
            continue
        with torch.no_grad():
            maps = model.explain(normalise(batch.to(device)))
        for b, i in enumerate(keep):
            image = batch[b].permute(1, 2, 0).numpy()
            drawn = {name: (m[b].float().cpu().numpy(), kind) for name, (m, kind) in maps.items()}
            written.append(overlay_figure(out / names[s + i], image, drawn))
    if not written:
        raise ReIDError(f"none of the {len(files)} image files under {images} could be read")
    log.info("%d pictures of what %s looks at written to %s (%s)", len(written), cfg.model.name, out,
             ", ".join(maps))
    return written
