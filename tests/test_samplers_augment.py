import numpy as np
import torch

from reidlab.data.augment import normalise, train_augment
from reidlab.data.samplers import PKSampler, PseudoLabelSampler


def test_pseudo_label_sampler_prefers_other_cameras():
    labels = np.array([0] * 6 + [1] * 6 + [2] * 3 + [-1] * 4)
    cams = np.array([0, 0, 0, 1, 1, 2] + [0] * 6 + [0, 1, 1] + [0] * 4)
    s = PseudoLabelSampler(labels, cams, num_ids=3, num_instances=4, rng=np.random.default_rng(0))
    for batch in s.batches(20):
        assert len(batch) == 12
        for k in range(3):
            group = batch[4 * k: 4 * k + 4]
            y = labels[group[0]]
            assert all(labels[i] == y for i in group) and y >= 0
            anchor_cam = cams[group[0]]
            others = [i for i in np.flatnonzero(labels == y) if cams[i] != anchor_cam]
            if others:                                 # cross-camera members when there are some
                assert all(cams[i] != anchor_cam for i in group[1:])


def test_pk_sampler_covers_all_ids():
    labels = np.repeat(np.arange(10), 3)
    s = PKSampler(labels, np.zeros(30), num_ids=4, num_instances=5, rng=np.random.default_rng(1))
    seen = set()
    for batch in s.batches(5):
        ids = labels[batch]
        assert len(batch) == 20 and len(set(ids)) == 4
        seen |= set(ids.tolist())
    assert seen == set(range(10))


def test_augment_is_reproducible_and_changes_images():
    x = torch.randint(0, 255, (8, 3, 32, 16), dtype=torch.uint8)
    a = train_augment(x, torch.Generator().manual_seed(3))
    b = train_augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (8, 3, 32, 16)
    assert not torch.allclose(a, normalise(x))
    flipped = train_augment(x, torch.Generator().manual_seed(0), flip=1.0, pad=0, erasing=0)
    assert torch.allclose(flipped, normalise(x).flip(-1))


def test_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.randint(1, 255, (4, 3, 12, 6), dtype=torch.uint8)
    out = train_augment(x, torch.Generator().manual_seed(1), flip=0, pad=2, erasing=0)
    ref = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(4):
        found = any(torch.allclose(out[i], normalise(ref[i:i + 1, :, dy:dy + 12, dx:dx + 6])[0], atol=1e-5)
                    for dy in range(5) for dx in range(5))
        assert found
