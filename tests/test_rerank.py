import numpy as np
import pytest

from reidlab.evaluation.rerank import re_ranking
from tests.reference import re_ranking_loop
from tests.test_jaccard import clustered


@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (8, 3, 0.5), (10, 1, 0.0)])
def test_re_ranking_matches_the_original_algorithm(k1, k2, lam):
    x = clustered(12, [8] * 12, dim=16, noise=0.4, seed=k1).numpy()
    q, g = x[:25], x[25:]

    def dist(a, b):
        return np.sqrt(np.maximum(2 - 2 * a @ b.T, 0))
    fast = re_ranking(dist(q, g), dist(q, q), dist(g, g), k1, k2, lam)
    slow = re_ranking_loop(dist(q, g), dist(q, q), dist(g, g), k1, k2, lam)
    assert fast.shape == (25, len(g))
    assert np.abs(fast - slow).max() < 1e-5


def test_re_ranking_in_evaluation_improves_on_clustered_data():
    from reidlab.evaluation import evaluate
    x = clustered(30, [10] * 30, dim=32, noise=0.9, seed=1)
    pids = np.repeat(np.arange(30), 10)
    cams = np.tile(np.arange(10), 30)
    qi = np.arange(0, 300, 10)
    gi = np.setdiff1d(np.arange(300), qi)
    q, g = x[qi], x[gi]
    base = (1 - q @ g.T).numpy()
    rr = re_ranking(base, (1 - q @ q.T).numpy(), (1 - g @ g.T).numpy())
    a = evaluate(base, pids[qi], pids[gi], cams[qi], cams[gi])["mAP"]
    b = evaluate(rr, pids[qi], pids[gi], cams[qi], cams[gi])["mAP"]
    assert b > a
