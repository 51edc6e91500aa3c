"""The holistic benchmarks besides Market-1501, each read from its official layout.

DukeMTMC-reID, Occluded-DukeMTMC and PersonX are distributed in Market-1501's folder format;
CUHK03 (new protocol of Zhong et al. 2017) either as the CUHK03-NP folders or as the release plus the
protocol's split files; MSMT17 as image folders plus list files (v1: train/ test/, v2: mask_train_v2/
mask_test_v2/). Published counts: the papers that introduced each dataset or protocol, as the re-ID
codebases report them (identities, images, cameras per split).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from reidlab.errors import DatasetError

from .datasets import (IMAGE_EXTENSIONS, DatasetInfo, ReIDDataset, Sample, Skipped, find_market_root, market_format,
                       register_dataset)


def _market_like(name: str, folder: str, inner: str, aliases: tuple[str, ...], published, layout: str, source: str):
    @register_dataset(name, DatasetInfo(published, layout=layout, source=source))
    def build(data_root: Path, **_) -> ReIDDataset:
        return market_format(name, find_market_root(data_root / folder, inner, aliases))
    return build


_market_like("dukemtmcreid", "dukemtmcreid", "DukeMTMC-reID", ("DukeMTMC-reID", "dukemtmc-reid"),
             {"train": (702, 16522, 8), "query": (702, 2228, 8), "gallery": (1110, 17661, 8)},
             "dukemtmcreid/[DukeMTMC-reID/]{bounding_box_train,bounding_box_test,query}/0001_c2_f0046182.jpg",
             "Zheng et al. 2017 (the gallery holds 408 distractor identities)")
_market_like("occluded_duke", "occluded_duke", "Occluded_Duke", ("Occluded_Duke", "Occluded-DukeMTMC"),
             {"train": (702, 15618, 8), "query": (519, 2210, 8), "gallery": (1110, 17661, 8)},
             "occluded_duke/[Occluded_Duke/]{bounding_box_train,bounding_box_test,query}/0001_c2_f0046182.jpg",
             "Miao et al. 2019 (PGFA)")
_market_like("personx", "personx", "PersonX", ("PersonX",),
             {"train": (410, 9840, 6), "query": (856, 5136, 6), "gallery": (856, 30816, 6)},
             "personx/[PersonX/]{bounding_box_train,bounding_box_test,query}/0001_c1s1_000001.jpg",
             "Sun and Zheng 2019, the re-ID split used by SpCL and later unsupervised work")


# ---------------------------------------------------------------------------------------------
# CUHK03, new protocol (767 training / 700 test identities)

CUHK03_PUBLISHED = {
    "labeled": {"train": (767, 7368, 2), "query": (700, 1400, 2), "gallery": (700, 5328, 2)},
    "detected": {"train": (767, 7365, 2), "query": (700, 1400, 2), "gallery": (700, 5332, 2)},
}
CUHK03_LAYOUT = """expected, either the CUHK03-NP folders (Market format):
  {root}/cuhk03-np/{kind}/{{bounding_box_train,bounding_box_test,query}}/0001_c1_1.png
or the release with its images extracted and the new protocol's split file:
  {root}/cuhk03/images_{kind}/1_001_1_01.png        (pair_id_camera_index.png)
  {root}/cuhk03/cuhk03_new_protocol_config_{kind}.mat   (train_idx, query_idx, gallery_idx, labels, filelist, camId)"""


def _cuhk03_mat(base: Path, kind: str) -> ReIDDataset:
    from scipy.io import loadmat
    split = base / f"cuhk03_new_protocol_config_{kind}.mat"
    images = base / f"images_{kind}"
    cfg = loadmat(split)
    files = [str(np.asarray(f).ravel()[0]) for f in cfg["filelist"].ravel()]       # a MATLAB cell of names
    labels, cams = cfg["labels"].ravel().astype(int), cfg["camId"].ravel().astype(int)

    def subset(key: str, relabel: bool) -> list[Sample]:
        idx = cfg[key].ravel().astype(int) - 1                   # MATLAB indices start at 1
        missing = [files[i] for i in idx if not (images / files[i]).is_file()]
        if missing:
            raise DatasetError(f"{images}: {len(missing)} images of the {key[:-4]} split are missing "
                               f"(e.g. {missing[0]})\n" + CUHK03_LAYOUT.format(root=base.parent, kind=kind))
        pids = labels[idx]
        mapping = {p: i for i, p in enumerate(sorted(set(pids.tolist())))} if relabel else None
        return [Sample(str(images / files[i]), mapping[int(p)] if mapping else int(p), int(cams[i]) - 1)
                for i, p in zip(idx, pids)]
    return ReIDDataset(f"cuhk03-{kind}", base, subset("train_idx", True), subset("query_idx", False),
                       subset("gallery_idx", False))


def _cuhk03(kind: str):
    @register_dataset(f"cuhk03-{kind}", DatasetInfo(CUHK03_PUBLISHED[kind],
                      layout=f"cuhk03-np/{kind}/{{bounding_box_train,bounding_box_test,query}}/0001_c1_1.png, or "
                             f"cuhk03/images_{kind}/ + cuhk03/cuhk03_new_protocol_config_{kind}.mat",
                      source="Zhong et al. 2017, the new (767/700) protocol"))
    def build(data_root: Path, **_) -> ReIDDataset:
        np_root = data_root / "cuhk03-np" / kind
        if all((np_root / d).is_dir() for d in ("bounding_box_train", "bounding_box_test", "query")):
            return market_format(f"cuhk03-{kind}", np_root)
        base = data_root / "cuhk03"
        if (base / f"cuhk03_new_protocol_config_{kind}.mat").is_file():
            if not (base / f"images_{kind}").is_dir():
                raise DatasetError(f"{base}: the split file is there but not images_{kind}/; extract the images "
                                   f"of cuhk-03.mat into it (one PNG per crop, named pair_id_camera_index.png)\n"
                                   + CUHK03_LAYOUT.format(root=data_root, kind=kind))
            return _cuhk03_mat(base, kind)
        raise DatasetError(f"CUHK03 ({kind}) not found under {data_root}\n"
                           + CUHK03_LAYOUT.format(root=data_root, kind=kind))
    return build


_cuhk03("labeled")
_cuhk03("detected")


# ---------------------------------------------------------------------------------------------
# MSMT17: image folders per identity plus list files "<pid>/<name>.jpg <pid>"

MSMT_PUBLISHED = {"train": (1041, 32621, 15), "query": (3060, 11659, 15), "gallery": (3060, 82161, 15)}
MSMT_NAME = re.compile(r"^(\d+)_(\d+)_(\d+)_")          # pid_index_camera_...  e.g. 0000_000_01_0303morning_0015_0.jpg
MSMT_VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
MSMT_LAYOUT = """expected layout (either release):
  {root}/MSMT17_V1/{{train,test}}/0000/0000_000_01_0303morning_0015_0.jpg
  {root}/MSMT17_V1/list_{{train,val,query,gallery}}.txt      lines "0000/0000_000_01_0303morning_0015_0.jpg 0"
  {root}/MSMT17_V2/{{mask_train_v2,mask_test_v2}}/...     with the same four list files"""


def _read_list(path: Path, folder: Path, skipped: Skipped, relabel: dict | None) -> list[Sample]:
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        m = MSMT_NAME.match(Path(parts[0]).name)
        if len(parts) != 2 or m is None or Path(parts[0]).suffix.lower() not in IMAGE_EXTENSIONS:
            skipped.add(f"lines of {path.name} that do not parse", f"{path.name}:{n}: {line.strip()}")
            continue
        pid, cam = int(parts[1]), int(m.group(3))
        out.append(Sample(str(folder / parts[0]), relabel.setdefault(pid, len(relabel)) if relabel is not None else pid,
                          cam - 1))
    return out


@register_dataset("msmt17", DatasetInfo(MSMT_PUBLISHED, layout="msmt17/MSMT17_V1/{train,test}/<pid>/*.jpg + "
                                        "list_{train,val,query,gallery}.txt "
                                        "(or MSMT17_V2/{mask_train_v2,mask_test_v2})",
                                        source="Wei et al. 2018; training = list_train + list_val, as is usual"))
def msmt17(data_root: Path, **_) -> ReIDDataset:
    base = data_root / "msmt17"
    for version, (train_dir, test_dir) in MSMT_VERSIONS.items():
        for root in (base / version, base):
            if (root / train_dir).is_dir() and (root / test_dir).is_dir():
                lists = {k: root / f"list_{k}.txt" for k in ("train", "val", "query", "gallery")}
                absent = [p.name for p in lists.values() if not p.is_file()]
                if absent:
                    raise DatasetError(f"{root}: missing {', '.join(absent)}\n" + MSMT_LAYOUT.format(root=base))
                skipped = Skipped()
                relabel: dict = {}
                train = (_read_list(lists["train"], root / train_dir, skipped, relabel)
                         + _read_list(lists["val"], root / train_dir, skipped, relabel))
                query = _read_list(lists["query"], root / test_dir, skipped, None)
                gallery = _read_list(lists["gallery"], root / test_dir, skipped, None)
                return ReIDDataset(f"msmt17-{version[-2:].lower()}", root, train, query, gallery, skipped)
    raise DatasetError(f"MSMT17 not found under {base}\n" + MSMT_LAYOUT.format(root=base))
