"""MLA's modules, its Table 6 variants in the unsupervised loop, and the plug-in API."""
import logging

import pytest
import torch
import torchvision

import main
from reidlab.models import build_model
from reidlab.models.mla import DLA, HLA, PLA, MLA

VARIANTS = ["", "hla", "pla", "pla+hla", "dla", "mla"]        # baseline first: the rows of Table 6


@pytest.mark.parametrize("module", [
    lambda: PLA(32), lambda: HLA(32, 4, 2, heads=4), lambda: DLA(32, units=8), lambda: MLA(32, 4, 2, heads=4, units=8)])
def test_module_shapes_and_gradients(module):
    m = module()
    x = torch.randn(3, 32, 4, 2, requires_grad=True)
    out = m(x)
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in m.parameters())


def test_pla_is_eq_3():
    m = PLA(4)
    x = torch.randn(2, 4, 5, 3)
    out, w = m(x)
    assert torch.allclose(out, x * torch.sigmoid(m.conv(x))) and w.shape == (2, 1, 5, 3)


def test_dla_memory_units_start_transposed():
    m = DLA(16, units=4)
    assert torch.equal(m.v_d.weight, m.k_d.weight.transpose(0, 1))
    assert m.k_d.bias is None and m.v_d.bias is None


def test_hla_position_encoding_adapts_to_the_map_size():
    m = HLA(16, 4, 2, heads=2)
    assert m(torch.randn(1, 16, 8, 4)).shape == (1, 16, 8, 4)


@pytest.fixture(scope="module")
def imagenet_shaped(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    return path


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_loads_imagenet_shaped_weights(variant, imagenet_shaped, caplog):
    caplog.set_level(logging.INFO)
    tv = torch.load(imagenet_shaped, weights_only=True)
    m = build_model("resnet50", pretrained=str(imagenet_shaped), attention=variant, input_size=(64, 32))
    assert torch.equal(m.base[0].weight, tv["conv1.weight"])
    assert torch.equal(m.base[7][2].conv3.weight, tv["layer4.2.conv3.weight"])     # not replaced: loaded
    if variant:
        assert not isinstance(m.base[7][0].conv2, torch.nn.Conv2d)
        assert "not found" in caplog.text                                         # the log lists them


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_trains_in_the_unsupervised_loop(variant, imagenet_shaped, tmp_path, tiny_root):
    from tests.test_unsup import TINY
    args = [*TINY, "--data-root", str(tiny_root), "--output", str(tmp_path), "--name", "v", "--epochs", "1",
            "--set", "model.name=resnet50", "--set", f"model.pretrained={imagenet_shaped}",
            "--set", f"model.attention={variant}", "--set", "train.iters=2", "--set", "test.eval_initial=false"]
    assert main.main(args) == 0


def test_user_block_by_import_path(tmp_path, tiny_root):
    from tests.test_unsup import run
    records = run(tmp_path, tiny_root, "se", "--epochs", "1",
                  "--set", "model.attention=examples.se_block:SqueezeExcitation",
                  "--set", "model.attention_placement=after", "--set", "model.attention_args.reduction=8")
    assert records[-1]["loss"] is not None or records[-1]["num_clusters"] == 0
    from reidlab.runs.checkpoint import load_checkpoint
    state = load_checkpoint(tmp_path / "se" / "last.pt")["model"]
    assert "after.fc.0.weight" in state and state["after.fc.0.weight"].shape == (512 // 8, 512)


def test_unknown_block_names_the_closest():
    from reidlab.errors import ConfigError
    with pytest.raises(ConfigError, match="'mla'"):
        build_model("resnet18", pretrained="none", attention="mlaa")
    with pytest.raises(ConfigError, match="cannot import"):
        build_model("resnet18", pretrained="none", attention="nowhere.module:Block")


def test_hla_position_term_has_the_papers_scale():
    """Section 3.2: r_h and r_w are standard normal at initialisation; the position logits are
    (q / sqrt(d)) . (r_h + r_w), the attention's one temperature."""
    torch.manual_seed(0)
    m = HLA(256, 16, 8, heads=4)                                     # d = 64
    assert m.pos_h.std().item() == pytest.approx(1.0, abs=0.05) and m.pos_w.std().item() == pytest.approx(1.0, abs=0.05)
    q = torch.randn(2, 4, 64, 16 * 8) * 64 ** -0.5                   # unit-variance q, scaled as in forward
    term = m.position_logits(q, 16, 8)
    assert torch.allclose(term, torch.einsum("bhdi,hdj->bhij", q, (m.pos_h + m.pos_w).flatten(2)), atol=1e-5)
    # each logit sums d products of a unit-variance q/sqrt(d) and an r of variance 2: std sqrt(2)
    assert term.std().item() == pytest.approx(2 ** 0.5, rel=0.1)
    scaled = HLA(256, 16, 8, heads=4, position_init="scaled")
    assert scaled.pos_h.std().item() == pytest.approx(64 ** -0.5, rel=0.1)   # BoTNet code's, as an option
    from reidlab.errors import ConfigError
    with pytest.raises(ConfigError, match="position_init"):
        HLA(256, 16, 8, position_init="uniform")
