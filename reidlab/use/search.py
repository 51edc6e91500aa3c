"""``--mode search``: each query image searched in a gallery (a folder, or a ``.npz`` of ``--mode extract``,
reused without extracting again); prints the ranked gallery files with their cosine distances and writes
a rank-list picture (``evaluation.visualize``), framed green or red when Market-style names
(``0002_c1s1_000451_03.jpg``) give the identities."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from rich.table import Table

from reidlab.data.datasets import MARKET_PATTERN
from reidlab.data.images import decode_image
from reidlab.errors import ReIDError
from reidlab.evaluation.visualize import draw_rank_list
from reidlab.runs.checkpoint import state_digest
from reidlab.data.files import write_atomically
from reidlab.progress import console

from .extract import extract_folder, load_features

log = logging.getLogger("reidlab.use")
MAX_DRAWN = 16                              # queries drawn in the picture (all are printed)


def identity(name: str) -> int | None:
    """The identity of a Market-style file name (None when it has none, or is junk)."""
    m = MARKET_PATTERN.search(Path(name).name)
    return int(m.group(1)) if m and int(m.group(1)) >= 0 else None


def gallery_features(model, cfg, device, gallery: str, checkpoint: str):
    """(features, names, base folder) of a gallery folder or features file; a features file must come from a
    model with this checkpoint's input size and feature dimension."""
    if str(gallery).lower().endswith(".npz"):
        z = load_features(gallery)
        size, want = (int(z["height"]), int(z["width"])), (cfg.data.height, cfg.data.width)
        if size != want or int(z["features"].shape[1]) != sum(model.feature_splits):
            raise ReIDError(f"{gallery} holds {z['features'].shape[1]}-d features of {size[0]} x {size[1]} images "
                            f"(from {z.get('checkpoint', '?')}); {checkpoint} reads {want[0]} x {want[1]} and gives "
                            f"{sum(model.feature_splits)}-d features: extract the gallery again with this checkpoint")
        theirs, mine = str(z.get("model_digest", "")), state_digest(model.state_dict())
        if theirs and theirs != mine:
            raise ReIDError(f"{gallery} holds features of another model (weights {theirs}, from "
                            f"{z.get('checkpoint', '?')}), not of {checkpoint} (weights {mine}); distances between "
                            f"two models' features mean nothing: extract the gallery again with this checkpoint")
        if not theirs:
            log.warning("%s does not record which model made it (an earlier version's file); it is used as given, "
                        "with %s", gallery, checkpoint)
        if len(z["features"]) == 0:
            raise ReIDError(f"{gallery} holds no features (0 images): extract a gallery of at least one image")
        return torch.from_numpy(z["features"]), [str(p) for p in z["paths"]], Path(str(z.get("base", ".")))
    feats, names, _, base = extract_folder(model, cfg, device, gallery)
    return feats, names, base


def run_search(model, cfg, ckpt, device, query: str, gallery: str, topk: int, output: str) -> Path:
    q_feats, q_names, _, q_base = extract_folder(model, cfg, device, query)
    g_feats, g_names, g_base = gallery_features(model, cfg, device, gallery, ckpt["path"])
    dist = (1 - q_feats.float() @ g_feats.float().T).clamp(min=0).numpy()      # rounding: never -0.0000
    k = min(topk, len(g_names))
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    table = Table("query", "rank", "distance", "gallery file", title=f"top {k} of {len(g_names)} gallery images")
    for qi, name in enumerate(q_names):
        for r, gi in enumerate(order[qi]):
            table.add_row(name if r == 0 else "", str(r + 1), f"{dist[qi, gi]:.4f}", g_names[gi])
    console.print(table)
    H, W = cfg.data.height, cfg.data.width

    def picture(base: Path, name: str) -> np.ndarray:
        try:
            return decode_image(str(base / name), H, W, cfg.data.resize)
        except Exception:                             # a gallery file moved since its features were extracted
            return np.full((H, W, 3), 200, np.uint8)
    drawn = range(min(len(q_names), MAX_DRAWN))
    rows = []
    for qi in drawn:
        qid = identity(q_names[qi])
        rows.append([(picture(g_base, g_names[gi]), float(dist[qi, gi]),
                      None if qid is None or identity(g_names[gi]) is None else identity(g_names[gi]) == qid)
                     for gi in order[qi]])
    path = write_atomically(output, lambda tmp: draw_rank_list(tmp, [picture(q_base, q_names[qi]) for qi in drawn],
                                                               rows, [Path(q_names[qi]).name[:18] for qi in drawn]),
                            "the rank-list picture")
    log.info("rank lists of %d queries written to %s", len(rows), path)
    return path
