"""Optimiser and learning-rate schedule from the ``train`` config, shared by both trainers.

The schedule is per epoch (``train.warmup_by=iter``: the warm-up per iteration, ``LRFactor.at``): a linear
warm-up from ``warmup_factor * lr`` over ``warmup_epochs`` (Bag of
Tricks: 10 epochs from 3.5e-5 to 3.5e-4), then either steps (x ``gamma`` every ``step_size`` epochs, or
at each epoch listed in ``steps``) or a cosine decay to zero at the last epoch, starting right after the
warm-up or at ``cosine_start`` (Pirt: constant to epoch 30, then cosine).
"""
from __future__ import annotations

import bisect
import math

import torch

from reidlab.errors import ConfigError


class LRFactor:
    """The factor of the base learning rate at an epoch (0-based: epoch e trains with factor(e))."""

    def __init__(self, scheduler: str = "step", epochs: int = 1, step_size: int = 20, steps=(), gamma: float = 0.1,
                 warmup_epochs: int = 0, warmup_factor: float = 0.01, cosine_start: int = 0):
        if scheduler not in ("step", "cosine"):
            raise ConfigError(f"train.scheduler: 'step' or 'cosine', not {scheduler!r}")
        if any(not isinstance(s, int) or s <= 0 for s in steps):
            raise ConfigError(f"train.steps: positive epoch numbers, not {list(steps)!r}")
        self.scheduler, self.epochs, self.step_size = scheduler, max(1, epochs), max(1, step_size)
        self.steps, self.gamma = sorted(steps), gamma
        self.warmup_epochs, self.warmup_factor = warmup_epochs, warmup_factor
        self.cosine_start = max(warmup_epochs, cosine_start)

    def at(self, t: float) -> float:
        """The factor at ``t`` epochs into the run (a fraction within an epoch): the warm-up is linear in ``t``
        (``train.warmup_by=iter``); after it, the epoch's factor."""
        if t < self.warmup_epochs:
            return self.warmup_factor + (1 - self.warmup_factor) * t / self.warmup_epochs
        return self(int(t))

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return self.warmup_factor + (1 - self.warmup_factor) * epoch / self.warmup_epochs
        if self.scheduler == "cosine":
            if epoch < self.cosine_start:
                return 1.0
            span = max(1, self.epochs - self.cosine_start)
            return 0.5 * (1 + math.cos(math.pi * (epoch - self.cosine_start) / span))
        n = bisect.bisect_right(self.steps, epoch) if self.steps else epoch // self.step_size
        return self.gamma ** n


def build_optimizer(model: torch.nn.Module, train) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam or SGD (momentum 0.9) over the trainable parameters, and the epoch schedule of ``LRFactor``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)
    elif train.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=train.lr, weight_decay=train.weight_decay, momentum=0.9)
    else:
        raise ConfigError(f"train.optimizer: 'adam' or 'sgd', not {train.optimizer!r}")
    factor = LRFactor(train.scheduler, train.epochs, train.step_size, list(train.steps), train.gamma,
                      train.warmup_epochs, train.warmup_factor, train.cosine_start)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)
