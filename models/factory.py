"""A model from the ``model`` part of a run's config (any object with its attributes)."""
from __future__ import annotations

import dataclasses

import torch

from .registry import build_model


def model_from_config(cfg, device: torch.device | str = "cpu", num_classes: int = 0) -> torch.nn.Module:
    """Build ``cfg.model.name`` for images of ``cfg.data.height x cfg.data.width``, on ``device``.

    ``num_classes`` adds the identity classifier of the supervised losses."""
    m = cfg.model
    kwargs = dict(pretrained=m.pretrained, last_stride=m.last_stride, pooling=m.pooling, num_classes=num_classes,
                  attention=m.attention, attention_args=m.attention_args, attention_placement=m.attention_placement,
                  attention_blocks=m.attention_blocks, head=m.head, input_size=(cfg.data.height, cfg.data.width))
    if m.name == "daaf":     # a wrapper: its own options plus those of the base network it wraps
        kwargs.update(dataclasses.asdict(m.daaf) if dataclasses.is_dataclass(m.daaf) else dict(m.daaf))
    return build_model(m.name, **kwargs).to(device)
