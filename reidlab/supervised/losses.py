"""The supervised re-ID losses: label-smoothed cross-entropy and the batch-hard triplet loss.

Bag of Tricks (Luo et al. 2019) trains with L = L_ID + L_triplet: the ID loss on the classifier logits
after the BN neck, the triplet loss on the feature before it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def label_smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Cross-entropy against q = (1 - eps) * onehot + eps / C (Szegedy et al.; Bag of Tricks eq. 2).

    PyTorch's ``label_smoothing`` is exactly this target distribution."""
    return F.cross_entropy(logits.float(), targets, label_smoothing=epsilon)


def batch_hard_triplet(features: torch.Tensor, targets: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017) on Euclidean distances.

    For each anchor: its farthest positive and nearest negative in the batch;
    ``max(0, margin + d_ap - d_an)``, or with ``margin == 0`` the soft margin ``log(1 + exp(d_ap - d_an))``.
    Anchors without a positive or without a negative in the batch do not count. The distances are fp32
    whatever autocast is active: |a|^2 + |b|^2 - 2ab from a bf16 product loses the small distances to
    cancellation."""
    with torch.autocast(features.device.type, enabled=False):
        x = features.float()
        sq = x.pow(2).sum(1)
        dist = (sq[:, None] + sq[None, :] - 2 * x @ x.t()).clamp(min=1e-12).sqrt()
    same = targets[:, None] == targets[None, :]
    eye = torch.eye(len(targets), dtype=torch.bool, device=x.device)
    pos = same & ~eye
    d_ap = dist.masked_fill(~pos, float("-inf")).max(1).values
    d_an = dist.masked_fill(same, float("inf")).min(1).values
    valid = pos.any(1) & (~same).any(1)
    if not valid.any():
        return x.sum() * 0.0
    diff = d_ap[valid] - d_an[valid]
    return F.softplus(diff).mean() if margin == 0 else F.relu(diff + margin).mean()


class CenterLoss(torch.nn.Module):
    """Centre loss (Wen et al. 2016), as Bag of Tricks adds it: L_C = (1/B) sum_i ||f_i - c_{y_i}||^2 with a
    learnable centre c_y per identity, on the feature before the BN neck (BoT eq. 6; BoT sums the squared
    distances over the batch and divides by B). The centres have their own optimiser (SGD, lr 0.5 in BoT),
    whose gradients BoT divides by the loss weight so that the weight does not slow the centres down."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.centers = torch.nn.Parameter(torch.randn(num_classes, dim))

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (features.float() - self.centers[targets]).pow(2).sum(1).clamp(1e-12, 1e12).mean()
