"""Test-only occluded and partial datasets: query and gallery are different sets of the same people.

Occluded-REID (Zhuo et al. 2018), Partial-REID (Zheng et al. 2015) and Partial-iLIDS (Zheng et al.
2011) have no training split; the papers train on Market-1501 and test on them. Their query
(occluded / partial) and gallery (whole-body) images are not tied to cameras, and the usual
evaluation removes, for each query, the gallery images of its identity *and camera*. So the parsers
give every query camera id 0 and every gallery image camera id 1: no gallery image is ever removed,
which is these datasets' protocol, with the same evaluation code as the holistic ones.
"""
from __future__ import annotations

import re
from pathlib import Path

from reidlab.errors import DatasetError

from .datasets import IMAGE_EXTENSIONS, DatasetInfo, ReIDDataset, Sample, Skipped, register_dataset
from .files import walk_files

QUERY_CAM, GALLERY_CAM = 0, 1
LEADING_ID = re.compile(r"^(\d+)")


def _images_by_id(folder: Path, skipped: Skipped, camid: int) -> list[Sample]:
    """Every image under ``folder`` (flat, or in one folder per identity); the identity is the leading
    number of the file name."""
    out = []
    for path in walk_files(folder)[0]:              # links to folders followed
        if path.suffix.lower() not in IMAGE_EXTENSIONS | {".tif", ".tiff"}:
            skipped.add("non-image files", path)
            continue
        m = LEADING_ID.match(path.name)
        if m is None:
            skipped.add("names that do not parse", path)
            continue
        out.append(Sample(str(path), int(m.group(1)), camid))
    return out


def _query_gallery(name: str, bases: list[Path], pairs: list[tuple[str, str]], layout: str) -> ReIDDataset:
    """The first of ``bases`` that holds one of the (query folder, gallery folder) ``pairs``."""
    for base in bases:
        for qdir, gdir in pairs:
            if (base / qdir).is_dir() and (base / gdir).is_dir():
                skipped = Skipped()
                query = _images_by_id(base / qdir, skipped, QUERY_CAM)
                gallery = _images_by_id(base / gdir, skipped, GALLERY_CAM)
                if not query or not gallery:
                    raise DatasetError(f"{base}: no images in {qdir}/ or {gdir}/\nexpected layout:\n  {layout}")
                return ReIDDataset(name, base, [], query, gallery, skipped)
    raise DatasetError(f"{name} not found or incomplete at {' or '.join(str(b) for b in bases)}\n"
                       f"expected layout:\n  {layout}\n"
                       "Put the dataset there, or point --data-root (or env REID_DATA) at its parent.")


def _register(name: str, folder: str, pairs: list[tuple[str, str]], published, layout: str, source: str):
    """The release's own folder name under the data root, or the registry name, with or without the
    release folder inside it (``Occluded_REID/``, ``occluded_reid/``, ``occluded_reid/Occluded_REID/``),
    as every other dataset."""
    @register_dataset(name, DatasetInfo(published, test_only=True,
                                        layout=f"{layout} (or {name}/[{folder}/]...)", source=source))
    def build(data_root: Path, **_) -> ReIDDataset:
        return _query_gallery(name, [data_root / folder, data_root / name, data_root / name / folder], pairs,
                              layout)
    return build


_register("occluded_reid", "Occluded_REID", [("occluded_body_images", "whole_body_images")],
          {"query": (200, 1000, 1), "gallery": (200, 1000, 1)},
          "Occluded_REID/{occluded_body_images,whole_body_images}/001/001_01.tif",
          "Zhuo et al. 2018: 200 identities, 5 occluded and 5 whole-body images each")
_register("partial_reid", "Partial_REID", [("partial_body_images", "whole_body_images")],
          {"query": (60, 300, 1), "gallery": (60, 300, 1)},
          "Partial_REID/{partial_body_images,whole_body_images}/001_01.jpg",
          "Zheng et al. 2015: 60 identities, 5 partial and 5 whole-body images each")
_register("partial_ilids", "Partial_iLIDS", [("Probe", "Gallery"), ("partial_body_images", "whole_body_images")],
          {"query": (119, 119, 1), "gallery": (119, 119, 1)},
          "Partial_iLIDS/{Probe,Gallery}/001.jpg",
          "Zheng et al. 2011: 119 identities, one partial probe and one whole-body gallery image each")
