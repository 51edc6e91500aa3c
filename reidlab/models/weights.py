"""Reading weight files and loading what fits into a model, with a log of what did not."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from reidlab.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)


def read_state_dict(path: str, key: str = "model.pretrained",
                    hint: str = "use imagenet, none, or a path to a state dict") -> dict:
    """A state dict from a file: a bare one, or a checkpoint holding it under 'model' / 'state_dict'.
    A missing file is an error naming the config ``key`` the path came from, and ``hint`` if given."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{key}: no file {p}" + (f" ({hint})" if hint else ""))
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read weights from {p}: {e}") from None
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(f"{p} holds no state dict" if not isinstance(sd, dict) else f"{p} holds no tensors")
    bad = [k for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{p} holds {len(bad)} tensor(s) with NaN or inf (e.g. {bad[0]}): the weights of a "
                              f"diverged run; give a file of finite weights")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def load_matching(module: nn.Module, state: dict, source: str) -> list[str]:
    """Load the entries of ``state`` whose names and shapes fit ``module``; log and return the rest.

    A name that exists with another shape is an error (the weights are of another architecture), and so
    is a file of which nothing fits (a ResNet's weights given to a ViT, say)."""
    own = module.state_dict()
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and own[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"weights from {source} do not fit this model ({len(wrong)} shape mismatches, "
                              f"e.g. {wrong[0]}); they are of another architecture")
    usable = {k: v for k, v in state.items() if k in own}
    if not usable:
        raise CheckpointError(f"weights from {source}: none of its {len(state)} tensors fits this model (it holds "
                              f"{summarise_keys(sorted(state)) or 'nothing usable'}); they are of another "
                              f"architecture: give this model's own kind of weights, or none")
    module.load_state_dict(usable, strict=False)
    not_loaded = sorted(set(own) - set(usable))
    if not not_loaded:
        log.info("weights from %s: all %d tensors loaded", source, len(usable))
    else:
        log.info("weights from %s: %d tensors loaded, %d not found (kept at initialisation): %s", source,
                 len(usable), len(not_loaded), summarise_keys(not_loaded))
    ignored = sorted(set(state) - set(own))
    if ignored:
        log.info("weights from %s: %d tensors not used by this model: %s", source, len(ignored),
                 summarise_keys(ignored))
    return not_loaded


def summarise_keys(keys: list[str], most: int = 24) -> str:
    """A dozen state-dict keys or fewer as they are; more grouped by module with indices folded:
    'neck.bn (5 tensors), part_necks.*.bn (25 tensors), prefix_tokens'."""
    if len(keys) <= 12:
        return ", ".join(keys)
    groups: dict[str, int] = {}
    for k in keys:
        parts = k.split(".")
        name = ".".join("*" if p.isdigit() else p for p in (parts[:-1] or parts))
        groups[name] = groups.get(name, 0) + 1
    items = [f"{g} ({n} tensors)" if n > 1 else g for g, n in groups.items()]
    return ", ".join(items[:most]) + (f", ... ({len(items) - most} more groups)" if len(items) > most else "")
