import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reidlab.clustering import jaccard_distance, jaccard_graph, knn
from reidlab.clustering.jaccard import to_csr
from reidlab.clustering.knn import knn_torch, self_first
from tests.reference import jaccard_loop


def clustered(n_clusters, sizes, dim=16, noise=0.25, seed=0, duplicates=0, isolated=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_clusters, dim, generator=g)
    labels = torch.cat([torch.full((s,), c) for c, s in enumerate(sizes)])
    x = centers[labels] + noise * torch.randn(len(labels), dim, generator=g)
    if duplicates:
        x = torch.cat([x, x[:duplicates]])
    if isolated:
        x = torch.cat([x, 10 * torch.randn(isolated, dim, generator=g)])
    return F.normalize(x, dim=1)


def dense(sparse) -> np.ndarray:
    """Absent pairs are distance 1; stored ones (explicit zeros included) are what they hold."""
    out = np.ones(sparse.shape)
    coo = sparse.tocoo()
    out[coo.row, coo.col] = coo.data
    return out


CASES = [
    dict(n_clusters=12, sizes=[10] * 12, k1=8, k2=3),
    dict(n_clusters=10, sizes=[3, 4, 20, 25, 6, 8, 30, 2, 5, 12], k1=20, k2=6),   # k1 larger than some clusters
    dict(n_clusters=8, sizes=[12] * 8, k1=10, k2=1, duplicates=15),                  # distance-0 duplicates
    dict(n_clusters=6, sizes=[15] * 6, k1=9, k2=4, isolated=7),                      # isolated points
    dict(n_clusters=5, sizes=[40] * 5, k1=25, k2=6, noise=0.6, seed=3),              # odd round(k1/2)=12
]


@pytest.mark.parametrize("case", CASES)
def test_jaccard_matches_loop_reference(case):
    case = dict(case)
    k1, k2 = case.pop("k1"), case.pop("k2")
    x = clustered(**case)
    ranking, sims = knn(x, k1, backend="torch", return_sims=True)
    fast = jaccard_distance(x, k1=k1, k2=k2, ranking=ranking)
    slow = jaccard_loop(x.double().numpy(), ranking.numpy(), k1, k2)
    assert np.abs(dense(fast) - slow).max() < 1e-5
    # the same with the kNN's similarities looked up instead of recomputed
    i, j, d = jaccard_graph(x, k1=k1, k2=k2, ranking=ranking, ranking_sims=sims)
    assert np.abs(dense(to_csr(i, j, d, len(x))) - slow).max() < 1e-5
    # stored exactly where the distance is below 1
    stored = np.zeros(fast.shape, bool)
    coo = fast.tocoo()
    stored[coo.row, coo.col] = True
    assert np.array_equal(stored, slow < 1 - 1e-12)


def test_jaccard_small_blocks_give_the_same_result():
    x = clustered(10, [15] * 10, seed=5)
    a = jaccard_distance(x, k1=12, k2=4, knn_backend="torch")
    b = jaccard_distance(x, k1=12, k2=4, knn_backend="torch", max_block_elems=2000)
    assert abs(a - b).max() < 1e-6 and a.nnz == b.nnz


def test_self_first_with_ties():
    ranking = torch.tensor([[1, 0, 2], [0, 1, 2], [0, 1, 3], [0, 1, 2]])
    out = self_first(ranking)
    assert out[:, 0].tolist() == [0, 1, 2, 3]
    assert out[0].tolist() == [0, 1, 2] and out[2].tolist() == [2, 0, 1] and out[3].tolist() == [3, 0, 1]


def test_knn_torch_and_faiss_agree():
    pytest.importorskip("faiss")
    x = clustered(20, [10] * 20, dim=32, seed=2)
    a, b = knn(x, 10, backend="torch"), knn(x, 10, backend="faiss")
    assert (a[:, 0] == torch.arange(len(x))).all()
    # same sets of neighbours (order of near-ties may differ)
    assert np.mean([len(set(p) & set(q)) / 10 for p, q in zip(a.tolist(), b.tolist())]) > 0.99


def test_knn_torch_blocks():
    x = clustered(5, [30] * 5)
    assert torch.equal(knn_torch(x, 7, block=16)[0], knn_torch(x, 7, block=1000)[0])


def test_no_dense_n_by_n_allocation(tmp_path):
    """N = 20,000: one N x N float32 array is 1.6 GB. The process's peak memory may grow by much less
    than that over its imports, so nothing N x N can have been allocated."""
    import subprocess
    import sys
    script = tmp_path / "big.py"
    script.write_text(
        "import resource, torch, torch.nn.functional as F\n"
        "from reidlab.clustering import jaccard_distance, dbscan\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "g = torch.Generator().manual_seed(0)\n"
        "c = torch.randn(1000, 32, generator=g)\n"
        "x = F.normalize(c.repeat_interleave(20, 0) + 0.3 * torch.randn(20000, 32, generator=g), dim=1)\n"
        "d = jaccard_distance(x, k1=20, k2=6, knn_backend='torch', max_block_elems=1 << 22)\n"
        "labels = dbscan(d, 0.4, 4)\n"
        "assert d.shape == (20000, 20000) and labels.max() > 500, labels.max()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    # the script's own peak: RUSAGE_CHILDREN would also count the forked workers of other tests
    done = subprocess.run([sys.executable, str(script)], check=True, cwd=root, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(root)})
    growth_mb = int(done.stdout.split()[-1]) / 1024
    assert growth_mb < 800, growth_mb     # the peak's growth over the imports; one N x N array alone is 1600


@pytest.mark.parametrize("backend", ["faiss-ivf", "faiss-hnsw"])
def test_approximate_knn_has_high_recall(backend):
    pytest.importorskip("faiss")
    from reidlab.clustering.knn import recall_at_k
    x = clustered(200, [15] * 200, dim=64, seed=6)
    r = knn(x, 10, backend=backend)
    assert (r[:, 0] == torch.arange(len(x))).all()
    assert recall_at_k(x, r) > 0.95


def test_block_budget_is_bounded():
    from reidlab.clustering.kreciprocal import block_budget
    b = block_budget(torch.device("cpu"))
    assert (1 << 16) <= b <= (1 << 23)


def test_numpy_features_work_as_tensors_do():
    from reidlab.clustering import pseudo_labels
    x = clustered(8, [12] * 8, seed=2)
    a = jaccard_distance(x, k1=10, k2=3, knn_backend="torch")
    b = jaccard_distance(x.numpy(), k1=10, k2=3, knn_backend="torch")
    assert abs(a - b).max() < 1e-6 and a.nnz == b.nnz
    la, _ = pseudo_labels(x, k1=10, k2=3, eps=0.6, knn_backend="torch")
    lb, info = pseudo_labels(x.numpy().astype(np.float64), k1=10, k2=3, eps=0.6, knn_backend="torch")
    assert np.array_equal(la, lb) and info["num_clusters"] > 0
