"""Fault injection for the tests: an attention block (``model.attention=tests.faults:NaNAtStep``, placed
``after`` the backbone, so it runs once per forward) that passes its input through, except that in training
it turns its output NaN (or inf) at the chosen steps, on the chosen rank. A recipe names it by import path,
as a user's own block, so it reaches a torchrun run's processes too."""
import os

import torch
from torch import nn


class NaNAtStep(nn.Module):
    """The identity, but for training forwards ``step`` .. ``step + count - 1`` (1-based; ``count`` 0: every
    one from ``step`` on), whose output is multiplied by ``value`` (NaN, or inf) on rank ``rank`` (-1: every
    rank). ``where``: ``forward`` poisons the output; ``backward`` leaves the forward finite and poisons the
    gradient that flows back through it."""

    def __init__(self, channels: int, height: int, width: int, step: int = 2, count: int = 1, rank: int = -1,
                 value: float = float("nan"), where: str = "forward"):
        super().__init__()
        self.step, self.count, self.rank, self.value, self.where = step, count, rank, value, where
        self.calls = 0

    def hit(self) -> bool:
        if not self.training:
            return False
        self.calls += 1
        mine = self.rank < 0 or int(os.environ.get("RANK", "0")) == self.rank
        late = self.calls >= self.step and (self.count == 0 or self.calls < self.step + self.count)
        return mine and late

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.hit():
            return x
        if self.where == "forward":
            return x * self.value
        value = self.value
        x = x.clone()
        x.register_hook(lambda g: g * value)
        return x
