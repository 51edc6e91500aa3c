"""IBN-Net's IBN-a block (Pan et al., "Two at Once: Enhancing Learning and Generalization Capacities via
IBN-Net", ECCV 2018): in ResNet-50's first three stages, the first normalisation of every bottleneck
(bn1, after conv1) normalises half of its channels with InstanceNorm (affine) and the other half with
BatchNorm; the last stage keeps BatchNorm. The module names (``bn1.IN``, ``bn1.BN``) are the IBN-Net
release's, so its ``resnet50_ibn_a`` weight files load as they are; torchvision's ImageNet ResNet-50
loads into everything but the InstanceNorms (``ibn_state``)."""
from __future__ import annotations

import torch
from torch import nn


class IBN(nn.Module):
    """InstanceNorm on the first ``ratio`` of the channels, BatchNorm on the rest."""

    def __init__(self, planes: int, ratio: float = 0.5):
        super().__init__()
        self.half = int(planes * ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = nn.BatchNorm2d(planes - self.half)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.half, x.shape[1] - self.half], dim=1)
        return torch.cat([self.IN(a.contiguous()), self.BN(b.contiguous())], dim=1)


def convert_to_ibn_a(net: nn.Module) -> nn.Module:
    """torchvision's ResNet-50 -> ResNet-50-IBN-a, in place."""
    for layer in (net.layer1, net.layer2, net.layer3):
        for block in layer:
            block.bn1 = IBN(block.bn1.num_features)
    return net


def ibn_state(state: dict, own: dict) -> dict:
    """An ImageNet ResNet-50 state dict in IBN-a's names: each converted bn1's BatchNorm half takes the second
    half of torchvision's bn1 entries; the InstanceNorm half is left out (it keeps its initialisation)."""
    out = {}
    for k, v in state.items():
        prefix, _, name = k.rpartition(".")
        bn_key = f"{prefix}.BN.{name}"
        if bn_key in own and k not in own:
            half = v.shape[0] - own[bn_key].shape[0] if v.dim() else 0
            out[bn_key] = v[half:] if v.dim() else v
        else:
            out[k] = v
    return out
