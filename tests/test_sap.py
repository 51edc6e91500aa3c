"""SAP: the teacher targets of eqs. 2 and 4, the distillation losses against loops, supervision signal
dropout, eval without a teacher, and an epoch of each loop on tiny synthetic-occluded data."""
import math

import pytest
import torch

from reidlab.models import build_model
from reidlab.models.sap import distillation, part_frequencies, patch_labels, patch_target, signal_dropout


def test_targets_of_eqs_2_and_4_on_a_hand_made_parsing_map():
    # a 32 x 16 map, 16 x 16 patches with stride 16: two patches, top half head (1), bottom half background
    m = torch.zeros(1, 1, 32, 16, dtype=torch.uint8)
    m[0, 0, :16, :] = 1
    m[0, 0, 8:16, :8] = 2                                   # a quarter of the top patch is torso
    freq = part_frequencies(m, 3, 16, 16)
    assert freq.shape == (1, 2, 3)
    assert torch.allclose(freq[0], torch.tensor([[0.0, 0.75, 0.25], [1.0, 0.0, 0.0]]))
    lam = 10.0
    m_hat = patch_labels(freq, lam)
    e = [math.exp(lam * f) for f in (0.0, 0.75, 0.25)]
    assert torch.allclose(m_hat[0, 0], torch.tensor([x / sum(e) for x in e]))       # eq. 2
    a = patch_target(m_hat, background=0, gamma=0.5)
    assert a.shape == (1, 3, 3) and a[0, 0, 0] == 1
    assert a[0, 0, 1] == 1 and a[0, 1, 0] == 1                 # the top patch is foreground
    assert a[0, 0, 2] == 0 and a[0, 2, 0] == 0                 # the bottom one background
    assert torch.allclose(a[0, 1:, 1:], m_hat[0] @ m_hat[0].T)                      # eq. 4's patch block


def test_distillation_losses_equal_a_loop():
    g = torch.Generator().manual_seed(0)
    target, affinity = torch.rand(2, 4, 6, generator=g), torch.randn(2, 4, 6, generator=g)
    keep = torch.rand(2, 4, 6, generator=g) > 0.3
    keep[..., 0] = True
    for k in (None, keep):
        loop = []
        for b in range(2):
            for r in range(4):
                cols = [c for c in range(6) if k is None or k[b, r, c]]
                t = torch.tensor([target[b, r, c] for c in cols]).softmax(0)
                q = torch.tensor([affinity[b, r, c] for c in cols]).log_softmax(0)
                loop.append(float(-(t * q).sum()))
        assert distillation(target, affinity, k).item() == pytest.approx(sum(loop) / len(loop), rel=1e-5)


def test_signal_dropout_drops_at_most_p_drop_and_favours_redundant_patches():
    torch.manual_seed(0)
    B, N, rows = 64, 40, 7
    x = torch.randn(B, N, 16)
    x[:, :10] = x[:, :1] + 0.01 * torch.randn(B, 10, 16)        # ten near-copies: redundant patches
    keep = signal_dropout(x, rows, 1 / 8, torch.Generator().manual_seed(1))
    dropped = (~keep).sum(-1)
    assert (dropped == int(N / 8)).all()                        # exactly floor(p_drop N) per row, never more
    rate_redundant = (~keep[..., :10]).float().mean()
    rate_other = (~keep[..., 10:]).float().mean()
    assert rate_redundant > 2 * rate_other, (rate_redundant, rate_other)


def test_eval_needs_no_teacher_and_returns_one_normalised_feature():
    torch.manual_seed(0)
    m = build_model("sap", size="tiny", depth=2, pretrained="none", num_classes=5, input_size=(64, 32))
    assert m.teacher_targets == ("parsing",) and not m.test_teacher_targets
    m.eval()
    f = m(torch.randn(3, 3, 64, 32))
    assert f.shape == (3, sum(m.feature_splits)) and torch.allclose(f.norm(dim=1), torch.ones(3), atol=1e-5)
    maps = m.explain(torch.randn(3, 3, 64, 32))
    assert maps["student's parts"][0].shape == (3, *m.grid) and maps["student's parts"][0].max() < 7
    m.train()
    out = m(torch.randn(3, 3, 64, 32), parsing=torch.randint(0, 7, (3, 1, 64, 32), dtype=torch.uint8))
    assert set(out.aux_losses) == {"patch", "proxy"} and all(v > 0 for v in out.aux_losses.values())
    base = build_model("sap", size="tiny", depth=1, pretrained="none", input_size=(64, 32), semi_patch=False,
                       semi_proxy=False)
    assert base.teacher_targets == ()                          # Table 3's baseline needs no teacher


SAP = ["--set", "model.name=sap", "--set", "model.pretrained=none", "--set", "model.args.size=tiny",
       "--set", "model.args.depth=2", "--dataset", "synthetic-occluded", "--set", "teacher.noisy=true"]


def test_one_supervised_epoch_of_sap(tmp_path, tiny_root):
    from tests.test_supervised import run_sup
    records = run_sup(tmp_path, tiny_root, "s", "sap_occluded_duke", "--epochs", "1", *SAP,
                      "--set", "train.warmup_epochs=0")
    last = records[-1]
    assert last["patch"] > 0 and last["proxy"] > 0 and last["triplet"] > 0 and 0 <= last["mAP"] <= 1


def test_one_unsupervised_epoch_of_sap(tmp_path, tiny_root):
    from tests.test_unsup import run
    records = run(tmp_path, tiny_root, "su", "--epochs", "1", *SAP)
    assert records[-1]["num_clusters"] > 0 and records[-1]["patch"] > 0


def _stripes(batch: int, height: int, width: int, parts: int) -> torch.Tensor:
    """A parsing map of horizontal stripes 1..parts-1 (no background), B x 1 x H x W."""
    rows = torch.arange(height) * (parts - 1) // height + 1
    return rows[None, None, :, None].expand(batch, 1, height, width).float()


def test_attention_in_part_is_the_parts_share_for_a_uniform_head_and_rises_when_distilled():
    """A DA head with zero q / k weights attends uniformly: its mass inside the part is the part's share of the
    patches, for the patch heads and the proxies alike. A few steps on L_patch + L_proxy alone move both
    above that share, and the MSA heads are measured in the same units."""
    from reidlab.models.sap import SemiAttention, attention_in_part
    torch.manual_seed(0)
    m = build_model("sap", size="tiny", depth=1, pretrained="none", input_size=(64, 32), parts=4, p_drop=0.0)
    x, parsing = torch.randn(4, 3, 64, 32), _stripes(4, 64, 32, 4)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, SemiAttention):
                mod.da_qkv.weight.zero_()
                mod.da_qkv.bias.zero_()
        for layer in m.part_stage:
            for lin in (layer.da_q, layer.da_k):
                lin.weight.zero_()
                lin.bias.zero_()
    r = attention_in_part(m, x, parsing)
    assert r["da"] == pytest.approx(r["uniform"], abs=1e-4)
    assert r["proxy_da"] == pytest.approx(r["proxy_uniform"], abs=1e-4)
    assert 0 < r["uniform"] < 1 and 0 <= r["msa"] <= 1
    assert r["uniform"] < r["target"] < 1 and r["proxy_uniform"] < r["proxy_target"] < 1
    torch.manual_seed(0)
    m = build_model("sap", size="tiny", depth=1, pretrained="none", input_size=(64, 32), parts=4, p_drop=0.0).train()
    before = attention_in_part(m, x, parsing)
    assert m.training                                  # the measure leaves the mode as it found it
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(30):
        out = m(x, parsing=parsing)
        loss = out.aux_losses["patch"] + out.aux_losses["proxy"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = attention_in_part(m, x, parsing)
    assert after["da"] > before["da"] + 0.1 and after["da"] > after["uniform"] + 0.1
    assert after["proxy_da"] > after["proxy_uniform"] + 0.05


def test_attention_in_part_of_the_baseline_has_msa_only():
    from reidlab.models.sap import attention_in_part
    m = build_model("sap", size="tiny", depth=2, pretrained="none", input_size=(64, 32), parts=4, semi_patch=False,
                    semi_proxy=False)
    r = attention_in_part(m, torch.randn(2, 3, 64, 32), _stripes(2, 64, 32, 4))
    assert "da" not in r and {"uniform", "target", "msa", "proxy_uniform", "proxy_target", "proxy_da"} <= set(r)


def test_attention_in_part_target_share_by_hand():
    """Stripes of 16 rows under 16 x 16 patches without overlap: every window is one part, so every entry of
    eq. 4's patch block is 0 or 1 (up to lambda's softmax) and a row's target mass in its part of share f is
    e f / (e f + 1 - f); a uniform head has f."""
    from reidlab.models.sap import attention_in_part
    m = build_model("sap", size="tiny", depth=1, pretrained="none", input_size=(64, 32), parts=5, overlap=0)
    r = attention_in_part(m, torch.randn(2, 3, 64, 32), _stripes(2, 64, 32, 5))
    f = 0.25                                            # 4 stripes of 2 x 1 patches of the 4 x 2 grid
    assert r["uniform"] == pytest.approx(f, abs=1e-4)
    assert r["target"] == pytest.approx(math.e * f / (math.e * f + 1 - f), abs=1e-3)
    assert r["proxy_uniform"] == pytest.approx(f, abs=1e-4)
