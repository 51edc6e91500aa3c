"""Multi-Level Attention for unsupervised person re-ID (MLA; ../shared/papers/004_1d8a488c01118411.txt).

Three attention modules replace the 3x3 convolution of the residual blocks of ResNet-50's last stage
("we modify the last ResBlock ... by using three attention modules ... instead of the original
convolutional layers", section 3; BoTNet places its self-attention the same way in all three c5
blocks, which is our default, ``model.attention_blocks: all``; ``last`` replaces only the final one).

- PLA, pixel-level attention, eq. 3: PLA(x) = x * sigmoid(Conv3x3_zero-pad(x)). The paper asks for
  "the weight of a pixel" from "a small area around this pixel", so the convolution maps C channels
  to one weight per pixel (our reading; a C -> C map would be a channel attention too).
- HLA, head-level attention, section 3.1 / Fig. 2: BoTNet's multi-head self-attention with 1x1 q, k, v
  and a learnable position encoding r (r_h + r_w, BoTNet's factorisation) that is multiplied with q
  and added to the q.k logits before the softmax: logits = (q / sqrt(d)) . (k + r), the one
  temperature 1/sqrt(d) of scaled dot-product attention applied to both terms as BoTNet does. r_h and
  r_w are "two matrices obeying standard normal distribution" (section 3.2): initialised N(0, 1)
  (``position_init="normal"``, the default). ``position_init="scaled"`` initialises them at std
  d^-1/2 instead, as BoTNet's code does, which makes the position term sqrt(d) (~11x at d = 128) weaker
  at initialisation. The dotted line of Fig. 2 ("the effect of the
  pixel-level attention module on the position encoding") is read as: with PLA before it, HLA's input
  is PLA(x) and the position term of key pixel j is scaled by PLA's weight at j, so positions PLA
  marks as background carry less positional attention.
- DLA, domain-level attention, eqs. 4-6 / Fig. 4: q = Conv1x1(F); two bias-free 1x1 convolutions k_D
  (C -> C_k) and v_D (C_k -> C) are dataset-level memory units, v_D initialised as the transpose of
  k_D; A = softmax(k_D(q)) taken over the pixels of each memory unit, then the "extra normalisation"
  divides each pixel's C_k weights by their sum (the double normalisation of external attention);
  DLA(F) = F + v_D(A).

Registered blocks (``model.attention``), the rows of the paper's Table 6: ``hla``, ``pla``, ``pla+hla``,
``dla``, ``mla`` (ALL = PLA -> HLA -> DLA); the baseline is no block (``model.attention: ""``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidlab.errors import ConfigError

from .attention import register_block


class PLA(nn.Module):
    """Eq. 3. ``forward`` returns the re-weighted map and the weights (B x 1 x H x W)."""

    def __init__(self, channels: int, height: int = 0, width: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.sigmoid(self.conv(x))
        return x * w, w


class HLA(nn.Module):
    """Multi-head self-attention over the feature map with a learnable position encoding (Fig. 2)."""

    def __init__(self, channels: int, height: int, width: int, heads: int = 4, position_init: str = "normal"):
        super().__init__()
        if channels % heads:
            raise ConfigError(f"HLA: {channels} channels do not split into {heads} heads")
        if position_init not in ("normal", "scaled"):
            raise ConfigError(f"HLA position_init: 'normal' (the paper's) or 'scaled' (BoTNet code's), "
                              f"not {position_init!r}")
        self.heads, self.dim = heads, channels // heads
        self.q = nn.Conv2d(channels, channels, 1, bias=False)
        self.k = nn.Conv2d(channels, channels, 1, bias=False)
        self.v = nn.Conv2d(channels, channels, 1, bias=False)
        std = 1.0 if position_init == "normal" else self.dim ** -0.5
        self.pos_h = nn.Parameter(torch.randn(heads, self.dim, height, 1) * std)
        self.pos_w = nn.Parameter(torch.randn(heads, self.dim, 1, width) * std)

    def position(self, h: int, w: int) -> torch.Tensor:
        """heads x dim x (h*w), resized when the feature map is not the size the block was built for."""
        pos = self.pos_h + self.pos_w
        if pos.shape[-2:] != (h, w):
            pos = F.interpolate(pos, size=(h, w), mode="bilinear", align_corners=False)
        return pos.flatten(2)

    def position_logits(self, q: torch.Tensor, H: int, W: int, pixel_weights: torch.Tensor | None = None):
        """The position term of the logits, (q / sqrt(d)) . r_j for query pixel i and key pixel j
        (B x heads x n x n); with PLA's weights, r_j is scaled by the weight of key pixel j."""
        B, n = q.shape[0], H * W
        pos = self.position(H, W).unsqueeze(0)                           # 1 x heads x d x n
        if pixel_weights is not None:                                   # Fig. 2's dotted line
            pos = pos * pixel_weights.view(B, 1, 1, n)
        return torch.einsum("bhdi,bhdj->bhij", q, pos.expand(B, -1, -1, -1))

    def forward(self, x: torch.Tensor, pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        n, d = H * W, self.dim
        q = self.q(x).view(B, self.heads, d, n) * d ** -0.5
        k = self.k(x).view(B, self.heads, d, n)
        v = self.v(x).view(B, self.heads, d, n)
        logits = torch.einsum("bhdi,bhdj->bhij", q, k) + self.position_logits(q, H, W, pixel_weights)
        out = torch.einsum("bhij,bhdj->bhdi", logits.softmax(dim=-1), v)
        return out.reshape(B, C, H, W)


class DLA(nn.Module):
    """Eqs. 4-6: attention against dataset-level memory units k_D, v_D."""

    def __init__(self, channels: int, height: int = 0, width: int = 0, units: int = 64, eps: float = 1e-9):
        super().__init__()
        self.q = nn.Conv2d(channels, channels, 1)
        self.k_d = nn.Conv2d(channels, units, 1, bias=False)
        self.v_d = nn.Conv2d(units, channels, 1, bias=False)
        with torch.no_grad():
            self.v_d.weight.copy_(self.k_d.weight.transpose(0, 1))      # initialised as transposes
        self.eps = eps

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        a = self.k_d(self.q(f))                                        # eqs. 4-5: B x C_k x H x W
        a = a.flatten(2).softmax(dim=-1).view_as(a)                    # softmax over the pixels
        a = a / (a.sum(dim=1, keepdim=True) + self.eps)                # the extra normalisation
        return f + self.v_d(a)                                         # eq. 6


@register_block("pla")
class PLABlock(PLA):
    def forward(self, x):
        return super().forward(x)[0]


@register_block("hla")
class HLABlock(HLA):
    def forward(self, x):
        return super().forward(x)


@register_block("dla")
class DLABlock(DLA):
    pass


@register_block("pla+hla")
class PLAHLA(nn.Module):
    def __init__(self, channels: int, height: int, width: int, heads: int = 4, position_init: str = "normal"):
        super().__init__()
        self.pla = PLA(channels)
        self.hla = HLA(channels, height, width, heads, position_init)

    def forward(self, x):
        x, w = self.pla(x)
        return self.hla(x, w)


@register_block("mla")
class MLA(nn.Module):
    """ALL of Table 6: PLA, then HLA constrained by it, then DLA."""

    def __init__(self, channels: int, height: int, width: int, heads: int = 4, units: int = 64,
                 position_init: str = "normal"):
        super().__init__()
        self.pla = PLA(channels)
        self.hla = HLA(channels, height, width, heads, position_init)
        self.dla = DLA(channels, units=units)

    def forward(self, x):
        x, w = self.pla(x)
        return self.dla(self.hla(x, w))
