"""AAformer: Auto-Aligned Transformer for person re-ID (Zhu et al., IEEE TNNLS 2023), on the re-ID ViT.

Section III-B: P learnable [PART] tokens follow [CLS] (the "part prototypes" of the dataset; no
position embedding). In every layer, Multi-head Auto-Alignment (MAA) replaces self-attention for the
[PART] queries; [CLS] and the patches keep the ordinary self-attention of eq. 1 over the whole sequence
([CLS], [PART]s and patches).

MAA, per layer and per head, for each granularity g of ``granularities`` (default {2, 3}: 5 [PART]s; the
first 2 partition the patches into two groups, the next 3 into three, each on its own, Table VI):
  1. the patch keys K are assigned to that granularity's [PART] queries Q^PT by optimal transport:
     Y* = Diag(u) exp(Q^PT K^T / eps) Diag(v) (eq. 5), the maximiser of eq. 3 over the transportation
     polytope of eq. 4 (rows sum to 1/P, columns to 1/N: an equal partition), found by Sinkhorn-Knopp
     with eps = 0.05 and 3 iterations, in fp32 and in the log domain so that exp(./0.05) cannot overflow
     under mixed precision;
  2. Y* is rounded to a hard assignment: each patch goes to the [PART] of its column's maximum, so each
     patch belongs to exactly one [PART] of each granularity (per head);
  3. [PART] p attends only to its patches Phi_p: softmax(Q_p K_Phi_p^T / sqrt(d)) V_Phi_p (eq. 2); a [PART]
     left with no patch outputs zero in that head.
The assignment carries no gradient (it is an argmax); the [PART] tokens learn through eq. 2.

Choices where the paper is silent: the similarity in eq. 5 is the cosine similarity of the [PART]
query and the patch key (as in SwAV's Sinkhorn clustering, which the paper cites [8] and for which eps
= 0.05 is calibrated; raw dot products of d = 64 would make any eps a hard assignment); [CLS] and the
patches attend to the [PART]s too (eq. 1 over the whole sequence).

``assign`` options (Tables IV-V): ``ot`` (the paper), ``nn`` (nearest neighbour: each patch to its most
similar [PART], no equal-partition constraint), ``stripes`` (fixed horizontal stripes, PCB's partition
with [PART]s: the "+PCB PT" row of Table IV).

Losses (section III-C, eqs. 6-8; computed by the trainers from ``ModelOutput``): a BNNeck and an
identity classifier per token, not shared; the ID loss averaged over [CLS] and the P [PART]s (eq. 6);
a triplet loss on [CLS] and one on the concatenated [PART]s, mined separately and averaged (eq. 7). The
test feature is [CLS] and the [PART]s concatenated (``models.registry.retrieval_feature``).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from reidlab.errors import ConfigError

from .heads import BNNeck
from .registry import ModelOutput, register_model, retrieval_feature
from .vit import SIZES, ReIDViT, patch_grid

ASSIGNERS = ("ot", "nn", "stripes")


def sinkhorn(logits: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Eq. 5: the Y in the polytope of eq. 4 (rows of the last-but-one dim sum to 1/P, columns of the last
    to 1/N) nearest to exp(logits), by ``iterations`` rounds of row then column normalisation (so the
    column sums are exact after any number of rounds and the row sums converge). fp32, log domain."""
    log_y = logits.float()
    P, N = log_y.shape[-2:]
    log_p, log_n = -torch.log(torch.tensor(float(P))), -torch.log(torch.tensor(float(N)))
    for _ in range(iterations):
        log_y = log_y - torch.logsumexp(log_y, dim=-1, keepdim=True) + log_p
        log_y = log_y - torch.logsumexp(log_y, dim=-2, keepdim=True) + log_n
    return log_y.exp()


def stripe_of_patch(grid: tuple[int, int], parts: int) -> torch.Tensor:
    """The horizontal stripe (0..parts-1) of every patch of an h x w grid, row-major."""
    h, w = grid
    rows = torch.arange(h).repeat_interleave(w)
    return torch.clamp(rows * parts // h, max=parts - 1)


def assign_patches(q: torch.Tensor, k: torch.Tensor, granularities: tuple[int, ...], mode: str = "ot",
                   eps: float = 0.05, iterations: int = 3, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Hard assignment of patches to [PART]s: q (B x heads x P x d, the [PART] queries) and k (B x heads x
    N x d, the patch keys) -> B x heads x P x N booleans, one True per patch in each granularity's rows."""
    B, heads, P, _ = q.shape
    N = k.shape[2]
    out = torch.zeros(B, heads, P, N, dtype=torch.bool, device=q.device)
    with torch.autocast(q.device.type, enabled=False):
        sim = F.normalize(q.float(), dim=-1) @ F.normalize(k.float(), dim=-1).transpose(-2, -1)
    start = 0
    for g in granularities:
        if mode == "stripes":
            part = stripe_of_patch(grid, g).to(q.device).expand(B, heads, N)
        elif mode == "nn":
            part = sim[:, :, start:start + g].argmax(dim=-2)
        else:
            part = sinkhorn(sim[:, :, start:start + g] / eps, iterations).argmax(dim=-2)
        out[:, :, start:start + g] = F.one_hot(part, g).transpose(-2, -1).bool()
        start += g
    return out


class AutoAlignAttention(nn.Module):
    """Multi-head self-attention with MAA for the [PART] queries, in place of timm's ``Attention`` inside
    its ``Block`` (same parameter names, ``qkv`` and ``proj``, so ViT weights load into it). The token order
    is [CLS], ``parts`` [PART]s, then the patches. With ``self.keep_assignment`` set, ``last_assignment`` and
    ``last_part_weights`` keep the last B x heads x P x N assignment and [PART] attention weights (for
    tests, and pictures of what the parts look at)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, granularities: tuple[int, ...] = (2, 3), mode: str = "ot", eps: float = 0.05,
                 iterations: int = 3, grid: tuple[int, int] | None = None, **block_kwargs):
        super().__init__()
        if block_kwargs.get("qk_norm") or block_kwargs.get("scale_norm"):
            raise ValueError("AutoAlignAttention has no q/k or output normalisation")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, bias=block_kwargs.get("proj_bias", True))
        self.proj_drop = nn.Dropout(proj_drop)
        self.granularities, self.mode, self.eps, self.iterations, self.grid = \
            tuple(granularities), mode, eps, iterations, grid
        self.parts = sum(self.granularities)
        self.keep_assignment = False
        self.last_assignment: torch.Tensor | None = None
        self.last_part_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        B, L, C = x.shape
        P = self.parts
        q, k, v = self.qkv(x).reshape(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        others = torch.cat([torch.zeros(1, dtype=torch.long, device=x.device),
                            torch.arange(1 + P, L, device=x.device)])
        drop = self.attn_drop.p if self.training else 0.0
        out_others = F.scaled_dot_product_attention(q[:, :, others], k, v, dropout_p=drop)      # eq. 1
        qp, kp, vp = q[:, :, 1:1 + P], k[:, :, 1 + P:], v[:, :, 1 + P:]
        with torch.no_grad():
            assigned = assign_patches(qp.detach(), kp.detach(), self.granularities, self.mode, self.eps,
                                      self.iterations, self.grid)
        logits = (qp * self.scale) @ kp.transpose(-2, -1)                                         # eq. 2
        weights = logits.float().masked_fill(~assigned, float("-inf")).softmax(dim=-1)
        weights = torch.where(assigned.any(dim=-1, keepdim=True), weights, torch.zeros_like(weights))
        if self.keep_assignment:
            self.last_assignment, self.last_part_weights = assigned, weights.detach()
        out_parts = self.attn_drop(weights).to(vp.dtype) @ vp
        out = torch.cat([out_others[:, :, :1], out_parts, out_others[:, :, 1:]], dim=2)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, L, C)))


class AAformer(ReIDViT):
    def __init__(self, size: str = "base", stride: int = 16, depth: int = 12, drop_path: float = 0.1,
                 granularities: tuple[int, ...] = (2, 3), assign: str = "ot", eps: float = 0.05,
                 sinkhorn_iters: int = 3, pretrained: str = "imagenet", num_classes: int = 0,
                 input_size: tuple[int, int] = (256, 128)):
        granularities = tuple(int(g) for g in granularities)
        if not granularities or min(granularities) < 1:
            raise ConfigError(f"model.args.granularities: positive part counts, e.g. [2, 3], not {granularities!r}")
        if assign not in ASSIGNERS:
            raise ConfigError(f"model.args.assign: one of {', '.join(ASSIGNERS)}, not {assign!r}")
        if eps <= 0 or sinkhorn_iters < 1:
            raise ConfigError("model.args.eps must be > 0 and model.args.sinkhorn_iters >= 1")
        if size not in SIZES:
            raise ConfigError(f"model.args.size: one of {', '.join(SIZES)}, not {size!r}")
        grid = patch_grid(input_size, 16, stride)
        layer = functools.partial(AutoAlignAttention, qkv_bias=True, granularities=granularities, mode=assign,
                                  eps=eps, iterations=sinkhorn_iters, grid=grid)
        super().__init__(size, stride, depth, drop_path, "none", num_classes, input_size, attention=layer)
        from timm.layers import trunc_normal_
        P = sum(granularities)
        self.granularities, self.assign = granularities, assign
        self.prefix_tokens = nn.Parameter(torch.zeros(1, P, self.dim))
        trunc_normal_(self.prefix_tokens, std=0.02)          # "randomly and independently initialized"
        self.part_necks = nn.ModuleList(BNNeck(self.dim) for _ in range(P))
        self.part_classifiers = nn.ModuleList(nn.Linear(self.dim, num_classes, bias=False) for _ in range(P)) \
            if num_classes > 0 else None
        if self.part_classifiers is not None:
            for c in self.part_classifiers:
                nn.init.normal_(c.weight, std=0.001)
        self.feature_splits = (self.dim,) * (1 + P)
        self.load_vit_weights(pretrained)

    @torch.no_grad()
    def explain(self, x: torch.Tensor) -> dict:
        """[CLS] attention (the ViT's), and for each granularity the [PART] every patch is assigned to in
        the last layer, by a vote of the heads, on the patch grid."""
        last = self.blocks[-1].attn
        last.keep_assignment = True
        try:
            maps = super().explain(x)
        finally:
            last.keep_assignment = False
        assigned = last.last_assignment                     # B x heads x P x N
        start = 0
        for g in self.granularities:
            votes = assigned[:, :, start:start + g].sum(1)    # B x g x N
            maps[f"{g} [PART]s"] = (votes.argmax(1).reshape(x.shape[0], *self.grid), "labels")
            start += g
        return maps

    def forward(self, x: torch.Tensor):
        t = self.tokens(x)
        g, parts = t[:, 0], [t[:, 1 + p] for p in range(len(self.part_necks))]
        emb = self.neck(g)
        part_emb = [neck(p) for neck, p in zip(self.part_necks, parts)]
        if not self.training:
            return retrieval_feature(emb, part_emb)
        logits = self.classifier(emb) if self.classifier is not None else None
        part_logits = [c(e) for c, e in zip(self.part_classifiers, part_emb)] if self.part_classifiers else []
        return ModelOutput(embedding=emb, features=g, logits=logits, part_embeddings=part_emb, part_features=parts,
                           part_logits=part_logits, part_metric="concat")


@register_model("aaformer")
def aaformer(size: str = "base", stride: int = 16, depth: int = 12, drop_path: float = 0.1,
             granularities: tuple[int, ...] = (2, 3), assign: str = "ot", eps: float = 0.05, sinkhorn_iters: int = 3,
             pretrained: str = "imagenet", num_classes: int = 0, input_size: tuple[int, int] = (256, 128)) -> AAformer:
    """AAformer on the re-ID ViT of ``size`` (ViT-B/16, non-overlapping 16 x 16 patches, in the paper)."""
    return AAformer(size, stride, depth, drop_path, granularities, assign, eps, sinkhorn_iters, pretrained,
                    num_classes, input_size)
