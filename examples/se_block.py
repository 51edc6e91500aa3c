"""A user's own attention block: squeeze-and-excitation (Hu et al. 2018), plugged in by import path.

    python main.py --mode unsup --config demo \
        --set model.attention=examples.se_block:SqueezeExcitation \
        --set model.attention_placement=after --set model.attention_args.reduction=8
"""
import torch
from torch import nn


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, height: int, width: int, reduction: int = 16):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:          # B x C x H x W -> B x C x H x W
        weights = self.fc(x.mean(dim=(2, 3)))                      # squeeze, then excite
        return x * weights[:, :, None, None]
