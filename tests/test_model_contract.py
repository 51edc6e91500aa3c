"""The model contract, for every registered model and every registered attention block, at two input
sizes: training mode returns a ModelOutput whose losses reach every trainable parameter; eval mode
returns one L2-normalised B x D tensor whose pieces are ``feature_splits`` wide."""
import pytest
import torch

from reidlab.models import MODELS, ModelOutput, build_model
from reidlab.models.attention import ATTENTION_BLOCKS, resolve_block
from reidlab.runs.config import build_config
from reidlab.supervised.trainer import reid_loss

resolve_block("mla")                       # registers the MLA blocks
SIZES = [(64, 32), (96, 48)]
# small versions of the models for a CPU test (a model not listed here is tested with its defaults)
SMALL = {"daaf": dict(base="resnet18"), "vit": dict(size="tiny", depth=2), "aaformer": dict(size="tiny", depth=2),
         "sap": dict(size="tiny", depth=2), "pirt": dict(backbone="resnet18"), "resnet50_ibn_a": {},
         "pcb": dict(backbone="resnet18", stripes=4)}


def teacher(model, B, H, W):
    """Random teacher targets of the kinds the model asks for in training."""
    g = torch.Generator().manual_seed(0)
    t = {"mask": (torch.rand(B, 1, H, W, generator=g) > 0.5).float(),
         "keypoints": torch.rand(B, 17, 3, generator=g) * torch.tensor([W - 1.0, H - 1.0, 2.0]),
         "parsing": torch.randint(0, 7, (B, 1, H, W), generator=g, dtype=torch.uint8)}
    return {k: v for k, v in t.items() if k in getattr(model, "teacher_targets", ())}


def check_contract(model, H, W, classes=5):
    B = 8
    x = torch.randn(B, 3, H, W)
    y = torch.arange(B) % 4
    model.train()
    out = model(x, **teacher(model, B, H, W))
    assert isinstance(out, ModelOutput)
    assert out.embedding.shape[0] == B and out.features.shape == (B, model.feature_dim)
    assert len(out.part_embeddings) == len(out.part_features) == len(model.feature_splits) - 1
    assert out.logits is None or out.logits.shape == (B, classes)
    loss, _ = reid_loss(out, y, build_config("bot_market1501", [{"loss": {"center": 0.0}}]))
    loss = loss + sum(e.pow(2).mean() for e in [out.embedding, *out.part_embeddings])   # the memory's input
    loss.backward()
    silent = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not silent, f"parameters no loss reaches: {silent[:8]}"
    model.eval()
    at_test = {k: v for k, v in teacher(model, B, H, W).items() if k in getattr(model, "test_teacher_targets", ())}
    with torch.no_grad():
        f = model(x, **at_test)
    assert torch.is_tensor(f) and f.shape == (B, sum(model.feature_splits))
    assert torch.allclose(f.norm(dim=1), torch.ones(B), atol=1e-5)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_keeps_the_contract(name, size):
    torch.manual_seed(0)
    model = build_model(name, pretrained="none", num_classes=5, input_size=size, **SMALL.get(name, {}))
    check_contract(model, *size)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("block", ATTENTION_BLOCKS.names() + ["examples.se_block:SqueezeExcitation"])
def test_every_attention_block_keeps_the_contract(block, size):
    torch.manual_seed(0)
    model = build_model("resnet18", pretrained="none", num_classes=5, input_size=size, attention=block,
                        attention_placement="after" if ":" in block else "conv2")
    check_contract(model, *size)
