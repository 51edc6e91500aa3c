"""The re-ID ResNet: torchvision ResNet-18/50 with last stride 1, GeM pooling and a BN neck.

Training mode returns a ``ModelOutput`` (embedding after the neck, feature before it, logits when a
classifier is attached); eval mode returns the L2-normalised post-neck feature, as Cluster Contrast.
With ``num_classes`` and the default ``bnneck`` head this is the Bag of Tricks network (Luo et al.
2019): triplet loss on the pooled feature, bias-free classifier after the BN neck. With ``head="trinet"``
it is TriNet (Hermans et al. 2017): FC 1024-BN-ReLU-FC 128, the 128-d output used for the triplet loss
and for retrieval. With ``head="none"`` it is Bag of Tricks' Baseline-S (Luo et al. 2019, section 2 and
Table 1, its code's ``neck='no'``): no BN neck, the triplet and the classifier (a linear layer *with* a bias, at
torch's default initialisation) both on the pooled feature, which is also the retrieval feature.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
import torchvision
from torch import nn

from reidlab.errors import CheckpointError, ConfigError

from .explain import collect_outputs, minmax
from .ibn import convert_to_ibn_a, ibn_state
from .heads import BNNeck, TriNetHead, build_pooling
from .weights import load_matching, read_state_dict, summarise_keys
from .registry import ModelOutput, register_model, retrieval_feature

log = logging.getLogger(__name__)

_TORCHVISION = {
    "resnet18": (torchvision.models.resnet18, "ResNet18_Weights", 512),
    "resnet50": (torchvision.models.resnet50, "ResNet50_Weights", 2048),
    "resnet50_ibn_a": (torchvision.models.resnet50, "ResNet50_Weights", 2048),   # IBN-a on torchvision's ResNet-50
}


def feature_map_size(input_size: tuple[int, int], last_stride: int = 1) -> tuple[int, int]:
    """(rows, columns) of a ResNet's last feature map for an H x W input: each of its five strided steps (the stem's
    convolution and max-pool, layers 2-4, layer 4 at ``last_stride``) pads so that a side of n becomes ceil(n / 2)
    (or n at stride 1). 256 x 128 gives 16 x 8 at last stride 1; a side that is not a multiple of 16 gives one more
    than its // 16 (40 rows: 3, not 2)."""
    def side(n: int) -> int:
        for s in (2, 2, 2, 2, last_stride):
            n = -(-n // s)
        return max(1, n)
    return side(input_size[0]), side(input_size[1])


def set_last_stride(layer4: nn.Sequential, stride: int) -> None:
    block = layer4[0]
    conv = block.conv2 if hasattr(block, "conv3") else block.conv1   # Bottleneck strides in conv2
    conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


# IBN-Net's own ImageNet weights of ResNet-50-IBN-a (Pan et al., ECCV 2018; the release its code and the re-ID
# codes built on it load), with the InstanceNorm halves trained; the file name carries its hash's first digits
IBN_A_URL = "https://github.com/XingangPan/IBN-Net/releases/download/v1.0/resnet50_ibn_a-d9d0bb7b.pth"


def ibn_a_state_dict() -> dict:
    """IBN-Net's ImageNet ResNet-50-IBN-a, from torch's hub cache or the web; offline, an error that names the
    file and where to put it."""
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(IBN_A_URL).name
    try:
        return torch.hub.load_state_dict_from_url(IBN_A_URL, map_location="cpu", progress=True, check_hash=True)
    except Exception as e:  # no network, proxy, a damaged file: say what to do
        raise ConfigError(
            f"cannot get IBN-Net's ImageNet weights of resnet50_ibn_a ({type(e).__name__}: {e}).\n"
            f"Download {IBN_A_URL} to {cache}, or pass a local file with --set model.pretrained=PATH, or train "
            f"from scratch with --set model.pretrained=none.") from None


def imagenet_state_dict(arch: str) -> dict:
    """torchvision's ImageNet weights (IMAGENET1K_V1, as the re-ID codes use), from its cache or the web; for
    ResNet-50-IBN-a, IBN-Net's own (``ibn_a_state_dict``)."""
    if arch == "resnet50_ibn_a":
        return ibn_a_state_dict()
    weights = getattr(torchvision.models, _TORCHVISION[arch][1]).IMAGENET1K_V1
    try:
        return weights.get_state_dict(progress=True)
    except Exception as e:  # no network, proxy, ...: say what to do
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise ConfigError(
            f"cannot get the ImageNet weights of {arch} ({type(e).__name__}: {e}).\n"
            f"Download {weights.url} to {cache}, or pass a local file with --set model.pretrained=PATH, "
            f"or train from scratch with --set model.pretrained=none.") from None


def place_attention(layer4: nn.Sequential, spec: str, args: dict, blocks: str, feature_size: tuple[int, int]) -> None:
    """Replace the 3x3 convolution (conv2) of the last stage's residual blocks with attention blocks
    (all of them, or the last one); a strided conv2 becomes the block followed by 2x2 average pooling."""
    if blocks not in ("all", "last"):
        raise ConfigError(f"model.attention_blocks: 'all' or 'last', not {blocks!r}")
    from .attention import build_block
    chosen = list(layer4) if blocks == "all" else [layer4[-1]]
    for block in chosen:
        conv = block.conv2
        att = build_block(spec, conv.out_channels, *feature_size, **args)
        block.conv2 = nn.Sequential(att, nn.AvgPool2d(conv.stride)) if conv.stride != (1, 1) else att


class ReIDResNet(nn.Module):
    def __init__(self, arch: str = "resnet50", pretrained: str = "imagenet", last_stride: int = 1,
                 pooling: str = "gem", num_classes: int = 0, attention: str = "", attention_args: dict | None = None,
                 attention_placement: str = "conv2", attention_blocks: str = "all", head: str = "bnneck",
                 input_size: tuple[int, int] = (256, 128)):
        super().__init__()
        ctor, _, dim = _TORCHVISION[arch]
        net = ctor(weights=None)
        if arch.endswith("_ibn_a"):
            convert_to_ibn_a(net)
        set_last_stride(net.layer4, last_stride)
        feature_size = feature_map_size(input_size, last_stride)
        self.after = nn.Identity()
        if attention:
            if attention_placement == "conv2":
                place_attention(net.layer4, attention, attention_args or {}, attention_blocks, feature_size)
            elif attention_placement == "after":
                from .attention import build_block
                self.after = build_block(attention, dim, *feature_size, **(attention_args or {}))
            else:
                raise ConfigError(f"model.attention_placement: 'conv2' or 'after', not {attention_placement!r}")
        self.arch = arch
        self.base = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                  net.layer1, net.layer2, net.layer3, net.layer4)
        if pretrained and pretrained != "none":
            sd = imagenet_state_dict(arch) if pretrained == "imagenet" else read_state_dict(pretrained)
            names = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
            # torchvision names (conv1.weight, layer1.0...) onto self.base's indices; project
            # checkpoints (base.0.weight ...) load as they are
            inv = {v: k for k, v in names.items()}
            mapped = {}
            for k, v in sd.items():
                first, _, rest = k.partition(".")
                if k.startswith("base."):
                    mapped[k[5:]] = v
                elif first in inv:
                    mapped[f"{inv[first]}.{rest}"] = v
            if not mapped:
                raise CheckpointError(f"weights from {pretrained}: none of its {len(sd)} tensors is a ResNet's "
                                      f"(it holds {summarise_keys(sorted(sd))}); give a ResNet's weights, or none")
            if arch.endswith("_ibn_a") and not any(".IN." in k for k in mapped):
                # a plain ResNet-50 (a local file) into IBN-a: all but the InstanceNorms; IBN-Net's own weights
                # (the imagenet default) have the IBN halves and load as they are
                mapped = ibn_state(mapped, self.base.state_dict())
            load_matching(self.base, mapped, pretrained)
        self.feat_dim = dim                  # channels of the last feature map
        self.pool = build_pooling(pooling)
        if head == "bnneck":
            self.neck, emb_dim = BNNeck(dim), dim
        elif head == "trinet":
            self.neck = TriNetHead(dim)
            emb_dim = self.neck.out_dim
        elif head == "none":
            self.neck, emb_dim = nn.Identity(), dim
        else:
            raise ConfigError(f"model.head: 'bnneck', 'trinet' or 'none', not {head!r}")
        self.head = head
        self.feature_dim = dim if head == "bnneck" else emb_dim    # of ModelOutput.features
        self.feature_splits = (emb_dim,)                           # widths of the eval feature's pieces
        self.convolutional = True                                  # train.channels_last applies
        self.classifier = None
        if num_classes > 0 and head == "none":                     # BoT's neck='no': nn.Linear's own start
            self.classifier = nn.Linear(emb_dim, num_classes)
        elif num_classes > 0:
            self.classifier = nn.Linear(emb_dim, num_classes, bias=False)
            nn.init.normal_(self.classifier.weight, std=0.001)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.base(x))

    def head_forward(self, fmap: torch.Tensor):
        """Pooling, neck and classifier on the last feature map: what ``forward`` returns."""
        feat = self.pool(fmap)
        emb = self.neck(feat)
        if not self.training:
            return retrieval_feature(emb)
        logits = self.classifier(emb) if self.classifier is not None else None
        # triplet on the pre-neck feature (BNNeck); TriNet's triplet is on its 128-d output
        return ModelOutput(embedding=emb, features=feat if self.head == "bnneck" else emb, logits=logits)

    def forward(self, x: torch.Tensor):
        return self.head_forward(self.feature_map(x))

    @torch.no_grad()
    def explain(self, x: torch.Tensor) -> dict:
        """The last feature map's mean absolute activation, and the pixel weights of every PLA block
        (MLA eq. 3), at the feature map's resolution (models.explain)."""
        from .mla import PLA
        weights, remove = collect_outputs(self, PLA, lambda out: out[1][:, 0])
        try:
            fmap = self.feature_map(x)
        finally:
            remove()
        maps = {"activation": (minmax(fmap.abs().mean(1)), "heat")}
        for i, w in enumerate(weights):
            maps[f"PLA weights, block {i + 1}"] = (w.float(), "heat")
        return maps


register_model("resnet50")(functools.partial(ReIDResNet, "resnet50"))
register_model("resnet18")(functools.partial(ReIDResNet, "resnet18"))
register_model("resnet50_ibn_a")(functools.partial(ReIDResNet, "resnet50_ibn_a"))
