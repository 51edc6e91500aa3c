"""Rank-list pictures: each query, then its top-k gallery images with the distance under each, framed
green (same identity) or red (another one) when identities are known. Drawn with matplotlib's
object-oriented API (no global pyplot state), at a fixed size: ``rank_list_size``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

CELL_W, CELL_H, DPI = 100, 230, 100          # pixels per image cell (image + distance text), dots per inch


def rank_list_size(queries: int, topk: int) -> tuple[int, int]:
    """(width, height) in pixels of a rank-list picture."""
    return (1 + topk) * CELL_W, queries * CELL_H


Ranked = list[list[tuple[np.ndarray, float, "bool | None"]]]
BORDER = {True: "#2ca02c", False: "#d62728", None: "#bbbbbb"}     # same identity, another one, unknown


def draw_rank_list(path: str | Path, queries: list[np.ndarray], ranked: Ranked,
                   query_titles: list[str] | None = None) -> Path:
    """Write a PNG: row i shows ``queries[i]`` (H x W x 3 uint8) then ``ranked[i]``, a list of (image,
    distance, correct) with correct None when unknown."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    topk = max((len(r) for r in ranked), default=0)
    w, h = rank_list_size(len(queries), topk)
    fig = Figure(figsize=(w / DPI, h / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    for i, (q, row) in enumerate(zip(queries, ranked)):
        cells = [(q, "query" if not query_titles else query_titles[i], "#1f77b4")]
        cells += [(img, f"{dist:.3f}", BORDER[ok]) for img, dist, ok in row]
        for j, (img, text, colour) in enumerate(cells):
            ax = fig.add_axes((j * CELL_W / w, 1 - (i + 1) * CELL_H / h + 0.12 * CELL_H / h,
                               CELL_W / w * 0.92, CELL_H / h * 0.84))
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(4 if j else 3)
            ax.set_xlabel(text, fontsize=8, labelpad=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def to_numpy_image(image) -> np.ndarray:
    """A uint8 3 x H x W tensor (the image store's layout) as H x W x 3 numpy."""
    return np.ascontiguousarray(image.cpu().numpy().transpose(1, 2, 0))


def dataset_rank_lists(path: str | Path, dist: np.ndarray, query, gallery, query_images, gallery_images,
                       queries: int = 8, topk: int = 10) -> Path:
    """Rank lists of ``queries`` queries spread over the query set, with the evaluation's rule: a
    gallery image of the query's identity *and* camera is left out."""
    picks = np.unique(np.linspace(0, len(query) - 1, min(queries, len(query))).round().astype(int))
    q_imgs, rows = [], []
    for qi in picks:
        order = np.argsort(dist[qi], kind="stable")
        q = query[qi]
        keep = [g for g in order if not (gallery[g].pid == q.pid and gallery[g].camid == q.camid)][:topk]
        rows.append([(to_numpy_image(gallery_images[g]), float(dist[qi, g]), gallery[g].pid == q.pid) for g in keep])
        q_imgs.append(to_numpy_image(query_images[qi]))
    return draw_rank_list(path, q_imgs, rows, [f"query {q}" for q in picks])


GRID_HEIGHT, GRID_TEXT, GRID_BORDER = 128, 14, 3      # image height in a grid cell, the caption's, the frame's


def grid_size(queries: int, topk: int, height: int, width: int) -> tuple[int, int]:
    """(width, height) in pixels of a ``draw_rank_grid`` picture of ``height`` x ``width`` images."""
    f = max(1, -(-GRID_HEIGHT // height))
    cell_w, cell_h = f * width + 2 * GRID_BORDER + 4, f * height + 2 * GRID_BORDER + GRID_TEXT + 4
    return (1 + topk) * cell_w, queries * cell_h


def draw_rank_grid(path: str | Path, queries: list[np.ndarray], ranked: Ranked, titles: list[str]) -> Path:
    """The rank lists of ``draw_rank_list`` drawn with PIL alone, in a few milliseconds (the matplotlib
    figure takes about a second): for pictures a training run draws as it goes. Every image is enlarged by a
    whole factor to about ``GRID_HEIGHT`` pixels (nearest neighbour: the model's own input, pixel for pixel)."""
    from PIL import Image, ImageDraw
    h, w = queries[0].shape[:2]
    topk = max((len(r) for r in ranked), default=0)
    f = max(1, -(-GRID_HEIGHT // h))
    cell_w, cell_h = f * w + 2 * GRID_BORDER + 4, f * h + 2 * GRID_BORDER + GRID_TEXT + 4
    canvas = Image.new("RGB", grid_size(len(queries), topk, h, w), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (q, row) in enumerate(zip(queries, ranked)):
        cells = [(q, titles[i], "#1f77b4")] + [(img, f"{d:.3f}", BORDER[ok]) for img, d, ok in row]
        for j, (img, text, colour) in enumerate(cells):
            x, y = j * cell_w + 2, i * cell_h + 2
            draw.rectangle((x, y, x + f * w + 2 * GRID_BORDER - 1, y + f * h + 2 * GRID_BORDER - 1), fill=colour)
            canvas.paste(Image.fromarray(img).resize((f * w, f * h), Image.NEAREST), (x + GRID_BORDER, y + GRID_BORDER))
            draw.text((x, y + f * h + 2 * GRID_BORDER + 1), text[:max(4, (f * w) // 6)], fill="black")
    path = Path(path)
    canvas.save(path, format="PNG")
    return path
