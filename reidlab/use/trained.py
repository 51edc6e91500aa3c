"""A trained model from a checkpoint (a run folder's best.pt, or any last.pt / best.pt), in eval mode."""
from __future__ import annotations

import logging
import re

import torch

from reidlab.errors import ReIDError
from reidlab.models import model_from_config
from reidlab.runs.checkpoint import load_checkpoint, load_model_state
from reidlab.runs.config import Config, build_config
from reidlab.runs.run import resolve_device


def num_classes_of(ckpt: dict) -> int:
    """The identity classifier's size of a supervised model's checkpoint (0 for an unsupervised one)."""
    classes = [v.shape[0] for k, v in ckpt["model"].items() if re.search(r"classifiers?(\.\d+)?\.weight$", k)]
    return classes[0] if classes else 0


def build_trained(cfg: Config, ckpt: dict, device: torch.device) -> torch.nn.Module:
    """The checkpoint's model, built from ``cfg`` (the checkpoint's config with any overrides)."""
    cfg.model.pretrained = "none"                      # the checkpoint brings the weights
    model = model_from_config(cfg, device, num_classes=num_classes_of(ckpt))
    load_model_state(model, ckpt)
    return model.eval()


def load_trained(checkpoint: str, overrides: list[dict] | None = None, images_only: bool = False):
    """(model in eval mode, config, checkpoint, device) of a checkpoint or run folder (its best.pt).
    ``images_only``: the caller has images and nothing else, which a model that needs teacher annotations
    at test time (Pirt's keypoints) cannot work from: a clear error."""
    ckpt = load_checkpoint(checkpoint, "best.pt")
    cfg = build_config(None, overrides or [], base=ckpt["config"])
    device = resolve_device(cfg.device)
    model = build_trained(cfg, ckpt, device)
    from reidlab.precision import precision_name
    logging.getLogger("reidlab").info("%s on %s, features in %s (its train.amp=%s)", ckpt["path"], device,
                                   precision_name(device, cfg.train.amp), cfg.train.amp)
    needs = getattr(model, "test_teacher_targets", ())
    if images_only and needs:
        raise ReIDError(f"{ckpt['path']} holds a {cfg.model.name!r} model, which needs teacher {', '.join(needs)} "
                        f"at test time too; this mode works from images alone (--mode evaluate works on a dataset "
                        f"with annotations)")
    return model, cfg, ckpt, device
