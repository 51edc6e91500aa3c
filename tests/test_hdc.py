"""3C (issue "3C: confidence-guided clustering and the hard, camera-aware memory"): HDC, 3C's Jaccard distance, the
memory updates and the camera-weighted loss against dense references written from its paper and its code's
behaviour (tests/reference.py), as the Jaccard distance is tested; the registries and their plug-ins."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reidlab.clustering.hdc import hdc, kmeans_pp_indices
from reidlab.clustering.knn import knn
from reidlab.clustering.methods import ThreeCJaccardDistance, cluster_epoch, drop_small_clusters
from reidlab.memory.cluster_memory import ClusterMemory
from reidlab.memory.updates import MEMORY_UPDATES
from tests.reference import (camera_weighted_nce_loop, hdc_loop, jaccard_loop, kmeans_pp_loop,
                             memory_update_loop)


def people(n_ids: int, per: int, dim: int, noise: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(n_ids, dim, generator=g), dim=1)
    return F.normalize(centres.repeat_interleave(per, 0) + noise * torch.randn(n_ids * per, dim, generator=g), dim=1)


def graph_3c(x: torch.Tensor, k1: int = 10, k2: int = 4):
    rows, cols, d = ThreeCJaccardDistance(SimpleNamespace(k1=k1, k2=k2, knn="torch")).graph(x, None, 1)
    dense = np.ones((x.shape[0],) * 2, np.float32)
    dense[rows.numpy(), cols.numpy()] = d.numpy()
    return (rows, cols, d), dense


def test_3c_jaccard_ranks_i_and_k1_others():
    """3C's utils/faiss_rerank.py searches k1 + 1 neighbours and reads R(i, k1 + 1) from them: Cluster Contrast's
    Jaccard distance on a ranking of k1 + 1 columns."""
    x = people(15, 8, 32, 0.4, 1)
    _, dense = graph_3c(x, k1=10, k2=4)
    ranking = knn(x, 11, "torch").numpy()
    assert np.abs(dense - jaccard_loop(x.double().numpy(), ranking, 10, 4)).max() < 1e-5


CASES = [  # (identities, images each, dimensions, noise, clusters): a cluster per person, more, fewer
    (12, 15, 32, 0.35, 12), (20, 12, 64, 0.5, 16), (30, 10, 48, 0.4, 30), (8, 25, 32, 0.6, 10)]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("outlier", [True, False])
def test_hdc_equals_the_dense_reference(case, outlier):
    """Same seeds (the reference's k-means++ and ours draw alike from RandomState(7)), same labels; the centroids
    to float precision. The cases include empty clusters, which both relocate as the code does."""
    n_ids, per, dim, noise, C = CASES[case]
    x = people(n_ids, per, dim, noise, case)
    graph, dense = graph_3c(x)
    seeds = kmeans_pp_loop(dense, C, 7)
    assert np.array_equal(kmeans_pp_indices(*(t.numpy() for t in graph), x.shape[0], C, np.random.RandomState(7)),
                          seeds)
    want, centroids = hdc_loop(x.numpy(), dense, C, seeds, outlier=outlier)
    got = hdc(x, graph, C, outlier=outlier, seed=7)
    assert np.array_equal(got.labels, want)
    assert np.abs(got.centroids.numpy() - centroids).max() < 1e-6
    assert (got.labels < 0).any() == outlier and set(got.labels[got.labels >= 0]) == set(range(C))


def test_hdc_finds_the_persons_and_small_clusters_dissolve():
    """Ten persons into ten clusters: near the truth when they are apart, and nearer than DBSCAN's (at eps 0.6)
    when they are not; then the dissolving of clusters below min_samples, numbered again in order."""
    from sklearn.metrics import adjusted_rand_score as ari

    from reidlab.clustering.dbscan import dbscan
    truth = np.repeat(np.arange(10), 12)
    for noise, least in ((0.2, 0.9), (0.3, 0.3)):
        x = people(10, 12, 32, noise, 3)
        graph, _ = graph_3c(x)
        got = ari(truth, hdc(x, graph, 10, outlier=False, seed=1).labels)
        assert got > least and got > ari(truth, dbscan((*graph, 120), 0.6, 4))
    labels, cent = drop_small_clusters(np.array([0, 0, 0, 0, 1, 1, -1, 2, 2, 2, 2]), torch.eye(3), 4)
    assert labels.tolist() == [0, 0, 0, 0, -1, -1, -1, 1, 1, 1, 1] and torch.equal(cent, torch.eye(3)[[0, 2]])


def test_hdc_through_the_config_with_its_dbscan_warm_up():
    x = people(10, 12, 32, 0.3, 4)
    c = SimpleNamespace(k1=10, k2=4, knn="torch", distance="jaccard-3c", method="hdc", eps=0.6, min_samples=4,
                        hdc_num_clusters=10, hdc_outlier=True, hdc_centroids=True, hdc_init="k-means++2",
                        hdc_max_iter=80, hdc_similarity="euler-cosine", hdc_normalize=False, hdc_dbscan_epochs=1)
    warm = cluster_epoch(x, c, epoch=1, seed=5)
    assert warm.centroids is None and "hdc_iterations" not in warm.info      # epoch 1: DBSCAN
    out = cluster_epoch(x, c, epoch=2, seed=5)
    assert out.info["num_clusters"] <= 10 and out.centroids.shape == (out.info["num_clusters"], 32)
    assert out.info["hdc_iterations"] >= 1 and np.array_equal(out.labels, cluster_epoch(x, c, epoch=2, seed=5).labels)


@pytest.mark.parametrize("clusters", [64, 63, 40])
def test_hdc_with_about_as_many_clusters_as_samples_ends(clusters):
    """3C's code relocates empty clusters for as long as one stays empty, which never ends when each move empties
    another (as many clusters as samples): ours ends, every cluster holding a sample."""
    import time
    x = people(8, 8, 16, 0.1, 0)
    graph, _ = graph_3c(x)
    start = time.time()
    got = hdc(x, graph, clusters, outlier=False, seed=0, max_iter=12)
    assert time.time() - start < 60
    assert np.bincount(got.labels, minlength=clusters).min() >= 1 and got.labels.max() == clusters - 1


@pytest.mark.parametrize("mode", ["mean", "hard", "hard_camera", "hd_camera"])
def test_memory_updates_equal_the_references(mode):
    for trial in range(4):
        g = torch.Generator().manual_seed(10 + trial)
        mem = F.normalize(torch.randn(10, 24, generator=g, dtype=torch.float64), dim=1)
        x = F.normalize(torch.randn(64, 24, generator=g, dtype=torch.float64), dim=1)
        y, cams = torch.randint(0, 6, (64,), generator=g), torch.randint(0, 4, (64,), generator=g)
        want = memory_update_loop(mem.numpy(), x.numpy(), y.numpy(), cams.numpy(), 0.1, mode)
        got = mem.clone()
        MEMORY_UPDATES.get(mode)(got, x, y, cams, 0.1)
        assert np.abs(got.numpy() - want).max() < 1e-12


def test_the_camera_weighted_loss_and_a_held_update():
    g = torch.Generator().manual_seed(3)
    mem = F.normalize(torch.randn(8, 16, generator=g), dim=1)
    x = torch.randn(32, 16, generator=g, requires_grad=True)
    y, cams = torch.randint(0, 5, (32,), generator=g), torch.randint(0, 3, (32,), generator=g)
    bank = ClusterMemory(16, 8, temp=0.05, momentum=0.1, update="hd_camera", camera_weighted=True)
    bank.features.copy_(mem)
    loss = bank(x, y, cams)
    assert loss.item() == pytest.approx(camera_weighted_nce_loop(mem.numpy(), x.detach().numpy(), y.numpy(),
                                                                 cams.numpy(), 0.05), rel=1e-5)
    bank.hold_updates = True
    loss.backward()
    assert torch.equal(bank.features, mem)                     # held until the step's check
    bank.commit()
    want = memory_update_loop(mem.numpy(), F.normalize(x.detach(), dim=1).numpy(), y.numpy(), cams.numpy(), 0.1,
                              "hd_camera")
    assert np.abs(bank.features.numpy() - want).max() < 1e-6
    with pytest.raises(ValueError, match="cameras"):
        bank(x, y)
