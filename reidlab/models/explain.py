"""What the models' ``explain(images)`` methods share: maps of what a model looks at, as a dict of
name -> (B x h x w tensor, kind), kind "heat" (values in [0, 1]) or "labels" (integer part labels), at
the model's own resolution (``--mode explain`` stretches them over the image)."""
from __future__ import annotations

import torch


def minmax(m: torch.Tensor) -> torch.Tensor:
    """B x h x w -> each map scaled to [0, 1]."""
    flat = m.detach().float().flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp(min=1e-8)).view_as(m)


def collect_outputs(model: torch.nn.Module, kind: type, pick):
    """Forward hooks on every submodule of class ``kind``; ``pick(output)`` of each call is appended to the
    returned list. Returns (list, remove) where ``remove()`` takes the hooks off."""
    found: list = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: found.append(pick(out)))
             for m in model.modules() if isinstance(m, kind)]
    return found, lambda: [h.remove() for h in hooks]
