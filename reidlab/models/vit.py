"""A vision transformer for re-ID on timm's building blocks (TransReID's baseline, He et al., ICCV 2021,
without its side information and jigsaw branch; the "ViT-baseline" row of AAformer's tables).

timm provides the transformer blocks (``Block``: multi-head self-attention and ``Mlp`` with
``DropPath``), the weight-file loading (``.pth``/``.bin``/``.safetensors`` state dicts; the original
``.npz`` ViT files through its JAX converter) and the position-embedding resampling. What re-ID adds,
and all this file writes:

- **overlapping patch embedding**: a 16 x 16 convolution with stride ``stride`` (12 in TransReID: 21 x 10
  patches at 256 x 128; 16 is ViT's non-overlapping one); its weights are those of ViT's patch
  projection, whatever the stride;
- a **[CLS] token** and learnable **position embeddings** for [CLS] + patches, resized (bicubic) from the
  checkpoint's grid (14 x 14 for 224 x 224 weights) to this input's;
- **drop-path** rising linearly to ``drop_path`` over the blocks (0.1 in TransReID);
- the **BNNeck head** of Bag of Tricks on the [CLS] output: triplet on the feature before the BN,
  bias-free identity classifier after it, the post-BN feature L2-normalised for retrieval.

Sizes: ``tiny`` (D 192, 3 heads), ``small`` (D 384, 6 heads), ``base`` (ViT-B/16: D 768, 12 heads), all
12 layers unless ``depth`` says fewer (the CPU benchmarks use shallow ones). Subclasses (AAformer) add
their own learnable tokens after [CLS] (``prefix_tokens``, without position embeddings) and their own
attention layer in timm's blocks (``attention(dim, heads)``, with the parameter names of timm's).
"""
from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import torch
from torch import nn

from reidlab.errors import CheckpointError, ConfigError

from .explain import minmax
from .heads import BNNeck
from .registry import ModelOutput, register_model, retrieval_feature
from .weights import load_matching, summarise_keys

log = logging.getLogger(__name__)

SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}          # embedding width, heads
# timm's names of ImageNet weights for model.pretrained=imagenet (TransReID starts from ImageNet-21k
# pre-training fine-tuned on ImageNet-1k at 224 x 224, the original ViT release)
IMAGENET = {"tiny": "vit_tiny_patch16_224.augreg_in21k_ft_in1k",
            "small": "vit_small_patch16_224.augreg_in21k_ft_in1k",
            "base": "vit_base_patch16_224.orig_in21k_ft_in1k"}


# the re-ID heads on the transformer (BNNecks and identity classifiers, global and per part): a pretrained
# start loads the transformer only, as a ResNet student loads its backbone only
REID_HEADS = ("neck.", "classifier.", "part_neck", "part_classifier")


def patch_grid(input_size: tuple[int, int], patch: int, stride: int) -> tuple[int, int]:
    H, W = input_size
    if H < patch or W < patch:
        raise ConfigError(f"input {H} x {W} is smaller than one {patch} x {patch} patch; raise data.height/width")
    return (H - patch) // stride + 1, (W - patch) // stride + 1


def checkpoint_grid(n: int, grid: tuple[int, int]) -> tuple[int, int] | None:
    """The patch grid of a checkpoint's ``n`` position embeddings: square (ImageNet's), else the h x w = n of
    the aspect ratio nearest ``grid``'s (a re-ID checkpoint of this project: 8 x 4 at 128 x 64); None when
    ``n`` has no such factor pair."""
    side = int(round(math.sqrt(n)))
    if side * side == n:
        return side, side
    pairs = [(h, n // h) for h in range(1, n + 1) if n % h == 0]
    if not pairs:
        return None
    aim = grid[0] / grid[1]
    return min(pairs, key=lambda hw: abs(math.log(hw[0] / hw[1] / aim)))


def resize_position_embedding(pos: torch.Tensor, grid: tuple[int, int], prefix: int = 1) -> torch.Tensor:
    """1 x (prefix + h*w) x D position embeddings of a checkpoint's grid (``checkpoint_grid``), resampled to
    ``grid`` (bicubic, timm's ``resample_abs_pos_embed``); the prefix ([CLS]) entries are kept as they are."""
    from timm.layers import resample_abs_pos_embed
    n = pos.shape[1] - prefix
    old = checkpoint_grid(n, grid) if n > 0 else None
    if old is None:
        raise CheckpointError(f"a position embedding of {n} patches has no patch grid; cannot resize it")
    if tuple(old) == tuple(grid):
        return pos
    return resample_abs_pos_embed(pos, new_size=list(grid), old_size=list(old), num_prefix_tokens=prefix)


def read_vit_weights(path: str, size: str, depth: int) -> dict:
    """A ViT state dict in timm's names from a file: ``.npz`` (the original JAX release, converted by
    timm), ``.safetensors``, ``.pth`` / ``.bin`` (a state dict, or a checkpoint holding one)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"model.pretrained: no file {p} (use imagenet, none, or a ViT weight file)")
    try:
        if p.suffix == ".npz":
            from timm.models.vision_transformer import VisionTransformer, _load_weights
            dim, heads = SIZES[size]
            ref = VisionTransformer(img_size=224, patch_size=16, embed_dim=dim, depth=depth, num_heads=heads,
                                    num_classes=0)
            _load_weights(ref, str(p))
            return ref.state_dict()
        from timm.models import load_state_dict
        state = load_state_dict(str(p), weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read ViT weights from {p}: {type(e).__name__}: {e}") from None
    for key in ("model", "state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
    return {k.removeprefix("module."): v for k, v in state.items()}


def imagenet_vit_weights(size: str) -> dict:
    """timm's ImageNet weights of this size, from its cache (Hugging Face hub) or the web."""
    import timm
    name = IMAGENET[size]
    try:
        return timm.create_model(name, pretrained=True, num_classes=0).state_dict()
    except Exception as e:                              # offline, proxy, ...: say what to do
        arch, tag = name.split(".")
        raise ConfigError(
            f"cannot get the ImageNet weights of ViT-{size} ({type(e).__name__}: {e}).\n"
            f"Download https://huggingface.co/timm/{name}/resolve/main/model.safetensors and pass it with "
            f"--set model.pretrained=PATH (timm also reads the original .npz release and .pth state dicts), "
            f"or train from scratch with --set model.pretrained=none.") from None


class OverlapPatchEmbed(nn.Module):
    """Patches of ``patch`` x ``patch`` pixels every ``stride`` pixels, projected to D (TransReID's
    overlapping patch embedding; ViT's when stride == patch). B x 3 x H x W -> B x (h*w) x D."""

    def __init__(self, patch: int, stride: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ReIDViT(nn.Module):
    def __init__(self, size: str = "base", stride: int = 12, depth: int = 12, drop_path: float = 0.1,
                 pretrained: str = "imagenet", num_classes: int = 0, input_size: tuple[int, int] = (256, 128),
                 attention=None):
        super().__init__()
        from timm.layers import trunc_normal_
        from timm.models.vision_transformer import Block
        if size not in SIZES:
            raise ConfigError(f"model.args.size: one of {', '.join(SIZES)}, not {size!r}")
        if not 1 <= depth <= 12:
            raise ConfigError(f"model.args.depth: 1 to 12 transformer layers, not {depth!r}")
        if not 1 <= stride <= 16:
            raise ConfigError(f"model.args.stride: 1 to 16 pixels (16: no overlap), not {stride!r}")
        dim, heads = SIZES[size]
        self.size, self.depth, self.dim, self.heads = size, depth, dim, heads
        self.grid = patch_grid(input_size, 16, stride)
        self.patch_embed = OverlapPatchEmbed(16, stride, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.prefix_tokens: nn.Parameter | None = None       # 1 x E x D, inserted after [CLS] (subclasses)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], dim))
        norm = functools.partial(nn.LayerNorm, eps=1e-6)
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, drop_path=r, norm_layer=norm)
                                      for r in rates])
        if attention is not None:                 # a subclass's own attention layer, built as attention(dim, heads)
            for block in self.blocks:
                block.attn = attention(dim, heads)
        self.norm = norm(dim)
        trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.apply(_init_weights)
        self.neck = BNNeck(dim)
        self.classifier = nn.Linear(dim, num_classes, bias=False) if num_classes > 0 else None
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)
        self.feature_dim = dim
        self.feature_splits = (dim,)
        if type(self) is ReIDViT:               # a subclass loads them once its own modules exist
            self.load_vit_weights(pretrained)

    def load_vit_weights(self, pretrained: str) -> None:
        """ImageNet ViT weights (``imagenet`` or a file; nothing for ``none``) into the transformer; the
        position embeddings are resized to this input's patch grid; the log lists what was not loaded (the
        re-ID heads, extra tokens) and what the file held that this model does not use (ImageNet's head)."""
        if not pretrained or pretrained == "none":
            return
        state = imagenet_vit_weights(self.size) if pretrained == "imagenet" else \
            read_vit_weights(pretrained, self.size, self.depth)
        if state.get("pos_embed") is not None and state["pos_embed"].shape != self.pos_embed.shape:
            state["pos_embed"] = resize_position_embedding(state["pos_embed"], self.grid)
        heads = sorted(k for k in state if k.startswith(REID_HEADS))
        if heads:                       # a re-ID checkpoint's heads belong to its own identities
            log.info("weights from %s: its re-ID heads left out (%s); they start at initialisation", pretrained,
                     summarise_keys(heads))
            state = {k: v for k, v in state.items() if not k.startswith(REID_HEADS)}
        load_matching(self, state, pretrained)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W -> the last layer's normalised tokens, B x (1 + E + h*w) x D."""
        patches = self.patch_embed(x)
        if patches.shape[1] != self.pos_embed.shape[1] - 1:
            raise ValueError(f"input {tuple(x.shape[-2:])} gives {patches.shape[1]} patches; this model was built "
                             f"for a {self.grid[0]} x {self.grid[1]} grid (data.height / data.width)")
        B = x.shape[0]
        z = torch.cat([self.cls_token.expand(B, -1, -1), patches], dim=1) + self.pos_embed
        if self.prefix_tokens is not None:
            z = torch.cat([z[:, :1], self.prefix_tokens.expand(B, -1, -1), z[:, 1:]], dim=1)
        return self.norm(self.blocks(z))

    @torch.no_grad()
    def explain(self, x: torch.Tensor) -> dict:
        """The last layer's attention of [CLS] to the patches, averaged over the heads, on the patch grid."""
        inputs: list = []
        last = self.blocks[-1]
        hook = last.norm1.register_forward_hook(lambda mod, inp, out: inputs.append(out))
        try:
            self.tokens(x)
        finally:
            hook.remove()
        z = inputs[-1]
        B, L, _ = z.shape
        attn = last.attn
        q, k, _ = attn.qkv(z).reshape(B, L, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        weights = ((q[:, :, :1] * attn.head_dim ** -0.5) @ k.transpose(-2, -1)).softmax(-1).mean(1)[:, 0]
        patches = weights[:, L - self.grid[0] * self.grid[1]:].reshape(B, *self.grid)
        return {"[CLS] attention": (minmax(patches), "heat")}

    def head_forward(self, global_token: torch.Tensor):
        emb = self.neck(global_token)
        if not self.training:
            return retrieval_feature(emb)
        logits = self.classifier(emb) if self.classifier is not None else None
        return ModelOutput(embedding=emb, features=global_token, logits=logits)

    def forward(self, x: torch.Tensor):
        return self.head_forward(self.tokens(x)[:, 0])


def _init_weights(m: nn.Module) -> None:
    """timm's ViT initialisation: truncated normal (0.02) linear weights, zero biases."""
    from timm.layers import trunc_normal_
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


@register_model("vit")
def vit(size: str = "base", stride: int = 12, depth: int = 12, drop_path: float = 0.1, pretrained: str = "imagenet",
        num_classes: int = 0, input_size: tuple[int, int] = (256, 128)) -> ReIDViT:
    """The re-ID ViT (TransReID's baseline)."""
    return ReIDViT(size, stride, depth, drop_path, pretrained, num_classes, input_size)
