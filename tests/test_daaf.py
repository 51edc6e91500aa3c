"""DAAF: teacher targets follow the image, the branches' shapes and losses, eval mode = base network."""
import pytest
import torch

from reidlab.data import build_dataset
from reidlab.data.annotations import FLIP_PERMUTATION, TeacherNoise, degrade, load_teacher
from reidlab.data.augment import augment_with_teacher
from reidlab.errors import DatasetError
from reidlab.models import build_model
from reidlab.models.daaf import GROUPINGS, gaussian_heatmaps
from reidlab.models.resnet import ReIDResNet


def dotted_batch(B=6, H=32, W=16, seed=0):
    """Images with one bright pixel per keypoint (channel 0) and the mask drawn into channel 1."""
    g = torch.Generator().manual_seed(seed)
    kps = torch.zeros(B, 17, 3)
    for b in range(B):                                         # 17 distinct pixels away from the border
        cells = torch.randperm((H - 4) * (W - 4), generator=g)[:17]
        kps[b, :, 0], kps[b, :, 1] = (cells % (W - 4) + 2).float(), (cells // (W - 4) + 2).float()
    kps[..., 2] = 2
    kps[:, 3, 2] = 0                                           # one keypoint the teacher did not find
    mask = (torch.rand(B, 1, H, W, generator=g) < 0.3).to(torch.uint8)
    img = torch.zeros(B, 3, H, W, dtype=torch.uint8)
    img[:, 1] = mask[:, 0] * 255
    for b in range(B):
        for k in range(17):
            x, y = int(kps[b, k, 0]), int(kps[b, k, 1])
            img[b, 0, y, x] = 200 + k                         # which keypoint is encoded in the value
    return img, {"mask": mask, "keypoints": kps}


def test_targets_follow_flip_and_crop():
    img, teacher = dotted_batch()
    gen = torch.Generator().manual_seed(0)           # flips 3 of the 6 images
    x, t = augment_with_teacher(img, teacher, gen, flip=0.5, pad=3, erasing=0.0)
    std, mean = 0.229, 0.485
    red = ((x[:, 0] * std + mean) * 255).round()               # back to 0..255
    green = x[:, 1] * 0.224 + 0.456 > 0.5
    assert torch.equal(green, t["mask"][:, 0].bool())          # the mask moved exactly as the image
    flipped = 0
    for b in range(x.shape[0]):
        found = [k for k in range(17) if t["keypoints"][b, k, 2] > 0]
        dots = [int(red[b, int(t["keypoints"][b, k, 1]), int(t["keypoints"][b, k, 0])]) for k in found]
        # each keypoint sits on its own dot; in a flipped image on its mirror partner's (left <-> right)
        assert dots == [200 + k for k in found] or dots == [200 + FLIP_PERMUTATION[k] for k in found]
        was_flipped = dots != [200 + k for k in found]
        flipped += was_flipped
        assert t["keypoints"][b, 4 if was_flipped else 3, 2] == 0   # the one not found stays not found
    assert 0 < flipped < x.shape[0]


def test_cropped_out_keypoint_is_marked_not_found():
    img, teacher = dotted_batch(B=1)
    teacher["keypoints"][0, 0, :2] = torch.tensor([0.0, 0.0])
    for seed in range(20):                                      # some crop shifts the corner out
        _, t = augment_with_teacher(img, teacher, torch.Generator().manual_seed(seed), flip=0, pad=3, erasing=0)
        if t["keypoints"][0, 0, 0] < -0.5 or t["keypoints"][0, 0, 1] < -0.5:
            assert t["keypoints"][0, 0, 2] == 0
            return
    pytest.fail("no crop moved the keypoint out")


def test_erasing_changes_the_image_only():
    img, teacher = dotted_batch()
    _, t = augment_with_teacher(img, teacher, torch.Generator().manual_seed(0), flip=0, pad=0, erasing=1.0)
    assert torch.equal(t["mask"], teacher["mask"]) and torch.equal(t["keypoints"], teacher["keypoints"])


def test_gaussian_heatmap_peaks_at_the_keypoint_and_scales():
    k = torch.tensor([[[10.0, 20.0, 2.0], [3.0, 3.0, 0.0]]])
    h = gaussian_heatmaps(k, (32, 16), (32, 16), sigma=1.5)
    assert h.shape == (1, 2, 32, 16) and h[0, 0, 20, 10] == 1.0 and h[0, 0].argmax() == 20 * 16 + 10
    assert h[0, 1].abs().sum() == 0                             # v = 0: empty target
    half = gaussian_heatmaps(k, (32, 16), (16, 8), sigma=1.5)
    assert half[0, 0].argmax() in (10 * 8 + 4, 10 * 8 + 5)


@pytest.mark.parametrize("arch,channels", [("resnet50", 341), ("resnet18", 85)])
def test_daaf_branches_follow_table_1(arch, channels):
    m = build_model("daaf", base=arch, pretrained="none", num_classes=5, input_size=(64, 32))
    assert m.pab.group_channels == channels and len(m.pab.heads) == 6
    assert [h.out_channels for h in m.pab.heads] == [len(g) for g in GROUPINGS["fig4c"]]
    assert m.hab.decoder[0].in_channels == m.base.feat_dim and m.hab.out.out_channels == 1
    x = torch.randn(2, 3, 64, 32)
    low = m.base.base[:5](x)
    assert m.hab(low).shape == (2, 1, 16, 8)                     # 2 deconvolutions (default): a quarter
    assert m.pab(m.base.feature_map(x)).shape == (2, 17, 16, 8)
    table_1 = build_model("daaf", base=arch, pretrained="none", input_size=(64, 32), decoder_layers=4)
    assert table_1.hab(low).shape == (2, 1, 64, 32)              # Table 1's 4: back to the input size


def test_daaf_eval_is_the_base_network():
    torch.manual_seed(0)
    m = build_model("daaf", base="resnet18", pretrained="none", num_classes=5, input_size=(64, 32))
    plain = ReIDResNet("resnet18", pretrained="none", num_classes=5, input_size=(64, 32))
    n = sum(p.numel() for p in m.inference_model().parameters())
    assert n == sum(p.numel() for p in plain.parameters())
    assert sum(p.numel() for p in m.parameters()) > 2 * n          # the branches exist in training only
    plain.load_state_dict(m.inference_model().state_dict())
    x = torch.randn(3, 3, 64, 32)
    m.eval(), plain.eval()
    assert torch.equal(m(x), plain(x))                              # exactly the base's feature


def test_daaf_training_losses_and_missing_targets():
    m = build_model("daaf", base="resnet18", pretrained="none", num_classes=5, input_size=(64, 32),
                    lambda_h=1.0, lambda_p=1.0)
    img, teacher = dotted_batch(B=4, H=64, W=32)
    x, t = augment_with_teacher(img, teacher, torch.Generator().manual_seed(0), 0.5, 4, 0.5)
    out = m(x, **t)
    assert set(out.aux_losses) == {"hab", "pab"} and out.logits.shape == (4, 5)
    sum(out.aux_losses.values()).backward()
    assert m.hab.out.weight.grad is not None and m.base.base[0].weight.grad is not None
    assert m.base.base[7][0].conv1.weight.grad.abs().sum() > 0      # PAB reaches the backbone's last block
    with pytest.raises(ValueError, match="keypoints"):
        m(x, mask=t["mask"])
    only_hab = build_model("daaf", base="resnet18", pretrained="none", pab=False, input_size=(64, 32))
    assert only_hab.teacher_targets == ("mask",)


def test_teacher_annotations_of_the_synthetic_benchmark(tiny_root):
    ds = build_dataset("synthetic", tiny_root, synthetic_size="tiny")
    t = load_teacher(ds, ds.train[:20], 64, 32)
    assert t["mask"].shape == (20, 1, 64, 32) and set(t["mask"].unique().tolist()) <= {0, 1}
    assert t["keypoints"].shape == (20, 17, 3)
    seen = t["keypoints"][..., 2] > 0
    assert seen.any()
    kx, ky = t["keypoints"][..., 0][seen], t["keypoints"][..., 1][seen]
    assert (kx > -1).all() and (kx < 33).all() and (ky > -1).all() and (ky < 65).all()
    # keypoints of a visible person mostly fall on its mask
    on = [int(t["mask"][i, 0, min(max(round(y), 0), 63), min(max(round(x), 0), 31)])
          for i in range(20) for x, y, v in t["keypoints"][i].tolist() if v > 0]
    assert sum(on) > 0.7 * len(on)


def test_noisy_teacher_degrades_deterministically(tiny_root):
    ds = build_dataset("synthetic", tiny_root, synthetic_size="tiny")
    clean = load_teacher(ds, ds.train[:30], 64, 32)
    noisy = degrade(clean, TeacherNoise(seed=1))
    again = degrade(clean, TeacherNoise(seed=1))
    assert torch.equal(noisy["mask"], again["mask"]) and torch.equal(noisy["keypoints"], again["keypoints"])
    changed = (noisy["mask"] != clean["mask"]).flatten(1).any(1).float().mean()
    assert changed > 0.5
    dropped = (clean["keypoints"][..., 2] > 0) & (noisy["keypoints"][..., 2] == 0)
    assert 0.05 < dropped.float().sum() / (clean["keypoints"][..., 2] > 0).sum() < 0.3
    assert not torch.equal(noisy["keypoints"][..., :2], clean["keypoints"][..., :2])


def test_missing_annotations_are_a_clear_error(tiny_root, tmp_path):
    ds = build_dataset("synthetic", tiny_root, synthetic_size="tiny")
    ds.annotations = None
    with pytest.raises(DatasetError, match="annotations"):
        load_teacher(ds, ds.train[:2], 32, 16)


def test_authors_loss_form_is_mse_with_their_weights_and_linear_decoder():
    m = build_model("daaf", base="resnet18", pretrained="none", num_classes=5, input_size=(64, 32),
                    loss_form="authors", decoder_layers=4)                # the released code's depth
    assert (m.lambda_h, m.lambda_p) == (10.0, 65.0)
    deconvs = [x for x in m.hab.decoder if isinstance(x, torch.nn.ConvTranspose2d)]
    assert len(deconvs) == 4 and len(m.hab.decoder) == 4                 # linear: nothing between them
    assert all(d.kernel_size == (2, 2) and d.stride == (2, 2) for d in deconvs)
    img, teacher = dotted_batch(B=4, H=64, W=32)
    x, t = augment_with_teacher(img, teacher, torch.Generator().manual_seed(0), 0.5, 4, 0.5)
    out = m(x, **t)
    z = m.hab(m.base.base[:5](x))
    assert z.shape == (4, 1, 64, 32)
    mse = torch.nn.functional.mse_loss(z, t["mask"].float()).item()
    assert out.aux_losses["hab"].item() == pytest.approx(10.0 * mse, rel=1e-4)
    from reidlab.errors import ConfigError
    with pytest.raises(ConfigError, match="loss_form"):
        build_model("daaf", base="resnet18", pretrained="none", loss_form="mine")


@pytest.mark.parametrize("decoder,layers", [("authors", 4), ("paper", 2), ("authors", 1)])
def test_the_decoder_is_an_option_of_its_own(decoder, layers):
    """model.args.decoder: the paper's Table 1 decoder or the authors' lighter linear one, with either loss form;
    model.args.decoder_layers: fewer doublings, the targets resized to the smaller maps."""
    from reidlab.errors import ConfigError
    m = build_model("daaf", base="resnet18", pretrained="none", num_classes=5, input_size=(64, 32),
                    decoder=decoder, decoder_layers=layers)
    assert (m.lambda_h, m.lambda_p) == (0.003, 0.003)                      # the paper's loss form stays
    deconvs = [x for x in m.pab.decoder if isinstance(x, torch.nn.ConvTranspose2d)]
    assert len(deconvs) == layers and all(d.kernel_size == ((2, 2) if decoder == "authors" else (3, 3))
                                          for d in deconvs)
    img, teacher = dotted_batch(B=4, H=64, W=32)
    x, t = augment_with_teacher(img, teacher, torch.Generator().manual_seed(0), 0.5, 4, 0.5)
    out = m(x, **t)
    side = 2 ** layers
    assert m.hab(m.base.base[:5](x)).shape[-2:] == (4 * side, 2 * side)    # a 4 x 2 map, doubled `layers` times
    assert all(torch.isfinite(v) for v in out.aux_losses.values()) and set(out.aux_losses) == {"hab", "pab"}
    for bad in ({"decoder": "fast"}, {"decoder_layers": 0}, {"decoder_layers": 5}):
        with pytest.raises(ConfigError, match="decoder"):
            build_model("daaf", base="resnet18", pretrained="none", input_size=(64, 32), **bad)
