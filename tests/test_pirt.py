"""Pirt: heat-map expansion and the human mask, IBN-a, the top-N local re-ranking against a loop, the
modules' shapes at 384 x 128, and a supervised epoch on tiny synthetic-occluded data."""
import pytest
import torch
import torchvision

from reidlab.evaluation.local_rerank import local_rerank
from reidlab.models import build_model
from reidlab.models.ibn import IBN
from reidlab.models.pirt import GROUPS, expanded_heatmaps, human_mask, pose_features


def test_heatmap_expansion_and_mask_on_a_hand_made_case():
    k = torch.zeros(1, 17, 3)
    k[0, 0] = torch.tensor([23.5, 23.5, 2.0])            # a visible nose at the centre of feature cell (1, 1)
    k[0, 15] = torch.tensor([7.5, 55.5, 1.0])            # a hidden left ankle at cell (3, 0)
    heat = expanded_heatmaps(k, (64, 32), (4, 2), sigma_cells=0.3)
    assert heat.shape == (1, 17, 4, 2)
    assert heat[0, 0].max() == pytest.approx(1.0, abs=1e-3) and heat[0, 15].max() == pytest.approx(0.5, abs=1e-3)
    assert heat[0, 1].max() == 0                          # not found: an empty map
    # eq. 1: the 3 x 3 max pooling spreads the nose's peak to its neighbours
    assert heat[0, 0, 0, 0] == pytest.approx(1.0, abs=1e-3) and heat[0, 0, 2, 1] == pytest.approx(1.0, abs=1e-3)
    assert heat[0, 0, 3, 0] < 0.05
    c = human_mask(heat)                                  # eq. 2: the maximum over the keypoints
    assert torch.equal(c[0, 0], heat[0].amax(0))
    f = torch.arange(8.0).view(1, 1, 4, 2).expand(1, 3, 4, 2)
    pose = pose_features(f, heat, tau=0.001)              # eq. 3: the mean over the cells above tau
    cells = heat[0, 0] > 0.001
    assert torch.allclose(pose[0, 0], f[0][:, cells].mean(1)) and torch.equal(pose[0, 1], torch.zeros(3))
    assert sorted(sum(GROUPS, [])) == list(range(17))


def test_ibn_a_is_where_the_paper_puts_it_and_loads_imagenet_layout_weights(tmp_path):
    tv = torchvision.models.resnet50(weights=None)
    torch.save(tv.state_dict(), tmp_path / "r50.pth")
    m = build_model("resnet50_ibn_a", pretrained=str(tmp_path / "r50.pth"), input_size=(64, 32))
    stages = [m.base[4], m.base[5], m.base[6], m.base[7]]
    for i, stage in enumerate(stages):
        for block in stage:
            assert isinstance(block.bn1, IBN) == (i < 3)                 # first norm of each block, stages 1-3
            assert isinstance(block.bn2, torch.nn.BatchNorm2d) and isinstance(block.bn3, torch.nn.BatchNorm2d)
    ibn = m.base[5][0].bn1
    assert ibn.IN.num_features == ibn.BN.num_features == 64               # half and half of 128
    assert torch.equal(ibn.BN.weight, tv.layer2[0].bn1.weight[64:])
    assert torch.equal(m.base[7][2].conv3.weight, tv.layer4[2].conv3.weight)
    # an IBN-a weight file in IBN-Net's release names loads in full, its InstanceNorm halves included
    torch.save(ibn_net_release(m), tmp_path / "ibn.pth")
    again = build_model("resnet50_ibn_a", pretrained=str(tmp_path / "ibn.pth"), input_size=(64, 32))
    assert torch.equal(again.base[4][0].bn1.IN.weight, m.base[4][0].bn1.IN.weight)
    assert torch.equal(again.base[6][5].bn1.IN.bias, m.base[6][5].bn1.IN.bias)


def ibn_net_release(m) -> dict:
    """The model's backbone in the names of IBN-Net's resnet50_ibn_a file (conv1, bn1, layer1.0.bn1.IN, ...),
    with every InstanceNorm given values of its own (their initialisation, 1 and 0, would match any model)."""
    with torch.no_grad():
        for name, p in m.base.named_parameters():
            if ".IN." in name:
                p.copy_(torch.randn_like(p))
    names = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
    out = {}
    for k, v in m.base.state_dict().items():
        first, _, rest = k.partition(".")
        out[f"{names[first]}.{rest}"] = v.clone()
    return out | {"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}


def test_ibn_a_imagenet_is_ibn_nets_own_file(monkeypatch):
    """pretrained=imagenet for IBN-a is IBN-Net's release (its InstanceNorms trained), not torchvision's plain
    ResNet-50; offline, an error that names the file and where it goes."""
    from reidlab.errors import ConfigError
    from reidlab.models import resnet
    source = build_model("resnet50_ibn_a", pretrained="none", input_size=(64, 32))
    release = ibn_net_release(source)
    asked = []

    def hub(url, **kw):
        asked.append(url)
        return release
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", hub)
    m = build_model("resnet50_ibn_a", pretrained="imagenet", input_size=(64, 32))
    assert asked == [resnet.IBN_A_URL] and asked[0].endswith("resnet50_ibn_a-d9d0bb7b.pth")
    assert torch.equal(m.base[5][1].bn1.IN.weight, source.base[5][1].bn1.IN.weight)
    assert torch.equal(m.base[5][1].bn1.BN.running_mean, source.base[5][1].bn1.BN.running_mean)

    def offline(url, **kw):
        raise OSError("no network")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError, match=r"(?s)resnet50_ibn_a-d9d0bb7b\.pth.*checkpoints.*model\.pretrained=none"):
        build_model("resnet50_ibn_a", pretrained="imagenet", input_size=(64, 32))


def loop_rerank(dist, qp, gp, qc, gc, n, mode):
    out = dist.clone() + 10
    for i in range(dist.shape[0]):
        top = sorted(range(dist.shape[1]), key=lambda j: (float(dist[i, j]), j))[:n]
        for j in top:
            d = [1 - float(qp[i, p] @ gp[j, p]) for p in range(qp.shape[1])]
            w = {"qg": [float(qc[i, p] * gc[j, p]) for p in range(len(d))],
                 "q": [float(qc[i, p]) for p in range(len(d))],
                 "g": [float(gc[j, p]) for p in range(len(d))], "none": [1.0] * len(d)}[mode]
            local = sum(a * b for a, b in zip(w, d)) / sum(w) if sum(w) > 0 else sum(d) / len(d)
            out[i, j] = dist[i, j] + local
    return out


@pytest.mark.parametrize("mode", ["qg", "q", "g", "none"])
def test_local_rerank_reorders_only_inside_the_top_n_and_equals_a_loop(mode):
    g = torch.Generator().manual_seed(0)
    Q, G, P, n = 5, 30, 3, 8
    dist = torch.rand(Q, G, generator=g)
    qp = torch.nn.functional.normalize(torch.randn(Q, P, 4, generator=g), dim=-1)
    gp = torch.nn.functional.normalize(torch.randn(G, P, 4, generator=g), dim=-1)
    qc, gc = torch.rand(Q, P, generator=g), torch.rand(G, P, generator=g)
    out = local_rerank(dist, qp, gp, qc, gc, n, mode)
    assert torch.allclose(out, loop_rerank(dist, qp, gp, qc, gc, n, mode), atol=1e-6)
    before, after = dist.argsort(1), out.argsort(1)
    for i in range(Q):
        assert set(after[i, :n].tolist()) == set(before[i, :n].tolist())     # the same top N ...
        assert torch.equal(after[i, n:], before[i, n:])                       # ... and the rest untouched


def test_module_shapes_at_384_by_128():
    torch.manual_seed(0)
    m = build_model("pirt", backbone="resnet50_ibn_a", pretrained="none", num_classes=7, input_size=(384, 128))
    x = torch.randn(2, 3, 384, 128)
    k = torch.rand(2, 17, 3) * torch.tensor([127.0, 383.0, 2.0])
    fmap = m.base.feature_map(x)
    assert fmap.shape == (2, 2048, 24, 8) and m.grid == (24, 8)
    heat = expanded_heatmaps(k, (384, 128), (24, 8))
    assert heat.shape == (2, 17, 24, 8) and human_mask(heat).shape == (2, 1, 24, 8)
    assert m.irm(fmap, human_mask(heat)).shape == (2, 2048, 24, 8)
    globals_, groups, scores, _ = m.parts(x, k)
    assert [g.shape for g in globals_] == [(2, 2048), (2, 2048)] and groups.shape == (2, 3, 2048)
    assert scores.shape == (2, 3) and m.confidence(groups, scores).shape == (2, 3)
    out = m(x, keypoints=k)
    assert len(out.loss_terms) == 5 and out.embedding.shape == (2, 2048)     # stripe, patch, 3 pose groups
    m.eval()
    assert m(x, keypoints=k).shape == (2, 4 * 2048)


def test_one_supervised_epoch_of_pirt_with_local_rerank(tmp_path, tiny_root):
    from tests.test_supervised import run_sup
    records = run_sup(tmp_path, tiny_root, "p", "pirt_occluded_duke", "--epochs", "1", "--dataset",
                      "synthetic-occluded", "--set", "model.args.backbone=resnet18", "--set", "model.pretrained=none",
                      "--set", "data.height=64", "--set", "data.width=32", "--set", "train.warmup_epochs=0",
                      "--set", "test.local_topn=20")
    last = records[-1]
    assert last["id"] > 0 and last["triplet"] > 0 and 0 <= last["mAP"] <= 1
    import main
    from reidlab.runs.config import build_config
    from reidlab.runs.checkpoint import load_checkpoint
    from reidlab.use.evaluate import evaluate_checkpoint
    ckpt = load_checkpoint(tmp_path / "p", "best.pt")                 # evaluate mode loads the test keypoints
    r = evaluate_checkpoint(build_config(base=ckpt["config"], overrides=[{"data": {"root": str(tiny_root)}}]), ckpt)
    assert r["mAP"] == pytest.approx(last["mAP"], abs=1e-5)
    assert main.main(["--mode", "extract", "--checkpoint", str(tmp_path / "p"), "--images", str(tmp_path),
                      "--output", str(tmp_path / "x.npz")]) == 2        # images alone are not enough for Pirt


def test_local_rerank_without_pose_features_stops_before_training(tmp_path, tiny_root, capsys):
    import main
    from tests.test_supervised import TINY_SUP
    args = [*TINY_SUP, "--config", "pirt_occluded_duke", "--data-root", str(tiny_root), "--output", str(tmp_path),
            "--name", "np", "--dataset", "synthetic-occluded", "--set", "model.args.backbone=resnet18",
            "--set", "model.pretrained=none", "--set", "data.height=64", "--set", "data.width=32",
            "--set", "model.args.pose=false", "--set", "model.args.intra=false", "--set", "model.args.inter=false"]
    assert main.main(args) == 2                                        # the recipe's test.local_rerank=true
    assert "model.args.pose=true" in capsys.readouterr().err
    assert not (tmp_path / "np" / "metrics.jsonl").exists() or not (tmp_path / "np" / "metrics.jsonl").read_text()
