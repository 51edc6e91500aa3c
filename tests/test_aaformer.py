"""The re-ID ViT and AAformer: Sinkhorn's polytope, the patch assignment, the masked [PART] attention,
position-embedding resizing, loading timm weights, and an epoch of each loop."""
import logging
import math

import pytest
import torch

from reidlab.models import build_model
from reidlab.models.aaformer import assign_patches, sinkhorn, stripe_of_patch
from reidlab.models.vit import resize_position_embedding


def test_sinkhorn_meets_the_polytope_constraints():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 128, generator=g)                 # 6 heads, P = 5 [PART]s, N = 128 patches
    y = sinkhorn(logits, 3)
    assert (y.sum(-1) - 1 / 5).abs().max() < 1e-3               # rows: 1/P (eq. 4)
    assert (y.sum(-2) - 1 / 128).abs().max() < 1e-6             # columns: 1/N
    exact = sinkhorn(logits, 200)
    assert (exact.sum(-1) - 1 / 5).abs().max() < 1e-7 and (exact.sum(-2) - 1 / 128).abs().max() < 1e-7
    # fp32 in the log domain: exp(1000 / 0.05) would overflow any float; half-precision input is fine too
    assert torch.isfinite(sinkhorn(logits * 1000 / 0.05, 3)).all()
    assert torch.isfinite(sinkhorn((logits / 0.05).half(), 3)).all() and sinkhorn(logits.half()).dtype == torch.float32


def test_sinkhorn_spreads_what_nearest_neighbour_piles_up():
    k = torch.nn.functional.normalize(torch.randn(1, 1, 60, 8) + 3.0, dim=-1)   # all patches look alike
    q = torch.randn(1, 1, 3, 8)
    nn_counts = assign_patches(q, k, (3,), "nn")[0, 0].sum(-1)
    ot_counts = assign_patches(q, k, (3,), "ot")[0, 0].sum(-1)
    assert ot_counts.max() - ot_counts.min() < nn_counts.max() - nn_counts.min() or nn_counts.min() > 0
    assert ot_counts.min() >= 10                               # near the equal partition of 20 each


@pytest.mark.parametrize("mode", ["ot", "nn", "stripes"])
def test_each_patch_goes_to_exactly_one_part_of_each_granularity(mode):
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 4, 5, 16, generator=g), torch.randn(2, 4, 21 * 10, 16, generator=g)
    a = assign_patches(q, k, (2, 3), mode, grid=(21, 10))
    assert a.shape == (2, 4, 5, 210)
    assert (a[:, :, :2].sum(2) == 1).all() and (a[:, :, 2:].sum(2) == 1).all()
    if mode == "stripes":
        assert torch.equal(a[0, 0, 2:].float().argmax(0), stripe_of_patch((21, 10), 3))


def test_a_part_attends_only_to_its_patches():
    torch.manual_seed(0)
    m = build_model("aaformer", size="tiny", depth=2, pretrained="none", input_size=(64, 32), stride=8)
    for block in m.blocks:
        block.attn.keep_assignment = True
    m.eval()
    m(torch.randn(3, 3, 64, 32))
    for block in m.blocks:
        assigned, weights = block.attn.last_assignment, block.attn.last_part_weights
        assert weights.shape == assigned.shape == (3, 3, 5, 7 * 3)
        assert (weights[~assigned] == 0).all()
        rows = assigned.any(-1)
        assert torch.allclose(weights.sum(-1)[rows], torch.ones(int(rows.sum())), atol=1e-5)


def test_position_grid_resize_keeps_values_at_matching_positions():
    def f(y, x):                                               # a smooth function of the normalised position
        return torch.stack([torch.sin(2.0 * y) + x, torch.cos(1.5 * x) * y], -1)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 14), torch.linspace(0, 1, 14), indexing="ij")
    pos = torch.cat([torch.full((1, 1, 2), 7.0), f(ys, xs).reshape(1, 196, 2)], dim=1)
    out = resize_position_embedding(pos, (21, 10))
    assert out.shape == (1, 1 + 210, 2) and torch.equal(out[:, 0], pos[:, 0])      # [CLS] kept
    grid = out[0, 1:].reshape(21, 10, 2)
    # cell centres map to cell centres: row i of 21 sits at (i + 0.5) * 14 / 21 - 0.5 of the old grid
    for i, j in [(0, 0), (10, 5), (20, 9), (7, 3)]:
        y = ((i + 0.5) * 14 / 21 - 0.5) / 13
        x = ((j + 0.5) * 14 / 10 - 0.5) / 13
        assert torch.allclose(grid[i, j], f(torch.tensor(y), torch.tensor(x)), atol=0.03), (i, j)
    assert torch.equal(resize_position_embedding(pos, (14, 14)), pos)


def test_timm_vit_small_state_dict_loads_and_the_log_lists_skipped_keys(tmp_path, caplog):
    import timm
    ref = timm.create_model("vit_small_patch16_224", pretrained=False)
    torch.save(ref.state_dict(), tmp_path / "vit_small.pth")
    caplog.set_level(logging.INFO)
    m = build_model("vit", size="small", stride=12, pretrained=str(tmp_path / "vit_small.pth"), input_size=(256, 128))
    assert torch.equal(m.blocks[5].mlp.fc1.weight, ref.blocks[5].mlp.fc1.weight)
    assert torch.equal(m.patch_embed.proj.weight, ref.patch_embed.proj.weight) and m.grid == (21, 10)
    assert torch.equal(m.pos_embed[:, 0], ref.pos_embed[:, 0])
    assert "head.weight" in caplog.text and "not used by this model" in caplog.text
    assert "neck.bn.weight" in caplog.text                      # the re-ID head starts at its initialisation
    a = build_model("aaformer", size="small", depth=12, pretrained=str(tmp_path / "vit_small.pth"),
                    input_size=(256, 128))
    assert torch.equal(a.blocks[5].attn.qkv.weight, ref.blocks[5].attn.qkv.weight)    # MAA keeps timm's names
    assert "prefix_tokens" in caplog.text


def test_imagenet_vit_offline_is_a_clear_error(monkeypatch):
    import timm

    from reidlab.errors import ReIDError

    def offline(*a, **k):
        raise OSError("no network")
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ReIDError, match="huggingface.co/timm/vit_small_patch16_224.*model.pretrained=PATH"):
        build_model("vit", size="small", pretrained="imagenet", input_size=(64, 32))


def test_eval_feature_is_cls_and_parts_each_normalised():
    torch.manual_seed(0)
    m = build_model("aaformer", size="tiny", depth=1, pretrained="none", input_size=(64, 32))
    m.eval()
    f = m(torch.randn(2, 3, 64, 32))
    pieces = f.split(list(m.feature_splits), dim=1)
    assert len(pieces) == 6
    for p in pieces:
        assert torch.allclose(p.norm(dim=1), torch.full((2,), 1 / math.sqrt(6)), atol=1e-5)


AA = ["--set", "model.name=aaformer", "--set", "model.pretrained=none", "--set", "model.args.size=tiny",
      "--set", "model.args.depth=2", "--set", "model.args.stride=8"]


def test_one_supervised_epoch_of_aaformer(tmp_path, tiny_root):
    from tests.test_supervised import run_sup
    records = run_sup(tmp_path, tiny_root, "aa", "aaformer_market1501", "--epochs", "1", *AA,
                      "--set", "train.warmup_epochs=0")
    assert records[-1]["id"] > 0 and records[-1]["triplet"] > 0 and 0 <= records[-1]["mAP"] <= 1
    assert records[-1]["ce_global"] > 0 and all(records[-1][f"ce_part{i}"] > 0 for i in range(1, 6))


def test_one_unsupervised_epoch_of_aaformer(tmp_path, tiny_root):
    from tests.test_unsup import run
    records = run(tmp_path, tiny_root, "aau", "--epochs", "1", *AA, "--set", "model.pooling=gem")
    assert records[-1]["num_clusters"] > 0 and records[-1]["loss"] > 0


def test_part_queries_see_neither_cls_nor_the_other_granularitys_parts():
    """MAA (eq. 2): a [PART] query attends to its own patches only, so changing [CLS], or a [PART] of the other
    granularity, leaves its output as it was; changing a patch does not (the check can fail), and [CLS], which
    keeps eq. 1 over the whole sequence, does see the [PART]s."""
    from reidlab.models.aaformer import AutoAlignAttention
    torch.manual_seed(0)
    layer = AutoAlignAttention(32, num_heads=4, granularities=(2, 3), grid=(4, 2)).eval()
    x = torch.randn(2, 1 + 5 + 8, 32)                     # [CLS], 2 + 3 [PART]s, 4 x 2 patches
    out = layer(x)

    def changed(position):
        y = x.clone()
        y[:, position] += torch.randn(2, 32)
        return layer(y)
    first, second = slice(1, 3), slice(3, 6)                # the granularity-2 and granularity-3 [PART]s
    after = changed(0)                                      # [CLS]
    assert torch.allclose(after[:, 1:6], out[:, 1:6], atol=1e-6)
    after = changed(4)                                      # a granularity-3 [PART]
    assert torch.allclose(after[:, first], out[:, first], atol=1e-6)
    assert not torch.allclose(after[:, 0], out[:, 0], atol=1e-4)         # [CLS] sees it (eq. 1)
    after = changed(1)                                      # a granularity-2 [PART]
    assert torch.allclose(after[:, second], out[:, second], atol=1e-6)
    after = changed(9)                                      # a patch
    assert not torch.allclose(after[:, 1:6], out[:, 1:6], atol=1e-4)


def _smoothed_ce(logits, y, eps):
    q = torch.full_like(logits, eps / logits.shape[1])
    q[torch.arange(len(y)), y] += 1 - eps
    return -(q * logits.log_softmax(1)).sum(1).mean()


def _batch_hard(f, y, margin):
    losses = []
    for i in range(len(y)):
        d = (f - f[i]).norm(dim=1)
        pos, neg = (y == y[i]) & (torch.arange(len(y)) != i), y != y[i]
        losses.append(torch.relu(margin + d[pos].max() - d[neg].min()))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("w", [1.0, 0.5])
def test_eqs_6_and_7_composition_numerically(w):
    """AAformer's ID loss is the mean of the [CLS] and per-[PART] cross-entropies (eq. 6; loss.parts = w weighs
    the parts), its triplet the mean of the [CLS] triplet and the concatenated-[PART]s triplet (eq. 7), each
    against a hand-written cross-entropy and batch-hard triplet."""
    from reidlab.runs.config import build_config
    from reidlab.supervised.trainer import reid_loss
    torch.manual_seed(0)
    m = build_model("aaformer", size="tiny", depth=2, pretrained="none", input_size=(64, 32), stride=16,
                    num_classes=4).train()
    y = torch.arange(4).repeat_interleave(2)
    out = m(torch.randn(8, 3, 64, 32))
    cfg = build_config("aaformer_market1501", [{"loss": {"parts": w, "center": 0.0}}])
    eps, margin = cfg.loss.label_smoothing, cfg.loss.margin
    total, parts = reid_loss(out, y, cfg)
    P = len(out.part_logits)
    assert P == 5
    ce = (_smoothed_ce(out.logits, y, eps) + w * sum(_smoothed_ce(g, y, eps) for g in out.part_logits)) / (1 + w * P)
    tri = (_batch_hard(out.features, y, margin) + w * _batch_hard(torch.cat(out.part_features, 1), y, margin)) / (1 + w)
    assert parts["id"].item() == pytest.approx(cfg.loss.id * ce.item(), rel=1e-5)
    assert parts["triplet"].item() == pytest.approx(cfg.loss.triplet * tri.item(), rel=1e-5)
    assert total.item() == pytest.approx(parts["id"].item() + parts["triplet"].item(), rel=1e-6)
    # each token's own cross-entropy is recorded beside the mean, detached and outside the sum
    assert parts["ce_global"].item() == pytest.approx(_smoothed_ce(out.logits, y, eps).item(), rel=1e-5)
    for i, g in enumerate(out.part_logits, 1):
        assert parts[f"ce_part{i}"].item() == pytest.approx(_smoothed_ce(g, y, eps).item(), rel=1e-5)
        assert not parts[f"ce_part{i}"].requires_grad
    assert sorted(parts) == sorted(["id", "triplet", "ce_global"] + [f"ce_part{i}" for i in range(1, P + 1)])
