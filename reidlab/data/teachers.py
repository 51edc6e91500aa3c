"""``python main.py --mode teachers --dataset NAME``: teacher annotations (COCO keypoints, person masks and
part parsing) for every image of a dataset, written in the format ``data.annotations`` reads, in
``<dataset>/annotations/``.

Models (torchvision): ``teacher.pose = keypointrcnn`` (Keypoint R-CNN, ResNet-50-FPN, COCO keypoints)
and ``teacher.mask = maskrcnn`` (Mask R-CNN v2, ResNet-50-FPN, COCO person masks). Their COCO weights
come through torchvision's own cache (``$TORCH_HOME/hub/checkpoints``), or from a local file
(``teacher.pose_weights=PATH``, ``teacher.mask_weights=PATH``); ``random`` keeps a random
initialisation, the same in every run (for timing and tests only: its outputs mean nothing).
Images run in batches on the device, upscaled so that their shorter side is ``teacher.min_size``
pixels (a 128 x 64 crop becomes 512 x 256 at the default 256: the person is as tall as a near COCO
person); one person per crop is expected, so the detectors keep 5 detections (from 50 proposals) per
image.

Per image, the person is the detection with the largest ``score x area x centrality`` among those of
score >= ``teacher.score_threshold``: area is the box's fraction of the image, centrality
1 - |box centre x - image centre x| / (image width / 2) (a re-ID crop is centred on its person, and
its neighbours are cut at the sides). The mask is that of the mask detector's detection that overlaps
the chosen person box most (IoU >= 0.5; else the mask detector's own choice by the same rule),
thresholded at 0.5. A keypoint is found (v = 2) when Keypoint R-CNN's score for it is >=
``teacher.keypoint_threshold``, else v = 0 (its x, y are kept). The part parsing is derived from the
keypoints and the mask (``data.parsing``).

Resumable: an image counts as done when keypoints.json has it and its mask and parsing files exist;
done images are skipped. Every file is written atomically (a killed run leaves no half-written file),
a mask or parsing file only if it does not exist yet; keypoints.json is rewritten after every batch.
A lock file keeps two runs from writing the same folder.
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from reidlab.progress import track

from reidlab.errors import CheckpointError, ConfigError, DatasetError
from reidlab.models.weights import read_state_dict

from .annotations import COCO_KEYPOINTS
from .samples import ReIDDataset
from .files import locked, write_atomic
from .images import open_rgb
from .parsing import derive_parsing

log = logging.getLogger(__name__)

DETECTORS = {
    "pose": {"keypointrcnn": ("keypointrcnn_resnet50_fpn", "KeypointRCNN_ResNet50_FPN_Weights")},
    "mask": {"maskrcnn": ("maskrcnn_resnet50_fpn_v2", "MaskRCNN_ResNet50_FPN_V2_Weights")},
}
PERSON = 1                                       # the COCO label of a person, in both detectors


def build_detector(kind: str, name: str, weights: str, min_size: int, device: torch.device) -> torch.nn.Module:
    """A torchvision detector with its COCO weights (torchvision's cache, or a file), in eval mode."""
    import torchvision.models.detection as det
    if name not in DETECTORS[kind]:
        raise ConfigError(f"teacher.{kind}: one of {', '.join(DETECTORS[kind])}, not {name!r}")
    builder, enum = DETECTORS[kind][name]
    if weights == "random":
        torch.manual_seed(0)                        # the same random detector in every run
    model = getattr(det, builder)(weights=None, weights_backbone=None, min_size=min_size, max_size=4 * min_size,
                                  box_detections_per_img=5, rpn_pre_nms_top_n_test=200, rpn_post_nms_top_n_test=50)
    if weights == "random":
        log.warning("teacher.%s_weights=random: the %s detector keeps its random initialisation; its annotations "
                    "mean nothing (use this for timing and tests only)", kind, name)
    elif weights:
        state = read_state_dict(weights, f"teacher.{kind}_weights", "")
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(
                f"{weights} is not a state dict of torchvision's {builder} ({str(e)[:200]})") from None
    else:
        coco = getattr(det, enum).COCO_V1
        try:
            model.load_state_dict(coco.get_state_dict(progress=True))
        except Exception as e:                      # no network, proxy, ...: say which file goes where
            cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(coco.url).name
            raise ConfigError(
                f"cannot get the COCO weights of {builder} ({type(e).__name__}: {e}).\n"
                f"Download {coco.url} into {cache.parent}/ (torchvision's cache, $TORCH_HOME), or pass the file "
                f"with --set teacher.{kind}_weights=PATH.") from None
    return model.eval().to(device)


def pick_person(out: dict, width: int, height: int, score_threshold: float) -> int | None:
    """Index of the detection that best covers the crop (module docstring), or None."""
    boxes, scores = out["boxes"].cpu(), out["scores"].cpu()
    ok = (out["labels"].cpu() == PERSON) & (scores >= score_threshold)
    if not ok.any():
        return None
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0) / (width * height)
    centre = (boxes[:, 0] + boxes[:, 2]) / 2
    centrality = (1 - (centre - width / 2).abs() / (width / 2)).clamp(min=0)
    value = torch.where(ok, scores * area * centrality, torch.full_like(scores, -1.0))
    return int(value.argmax())


def _iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    lt, rb = torch.maximum(box[:2], boxes[:, :2]), torch.minimum(box[2:], boxes[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area = lambda b: (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)  # noqa: E731
    return inter / (area(box) + area(boxes) - inter).clamp(min=1e-9)


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    no_person: int = 0
    low_confidence: int = 0
    unreadable: list = field(default_factory=list)


def annotate(pose_out: dict | None, mask_out: dict | None, width: int, height: int, t) -> tuple:
    """(keypoints 17 x 3, mask H x W uint8 0/1, found, confident) of one image's detector outputs."""
    keypoints = np.zeros((17, 3), dtype=np.float32)
    mask = np.zeros((height, width), dtype=np.uint8)
    person_box = None
    if pose_out is not None:
        i = pick_person(pose_out, width, height, t.score_threshold)
        if i is not None:
            keypoints[:, :2] = pose_out["keypoints"][i, :, :2].cpu().numpy()
            keypoints[:, 2] = np.where(pose_out["keypoints_scores"][i].cpu().numpy() >= t.keypoint_threshold, 2, 0)
            person_box = pose_out["boxes"][i].cpu()
    if mask_out is not None:
        j = None
        if person_box is not None and len(mask_out["boxes"]):
            iou = _iou(person_box, mask_out["boxes"].cpu())
            iou = torch.where((mask_out["labels"].cpu() == PERSON) & (mask_out["scores"].cpu() >= t.score_threshold),
                              iou, torch.zeros_like(iou))
            j = int(iou.argmax()) if float(iou.max()) >= 0.5 else None
        if j is None:
            j = pick_person(mask_out, width, height, t.score_threshold)
        if j is not None:
            mask = (mask_out["masks"][j, 0].cpu().numpy() >= 0.5).astype(np.uint8)
            person_box = person_box if person_box is not None else mask_out["boxes"][j].cpu()
    found = person_box is not None
    return keypoints, mask, found, found and int((keypoints[:, 2] > 0).sum()) >= 9


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _read(path: str) -> torch.Tensor:
    """The image as the stores decode it (data.images.rgb_image: orientation, transparency, 16-bit), 0..1."""
    return torch.from_numpy(np.asarray(open_rgb(path))).permute(2, 0, 1).float().div(255)


def run_teachers(ds: ReIDDataset, t, device: torch.device) -> Summary:
    """Write (or complete) the teacher annotations of ``ds``'s splits ``t.splits`` (module docstring)."""
    if ds.parts:
        raise ConfigError("--mode teachers runs on one dataset at a time; run it for each part of a+b")
    splits = {"train": ds.train, "query": ds.query, "gallery": ds.gallery}
    unknown = [s for s in t.splits if s not in splits]
    if unknown:
        raise ConfigError(f"teacher.splits: {unknown} are not splits; choose among train, query, gallery")
    for kind in ("pose", "mask"):                     # a missing file stops before minutes of model building
        weights = getattr(t, f"{kind}_weights")
        if getattr(t, kind) and weights not in ("", "random") and not Path(weights).is_file():
            raise ConfigError(f"teacher.{kind}_weights: no file {weights}")
    out = ds.root / "annotations"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".teachers.lock").touch()
    except OSError as e:
        raise DatasetError(f"cannot write the annotations into {out} ({e.strerror}); the dataset folder must be "
                           f"writable") from None
    pose = build_detector("pose", t.pose, t.pose_weights, t.min_size, device) if t.pose else None
    masker = build_detector("mask", t.mask, t.mask_weights, t.min_size, device) if t.mask else None
    samples = list({s.path: s for name in t.splits for s in splits[name]}.values())
    summary = Summary()
    with locked(out / ".teachers.lock"):
        table_path = out / "keypoints.json"
        table = json.loads(table_path.read_text())["images"] if table_path.is_file() else {}
        todo = []
        for s in samples:
            rel = Path(s.path).resolve().relative_to(ds.root.resolve())
            key, png = rel.as_posix(), (rel.parent / (rel.stem + ".png")).as_posix()
            if key in table and (out / "masks" / png).is_file() and (out / "parsing" / png).is_file():
                summary.skipped += 1
            else:
                todo.append((s.path, key, png))
        log.info("%s: %d images to annotate, %d already done", ds.name, len(todo), summary.skipped)
        for b in track(range(0, len(todo), t.batch_size), description=f"teachers of {ds.name}"):
            batch, images = [], []
            for item in todo[b:b + t.batch_size]:
                try:
                    images.append(_read(item[0]))
                    batch.append(item)
                except OSError as e:
                    summary.unreadable.append((item[0], str(e)))
            if not batch:
                continue
            with torch.no_grad():
                x = [im.to(device) for im in images]
                poses = pose(x) if pose is not None else [None] * len(x)
                masks = masker(x) if masker is not None else [None] * len(x)
            for (path, key, png), im, p, m in zip(batch, images, poses, masks):
                H, W = im.shape[-2:]
                keypoints, mask, found, confident = annotate(p, m, W, H, t)
                summary.no_person += not found
                summary.low_confidence += found and not confident
                for folder, array in (("masks", mask * 255), ("parsing", derive_parsing(keypoints, mask))):
                    target = out / folder / png
                    if not target.is_file():                   # a killed run's finished files are kept
                        write_atomic(target, _png(array.astype(np.uint8)))
                table[key] = np.round(keypoints, 2).tolist()
                summary.done += 1
            write_atomic(table_path, json.dumps({"keypoint_names": list(COCO_KEYPOINTS), "images": table}).encode())
    for path, err in summary.unreadable[:20]:
        log.warning("unreadable image skipped: %s (%s)", path, err)
    log.info("%s: %d images annotated, %d already done, %d with no person found, %d with low confidence (fewer "
             "than 9 keypoints found), %d unreadable; written to %s", ds.name, summary.done, summary.skipped,
             summary.no_person, summary.low_confidence, len(summary.unreadable), out)
    return summary
