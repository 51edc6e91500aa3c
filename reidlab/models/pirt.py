"""Pirt: pose-guided inter- and intra-part relational transformer for occluded person re-ID (Ma et al.,
ACM Multimedia 2021), section 3.

* **Backbone**: ResNet-50-IBN-a (``models.ibn``), last stride 1: a 24 x 8 feature map F at 384 x 128.
* **Pose guidance** (3.2): 17 COCO keypoint heat maps M_hat from the teacher keypoints, rendered as
  Gaussians at the feature map's resolution; expanded by a 3 x 3 max pooling (GMP, eq. 1); the human mask
  C = max over the 17 maps (eq. 2); a pose feature per keypoint by thresholded masked pooling (eq. 3,
  tau 0.001), in three groups: head (nose, eyes, ears: 0-4), upper body (shoulders, elbows, wrists: 5-10),
  lower body (hips, knees, ankles: 11-16). Each group's score S is the maximum of its heat maps.
* **Intra-part relational module** (3.3, eqs. 4-8): phi = 1 x 1 conv + InstanceNorm + BatchNorm + ReLU to
  d channels; multi-head self-attention within each horizontal stripe (the W positions of a row),
  put back in place, plus Dropout(F_phi) as the residual (eq. 5), then BN + ReLU; theta = 1 x 1 conv + BN
  back to C channels; F_irm = ReLU(theta(F*_phi) + C * F) (eq. 8).
* **Inter-part relational transformer** (3.4, eqs. 9-12): one shared 3-layer transformer encoder (FFN 512,
  dropout 0.1, ReLU) over each set of part features: the stripe features (GAP of each row of F_irm), the
  patch-grid features (GMP of F_irm to H/4 x W/2) and each pose group's keypoint features; each set's
  output is averaged over its tokens (eq. 12). The global feature is the mean of the stripe and the patch
  features ("we average the first two").
* **Confidence score module** (eqs. 13-14): S_self = MLP(the three pose features, concatenated);
  F~_pose = f_pose x norm(S_self x S), with norm = a sigmoid of S_self times S, so each group's weight is in
  [0, 1] (our reading: the paper names only "a normalization function ... to smooth the value").
* **Losses** (eqs. 15-17), through ``ModelOutput.loss_terms``: cross-entropy on the stripe feature and on
  the patch feature (eq. 16), and cross-entropy + batch-hard triplet on each confidence-weighted pose
  group feature, averaged over the 3 groups (eq. 15).
* **Matching** (3.4): the global distance ranks the gallery; the top N are re-ranked with the
  confidence-weighted pose-group distances (``evaluation.local_rerank``, ``test.local_rerank``), from
  ``retrieval_parts``.

The ablation switches of Table 3: ``pose`` (P), ``intra`` (IRM), ``inter`` (IRT); without IRM the pose and
global features come from F itself, without IRT a set's feature is the mean of its tokens. The
baseline (all off) is the backbone's pooled feature with a cross-entropy loss only, as the paper's.

Choices where the paper is silent: d = 512 and 8 heads in the IRM; 8 heads in the IRT (d_model 2048);
the heat maps' Gaussian sigma is one feature cell (16 input pixels), peak 1 for a visible keypoint
(v = 2), 0.5 for a hidden one (v = 1: the teacher's lower confidence) and nothing when not found; the
masked pooling of eq. 3 averages over the cells above tau (a literal GAP would divide by the whole map);
each embedding has a BNNeck before its classifier.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reidlab.errors import ConfigError

from .daaf import gaussian_heatmaps
from .explain import minmax
from .heads import BNNeck
from .registry import LossTerm, ModelOutput, register_model, retrieval_feature
from .resnet import ReIDResNet, feature_map_size

GROUPS = [list(range(0, 5)), list(range(5, 11)), list(range(11, 17))]      # head, upper body, lower body
GROUP_NAMES = ("head", "upper body", "lower body")


def expanded_heatmaps(keypoints: torch.Tensor, in_size: tuple[int, int], grid: tuple[int, int],
                      sigma_cells: float = 1.0) -> torch.Tensor:
    """B x 17 x h x w heat maps of the keypoints (peak 1 where v = 2, 0.5 where v = 1, none where v = 0),
    expanded by a 3 x 3 max pooling (eq. 1)."""
    k = keypoints.float()
    raw = gaussian_heatmaps(k, in_size, grid, sigma_cells * in_size[0] / grid[0])
    peak = torch.where(k[..., 2] >= 2, 1.0, torch.where(k[..., 2] > 0, 0.5, 0.0))
    return F.max_pool2d(raw * peak[..., None, None], 3, stride=1, padding=1)


def human_mask(heatmaps: torch.Tensor) -> torch.Tensor:
    """Eq. 2: C = the maximum over the keypoints' heat maps, B x 1 x h x w."""
    return heatmaps.amax(dim=1, keepdim=True)


def pose_features(fmap: torch.Tensor, heatmaps: torch.Tensor, tau: float = 0.001) -> torch.Tensor:
    """Eq. 3: one feature per keypoint, the mean of F over the cells where its heat map exceeds tau
    (B x 17 x C; zero for a keypoint not found)."""
    mask = (heatmaps > tau).float()                                        # B x K x h x w
    total = torch.einsum("bkhw,bchw->bkc", mask, fmap.float())
    return (total / mask.flatten(2).sum(-1, keepdim=True).clamp(min=1)).to(fmap.dtype)


class IntraPartModule(nn.Module):
    """IRM, eqs. 4-8."""

    def __init__(self, channels: int, dim: int = 512, heads: int = 8, dropout: float = 0.1):
        super().__init__()
        self.phi = nn.Sequential(nn.Conv2d(channels, dim, 1, bias=False), nn.InstanceNorm2d(dim, affine=True),
                                 nn.BatchNorm2d(dim), nn.ReLU(inplace=True))                      # eq. 4
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.post = nn.Sequential(nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
        self.theta = nn.Sequential(nn.Conv2d(dim, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, fmap: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        f = self.phi(fmap)
        B, d, h, w = f.shape
        rows = f.permute(0, 2, 3, 1).reshape(B * h, w, d)                  # each horizontal stripe: w tokens
        attended = self.attention(rows, rows, rows, need_weights=False)[0]
        attended = attended.reshape(B, h, w, d).permute(0, 3, 1, 2)
        f_star = self.post(attended + self.drop(f))                         # eq. 5, then BN + ReLU
        return F.relu(self.theta(f_star) + mask * fmap)                     # eq. 8


class Pirt(nn.Module):
    def __init__(self, pose: bool = True, intra: bool = True, inter: bool = True, confidence: bool = True,
                 layers: int = 3, heads: int = 8, ffn: int = 512, dropout: float = 0.1, irm_dim: int = 512,
                 tau: float = 0.001, sigma: float = 1.0, backbone: str = "resnet50_ibn_a",
                 pretrained: str = "imagenet", num_classes: int = 0, input_size: tuple[int, int] = (384, 128)):
        super().__init__()
        if backbone not in ("resnet50_ibn_a", "resnet50", "resnet18"):
            raise ConfigError(f"model.args.backbone: resnet50_ibn_a, resnet50 or resnet18, not {backbone!r}")
        self.base = ReIDResNet(backbone, pretrained=pretrained, last_stride=1, pooling="avg", num_classes=0,
                               input_size=input_size)
        self.base.neck = self.base.pool = nn.Identity()          # Pirt's own heads replace the ResNet's
        C = self.base.feat_dim
        self.grid = feature_map_size(input_size, 1)
        if self.grid[0] < 4 or self.grid[1] < 2:
            raise ConfigError(f"Pirt needs a feature map of at least 4 x 2 cells; {input_size} gives {self.grid}")
        self.input_size = tuple(input_size)
        self.use_pose, self.use_intra, self.use_inter, self.use_confidence = pose, intra, inter, confidence and pose
        self.tau, self.sigma = tau, sigma
        self.local_parts = pose            # capability: retrieval_parts() gives part features for test.local_rerank
        self.irm = IntraPartModule(C, irm_dim, heads, dropout) if intra else None
        if inter:
            layer = nn.TransformerEncoderLayer(C, heads, dim_feedforward=ffn, dropout=dropout, activation="relu",
                                               batch_first=True)
            self.irt = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        else:
            self.irt = None
        self.csm = nn.Sequential(nn.Linear(3 * C, C // 4), nn.ReLU(inplace=True), nn.Linear(C // 4, 3)) \
            if self.use_confidence else None
        n_global = 2 if inter else 1
        self.global_necks = nn.ModuleList(BNNeck(C) for _ in range(n_global))
        self.neck = BNNeck(C)                                              # the averaged global feature
        self.pose_necks = nn.ModuleList(BNNeck(C) for _ in range(3)) if pose else nn.ModuleList()
        self.classifiers = nn.ModuleList(nn.Linear(C, num_classes, bias=False) for _ in
                                         range(n_global + len(self.pose_necks))) if num_classes > 0 else None
        if self.classifiers is not None:
            for c in self.classifiers:
                nn.init.normal_(c.weight, std=0.001)
        self.feature_dim = C
        self.feature_splits = (C,) + ((C,) * 3 if pose else ())
        self.convolutional = True
        self.teacher_targets = ("keypoints",) if pose or intra else ()
        self.test_teacher_targets = self.teacher_targets

    def _encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """A set of part features through the shared IRT, averaged over its tokens (eq. 12)."""
        return (self.irt(tokens) if self.irt is not None else tokens).mean(1)

    def parts(self, x: torch.Tensor, keypoints: torch.Tensor | None):
        """(global features [stripe, patch] or [pooled], pose group features B x 3 x C or None, group
        scores S B x 3 or None, the human mask or None)."""
        fmap = self.base.feature_map(x)
        heat = mask = None
        if self.teacher_targets:
            if keypoints is None:
                raise ValueError("Pirt is pose-guided: forward(x, keypoints=...) in training and at test time")
            heat = expanded_heatmaps(keypoints, tuple(x.shape[-2:]), fmap.shape[-2:], self.sigma).to(fmap.dtype)
            mask = human_mask(heat)
        f = self.irm(fmap, mask) if self.irm is not None else fmap
        if self.use_inter:
            stripes = f.mean(3).transpose(1, 2)                                       # B x h x C
            patches = F.adaptive_max_pool2d(f, (f.shape[2] // 4, f.shape[3] // 2)).flatten(2).transpose(1, 2)
            globals_ = [self._encode(stripes), self._encode(patches)]
        else:
            globals_ = [f.mean((2, 3))]
        groups = scores = None
        if self.use_pose:
            per_keypoint = pose_features(f, heat, self.tau)                           # B x 17 x C
            groups = torch.stack([self._encode(per_keypoint[:, g]) for g in GROUPS], 1)
            scores = torch.stack([heat[:, g].flatten(1).amax(1) for g in GROUPS], 1)   # S: B x 3
        return globals_, groups, scores, mask

    def confidence(self, groups: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Eqs. 13-14's weights, B x 3 in [0, 1]: sigmoid(S_self) x S (S alone without the CSM)."""
        if self.csm is None:
            return scores
        return torch.sigmoid(self.csm(groups.flatten(1))) * scores

    def forward(self, x: torch.Tensor, keypoints: torch.Tensor | None = None):
        globals_, groups, scores, _ = self.parts(x, keypoints)
        g = torch.stack(globals_).mean(0)
        emb = self.neck(g)
        if groups is not None:
            weighted = groups * self.confidence(groups, scores)[..., None]            # eq. 14
            pose_emb = [neck(weighted[:, i]) for i, neck in enumerate(self.pose_necks)]
        else:
            pose_emb = []
        if not self.training:
            return retrieval_feature(emb, pose_emb)
        cls = self.classifiers or [None] * (len(globals_) + len(pose_emb))
        terms = [LossTerm(logits=c(neck(f)) if c is not None else None, ce=1.0)
                 for c, neck, f in zip(cls, self.global_necks, globals_)]                # eq. 16
        for i, e in enumerate(pose_emb):                                                # eq. 15
            c = cls[len(globals_) + i]
            terms.append(LossTerm(features=weighted[:, i], logits=c(e) if c is not None else None,
                                  ce=1 / len(pose_emb), triplet=1 / len(pose_emb)))
        return ModelOutput(embedding=emb, features=g, part_embeddings=pose_emb,
                           part_features=[weighted[:, i] for i in range(len(pose_emb))], part_metric="each",
                           loss_terms=terms)

    @torch.no_grad()
    def retrieval_parts(self, x: torch.Tensor, keypoints: torch.Tensor | None = None) -> dict:
        """For the top-N local re-ranking: the L2-normalised global feature (B x C), pose-group features
        (B x 3 x C) and their confidences (B x 3)."""
        globals_, groups, scores, _ = self.parts(x, keypoints)
        out = {"global": F.normalize(self.neck(torch.stack(globals_).mean(0)).float(), dim=1)}
        if groups is not None:
            conf = self.confidence(groups, scores)
            out["parts"] = F.normalize(torch.stack([n(groups[:, i] * conf[:, i:i + 1])
                                                    for i, n in enumerate(self.pose_necks)], 1).float(), dim=-1)
            out["confidence"] = conf.float()
        return out

    @torch.no_grad()
    def explain(self, x: torch.Tensor, keypoints: torch.Tensor | None = None) -> dict:
        maps = self.base.explain(x)
        if self.teacher_targets and keypoints is not None:
            _, _, _, mask = self.parts(x, keypoints)
            maps["human mask C (eq. 2)"] = (minmax(mask[:, 0]), "heat")
        return maps


@register_model("pirt")
def pirt(pose: bool = True, intra: bool = True, inter: bool = True, confidence: bool = True, layers: int = 3,
         heads: int = 8, ffn: int = 512, dropout: float = 0.1, irm_dim: int = 512, tau: float = 0.001,
         sigma: float = 1.0, backbone: str = "resnet50_ibn_a", pretrained: str = "imagenet", num_classes: int = 0,
         input_size: tuple[int, int] = (384, 128)) -> Pirt:
    """Pirt on ResNet-50-IBN-a (Table 3's switches: pose, intra, inter; Table 5's: confidence)."""
    return Pirt(pose, intra, inter, confidence, layers, heads, ffn, dropout, irm_dim, tau, sigma, backbone,
                pretrained, num_classes, input_size)
