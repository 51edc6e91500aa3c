from pathlib import Path

import numpy as np
import torch
import pytest

from reidlab.evaluation import evaluate
from tests.reference import ap_loop


def test_hand_computed_case_with_same_camera_and_distractors():
    # query: pid 1, camera 0. Gallery sorted by distance:
    #   g0 pid 1 cam 0 (same id + camera: removed), g1 pid 0 (distractor), g2 pid 1 cam 1 (match),
    #   g3 pid 2, g4 pid 1 cam 2 (match)
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    r = evaluate(dist, [1], [1, 0, 1, 2, 1], [0], [0, 1, 1, 1, 2], max_rank=4)
    # kept ranking: distractor, match, other, match -> AP = (1/2 + 2/4) / 2 = 0.5
    assert r["mAP"] == pytest.approx(0.5)
    assert r["cmc"].tolist() == [0, 1, 1, 1]
    assert r["mINP"] == pytest.approx(2 / 4)


def test_query_without_valid_match_is_skipped():
    dist = np.array([[0.1, 0.2], [0.3, 0.1]])
    # query 0 (pid 5, cam 0) only matches itself in camera 0: skipped
    r = evaluate(dist, [5, 6], [5, 6], [0, 0], [0, 1], max_rank=2)
    assert r["num_valid_queries"] == 1
    assert r["mAP"] == pytest.approx(1.0) and r["cmc"][0] == 1.0


def test_random_cases_match_per_query_loop():
    rng = np.random.default_rng(0)
    nq, ng = 40, 300
    q_p, g_p = rng.integers(0, 15, nq), rng.integers(0, 15, ng)
    q_c, g_c = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    dist = rng.random((nq, ng))
    r = evaluate(dist, q_p, g_p, q_c, g_c, max_rank=20, chunk=7)
    refs = [ap_loop(dist[i], q_p[i], q_c[i], g_p, g_c) for i in range(nq)]
    refs = [x for x in refs if x is not None]
    assert r["num_valid_queries"] == len(refs)
    assert r["mAP"] == pytest.approx(np.mean([a for a, _, _ in refs]))
    assert r["mINP"] == pytest.approx(np.mean([p for _, _, p in refs]))
    expected_cmc = np.mean([[first <= k for k in range(20)] for _, first, _ in refs], axis=0)
    assert np.allclose(r["cmc"], expected_cmc)


def test_no_valid_query_is_an_error():
    from reidlab.errors import DatasetError
    with pytest.raises(DatasetError):
        evaluate(np.zeros((1, 1)), [1], [1], [0], [0])


def test_ties_are_ordered_by_gallery_index_as_a_stable_sort():
    rng = np.random.default_rng(3)
    nq, ng = 30, 200
    q_p, g_p = rng.integers(0, 6, nq), rng.integers(0, 6, ng)
    q_c, g_c = rng.integers(0, 2, nq), rng.integers(0, 2, ng)
    dist = rng.integers(0, 4, (nq, ng)).astype(np.float32) / 4          # many exact ties, and -0.0
    dist[:, ::7] = -0.0
    r = evaluate(dist, q_p, g_p, q_c, g_c, max_rank=10, chunk=4)
    refs = [x for x in (ap_loop(dist[i], q_p[i], q_c[i], g_p, g_c) for i in range(nq)) if x is not None]
    assert r["mAP"] == pytest.approx(np.mean([a for a, _, _ in refs]), abs=1e-9)
    assert r["mINP"] == pytest.approx(np.mean([p for _, _, p in refs]), abs=1e-9)
    assert np.allclose(r["cmc"], np.mean([[f <= k for k in range(10)] for _, f, _ in refs], axis=0))


def test_features_path_equals_the_distance_matrix_path():
    import torch
    from reidlab.evaluation import evaluate_features, pairwise_distance
    g = torch.Generator().manual_seed(0)
    qf = torch.nn.functional.normalize(torch.randn(150, 16, generator=g), dim=1)
    gf = torch.nn.functional.normalize(torch.randn(900, 16, generator=g), dim=1)
    rng = np.random.default_rng(0)
    labels = (rng.integers(0, 40, 150), rng.integers(0, 40, 900), rng.integers(0, 3, 150), rng.integers(0, 3, 900))
    a = evaluate(pairwise_distance(qf, gf), *labels)
    b = evaluate_features(qf, gf, *labels, budget=5000)          # 5 rows of distances at a time
    assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-9) and np.allclose(a["cmc"], b["cmc"])


def test_peak_memory_is_bounded_by_the_chunks(tmp_path):
    """2,000 x 30,000 distances would be 240 MB in float32 (480 MB as keys); the chunked path stays far below."""
    import subprocess
    import sys
    script = (
        "import resource, numpy as np, torch\n"
        "from reidlab.evaluation import evaluate_features\n"
        "torch.manual_seed(0); Q, G = 2000, 30000\n"
        "qf = torch.nn.functional.normalize(torch.randn(Q, 8), dim=1)\n"
        "gf = torch.nn.functional.normalize(torch.randn(G, 8), dim=1)\n"
        "rng = np.random.default_rng(0)\n"
        "lab = (rng.integers(0, 3000, Q), rng.integers(0, 3000, G), rng.integers(0, 6, Q), rng.integers(0, 6, G))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "evaluate_features(qf[:64], gf, lab[0][:64], lab[1], lab[2][:64], lab[3])\n"
        "r = evaluate_features(qf, gf, *lab, budget=1 << 22)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.returncode == 0, out.stderr
    grown_mb = int(out.stdout.strip().splitlines()[-1]) / 1024
    assert grown_mb < 200, grown_mb          # the dense distances alone would add 240 MB, their keys 480 MB


def test_global_only_evaluation_ranks_by_the_global_piece_alone():
    """test.feature=global: the first piece of a part model's retrieval feature, renormalised. A model whose
    global feature is its identity and whose three part features are noise: mAP 1 by the global piece, less
    with the parts (Pirt Table 5's global-only row; AAformer's [CLS]-only check)."""
    from types import SimpleNamespace

    from reidlab.data.augment import MEAN, STD
    from reidlab.evaluation.extract import evaluate_run
    from reidlab.models.registry import retrieval_feature
    from reidlab.runs.config import build_config

    class Parts(torch.nn.Module):
        feature_splits = (8, 8, 8, 8)

        def forward(self, x):
            ids = ((x[:, 0, 0, 0] * STD[0] + MEAN[0]) * 255).round().long()      # undo the normalisation
            g = torch.nn.functional.one_hot(ids, 8).float()
            noise = torch.randn(len(x), 3, 8, generator=torch.Generator().manual_seed(len(x)))
            return retrieval_feature(g, [noise[:, i] for i in range(3)])

    def images(ids):
        x = torch.zeros(len(ids), 3, 4, 2, dtype=torch.uint8)
        x[:, 0, 0, 0] = torch.tensor(ids, dtype=torch.uint8)
        x[:, 1] = torch.arange(len(ids), dtype=torch.uint8)[:, None, None]      # distinct images
        return x
    q_ids, g_ids = [0, 1, 2, 3], [0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7]
    ds = SimpleNamespace(query=[SimpleNamespace(pid=i, camid=0) for i in q_ids],
                         gallery=[SimpleNamespace(pid=i, camid=1) for i in g_ids])
    got = {}
    for feature in ("all", "global"):
        cfg = build_config("demo", [{"test": {"feature": feature}}])
        got[feature] = evaluate_run(Parts(), images(q_ids), images(g_ids), ds, cfg, torch.device("cpu"))["mAP"]
    assert got["global"] == pytest.approx(1.0) and got["all"] < 0.95
    with pytest.raises(Exception, match="test.feature=global"):
        build_config("demo", [{"test": {"feature": "global", "local_rerank": True}}])
