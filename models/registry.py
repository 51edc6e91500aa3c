"""The model registry and the record a model returns in training mode (../shared/DESIGN.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from errors import ConfigError, closest

MODELS: dict[str, Callable[..., nn.Module]] = {}


@dataclass
class ModelOutput:
    """What a model returns in training mode. In eval mode a model returns one B x D tensor instead.

    embedding: the feature for the memory / classifier losses (after the BN neck);
    features: the feature for metric losses such as triplet (before the neck);
    logits: classifier outputs, when the model has a classifier;
    aux_losses: losses the model owns (a paper's auxiliary branches), already weighted."""
    embedding: torch.Tensor
    features: torch.Tensor
    logits: torch.Tensor | None = None
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)


def register_model(name: str):
    def deco(fn):
        MODELS[name] = fn
        return fn
    return deco


def build_model(name: str, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}{closest(name, MODELS)}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)
