"""Pooling and the BN neck of the re-ID heads."""
from __future__ import annotations

import torch
from torch import nn


class GeM(nn.Module):
    """Generalised-mean pooling, (mean x^p)^(1/p), with a learnable p (Radenovic et al.)."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean((2, 3)).pow(1.0 / self.p)


class GlobalPool(nn.Module):
    """Average or max over H x W, N x C x H x W -> N x C. The same numbers as ``AdaptiveAvgPool2d(1)`` /
    ``AdaptiveMaxPool2d(1)`` and a flatten, written as a reduction because those two have no deterministic
    CUDA backward (``train.deterministic``, runs.determinism)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)) if self.kind == "avg" else x.amax((2, 3))

    def extra_repr(self) -> str:
        return self.kind


def build_pooling(name: str) -> nn.Module:
    if name == "gem":
        return GeM()
    if name in ("avg", "max"):
        return GlobalPool(name)
    raise ValueError(f"unknown pooling {name!r}; choose gem, avg or max")


class BNNeck(nn.Module):
    """BatchNorm1d with a frozen zero bias (Bag of Tricks' BNNeck, as Cluster Contrast uses it)."""

    def __init__(self, dim: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.bn.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


class TriNetHead(nn.Module):
    """TriNet's embedding head (Hermans et al. 2017): FC 1024, BatchNorm, ReLU, FC 128 on the pooled feature."""

    def __init__(self, dim: int, hidden: int = 1024, out: int = 128):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, out))
        self.out_dim = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)
