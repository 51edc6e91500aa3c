"""PCB: the Part-based Convolutional Baseline with a uniform partition (Sun et al., "Beyond Part Models: Person
Retrieval with Refined Part Pooling (and a Strong Convolutional Baseline)", ECCV 2018), section 3.1; refined
part pooling (RPP, section 3.2) is not built.

* **Backbone**: a ResNet (``backbone``: resnet50 as the paper, resnet18 at CPU scale) without its global
  pooling and classifier, the down-sampling of the last stage removed (last stride 1): a 24 x 8 tensor T at
  the paper's 384 x 128 input.
* **Uniform partition**: T cut into p horizontal stripes of equal height (p = 6 in the paper; ``stripes``),
  each averaged into a column vector g_i (``model.pooling``: avg as the paper; max and gem pool each stripe so).
* **Reduction**: each g_i through a 1 x 1 convolution (on a pooled vector, a linear layer), BatchNorm and ReLU
  to the 256-d h_i (``reduce``; 0 keeps g_i).
* **Classifiers**: one per stripe, weights not shared, each trained with its own cross-entropy; the loss is
  their sum (through ``ModelOutput.loss_terms``, one ``LossTerm`` per stripe).
* **Retrieval**: the p vectors h_i concatenated (the paper reports h and g; h is the smaller). Here each h_i is
  L2-normalised before the concatenation and the whole divided by sqrt(p) (``retrieval_feature``), so the
  cosine similarity is the mean of the stripes' similarities.

Where the paper is silent or we had to choose: the reduction layers are one per stripe (the paper says the
classifiers share no weights and is silent on the reduction); the triplet loss, which PCB has not, is added
on the concatenated h_i with ``loss.triplet`` > 0, so that PCB can run in Bag of Tricks' recipe with only the
head changed (the stripes-against-global row of ``benchmarks/tables/validate_benchmark.yaml``); the stripes'
bounds are those of ``adaptive_avg_pool2d`` (taken as slices, whose backward is deterministic on CUDA), so a height
not divisible by p gives stripes a row apart in height, overlapping by a row; and p may not exceed the feature
map's rows. The classifiers are initialised as the BNNeck's (std 0.001).
"""
from __future__ import annotations

import torch
from torch import nn

from reidlab.errors import ConfigError

from .explain import minmax
from .heads import build_pooling
from .registry import LossTerm, ModelOutput, register_model, retrieval_feature
from .resnet import ReIDResNet, feature_map_size

BACKBONES = ("resnet50", "resnet18", "resnet50_ibn_a")


def stripe_bounds(rows: int, stripes: int) -> list[tuple[int, int]]:
    """The rows [a, b) of each of p stripes over ``rows`` rows, as ``adaptive_avg_pool2d`` bounds them:
    a = floor(i rows / p), b = ceil((i + 1) rows / p)."""
    return [(i * rows // stripes, -(-(i + 1) * rows // stripes)) for i in range(stripes)]


class PCB(nn.Module):
    def __init__(self, stripes: int = 6, reduce: int = 256, backbone: str = "resnet50", pretrained: str = "imagenet",
                 last_stride: int = 1, pooling: str = "avg", num_classes: int = 0,
                 input_size: tuple[int, int] = (384, 128)):
        super().__init__()
        if backbone not in BACKBONES:
            raise ConfigError(f"model.args.backbone: {', '.join(BACKBONES)}, not {backbone!r}")
        if isinstance(stripes, bool) or not isinstance(stripes, int) or stripes < 1:
            raise ConfigError(f"model.args.stripes: a whole number of stripes, at least 1, not {stripes!r}")
        if isinstance(reduce, bool) or not isinstance(reduce, int) or reduce < 0:
            raise ConfigError(f"model.args.reduce: the reduced width of each stripe (256 in the paper), or 0 for "
                              f"none, not {reduce!r}")
        self.base = ReIDResNet(backbone, pretrained=pretrained, last_stride=last_stride, pooling="avg",
                               num_classes=0, input_size=input_size)
        self.base.neck = self.base.pool = nn.Identity()          # PCB's stripes replace the ResNet's head
        rows = feature_map_size(input_size, last_stride)[0]
        if stripes > rows:
            raise ConfigError(f"PCB with {stripes} stripes needs a feature map of at least {stripes} rows; an input "
                              f"{input_size[0]} pixels high gives {rows} (last stride {last_stride}): lower "
                              f"model.args.stripes or raise data.height")
        C = self.base.feat_dim
        width = reduce or C
        self.stripes, self.width = stripes, width
        self.stripe_pool = build_pooling(pooling)
        self.reducers = nn.ModuleList(
            nn.Sequential(nn.Linear(C, reduce, bias=False), nn.BatchNorm1d(reduce), nn.ReLU(inplace=True))
            if reduce else nn.Identity() for _ in range(stripes))
        self.classifiers = nn.ModuleList(nn.Linear(width, num_classes, bias=False) for _ in range(stripes)) \
            if num_classes > 0 else None
        if self.classifiers is not None:
            for c in self.classifiers:
                nn.init.normal_(c.weight, std=0.001)
        self.feature_dim = stripes * width              # ModelOutput.features: the concatenated h_i
        self.feature_splits = (width,) * stripes        # the eval feature: one normalised piece per stripe
        self.global_feature = False                     # no global piece: test.feature=global is refused
        self.convolutional = True

    def stripe_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """h_1..h_p: the feature map averaged over p horizontal stripes (g_i), each reduced (section 3.1)."""
        fmap = self.base.feature_map(x)
        bounds = stripe_bounds(fmap.shape[2], self.stripes)
        return [r(self.stripe_pool(fmap[:, :, a:b])) for (a, b), r in zip(bounds, self.reducers)]

    def forward(self, x: torch.Tensor):
        h = self.stripe_features(x)
        if not self.training:
            return retrieval_feature(h[0], h[1:])
        cat = torch.cat(h, dim=1)
        terms = [LossTerm(logits=c(f), ce=1.0) for c, f in zip(self.classifiers, h)] if self.classifiers else []
        terms.append(LossTerm(features=cat, triplet=1.0))
        # the unsupervised loop takes one memory per piece (as for part models): stripe 1 and the others
        return ModelOutput(embedding=h[0], features=cat, part_embeddings=h[1:], part_features=h[1:],
                           part_metric="each", loss_terms=terms)

    @torch.no_grad()
    def explain(self, x: torch.Tensor) -> dict:
        """The backbone's activation map and the stripes' bounds (each stripe's rows as one value)."""
        maps = self.base.explain(x)
        B, h, w = maps["activation"][0].shape                 # the feature map's grid, not computed again
        bands = torch.zeros(h, device=x.device)
        for i, (a, b) in enumerate(stripe_bounds(h, self.stripes)):
            bands[a:b] = i
        maps[f"{self.stripes} stripes"] = (minmax(bands[None, :, None].expand(B, h, w)), "heat")
        return maps


@register_model("pcb")
def pcb(stripes: int = 6, reduce: int = 256, backbone: str = "resnet50", pretrained: str = "imagenet",
        last_stride: int = 1, pooling: str = "avg", num_classes: int = 0,
        input_size: tuple[int, int] = (384, 128)) -> PCB:
    """PCB with p uniform stripes (section 3.1; p = 6 and 256-d stripes as the paper)."""
    return PCB(stripes, reduce, backbone, pretrained, last_stride, pooling, num_classes, input_size)
