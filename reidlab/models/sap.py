"""SAP: Semi-attention Partition for occluded person re-ID (Jia et al., AAAI 2023), on the re-ID ViT.

A transformer student learns to partition the person from a noisy part-parsing teacher (M parts,
background included) and goes beyond it:

* **Global stage** (section "Global Feature Learning"): the re-ID ViT with overlapping patches, 4 px of
  overlap for holistic data and 5 px for occluded data (stride 12 / 11, ``overlap``); [CLS] is the
  global feature. Every attention layer is a *semi-attention block*: timm's multi-head self-attention
  (MSA) plus a distilled attention head (DA, eq. 3), whose (N+1) x (N+1) affinity is supervised by the
  teacher's patch-to-patch target A_patch (eq. 4) through L_patch (eq. 5).
* **Part stage** (section "Part Feature Learning"): M learnable part proxies, one per teacher part, and 2
  transformer layers of 8 heads. In each layer, with *mutual absorbing partition refinement* (MAPR),
  the patches first absorb from the proxies (a reverse cross-attention, patch queries, proxy keys), then
  the proxies absorb from the patches in a semi cross-attention: MSA plus a DA head whose M x N affinity
  is supervised by the teacher's proxy-to-patch target m_hat^T through L_proxy (eq. 7).
* **Supervision signal dropout** (SSD): in L_proxy, each proxy's row drops ``p_drop`` of the patches
  (1/8; 1/10 for MSMT17), drawn without replacement with probability softmax(row sums of the patches'
  cosine-similarity matrix): the more a patch resembles the others, the likelier its supervision goes.
* **Losses**: CE with label smoothing and the soft-margin triplet on [CLS] and on the concatenated
  non-background proxies (the trainers, through ``ModelOutput``), plus alpha (L_patch + L_proxy), alpha 1.
  The test feature is the global and the part feature (no teacher at test time).

Targets from the parsing map m (B x 1 x H x W labels 0..M-1, ``background`` = 0):
  * eq. 2: per patch, the frequencies of the M parts in its 16 x 16 window (an average pool of the one-hot
    map with the patch embedding's kernel and stride), m_hat = softmax(lambda x frequencies), lambda >> 1;
  * eq. 4: A_patch = [[1, m_f^T], [m_f, m_hat m_hat^T]] with m_f = 1[m_hat[background] < gamma];
  * eq. 7's target: m_hat^T (M x N).
Eqs. 5 and 7 are cross-entropies between the row-wise softmax of the target and of the affinity.

Choices where the paper is silent (each one written here):
  * the DA head is one head of the MSA's head width d (eq. 3's scale is sqrt(d)) with its own q, k, v; its
    output is *added* to the MSA's through an output projection that starts near zero (std 1e-4). Why: the
    two must be merged somehow; a parallel branch starting near zero leaves the ImageNet ViT's function
    practically untouched at the start (the teacher shapes the DA's affinity from the first step, and the
    features only as the projection learns to use it), and it keeps the MSA's weights loadable by name;
  * lambda = 10 (eq. 2 asks for lambda >> 1; at 10 a patch two-thirds one part is 90% that part) and
    gamma = 0.5 (a patch is foreground when it is less than half background);
  * eqs. 5 and 7 as means over the rows, the images and the layers (the paper writes sums; a mean keeps
    alpha = 1 comparable across image sizes and depths);
  * the part stage's layers are pre-norm like ViT's, each with a 4x MLP; the global feature is the ViT's
    [CLS] after its last LayerNorm, the part feature the concatenated non-background proxies after one;
    each has a BNNeck and its own classifier (one for the concatenated parts).

``partition="teacher"`` is the comparison the paper's point rests on: no proxies and no distillation;
the part features are the ViT's patch tokens pooled by the teacher's own partition (weights m_hat), which
then needs the parsing at test time too (``test_teacher_targets``).
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from reidlab.errors import ConfigError

from .explain import minmax
from .heads import BNNeck
from .registry import ModelOutput, register_model, retrieval_feature
from .vit import ReIDViT


def part_frequencies(parsing: torch.Tensor, parts: int, patch: int, stride: int) -> torch.Tensor:
    """B x 1 x H x W labels -> B x N x M frequencies of each part in each patch window (row-major)."""
    labels = parsing[:, 0].long()
    if int(labels.max()) >= parts:
        raise ValueError(f"the parsing map has label {int(labels.max())}, but the model has {parts} parts "
                         f"(model.args.parts: the number of labels, background included)")
    onehot = F.one_hot(labels, parts).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(onehot, patch, stride).flatten(2).transpose(1, 2)


def patch_labels(frequencies: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 2: m_hat = softmax(lambda x frequencies), B x N x M."""
    return torch.softmax(lam * frequencies, dim=-1)


def patch_target(m_hat: torch.Tensor, background: int, gamma: float) -> torch.Tensor:
    """Eq. 4: the (N+1) x (N+1) patch-to-patch target: [[1, m_f^T], [m_f, m_hat m_hat^T]]."""
    B, N, _ = m_hat.shape
    fg = (m_hat[..., background] < gamma).float()
    out = torch.empty(B, N + 1, N + 1, device=m_hat.device)
    out[:, 0, 0] = 1
    out[:, 0, 1:] = fg
    out[:, 1:, 0] = fg
    out[:, 1:, 1:] = m_hat @ m_hat.transpose(1, 2)
    return out


def distillation(target: torch.Tensor, affinity: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Eqs. 5 / 7: mean over rows of -sum softmax(target) log softmax(affinity); entries where ``keep`` is
    False are left out of both softmaxes (supervision signal dropout)."""
    target, affinity = target.float(), affinity.float()
    if keep is not None:
        target = target.masked_fill(~keep, float("-inf"))
        affinity = affinity.masked_fill(~keep, float("-inf"))
    p = torch.softmax(target, dim=-1)
    log_q = torch.log_softmax(affinity, dim=-1)
    return -(p * torch.where(p > 0, log_q, torch.zeros_like(log_q))).sum(-1).mean()


def signal_dropout(patches: torch.Tensor, rows: int, p_drop: float, generator=None) -> torch.Tensor:
    """SSD: B x rows x N booleans, False for the floor(p_drop N) patches each row drops, drawn without
    replacement with probability softmax(row sums of the patches' cosine similarities)."""
    B, N, _ = patches.shape
    k = int(p_drop * N)
    keep = torch.ones(B, rows, N, dtype=torch.bool, device=patches.device)
    if k == 0:
        return keep
    x = F.normalize(patches.detach().float(), dim=-1)
    prob = torch.softmax((x @ x.transpose(1, 2)).sum(-1), dim=-1)                    # B x N
    drop = torch.multinomial(prob.repeat_interleave(rows, 0), k, replacement=False, generator=generator)
    return keep.view(B * rows, N).scatter_(1, drop, False).view(B, rows, N)


class SemiAttention(nn.Module):
    """MSA (timm's parameter names: qkv, proj) plus a distilled attention head whose pre-softmax affinity is
    kept in ``self.affinity`` while ``self.record`` is set."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, **block_kwargs):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=block_kwargs.get("proj_bias", True))
        self.attn_drop, self.proj_drop = nn.Dropout(attn_drop), nn.Dropout(proj_drop)
        self.da_qkv = nn.Linear(dim, 3 * self.head_dim, bias=qkv_bias)
        self.da_out = nn.Linear(self.head_dim, dim)
        self.record = False
        self.affinity: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        B, L, C = x.shape
        q, k, v = self.qkv(x).reshape(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        out = self.proj(out.transpose(1, 2).reshape(B, L, C))
        dq, dk, dv = self.da_qkv(x).chunk(3, dim=-1)                                # eq. 3
        affinity = (dq * self.scale) @ dk.transpose(1, 2)
        if self.record:
            self.affinity = affinity
        out = out + self.da_out(affinity.softmax(-1) @ dv)
        return self.proj_drop(out)


class PartLayer(nn.Module):
    """One layer of the part stage: (MAPR) patches <- proxies, then proxies <- patches (MSA + DA), MLP."""

    def __init__(self, dim: int, heads: int, mapr: bool):
        super().__init__()
        from timm.layers import Mlp
        d = dim // heads
        self.mapr = mapr
        self.norm_x, self.norm_p = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.absorb = nn.MultiheadAttention(dim, heads, batch_first=True) if mapr else None
        self.norm_x2, self.norm_p2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.da_q, self.da_k, self.da_v = nn.Linear(dim, d), nn.Linear(dim, d), nn.Linear(dim, d)
        self.da_out = nn.Linear(d, dim)
        self.scale = d ** -0.5
        self.norm_mlp = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, proxies: torch.Tensor, patches: torch.Tensor):
        """-> (proxies, patches, M x N affinity of the DA head)."""
        if self.mapr:                                  # patches absorb from the proxies (reverse cross-attention)
            p = self.norm_p(proxies)
            patches = patches + self.absorb(self.norm_x(patches), p, p, need_weights=False)[0]
        q, kv = self.norm_p2(proxies), self.norm_x2(patches)
        out = self.cross(q, kv, kv, need_weights=False)[0]
        affinity = (self.da_q(q) * self.scale) @ self.da_k(kv).transpose(1, 2)       # eq. 6
        proxies = proxies + out + self.da_out(affinity.softmax(-1) @ self.da_v(kv))
        proxies = proxies + self.mlp(self.norm_mlp(proxies))
        return proxies, patches, affinity


class SAP(ReIDViT):
    def __init__(self, size: str = "base", overlap: int = 4, depth: int = 12, drop_path: float = 0.1,
                 parts: int = 7, background: int = 0, part_layers: int = 2, part_heads: int = 8,
                 semi_patch: bool = True, semi_proxy: bool = True, mapr: bool = True, ssd: bool = True,
                 p_drop: float = 0.125, alpha: float = 1.0, lam: float = 10.0, gamma: float = 0.5,
                 partition: str = "student", pretrained: str = "imagenet", num_classes: int = 0,
                 input_size: tuple[int, int] = (256, 128)):
        if not 0 <= overlap < 16:
            raise ConfigError(f"model.args.overlap: 0 to 15 pixels of overlap between 16 x 16 patches, not {overlap}")
        if parts < 2 or not 0 <= background < parts:
            raise ConfigError(f"model.args.parts ({parts}) must be >= 2 and background ({background}) one of them")
        if partition not in ("student", "teacher"):
            raise ConfigError(f"model.args.partition: student or teacher, not {partition!r}")
        if not 0 <= p_drop < 1:
            raise ConfigError(f"model.args.p_drop: a fraction in [0, 1), not {p_drop}")
        layer = functools.partial(SemiAttention, qkv_bias=True) if semi_patch else None
        super().__init__(size, 16 - overlap, depth, drop_path, "none", num_classes, input_size, attention=layer)
        self.parts, self.background, self.partition = parts, background, partition
        self.semi_patch, self.semi_proxy, self.ssd = semi_patch, semi_proxy and partition == "student", ssd
        self.p_drop, self.alpha, self.lam, self.gamma = p_drop, alpha, lam, gamma
        D = self.dim
        if partition == "student":
            from timm.layers import trunc_normal_
            self.proxies = nn.Parameter(torch.zeros(1, parts, D))
            trunc_normal_(self.proxies, std=0.02)
            self.part_stage = nn.ModuleList(PartLayer(D, part_heads, mapr) for _ in range(part_layers))
            for m in self.part_stage.modules():
                if isinstance(m, nn.Linear):
                    nn.init.trunc_normal_(m.weight, std=0.02)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
        self.part_norm = nn.LayerNorm(D, eps=1e-6)
        width = D * (parts - 1)
        self.part_neck = BNNeck(width)
        self.part_classifier = nn.Linear(width, num_classes, bias=False) if num_classes > 0 else None
        if self.part_classifier is not None:
            nn.init.normal_(self.part_classifier.weight, std=0.001)
        for m in self.modules():                          # the DA branches start near zero (module docstring)
            if isinstance(m, (SemiAttention, PartLayer)):
                nn.init.normal_(m.da_out.weight, std=1e-4)
                nn.init.zeros_(m.da_out.bias)
        self.feature_splits = (D, width)
        needs = semi_patch or self.semi_proxy or partition == "teacher"
        self.teacher_targets = ("parsing",) if needs else ()
        self.test_teacher_targets = ("parsing",) if partition == "teacher" else ()
        self.load_vit_weights(pretrained)

    def _targets(self, parsing: torch.Tensor) -> torch.Tensor:
        stride = self.patch_embed.proj.stride[0]
        freq = part_frequencies(parsing, self.parts, 16, stride)
        if freq.shape[1] != self.grid[0] * self.grid[1]:
            raise ValueError(f"a parsing map of {tuple(parsing.shape[-2:])} does not give this model's patch grid")
        return patch_labels(freq, self.lam)

    def _blocks(self, record: bool):
        for block in self.blocks:
            if isinstance(block.attn, SemiAttention):
                block.attn.record = record
                block.attn.affinity = None

    def forward(self, x: torch.Tensor, parsing: torch.Tensor | None = None):
        supervised = self.training and parsing is not None
        self._blocks(supervised and self.semi_patch)
        t = self.tokens(x)
        cls, patches = t[:, 0], t[:, 1:]
        aux: dict[str, torch.Tensor] = {}
        m_hat = self._targets(parsing) if parsing is not None else None
        if self.partition == "teacher":
            if m_hat is None:
                raise ValueError("partition='teacher' pools by the parsing map: forward(x, parsing=...) always")
            weights = m_hat / m_hat.sum(1, keepdim=True).clamp(min=1e-6)                  # B x N x M
            proxies = weights.transpose(1, 2) @ patches
        else:
            proxies = self.proxies.repeat(x.shape[0], 1, 1)
            keep = None
            if supervised and self.semi_proxy and self.ssd and self.p_drop > 0:
                keep = signal_dropout(patches, self.parts, self.p_drop)
            proxy_losses = []
            for layer in self.part_stage:
                proxies, patches, affinity = layer(proxies, patches)
                if supervised and self.semi_proxy:
                    proxy_losses.append(distillation(m_hat.transpose(1, 2), affinity, keep))     # eq. 7
            if proxy_losses:
                aux["proxy"] = self.alpha * torch.stack(proxy_losses).mean()
        if supervised and self.semi_patch:
            target = patch_target(m_hat, self.background, self.gamma)
            aux["patch"] = self.alpha * torch.stack([distillation(target, b.attn.affinity)           # eq. 5
                                                     for b in self.blocks]).mean()
            self._blocks(False)
        parts = self.part_norm(proxies)
        part = torch.cat([parts[:, p] for p in range(self.parts) if p != self.background], dim=1)
        emb, part_emb = self.neck(cls), self.part_neck(part)
        if not self.training:
            return retrieval_feature(emb, [part_emb])
        return ModelOutput(embedding=emb, features=cls, logits=self.classifier(emb) if self.classifier else None,
                           aux_losses=aux, part_embeddings=[part_emb], part_features=[part],
                           part_logits=[self.part_classifier(part_emb)] if self.part_classifier else [],
                           part_metric="concat")

    @torch.no_grad()
    def explain(self, x: torch.Tensor) -> dict:
        """[CLS] attention, and the proxy each patch attends to most in the last part layer (the student's
        partition), on the patch grid."""
        maps = super().explain(x)
        if self.partition == "student":
            patches = self.tokens(x)[:, 1:]
            proxies = self.proxies.repeat(x.shape[0], 1, 1)
            for layer in self.part_stage:
                proxies, patches, affinity = layer(proxies, patches)
            maps["student's parts"] = (affinity.argmax(1).reshape(x.shape[0], *self.grid), "labels")
            maps["proxy attention (max)"] = (minmax(affinity.softmax(-1).amax(1).reshape(x.shape[0], *self.grid)),
                                             "heat")
        return maps


def _mass_in_part(weights: torch.Tensor, same: torch.Tensor, rows: torch.Tensor) -> float:
    """Mean over the ``rows`` (B x Q booleans) of the attention mass (B x Q x N, rows summing to 1) that falls
    on the keys ``same`` (B x Q x N booleans)."""
    return float(((weights * same).sum(-1))[rows].mean())


@torch.no_grad()
def attention_in_part(model: SAP, x: torch.Tensor, parsing: torch.Tensor) -> dict[str, float]:
    """How far the attention follows the teacher's partition: for each patch of a person part (the teacher's
    majority label of its window, background left out), the share of its attention over the patches that
    falls on patches of its own part, averaged over patches, images and layers; and for each non-background
    proxy of the part stage, the share of its DA head's attention on the patches of its part.

    Keys: ``uniform`` (a uniform attention's share: the part's share of the patches, as the patch rows
    see it), ``target`` (the share of eq. 5's target itself, softmax of the eq. 4 rows: the most a DA head
    fitting L_patch perfectly would put there), ``msa`` (the MSA heads), ``da`` (the distilled heads of
    eq. 3, when ``semi_patch``), and ``proxy_uniform`` / ``proxy_target`` / ``proxy_da`` (eq. 6's DA head
    of each proxy against eq. 7's target, for the student partition). Each
    attention is renormalised over the patches ([CLS] left out). A head that learnt the teacher's
    partition sits well above ``uniform``; one that did not, at it."""
    was_training = model.training
    model.eval()
    try:
        m_hat = model._targets(parsing)                                                               # B x N x M
        labels = m_hat.argmax(-1)                          # the majority part of each window (eq. 2 is monotone)
        same = labels[:, :, None] == labels[:, None, :]                                               # B x N x N
        rows = labels != model.background
        inputs: list[torch.Tensor] = []
        hooks = [b.attn.register_forward_pre_hook(lambda mod, args: inputs.append(args[0])) for b in model.blocks]
        try:
            patches = model.tokens(x)[:, 1:]
        finally:
            for h in hooks:
                h.remove()
        out = {"uniform": float(same.float().mean(-1)[rows].mean()),            # a uniform head: the part's share
               "target": _mass_in_part(torch.softmax(m_hat @ m_hat.transpose(1, 2), -1), same, rows)}
        msa, da = [], []
        for block, z in zip(model.blocks, inputs):
            attn, (B, L, _) = block.attn, z.shape
            q, k, _ = attn.qkv(z).reshape(B, L, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            w = ((q[:, :, 1:] * attn.head_dim ** -0.5) @ k[:, :, 1:].transpose(-2, -1)).softmax(-1)     # B x h x N x N
            msa.append(_mass_in_part(w.mean(1), same, rows))
            if isinstance(attn, SemiAttention):
                dq, dk, _ = attn.da_qkv(z).chunk(3, dim=-1)
                w = ((dq[:, 1:] * attn.scale) @ dk[:, 1:].transpose(1, 2)).softmax(-1)
                da.append(_mass_in_part(w, same, rows))
        out["msa"] = sum(msa) / len(msa)
        if da:
            out["da"] = sum(da) / len(da)
        if model.partition == "student":
            ids = torch.arange(model.parts, device=labels.device)
            own = labels[:, None, :] == ids[None, :, None]                                            # B x M x N
            present = own.any(-1) & (ids != model.background)[None]
            out["proxy_uniform"] = float(own.float().mean(-1)[present].mean())
            out["proxy_target"] = _mass_in_part(torch.softmax(m_hat.transpose(1, 2), -1), own, present)
            proxies, layer_mass = model.proxies.repeat(x.shape[0], 1, 1), []
            for layer in model.part_stage:
                proxies, patches, affinity = layer(proxies, patches)
                layer_mass.append(_mass_in_part(affinity.softmax(-1), own, present))
            out["proxy_da"] = sum(layer_mass) / len(layer_mass)
        return {k: round(v, 4) for k, v in out.items()}
    finally:
        model.train(was_training)


@register_model("sap")
def sap(size: str = "base", overlap: int = 4, depth: int = 12, drop_path: float = 0.1, parts: int = 7,
        background: int = 0, part_layers: int = 2, part_heads: int = 8, semi_patch: bool = True,
        semi_proxy: bool = True, mapr: bool = True, ssd: bool = True, p_drop: float = 0.125, alpha: float = 1.0,
        lam: float = 10.0, gamma: float = 0.5, partition: str = "student", pretrained: str = "imagenet",
        num_classes: int = 0, input_size: tuple[int, int] = (256, 128)) -> SAP:
    """SAP on the re-ID ViT of ``size`` (ViT-B/16 in the paper)."""
    return SAP(size, overlap, depth, drop_path, parts, background, part_layers, part_heads, semi_patch, semi_proxy,
               mapr, ssd, p_drop, alpha, lam, gamma, partition, pretrained, num_classes, input_size)
