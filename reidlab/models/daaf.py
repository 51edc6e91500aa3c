"""DAAF: deep attention aware feature learning (Chen et al.; ../shared/papers/001_5aa80f97b593add6.txt).

A base re-ID network (Bag of Tricks or TriNet, ``models.resnet.ReIDResNet``) plus two branches that
exist only in training (Fig. 2). The objective is eq. (1), L = L_r + lambda_h L_h + lambda_p L_p: the
trainer computes the re-ID loss L_r; this model returns lambda_h L_h and lambda_p L_p in
``ModelOutput.aux_losses``. In eval mode it *is* the base network: ``forward`` calls the base alone,
so features and cost are the base's (``inference_model`` returns it for export).

* HAB (section 3.1): from the output of the first block (ResNet ``layer1``), an encoder with the
  structure of the rest of the backbone (a copy of ``layer2..layer4``, starting from the same weights),
  then four 3x3 stride-2 deconvolutions to 64 channels and a 1x1 convolution to one channel (Table 1),
  regressed onto the teacher's binary person mask with eq. (2): (1/N) sum_n ||z_n - m_n||_2.
* PAB (section 3.2): the base's last feature map split along channels into groups of
  floor(C / M) channels (2048 / 6 -> 341, the last 2 channels unused), all decoded by one *shared*
  deconvolution stack (Table 1), then one 1x1 convolution per group to the heatmaps of that group's
  keypoints; eq. (4): (1 / NK) sum_n sum_k ||p_nk - g_nk||_2, g a Gaussian at the teacher's keypoint.

Choices where the paper is silent:
* Each deconvolution is followed by BatchNorm and ReLU (the "4-layer deconvolution head" of the
  keypoint detectors the paper cites); the 1x1 outputs are linear, as eq. (2)/(4) are regressions.
* Keypoint grouping ``fig4c`` (6 groups by body position, our reading of Fig. 4(c)):
  head (nose, eyes, ears), shoulders, elbows, wrists, hips, legs (knees and ankles): ``GROUPINGS``;
  ``all`` (one group: Table 5's "w/o group" / Table 6's "all") and ``each`` (17 groups) for the ablations.
* A keypoint the teacher did not find (v = 0) has an all-zero target heatmap; occluded but labelled
  ones (v = 1) get their Gaussian, as a pose estimator would still place them. The Gaussian's sigma is
  ``sigma`` input pixels (default height / 32: 8 px at 256 x 128).
* **The decoders' depth (our choice, a departure from Table 1):** ``decoder_layers`` = 2 by default, so the
  maps end at 4x the feature map's size: a quarter of the input with last stride 1 (64 x 32 at 256 x 128),
  the heat-map resolution of the pose estimators' deconvolution heads the paper cites; Table 1's four
  deconvolutions (``decoder_layers=4``) end at the input size, and decoding 6 groups of 341 channels to full
  size is what made DAAF's training step 9.6x Bag of Tricks' on the CPU (1.1 against 10.1 img/s, ResNet-50 at
  256 x 128, batch 8, ``benchmarks.throughput``, measured in one run on a loaded 2-core machine). With 2 the
  step is 1.8-1.9x BoT's (5.6 img/s); 3 give 3.0x, the authors' linear 2x2 decoder (``decoder``) with 4 layers
  5.3x and with 2 layers 2.0x. With last stride 2 (TriNet) the maps are an eighth of the input. The targets
  are resized to the output (masks by area, then > 0.5; heat maps drawn at the output's size).
* Loss normalisation: eqs. (2) and (4) as written, the L2 norm (not squared) of each whole map. The norm
  grows with sqrt(pixels), so lambda = 0.003 weighs the branches as the paper does at 256 x 128 output
  and half as much at 64 x 32 (a 4x smaller norm for the same per-pixel error).

Two forms of the branches (``loss_form``):
* ``paper`` (default): eqs. (2) and (4) with lambda_h = lambda_p = 0.003, the deconvolutions of Table 1
  (3x3, stride 2) each followed by BatchNorm and ReLU (above).
* ``authors``: what the authors' released code does instead, as read against the paper: the mean squared
  error over the pixels, weighted 10 for the mask and 65 for the keypoint heatmaps, and a *linear*
  decoder of 2x2 stride-2 transposed convolutions (no normalisation or activation between them; four in
  the released code: ``decoder_layers=4``).
  At initialisation its gradients on the backbone are about 20x those of the paper's form.
The decoder is an option of its own (``decoder``: ``paper`` | ``authors``; default the ``loss_form``'s), so
the authors' lighter decoder goes with either loss.
"""
from __future__ import annotations

import copy
import functools

import torch
import torch.nn.functional as F
from torch import nn

from reidlab.errors import ConfigError

from .registry import register_model
from .resnet import ReIDResNet

# COCO order: 0 nose, 1-2 eyes, 3-4 ears, 5-6 shoulders, 7-8 elbows, 9-10 wrists, 11-12 hips,
# 13-14 knees, 15-16 ankles.
GROUPINGS: dict[str, list[list[int]]] = {
    "fig4c": [[0, 1, 2, 3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14, 15, 16]],
    "all": [list(range(17))],
    "each": [[k] for k in range(17)],
}


LOSS_FORMS = {"paper": (0.003, 0.003), "authors": (10.0, 65.0)}    # default (lambda_h, lambda_p) of each


def deconv_decoder(in_channels: int, width: int = 64, layers: int = 4, form: str = "paper") -> nn.Sequential:
    """``layers`` transposed convolutions to ``width`` channels, each doubling the size: Table 1's 3x3 ones
    with BatchNorm and ReLU (``paper``), or the authors' code's linear 2x2 stride-2 ones (``authors``)."""
    mods: list[nn.Module] = []
    for i in range(layers):
        c_in = in_channels if i == 0 else width
        if form == "authors":
            mods.append(nn.ConvTranspose2d(c_in, width, 2, stride=2))
        else:
            mods += [nn.ConvTranspose2d(c_in, width, 3, stride=2, padding=1, output_padding=1, bias=False),
                     nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    return nn.Sequential(*mods)


def map_l2_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the leading dims of the L2 norm of each map (the last two dims): eqs. (2) and (4)."""
    diff = (pred.float() - target.float()).flatten(-2)
    return diff.pow(2).sum(-1).add(1e-12).sqrt().mean()


def branch_loss(pred: torch.Tensor, target: torch.Tensor, form: str) -> torch.Tensor:
    """Eq. (2) / (4) (``paper``) or the mean squared error over all pixels (``authors``)."""
    if form == "authors":
        return F.mse_loss(pred.float(), target.float())
    return map_l2_loss(pred, target)


def gaussian_heatmaps(keypoints: torch.Tensor, in_size: tuple[int, int], out_size: tuple[int, int],
                      sigma: float) -> torch.Tensor:
    """B x K x 3 keypoints (x, y in input pixels, v) -> B x K x Ho x Wo Gaussians (peak 1; 0 where v = 0)."""
    (H, W), (Ho, Wo) = in_size, out_size
    sy, sx = Ho / H, Wo / W
    x = (keypoints[..., 0] + 0.5) * sx - 0.5
    y = (keypoints[..., 1] + 0.5) * sy - 0.5
    s = sigma * sy
    ys = torch.arange(Ho, device=keypoints.device, dtype=torch.float32)
    xs = torch.arange(Wo, device=keypoints.device, dtype=torch.float32)
    gy = torch.exp(-(ys.view(1, 1, Ho) - y.unsqueeze(-1)) ** 2 / (2 * s * s))      # B x K x Ho
    gx = torch.exp(-(xs.view(1, 1, Wo) - x.unsqueeze(-1)) ** 2 / (2 * s * s))      # B x K x Wo
    return gy.unsqueeze(-1) * gx.unsqueeze(-2) * (keypoints[..., 2] > 0).float()[..., None, None]


class HolisticBranch(nn.Module):
    """HAB: encoder (copy of the backbone after its first block) + deconvolutions + 1x1 conv to a mask."""

    def __init__(self, encoder: nn.Module, channels: int, form: str = "paper", layers: int = 4):
        super().__init__()
        self.encoder = encoder
        self.decoder = deconv_decoder(channels, form=form, layers=layers)
        self.out = nn.Conv2d(64, 1, 1)

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        return self.out(self.decoder(self.encoder(low)))


class PartialBranch(nn.Module):
    """PAB: channel groups of the last feature map, one shared decoder, a 1x1 conv per keypoint group."""

    def __init__(self, channels: int, groups: list[list[int]], form: str = "paper", layers: int = 4):
        super().__init__()
        self.groups = groups
        self.group_channels = channels // len(groups)
        if self.group_channels < 1:
            raise ConfigError(f"model.args.groups: {len(groups)} groups for {channels} channels")
        self.decoder = deconv_decoder(self.group_channels, form=form, layers=layers)
        self.heads = nn.ModuleList(nn.Conv2d(64, len(g), 1) for g in groups)
        self.register_buffer("order", torch.tensor([k for g in groups for k in g]), persistent=False)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        """B x C x h x w -> B x K x 16h x 16w heatmaps, channels in ``self.order`` (group by group)."""
        B, _, h, w = fmap.shape
        M, c = len(self.groups), self.group_channels
        x = fmap[:, :M * c].reshape(B * M, c, h, w)           # the groups share the decoder: one batch
        y = self.decoder(x)
        y = y.view(B, M, *y.shape[1:])
        return torch.cat([head(y[:, i]) for i, head in enumerate(self.heads)], dim=1)


class DAAF(nn.Module):
    def __init__(self, base: ReIDResNet, hab: bool = True, pab: bool = True, lambda_h: float | None = None,
                 lambda_p: float | None = None, groups: str = "fig4c", sigma: float = 0.0, loss_form: str = "paper",
                 decoder: str = "", decoder_layers: int = 2):
        super().__init__()
        decoder = decoder or loss_form
        if decoder not in LOSS_FORMS:
            raise ConfigError(f"model.args.decoder: one of {', '.join(LOSS_FORMS)} (default: the loss_form's), "
                              f"not {decoder!r}")
        if not 1 <= decoder_layers <= 4:
            raise ConfigError(f"model.args.decoder_layers: 1 to 4 (each doubles the map; 4: the paper's 16x), "
                              f"not {decoder_layers!r}")
        if groups not in GROUPINGS:
            raise ConfigError(f"model.args.groups: one of {', '.join(GROUPINGS)}, not {groups!r}")
        if loss_form not in LOSS_FORMS:
            raise ConfigError(f"model.args.loss_form: one of {', '.join(LOSS_FORMS)}, not {loss_form!r}")
        self.base = base
        self.feature_dim, self.feature_splits = base.feature_dim, base.feature_splits
        self.convolutional = True
        self.loss_form = loss_form
        default_h, default_p = LOSS_FORMS[loss_form]
        self.lambda_h = default_h if lambda_h is None else lambda_h
        self.lambda_p = default_p if lambda_p is None else lambda_p
        self.sigma = sigma
        # HAB starts from the first block's output (base.base[:5] = stem + layer1)
        self.decoder, self.decoder_layers = decoder, decoder_layers
        self.hab = HolisticBranch(copy.deepcopy(base.base[5:]), base.feat_dim, decoder, decoder_layers) if hab else None
        self.pab = PartialBranch(base.feat_dim, GROUPINGS[groups], decoder, decoder_layers) if pab else None
        # what the trainer must pass to forward in training mode (a capability, not a model name)
        self.teacher_targets = tuple(t for t, on in (("mask", hab), ("keypoints", pab)) if on)

    def inference_model(self) -> ReIDResNet:
        """The network used at test time: the base alone (same output, parameters and cost)."""
        return self.base

    @torch.no_grad()
    def explain(self, x: torch.Tensor) -> dict:
        """The base network's maps, HAB's predicted person mask and PAB's keypoint heat maps (their maximum
        over the 17 keypoints), at the decoders' resolution."""
        maps = self.base.explain(x)
        if self.hab is not None:
            maps["predicted mask (HAB)"] = (self.hab(self.base.base[:5](x))[:, 0].float().clamp(0, 1), "heat")
        if self.pab is not None:
            heat = self.pab(self.base.feature_map(x)).float().amax(dim=1).clamp(0, 1)
            maps["keypoint heat maps (PAB)"] = (heat, "heat")
        return maps

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, keypoints: torch.Tensor | None = None):
        if not self.training:
            return self.base(x)
        low = self.base.base[:5](x)
        fmap = self.base.after(self.base.base[5:](low))
        out = self.base.head_forward(fmap)
        H, W = x.shape[-2:]
        if self.hab is not None:
            if mask is None:
                raise ValueError("DAAF's HAB needs the teacher's person masks in training (forward(x, mask=...))")
            z = self.hab(low)
            m = mask.float()
            if m.shape[-2:] != z.shape[-2:]:
                m = (F.interpolate(m, size=z.shape[-2:], mode="area") > 0.5).float()
            out.aux_losses["hab"] = self.lambda_h * branch_loss(z, m, self.loss_form)     # eq. (2)
        if self.pab is not None:
            if keypoints is None:
                raise ValueError("DAAF's PAB needs the teacher's keypoints in training (forward(x, keypoints=...))")
            p = self.pab(fmap)
            sigma = self.sigma or H / 32
            g = gaussian_heatmaps(keypoints[:, self.pab.order].float(), (H, W), p.shape[-2:], sigma)
            out.aux_losses["pab"] = self.lambda_p * branch_loss(p, g, self.loss_form)     # eq. (4)
        return out


@register_model("daaf")
def daaf(base: str = "resnet50", hab: bool = True, pab: bool = True, lambda_h: float | None = None,
         lambda_p: float | None = None, groups: str = "fig4c", sigma: float = 0.0, loss_form: str = "paper",
         decoder: str = "", decoder_layers: int = 2, **base_kwargs) -> DAAF:
    """DAAF around ``ReIDResNet(base, **base_kwargs)``: head bnneck = DAAF-BoT, head trinet = DAAF-TriNet.
    lambda_h / lambda_p default to the chosen ``loss_form``'s weights (0.003 each, or 10 and 65)."""
    if base not in ("resnet50", "resnet18"):
        raise ConfigError(f"model.args.base: resnet50 or resnet18, not {base!r}")
    return DAAF(ReIDResNet(base, **base_kwargs), hab, pab, lambda_h, lambda_p, groups, sigma, loss_form, decoder,
                decoder_layers)


daaf.passes_kwargs_to = functools.partial(ReIDResNet, "resnet50")
