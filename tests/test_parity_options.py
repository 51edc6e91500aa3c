"""The options that make the loop's inputs those of Cluster Contrast's code (issue: the loop must learn as
Cluster Contrast's own code does): random erasing that re-draws its box, bicubic store resize, the
sampler's end of pass and replacement rule."""
import math
import random

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from reidlab.data.augment import erasing_boxes, normalise, train_augment
from reidlab.data.samplers import PseudoLabelSampler


def published_erasing(H: int, W: int, rng: random.Random, p: float = 0.5):
    """The reference: Zhong et al.'s per-image RandomErasing as the re-ID codebases run it, written out here
    (one image at a time, up to 100 attempts, the box only where it fits strictly); (h, w) or None."""
    if rng.uniform(0, 1) >= p:
        return None
    for _ in range(100):
        area = rng.uniform(0.02, 0.4) * H * W
        aspect = rng.uniform(0.3, 1 / 0.3)
        h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if w < W and h < H:
            return h, w
    return None


@pytest.mark.parametrize("size", [(64, 32), (256, 128), (16, 8), (3, 2)])
def test_redrawn_erasing_box_always_fits(size):
    H, W = size
    erase, y0, x0, h, w = erasing_boxes(20000, H, W, torch.Generator().manual_seed(0), "cpu", 1.0, "redraw")
    h, w, y0, x0 = h[erase], w[erase], y0[erase], x0[erase]
    assert bool(((h < H) & (w < W) & (y0 >= 0) & (x0 >= 0) & (y0 + h <= H) & (x0 + w <= W)).all())
    assert erase.float().mean() > 0.95 or H < 8            # a box nearly always fits within 100 attempts


def test_redrawn_erasing_follows_the_published_distribution():
    """Two-sample tests of the vectorised draw against the per-image reference at 64 x 32: the erased
    fraction, the box height, width and aspect; the earlier clipping rule fails the same tests."""
    H, W, n = 64, 32, 20000
    rng = random.Random(1)
    ref = [published_erasing(H, W, rng) for _ in range(n)]
    ref_boxes = np.array([b for b in ref if b is not None], dtype=float)

    def ours(rule):
        erase, _, _, h, w = erasing_boxes(n, H, W, torch.Generator().manual_seed(2), "cpu", 0.5, rule)
        return erase.float().mean().item(), torch.stack([h[erase], w[erase]], 1).numpy()

    rate, boxes = ours("redraw")
    ref_rate = len(ref_boxes) / n
    assert abs(rate - ref_rate) < 4 * math.sqrt(2 * 0.25 / n)             # 4 standard deviations
    for col in (0, 1):
        assert stats.ks_2samp(boxes[:, col], ref_boxes[:, col]).pvalue > 1e-3
    assert stats.ks_2samp(boxes[:, 0] / boxes[:, 1], ref_boxes[:, 0] / ref_boxes[:, 1]).pvalue > 1e-3
    tall = (boxes[:, 0] > boxes[:, 1]).mean()
    assert 0.78 < tall < 0.84 and (boxes[:, 1] < W).all()           # tall boxes ~81%, never full width
    _, clipped = ours("clip")
    assert stats.ks_2samp(clipped[:, 0] / clipped[:, 1], ref_boxes[:, 0] / ref_boxes[:, 1]).pvalue < 1e-6
    assert (clipped[:, 1] == W).mean() > 0.1                         # the earlier rule's full-width bands


def test_erasing_fills_exactly_the_box_with_the_mean():
    x = torch.randint(0, 255, (64, 3, 64, 32), dtype=torch.uint8)
    gen_args = dict(flip=0, pad=0, erasing=1.0, erasing_box="redraw")
    out = train_augment(x, torch.Generator().manual_seed(5), **gen_args)
    erase, y0, x0, h, w = erasing_boxes(64, 64, 32, torch.Generator().manual_seed(5), "cpu", 1.0, "redraw")
    fill = torch.tensor((0.485, 0.456, 0.406)).view(3, 1, 1)
    for i in range(64):
        a, b, hh, ww = int(y0[i]), int(x0[i]), int(h[i]), int(w[i])
        assert erase[i] and torch.allclose(out[i, :, a:a + hh, b:b + ww], fill.expand(3, hh, ww))
        outside = torch.ones(64, 32, dtype=torch.bool)
        outside[a:a + hh, b:b + ww] = False
        assert torch.allclose(out[i][:, outside], normalise(x[i:i + 1])[0][:, outside])


def test_clip_rule_keeps_the_earlier_random_stream():
    """``clip`` is the earlier behaviour draw for draw: the same generator gives the same batch as an
    inline copy of the earlier formula."""
    B, H, W = 32, 64, 32
    erase, y0, x0, h, w = erasing_boxes(B, H, W, torch.Generator().manual_seed(9), "cpu", 0.5, "clip")
    g = torch.Generator().manual_seed(9)
    area = torch.rand(B, generator=g) * (0.4 - 0.02) + 0.02
    aspect = torch.exp(torch.rand(B, generator=g) * (torch.log(torch.tensor(1 / 0.3)) * 2)
                       + torch.log(torch.tensor(0.3)))
    eh = torch.sqrt(area * H * W * aspect).round().clamp(1, H)
    ew = torch.sqrt(area * H * W / aspect).round().clamp(1, W)
    ey = (torch.rand(B, generator=g) * (H - eh + 1)).floor()
    ex = (torch.rand(B, generator=g) * (W - ew + 1)).floor()
    ee = torch.rand(B, generator=g) < 0.5
    for a, b in ((erase, ee), (y0, ey), (x0, ex), (h, eh), (w, ew)):
        assert torch.equal(a, b)


def test_bicubic_store_resize_matches_pil(tmp_path):
    """``data.resize: bicubic`` is PIL's bicubic resize, the one torchvision's Resize(interpolation=3) calls on a
    PIL image (Cluster Contrast's transform), and not the bilinear one; the disk store keeps them apart."""
    from torchvision import transforms as T

    from reidlab.data.images import decode_image, load_images
    from reidlab.data.store import build_disk_store
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (128 + i, 64, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    for p in paths:
        im = Image.open(p).convert("RGB")
        pil = np.array(im.resize((32, 64), Image.BICUBIC))
        tv = np.array(T.Resize((64, 32), interpolation=T.InterpolationMode.BICUBIC)(im))
        ours = decode_image(p, 64, 32, "bicubic")
        assert np.array_equal(ours, pil) and np.array_equal(ours, tv)
        assert not np.array_equal(ours, decode_image(p, 64, 32, "bilinear"))
    bicubic = build_disk_store(paths, 64, 32, tmp_path / "store", "train", 1, "bicubic")
    bilinear = build_disk_store(paths, 64, 32, tmp_path / "store", "train", 1, "bilinear")
    assert bicubic.path != bilinear.path
    assert torch.equal(bicubic[:], load_images(paths, 64, 32, 1, resize="bicubic"))
    assert torch.equal(bilinear[:], load_images(paths, 64, 32, 1))


def clusters(sizes, cams_per_cluster=None):
    labels = np.concatenate([np.full(n, y) for y, n in enumerate(sizes)])
    cams = np.concatenate([np.arange(n) % (cams_per_cluster or n) for n in sizes])
    return labels, cams


@pytest.mark.parametrize("n_ids", [10, 13, 16])
def test_dropped_pass_end_gives_whole_passes(n_ids):
    """``pass_end: drop``: each pass holds floor(n / P) batches of distinct clusters, no cluster twice in a
    pass, and the next pass starts a new batch."""
    P, K = 4, 3
    labels, cams = clusters([5] * n_ids)
    s = PseudoLabelSampler(labels, cams, P, K, np.random.default_rng(0), pass_end="drop")
    per_pass = n_ids // P
    batches = [labels[b].reshape(P, K)[:, 0] for b in s.batches(per_pass * 6)]
    for start in range(0, len(batches), per_pass):
        ids = np.concatenate(batches[start:start + per_pass])
        assert len(ids) == len(set(ids.tolist())) == per_pass * P
    dropped = [set(range(n_ids)) - set(np.concatenate(batches[i:i + per_pass]).tolist())
               for i in range(0, len(batches), per_pass)]
    assert all(len(d) == n_ids % P for d in dropped)
    if n_ids % P:
        assert len({frozenset(d) for d in dropped}) > 1         # a different tail each pass


def test_carried_pass_end_uses_every_cluster():
    """``pass_end: carry``: the clusters left at a pass's end open the next batch, so over n / P batches
    (n a multiple of P is not needed) no cluster is left out more than one pass."""
    P, K, n_ids = 4, 3, 10
    labels, cams = clusters([5] * n_ids)
    s = PseudoLabelSampler(labels, cams, P, K, np.random.default_rng(0), pass_end="carry")
    batches = [labels[b].reshape(P, K)[:, 0] for b in s.batches(25)]           # 100 = 10 passes of 10
    assert all(len(set(b.tolist())) == P for b in batches)
    counts = np.bincount(np.concatenate(batches), minlength=n_ids)
    assert counts.min() >= 9 and counts.max() <= 11


def test_fewer_clusters_than_p_when_dropping():
    labels, cams = clusters([4, 4, 4])
    s = PseudoLabelSampler(labels, cams, 8, 4, np.random.default_rng(0), pass_end="drop")
    for b in s.batches(5):
        assert sorted(set(labels[b].tolist())) == [0, 1, 2] and len(b) == 12


@pytest.mark.parametrize("rule", ["k", "k-1"])
def test_replacement_threshold(rule):
    """A cluster whose anchor has exactly K-1 members on other cameras: ``k-1`` takes each once, ``k``
    (Cluster Contrast's test) draws them with replacement; with K or more, both draw without."""
    K = 4
    labels = np.zeros(4, dtype=int)
    cams = np.arange(4)                               # every member on its own camera: K-1 others per anchor
    s = PseudoLabelSampler(labels, cams, 1, K, np.random.default_rng(0), replace_below=rule)
    repeats = [len(set(b)) < K for b in s.batches(200)]
    assert any(repeats) == (rule == "k")
    if rule == "k":
        # with replacement, 3 draws from 3 give 3 distinct members with probability 3! / 3^3 = 2/9
        assert abs(np.mean(repeats) - 7 / 9) < 0.1
    big = PseudoLabelSampler(np.zeros(5, dtype=int), np.arange(5), 1, K, np.random.default_rng(1), replace_below=rule)
    assert all(len(set(b)) == K for b in big.batches(200))


def test_config_refuses_unknown_rules():
    from reidlab.errors import ConfigError
    from reidlab.runs.config import build_config
    for key in ("aug.erasing_box=fit", "data.resize=lanczos", "train.pass_end=keep", "train.replace_below=2"):
        k, v = key.split("=")
        section, name = k.split(".")
        with pytest.raises(ConfigError, match=k):
            build_config(overrides=[{section: {name: v}}])


def test_the_options_reach_the_loop(tmp_path, tiny_root):
    """A tiny run with each rule of both kinds: the bicubic run reads a bicubic store, and the two runs train
    on different batches (the losses differ) from the same seed."""
    from tests.test_unsup import run
    earlier = ["aug.erasing_box=clip", "data.resize=bilinear", "train.pass_end=carry", "train.replace_below=k-1"]
    published = ["aug.erasing_box=redraw", "data.resize=bicubic", "train.pass_end=drop", "train.replace_below=k"]
    losses = {}
    for name, rules in (("earlier", earlier), ("published", published)):
        sets = [x for r in [*rules, "data.memory_budget=0.000001"] for x in ("--set", r)]
        records = run(tmp_path, tiny_root, name, "--epochs", "1", *sets)
        losses[name] = records[-1]["loss"]
        assert records[-1]["mAP"] > 0
    assert losses["earlier"] != losses["published"]
    store = tiny_root / "synthetic-tiny" / ".store"
    assert list(store.glob("train-32x16-bicubic-*.u8")) and list(store.glob("train-32x16-[0-9a-f]*.u8"))


def test_torchvisions_erasing_rule_follows_torchvision():
    """aug.erasing_box=torchvision (3C's code uses transforms.RandomErasing) against torchvision's own draws at
    64 x 32: the share of boxes that fit in 10 attempts, and the box sides, by two-sample tests."""
    import torchvision.transforms as T
    H, W, n = 64, 32, 20000
    torch.manual_seed(3)
    img = torch.zeros(3, H, W)
    ref = [T.RandomErasing.get_params(img, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=[0.0]) for _ in range(n)]
    ref_boxes = np.array([(h, w) for _, _, h, w, _ in ref if h < H], dtype=float)
    erase, y0, x0, h, w = erasing_boxes(n, H, W, torch.Generator().manual_seed(4), "cpu", 1.0, "torchvision")
    boxes = torch.stack([h[erase], w[erase]], 1).numpy()
    assert abs(erase.float().mean().item() - len(ref_boxes) / n) < 4 * math.sqrt(0.25 / n)
    for col in (0, 1):
        assert stats.ks_2samp(boxes[:, col], ref_boxes[:, col]).pvalue > 1e-3
    assert bool(((y0 + h <= H) & (x0 + w <= W))[erase].all())
