"""PCB (Sun et al., ECCV 2018, section 3.1): the stripes are torch's adaptive pooling bounds, each stripe's
vector comes from its own rows only, the loss is one cross-entropy per stripe plus the triplet on their
concatenation, a model with more stripes than rows stops before a run folder exists, and PCB trains in Bag of
Tricks' recipe with only the model changed."""
import pytest
import torch
import torch.nn.functional as F

from reidlab.models import build_model
from reidlab.models.pcb import stripe_bounds
from reidlab.runs.config import build_config
from reidlab.supervised.losses import batch_hard_triplet, label_smoothed_cross_entropy
from reidlab.supervised.trainer import reid_loss


@pytest.mark.parametrize("rows", range(1, 25))
def test_the_stripes_are_adaptive_pooling_bounds(rows):
    t = torch.randn(2, 3, rows, 5, dtype=torch.float64)
    for p in range(1, rows + 1):
        ours = torch.stack([t[:, :, a:b].mean((2, 3)) for a, b in stripe_bounds(rows, p)], 2)
        assert torch.allclose(ours, F.adaptive_avg_pool2d(t, (p, 1)).flatten(2)), (rows, p)
        if rows % p == 0:                                   # equal heights, no overlap: the paper's 24 rows / 6
            assert all(b - a == rows // p for a, b in stripe_bounds(rows, p))


@pytest.mark.parametrize("pooling", ["avg", "max", "gem"])
def test_each_stripe_vector_comes_from_its_own_rows(pooling):
    torch.manual_seed(0)
    m = build_model("pcb", backbone="resnet18", pretrained="none", stripes=4, reduce=0, pooling=pooling,
                    num_classes=3, input_size=(128, 64)).eval()
    x = torch.randn(2, 3, 128, 64)
    fmap = m.base.feature_map(x)
    assert fmap.shape[2] == 8
    with torch.no_grad():
        h = m.stripe_features(x)
        g = [m.stripe_pool(fmap[:, :, 2 * i:2 * i + 2]) for i in range(4)]    # 8 rows, 2 per stripe
        for i in range(4):
            assert torch.allclose(h[i], g[i], atol=1e-6)
        changed = fmap.clone()
        changed[:, :, 2:4] += 5.0                                              # stripe 2's rows only
        moved = [m.stripe_pool(changed[:, :, a:b]) for a, b in stripe_bounds(8, 4)]
    assert [not torch.allclose(a, b) for a, b in zip(g, moved)] == [False, True, False, False]


def test_the_loss_is_a_cross_entropy_per_stripe_and_the_triplet_on_their_concatenation():
    torch.manual_seed(0)
    m = build_model("pcb", backbone="resnet18", pretrained="none", stripes=4, num_classes=5, input_size=(64, 32))
    x, y = torch.randn(8, 3, 64, 32), torch.arange(8) % 4
    out = m(x)
    h = m.stripe_features(x)
    assert len(h) == 4 and all(v.shape == (8, 256) for v in h) and out.features.shape == (8, m.feature_dim)
    cfg = build_config("bot_market1501", [{"loss": {"center": 0.0}}])
    total, parts = reid_loss(out, y, cfg)
    ce = sum(label_smoothed_cross_entropy(c(v), y, cfg.loss.label_smoothing) for c, v in zip(m.classifiers, h))
    tri = batch_hard_triplet(torch.cat(h, 1), y, cfg.loss.margin)
    assert parts["id"].item() == pytest.approx(cfg.loss.id * ce.item(), rel=1e-5)
    assert parts["triplet"].item() == pytest.approx(cfg.loss.triplet * tri.item(), rel=1e-5)
    assert total.item() == pytest.approx(parts["id"].item() + parts["triplet"].item(), rel=1e-5)
    m.eval()
    with torch.no_grad():
        f = m(x)
    pieces = f.split(m.feature_splits, dim=1)
    assert len(pieces) == 4 and all(torch.allclose(p.norm(dim=1), torch.full((8,), 0.5)) for p in pieces)


def test_the_paper_shapes_at_384_by_128():
    m = build_model("pcb", pretrained="none", num_classes=7, input_size=(384, 128))
    assert m.stripes == 6 and m.feature_splits == (256,) * 6
    assert m.base.feature_map(torch.randn(1, 3, 384, 128)).shape == (1, 2048, 24, 8)
    assert stripe_bounds(24, 6) == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 24)]


def test_too_many_stripes_or_a_bad_value_stops_before_a_run_folder(tmp_path, tiny_root, main_in_process):
    from tests.test_supervised import TINY_SUP
    base = [*TINY_SUP, "--config", "bot_market1501", "--data-root", str(tiny_root), "--output", str(tmp_path),
            "--set", "model.name=pcb", "--set", "model.args.backbone=resnet18"]
    code, _, err = main_in_process(*base, "--name", "six")           # 6 stripes on a 32-pixel-high input: 2 rows
    assert code == 2 and "at least 6 rows" in err and "model.args.stripes" in err
    code, _, err = main_in_process(*base, "--name", "zero", "--set", "model.args.stripes=0")
    assert code == 2 and "model.args.stripes" in err
    code, _, err = main_in_process(*base, "--name", "arch", "--set", "model.args.stripes=2",
                                   "--set", "model.args.backbone=vgg16")
    assert code == 2 and "model.args.backbone" in err
    # PCB has no global feature: ranking by its first piece (the top stripe) is refused, not passed off as global
    code, _, err = main_in_process(*base, "--name", "global", "--set", "model.args.stripes=2",
                                   "--set", "test.feature=global")
    assert code == 2 and "has none" in err and "test.feature=all" in err
    assert not any((tmp_path / n).exists() for n in ("six", "zero", "arch", "global"))


def test_pcb_trains_in_bag_of_tricks_recipe_and_evaluates_on_the_occluded_split(tmp_path, tiny_root):
    from tests.test_supervised import run_sup
    records = run_sup(tmp_path, tiny_root, "pcb", "bot_market1501", "--epochs", "1", "--set", "model.name=pcb",
                      "--set", "model.args.backbone=resnet18", "--set", "model.args.stripes=2",
                      "--set", "data.height=64", "--set", "data.width=32")
    last = records[-1]
    assert last["id"] > 0 and last["triplet"] > 0 and last["center"] > 0 and 0 <= last["mAP"] <= 1
    from reidlab.runs.checkpoint import load_checkpoint
    from reidlab.use.evaluate import evaluate_checkpoint
    ckpt = load_checkpoint(tmp_path / "pcb", "best.pt")
    r = evaluate_checkpoint(build_config(base=ckpt["config"], overrides=[{"data": {"root": str(tiny_root)}}]), ckpt)
    assert r["mAP"] == pytest.approx(last["mAP"], abs=1e-5)
    occ = evaluate_checkpoint(build_config(base=ckpt["config"], overrides=[
        {"data": {"root": str(tiny_root), "test_dataset": "synthetic-occluded"}}]), ckpt)
    assert 0 <= occ["mAP"] <= 1


def test_explain_shows_the_stripes_on_the_feature_grid():
    m = build_model("pcb", backbone="resnet18", pretrained="none", stripes=4, num_classes=3, input_size=(128, 64))
    m.eval()
    maps = m.explain(torch.randn(2, 3, 128, 64))
    act, bands = maps["activation"][0], maps["4 stripes"][0]
    assert act.shape == bands.shape == (2, 8, 4)
    rows = bands[0, :, 0]
    assert torch.equal(rows, rows.sort().values) and len(rows.unique()) == 4     # 4 bands, top to bottom
    assert all(torch.equal(bands[0, a:b], bands[0, a:a + 1].expand(b - a, 4)) for a, b in stripe_bounds(8, 4))


@pytest.mark.parametrize("height,rows", [(40, 3), (50, 4), (64, 4), (72, 5)])
def test_as_many_stripes_as_the_map_has_rows_are_allowed(height, rows):
    """A 40-pixel input gives a 3-row map (40 -> 20 -> 10 -> 5 -> 3): 3 stripes are valid, 4 are refused with the
    map's true row count (an earlier version counted 40 // 16 = 2 and refused 3)."""
    from reidlab.errors import ConfigError
    m = build_model("pcb", backbone="resnet18", stripes=rows, pretrained="none", input_size=(height, 24))
    m.eval()
    assert m(torch.rand(2, 3, height, 24)).shape == (2, rows * 256)
    with pytest.raises(ConfigError, match=f"gives {rows} \\(last stride 1\\)"):
        build_model("pcb", backbone="resnet18", stripes=rows + 1, pretrained="none", input_size=(height, 24))
