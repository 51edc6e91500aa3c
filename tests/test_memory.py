import pytest
import torch
import torch.nn.functional as F

from reidlab.errors import ConfigError
from reidlab.memory import ClusterMemory


def setup(seed=0, n=60, c=6, d=8, b=20):
    g = torch.Generator().manual_seed(seed)
    f = F.normalize(torch.randn(n, d, generator=g), dim=1)
    y = torch.arange(n) % c
    x = torch.randn(b, d, generator=g, requires_grad=True)
    t = torch.randint(0, c, (b,), generator=g)
    return f, y, x, t


@pytest.mark.parametrize("update", ["momentum", "hard"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_update_and_loss_match_per_sample_loop(update, seed):
    f, y, x, t = setup(seed)
    m = 0.3
    mem = ClusterMemory.from_clusters(f, y, init="mean", temp=0.05, momentum=m, update=update)
    before = mem.features.clone()
    loss = mem(x, t)
    xn = F.normalize(x.detach(), dim=1)
    expected_loss = F.cross_entropy(xn @ before.T / 0.05, t)
    assert torch.allclose(loss, expected_loss, atol=1e-5)
    assert torch.equal(mem.features, before)          # nothing changes before backward
    loss.backward()
    ref = before.clone()
    if update == "momentum":
        for xi, ti in zip(xn, t):
            ref[ti] = m * ref[ti] + (1 - m) * xi
            ref[ti] /= ref[ti].norm()
    else:
        for c in t.unique():
            idx = (t == c).nonzero().squeeze(1)
            hardest = idx[(xn[idx] @ before[c]).argmin()]
            ref[c] = F.normalize(m * before[c] + (1 - m) * xn[hardest], dim=0)
    assert torch.allclose(mem.features, ref, atol=1e-6)
    # the gradient is that of the plain cross-entropy on the pre-update memory
    x2 = x.detach().clone().requires_grad_(True)
    F.cross_entropy(F.normalize(x2, dim=1) @ before.T / 0.05, t).backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-5)


def test_init_mean_and_random():
    f, y, _, _ = setup()
    y = y.clone()
    y[:5] = -1                                              # outliers are ignored
    mean = ClusterMemory.from_clusters(f, y, init="mean")
    for c in range(6):
        assert torch.allclose(mean.features[c], F.normalize(f[y == c].mean(0), dim=0), atol=1e-6)
    rnd = ClusterMemory.from_clusters(f, y, init="random", generator=torch.Generator().manual_seed(0))
    for c in range(6):
        members = f[y == c]
        assert torch.isclose(members @ rnd.features[c], torch.tensor(1.0), atol=1e-6).any()


def test_bad_update_name():
    with pytest.raises(ConfigError, match="allowed"):
        ClusterMemory(4, 2, update="soft")


def test_a_float64_memory_computes_in_float64_and_the_default_stays_float32():
    """benchmarks/parity_step.py compares two codes' steps in float64: the logits and the gradient are float64
    there, where a float32 memory (the loop's) computes in float32 whatever the input's precision."""
    torch.manual_seed(0)
    feats = F.normalize(torch.randn(5, 8), dim=1)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    x = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    wide = ClusterMemory(8, 5, temp=0.05, momentum=0.1).double()
    wide.features.copy_(feats)
    loss = wide(x, y)
    loss.backward()
    assert loss.dtype == torch.float64 and x.grad.dtype == torch.float64
    ref = F.cross_entropy(F.normalize(x.detach(), dim=1) @ feats.double().T / 0.05, y)
    assert abs(float(loss) - float(ref)) < 1e-12
    narrow = ClusterMemory(8, 5, temp=0.05, momentum=0.1)
    narrow.features.copy_(feats)
    assert narrow(x, y).dtype == torch.float32 and narrow.features.dtype == torch.float32
