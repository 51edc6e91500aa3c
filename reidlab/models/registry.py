"""The model registry, the record a model returns in training mode, and the eval feature of part models
(docs/architecture.md, "Contracts between the parts")."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from reidlab.registry import Registry

MODELS: Registry = Registry("model")


@dataclass
class LossTerm:
    """One term of a model's own supervised objective: ``ce`` x cross-entropy of ``logits`` and ``triplet`` x
    batch-hard triplet of ``features`` (either may be absent), for a paper whose losses do not have the
    default global-plus-parts shape (Pirt's eqs. 15-17)."""
    features: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    ce: float = 0.0
    triplet: float = 0.0


@dataclass
class ModelOutput:
    """What a model returns in training mode. In eval mode a model returns one B x D tensor instead
    (:func:`retrieval_feature`).

    embedding: the global feature for the memory / classifier losses (after the BN neck);
    features: the global feature for metric losses such as triplet (before the neck);
    logits: classifier outputs, when the model has a classifier;
    aux_losses: losses the model owns (a paper's auxiliary branches), already weighted;
    part_embeddings, part_features, part_logits: the same per part, for part models (AAformer, SAP, ...);
        empty for a model without parts;
    part_metric: how the metric loss treats the parts: ``"concat"``, one triplet on the concatenated part
        features (AAformer eq. 7, SAP), or ``"each"``, one triplet per part, averaged;
    loss_terms: when given, the supervised objective is these terms (``LossTerm``) instead of the default
        composition of the global and part features."""
    embedding: torch.Tensor
    features: torch.Tensor
    logits: torch.Tensor | None = None
    aux_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    part_embeddings: list[torch.Tensor] = field(default_factory=list)
    part_features: list[torch.Tensor] = field(default_factory=list)
    part_logits: list[torch.Tensor] = field(default_factory=list)
    part_metric: str = "concat"
    loss_terms: list[LossTerm] | None = None


def retrieval_feature(global_feature: torch.Tensor, parts: list[torch.Tensor] | tuple = ()) -> torch.Tensor:
    """The eval-mode feature of a model: each of the global and part features L2-normalised, concatenated,
    and divided by sqrt(1 + P) so that the whole is unit length. Its cosine similarity is therefore the mean
    of the global and the per-part cosine similarities; ``feature_splits`` of the model gives the widths of
    the pieces, so a piece can be cut out and renormalised (the unsupervised loop does, for its memories)."""
    pieces = [F.normalize(global_feature.float(), dim=1)] + [F.normalize(p.float(), dim=1) for p in parts]
    return torch.cat(pieces, dim=1) / len(pieces) ** 0.5


def register_model(name: str):
    return MODELS.register(name)


def build_model(name: str, **kwargs) -> torch.nn.Module:
    return MODELS.get(name)(**kwargs)
