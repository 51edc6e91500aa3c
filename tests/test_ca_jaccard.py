"""CA-Jaccard (Chen et al., CVPR 2024) against dense references written from the paper: the clustering scene's
distance (clustering.ca_jaccard) and the re-ranking scene's (evaluation.rerank with cameras)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reidlab.clustering import jaccard_graph, pseudo_labels
from reidlab.clustering.ca_jaccard import ca_jaccard_distance, ca_jaccard_graph, camera_gap
from reidlab.clustering.jaccard import to_csr
from reidlab.clustering.knn import camera_knn
from reidlab.evaluation.rerank import re_ranking
from tests.reference import ca_jaccard_loop, ca_re_ranking_loop
from tests.test_jaccard import dense


def people(n_ids: int, per_id: int, n_cams: int, dim: int = 16, shift: float = 0.6, noise: float = 0.35,
           seed: int = 0, cam_sizes: list[int] | None = None):
    """Identities seen by several cameras, each camera adding its own offset (a colour cast, say) to every
    image it takes: the shift CA-Jaccard is built for. ``cam_sizes`` pins how many images some cameras get
    (the rest go to the others in turn)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_ids, dim, generator=g)
    offsets = shift * torch.randn(n_cams, dim, generator=g)
    pids = torch.arange(n_ids).repeat_interleave(per_id)
    n = len(pids)
    cams = torch.arange(n) % n_cams
    if cam_sizes:
        fixed = torch.cat([torch.full((s,), c) for c, s in enumerate(cam_sizes)])
        rest = len(cam_sizes) + torch.arange(n - len(fixed)) % (n_cams - len(cam_sizes))
        cams = torch.cat([fixed, rest])[torch.randperm(n, generator=g)]
    x = centres[pids] + offsets[cams] + noise * torch.randn(n, dim, generator=g)
    return F.normalize(x, dim=1), cams.numpy(), pids.numpy()


CASES = [
    dict(data=dict(n_ids=30, per_id=10, n_cams=4), params=dict()),                                # the code's defaults
    dict(data=dict(n_ids=40, per_id=6, n_cams=6, seed=1), params=dict(k2_intra=2, k2_inter=4)),   # the recipes'
    # a camera of 3 images (fewer than k1_intra + 1) and one of a single image: padded lists
    dict(data=dict(n_ids=25, per_id=8, n_cams=5, seed=2, cam_sizes=[3, 1]), params=dict(k1_intra=4, k1_inter=12)),
    dict(data=dict(n_ids=20, per_id=12, n_cams=3, seed=3, shift=1.2), params=dict(k1_intra=8, k2_intra=5)),
]


@pytest.mark.parametrize("case", CASES)
def test_ca_jaccard_matches_the_dense_reference(case):
    x, cams, _ = people(**case["data"])
    fast = ca_jaccard_distance(x, cams, **case["params"])
    slow = ca_jaccard_loop(x.double().numpy(), cams, **case["params"])
    assert np.abs(dense(fast) - slow).max() < 1e-5
    stored = np.zeros(fast.shape, bool)                    # stored exactly where the distance is below 1
    coo = fast.tocoo()
    stored[coo.row, coo.col] = True
    assert np.array_equal(stored, slow < 1 - 1e-12)


@pytest.mark.parametrize("ckrnns,clqe", [(True, False), (False, True)])
def test_each_part_alone_matches_the_reference(ckrnns, clqe):
    x, cams, _ = people(30, 8, 4, seed=4)
    parts = dict(ckrnns=ckrnns, clqe=clqe, k1=12, k2=4)
    fast = ca_jaccard_distance(x, cams, knn_backend="torch", **parts)
    slow = ca_jaccard_loop(x.double().numpy(), cams, **parts)
    assert np.abs(dense(fast) - slow).max() < 1e-5


def test_both_parts_off_is_ca_jaccards_own_jaccard_not_cluster_contrasts():
    """With CKRNNs and CLQE off, CA-Jaccard's code ranks k1 + 1 neighbours (i and k1 others: a full argpartition
    read as ``initial_rank[i, :k1 + 1]``), where Cluster Contrast's kNN of k1 columns gives i and k1 - 1 others:
    the reference's distances, and not the Jaccard distance of the same k1 (which an earlier version gave)."""
    x, cams, _ = people(30, 8, 4, seed=5)
    parts = dict(ckrnns=False, clqe=False, k1=15, k2=5)
    fast = ca_jaccard_distance(x, cams, knn_backend="torch", **parts)
    slow = ca_jaccard_loop(x.double().numpy(), cams, **parts)
    assert np.abs(dense(fast) - slow).max() < 1e-5
    b = jaccard_graph(x, k1=15, k2=5, knn_backend="torch")
    cc = np.ones_like(slow)
    cc[b[0].numpy(), b[1].numpy()] = b[2].numpy()
    assert np.abs(cc - slow).max() > 1e-3


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_camera_lists_and_small_blocks(backend):
    pytest.importorskip("faiss")
    x, cams, _ = people(30, 8, 5, seed=6, cam_sizes=[2])
    intra, intra_s, inter, inter_s = camera_knn(x, cams, 6, 21, block=7, backend=backend)
    c = torch.as_tensor(cams)
    assert torch.equal(intra[:, 0], torch.arange(len(x)))                 # self first
    real = intra >= 0
    assert (c[intra.clamp(min=0)] == c[:, None])[real].all()              # own camera only
    assert (c[inter] != c[:, None]).all()                                  # other cameras only
    assert (~real[c == 0]).sum() == (c == 0).sum() * 4                     # a 2-image camera: 4 of 6 padded
    assert (intra_s[:, :-1] >= intra_s[:, 1:] - 1e-6)[real[:, 1:]].all()  # nearest first
    other = camera_knn(x, cams, 6, 21, backend="faiss" if backend == "torch" else "torch")
    assert torch.equal(intra, other[0]) and torch.equal(inter, other[2])       # the two backends agree
    assert torch.allclose(inter_s, other[3], atol=1e-5)
    big = ca_jaccard_distance(x, cams)
    small = ca_jaccard_distance(x, cams, max_block_elems=1 << 10)
    assert np.abs(dense(big) - dense(small)).max() < 1e-6


def test_camera_gap_is_the_dense_difference():
    x, cams, _ = people(20, 6, 4, seed=7)
    d = 2 - 2 * (x @ x.T).double()
    same = torch.as_tensor(cams)[:, None] == torch.as_tensor(cams)[None]
    upper = torch.ones_like(same).triu(1)
    expected = d[upper & ~same].mean() - d[upper & same].mean()
    assert camera_gap(x, cams) == pytest.approx(float(expected), abs=1e-9)


def test_pseudo_labels_with_ca_jaccard_find_the_identities():
    """Camera shift strong enough that the global ranking lists hold mostly one camera: CA-Jaccard's
    clusters agree with the identities better than the Jaccard distance's."""
    from reidlab.clustering.sweep import agreement
    x, cams, pids = people(40, 8, 4, shift=1.0, noise=0.3, seed=8)
    plain, _ = pseudo_labels(x, k1=20, k2=6, eps=0.5, min_samples=4, knn_backend="torch")
    ca, info = pseudo_labels(x, k1=20, k2=6, eps=0.5, min_samples=4, cams=cams,
                             ca=dict(k1_intra=5, k1_inter=20, k2_intra=2, k2_inter=4))
    assert info["camera_gap"] > 0.1
    assert agreement(pids, ca)["ari"] > agreement(pids, plain)["ari"] + 0.1, (agreement(pids, ca),
                                                                               agreement(pids, plain))
    with pytest.raises(ValueError, match="camera ids"):
        pseudo_labels(x, ca={})


@pytest.mark.parametrize("params", [dict(), dict(k1_intra=3, k1_inter=10, k2_intra=2, k2_inter=4)])
def test_ca_re_ranking_matches_the_dense_reference(params):
    x, cams, _ = people(24, 6, 4, seed=9, cam_sizes=[2])
    q, g = np.arange(0, len(x), 4), np.setdiff1d(np.arange(len(x)), np.arange(0, len(x), 4))
    dist = torch.cdist(x, x).double().numpy()
    args = (dist[np.ix_(q, g)], dist[np.ix_(q, q)], dist[np.ix_(g, g)])
    fast = re_ranking(*args, cams=(cams[q], cams[g]), ca=params)
    slow = ca_re_ranking_loop(*args, cams[q], cams[g], **params)
    assert np.abs(fast - slow).max() < 1e-5


def test_ca_jaccard_builds_no_n_by_n_array(tmp_path):
    """N = 20,000 over 6 cameras: one N x N float32 array is 1.6 GB; the process' peak grows by far less."""
    script = tmp_path / "big.py"
    script.write_text(
        "import resource, torch, torch.nn.functional as F\n"
        "from reidlab.clustering import dbscan\n"
        "from reidlab.clustering.ca_jaccard import ca_jaccard_graph\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "g = torch.Generator().manual_seed(0)\n"
        "c = torch.randn(1000, 32, generator=g)\n"
        "cams = torch.randint(0, 6, (20000,), generator=g)\n"
        "x = F.normalize(c.repeat_interleave(20, 0) + 0.3 * torch.randn(20000, 32, generator=g), dim=1)\n"
        "i, j, d = ca_jaccard_graph(x, cams, max_block_elems=1 << 22)\n"
        "labels = dbscan((i, j, d, 20000), 0.4, 4)\n"
        "assert labels.max() > 500, labels.max()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(script)], check=True, cwd=root, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert int(done.stdout.split()[-1]) / 1024 < 800


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ca_jaccard_same_on_cuda():
    x, cams, _ = people(30, 10, 4)
    cpu = ca_jaccard_graph(x, cams)
    gpu = ca_jaccard_graph(x.cuda(), cams)
    assert torch.equal(cpu[0], gpu[0].cpu()) and torch.allclose(cpu[2], gpu[2].cpu(), atol=1e-5)
    assert to_csr(*gpu, len(x)).shape == (len(x), len(x))


@pytest.mark.parametrize("ca", [None, dict(k2_intra=2, k2_inter=4)])
def test_re_ranking_from_features_is_the_matrix_re_ranking(ca):
    """Evaluation re-ranks from the features by row blocks: the numbers of the three-matrix interface."""
    from reidlab.evaluation.metrics import pairwise_distance
    from reidlab.evaluation.rerank import _FeatureBlocks, re_ranking_features
    x, cams, _ = people(30, 6, 4, seed=10)
    q, g = x[::5], x[torch.arange(len(x)) % 5 != 0]
    cq, cg = cams[::5], cams[np.arange(len(x)) % 5 != 0]
    dense = re_ranking(pairwise_distance(q, g), pairwise_distance(q, q), pairwise_distance(g, g), cams=(cq, cg), ca=ca)
    blocks = re_ranking_features(q, g, cams=(cq, cg), ca=ca)
    assert np.abs(dense - blocks).max() < 1e-5
    small = _FeatureBlocks(q, g, block_elems=1000)                 # several row blocks
    assert small.step < len(x) and torch.allclose(small.row_max, _FeatureBlocks(q, g).row_max)


def test_the_sweep_gives_the_loops_ca_jaccard_labels():
    """--mode cluster-sweep on a CA-Jaccard run: each setting's labels are pseudo_labels' with the same CA-Jaccard."""
    from reidlab.clustering.sweep import sweep
    x, cams, pids = people(30, 8, 4, shift=1.0, seed=11)
    ca = dict(k1_intra=5, k1_inter=20, k2_intra=2, k2_inter=4)
    rows, labels = sweep(x, [0.4, 0.5], [10, 20], [4], truth=pids, cams=cams, ca=ca)
    for (k, m, e), got in labels.items():
        want, _ = pseudo_labels(x, k1=k, eps=e, min_samples=m, cams=cams, ca=ca)
        assert np.array_equal(got, want)
    assert len(rows) == 4 and all("ari" in r for r in rows)
