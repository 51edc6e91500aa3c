import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import DBSCAN

from reidlab.clustering import dbscan, jaccard_distance
from tests.test_jaccard import clustered, dense


def random_graph(n, density, seed):
    rng = np.random.default_rng(seed)
    a = sp.random(n, n, density=density, random_state=rng, format="coo")
    a.data = rng.uniform(0, 1, a.nnz)
    sym = (a + a.T) / 2                                          # distances are symmetric
    sym.setdiag(0)
    return sp.csr_matrix(sym)


def sklearn_labels(graph, eps, min_samples):
    d = dense(graph)
    np.fill_diagonal(d, 0)          # a point is at distance 0 from itself
    return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(d)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("eps,min_samples", [(0.3, 3), (0.5, 4), (0.2, 2), (0.6, 6)])
def test_random_graphs_match_sklearn(seed, eps, min_samples):
    g = random_graph(120, 0.05, seed)
    assert np.array_equal(dbscan(g, eps, min_samples), sklearn_labels(g, eps, min_samples))


@pytest.mark.parametrize("seed", range(4))
def test_jaccard_graphs_match_sklearn(seed):
    x = clustered(15, list(np.random.default_rng(seed).integers(2, 25, 15)), noise=0.5, seed=seed,
                  duplicates=5, isolated=4)
    g = jaccard_distance(x, k1=15, k2=4, knn_backend="torch")
    for eps, ms in ((0.4, 4), (0.6, 3), (0.2, 2)):
        assert np.array_equal(dbscan(g, eps, ms), sklearn_labels(g, eps, ms))


def test_border_point_goes_to_the_lower_cluster():
    # cores {0,1,2,3} and {5,6,7,8} (min_samples 4); point 4 touches 3 and 5 but is not core itself
    n = 9
    pairs = [(a, b) for grp in ((0, 1, 2, 3), (5, 6, 7, 8)) for a in grp for b in grp if a < b] + [(3, 4), (4, 5)]
    r, c = zip(*pairs)
    g = sp.coo_matrix((np.full(len(pairs), 0.1), (r, c)), shape=(n, n))
    g = sp.csr_matrix(g + g.T)
    labels = dbscan(g, 0.2, 4)
    assert labels.tolist() == sklearn_labels(g, 0.2, 4).tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]


def test_no_core_point_gives_all_noise():
    g = sp.csr_matrix((5, 5))
    assert dbscan(g, 0.4, 2).tolist() == [-1] * 5


def test_eps_must_be_below_one():
    with pytest.raises(ValueError):
        dbscan(sp.csr_matrix((3, 3)), 1.0, 2)


def test_components_of_long_chains_and_torch_input():
    import torch

    from reidlab.clustering.dbscan import connected_components
    rng = np.random.default_rng(0)
    perm = torch.from_numpy(rng.permutation(500))
    u, v = perm[:-1], perm[1:]                                   # one chain through 500 shuffled points
    keep = torch.ones(499, dtype=torch.bool)
    keep[250] = False                                            # cut it in two
    comp = connected_components(u[keep], v[keep], 500)
    left, right = set(perm[:251].tolist()), set(perm[251:].tolist())
    assert set(comp[list(left)].tolist()) == {min(left)} and set(comp[list(right)].tolist()) == {min(right)}
    g = random_graph(150, 0.04, 11)
    coo = g.tocoo()
    as_tensors = (torch.from_numpy(coo.row).long(), torch.from_numpy(coo.col).long(), torch.from_numpy(coo.data), 150)
    assert np.array_equal(dbscan(as_tensors, 0.4, 3), dbscan(g, 0.4, 3))
