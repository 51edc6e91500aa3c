import numpy as np
import pytest

from evaluation import evaluate
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
    with pytest.raises(ValueError):
        evaluate(np.zeros((1, 1)), [1], [1], [0], [0])
