"""``--mode cluster-sweep``: one Jaccard graph per k1 reused for every eps and min_samples, with the labels the
loop's pseudo_labels gives at each setting, the loop's own counts from a checkpoint, and its mistakes."""
import json
import re
import shutil

import numpy as np
import pytest
import torch

from reidlab.clustering import pseudo_labels
from reidlab.clustering.sweep import describe, sweep, with_singletons
from tests.test_unsup import TINY


def blobs(n_ids=25, per=12, dim=32, spread=0.35, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_ids, dim, generator=g)
    x = centres.repeat_interleave(per, 0) + spread * torch.randn(n_ids * per, dim, generator=g)
    return torch.nn.functional.normalize(x, dim=1), np.repeat(np.arange(n_ids), per)


def test_each_setting_has_the_loops_labels():
    feats, truth = blobs()
    eps, k1, ms = [0.3, 0.45, 0.6], [8, 15], [2, 4]
    rows, labels = sweep(feats, eps, k1, ms, k2=4, knn_backend="torch", truth=truth)
    assert [(r["k1"], r["min_samples"], r["eps"]) for r in rows] == [(k, m, e) for k in k1 for m in ms for e in eps]
    for (k, m, e), got in labels.items():
        want, info = pseudo_labels(feats, k, 4, e, m, "torch")
        assert np.array_equal(got, want), (k, m, e)
        row = next(r for r in rows if (r["k1"], r["min_samples"], r["eps"]) == (k, m, e))
        assert (row["clusters"], row["outliers"]) == (info["num_clusters"], info["num_outliers"])
    assert max(r["ari"] for r in rows) > 0.9          # well-separated blobs: some setting finds the identities


def test_scores_count_each_outlier_alone():
    labels = np.array([0, 0, 1, 1, -1, -1])
    assert with_singletons(labels).tolist() == [0, 0, 1, 1, 2, 3]
    row = describe(labels, truth=np.array([0, 0, 1, 1, 2, 3]))
    assert (row["ari"], row["ami"], row["clusters"], row["outliers"]) == (1.0, 1.0, 2, 2)
    assert row["largest_cluster_share"] == pytest.approx(1 / 3, abs=1e-4)
    none = describe(np.full(5, -1), truth=np.zeros(5, dtype=int))
    assert (none["clusters"], none["largest_cluster_share"]) == (0, 0.0)


def test_the_sweep_of_a_checkpoint_counts_as_the_loop_did(tiny_root, tmp_path, main_in_process):
    """Epoch 2 of a run clusters the features of the model that last.pt holds after epoch 1: the sweep of that
    checkpoint, at the run's setting, finds the epoch-2 record's clusters, outliers and cluster sizes."""
    base = [*TINY, "--data-root", tiny_root, "--output", tmp_path, "--name", "r"]
    assert main_in_process(*base, "--epochs", "1")[0] == 0
    shutil.copy(tmp_path / "r" / "last.pt", tmp_path / "epoch1.pt")
    assert main_in_process("--resume", tmp_path / "r", "--epochs", "2")[0] == 0
    epoch2 = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[-1])
    assert epoch2["epoch"] == 2
    plot = tmp_path / "sweep" / "eps.png"
    code, out, err = main_in_process("--mode", "cluster-sweep", "--checkpoint", tmp_path / "epoch1.pt",
                                     "--data-root", tiny_root, "--eps", "0.5,0.6,0.7", "--min-samples", "2,4",
                                     "--output", plot)
    assert code == 0, err
    table = json.loads(plot.with_suffix(".json").read_text())
    assert plot.stat().st_size > 10_000 and table["labelled"] and table["images"] == 200
    own = next(r for r in table["rows"] if (r["k1"], r["min_samples"], r["eps"]) == (10, 4, 0.6))
    for mine, theirs in (("clusters", "num_clusters"), ("outliers", "num_outliers"),
                         ("largest_cluster_share", "largest_cluster_share"),
                         ("cluster_size_median", "cluster_size_median")):
        assert own[mine] == epoch2[theirs], mine
    assert len(table["rows"]) == 6 and all(-1 <= r["ari"] <= 1 and -1 <= r["ami"] <= 1 for r in table["rows"])
    assert "0.6*" in out


def test_sweep_mistakes(tiny_root, tmp_path, main_in_process):
    ckpt = tmp_path / "none.pt"
    for args, words in ((["--eps", "0.3,abc"], "comma list"), (["--eps", "0.2:0.1:0.05"], "comma list"),
                        (["--eps", "0.5,1.2"], r"\[1e-06, 1.0\)"), (["--k1", "2.5"], "whole numbers"),
                        (["--min-samples", "0"], ">= 1"), (["--output", tmp_path], "is a folder"),
                        (["--output", tmp_path / "plot.txt"], "plot"), ([], "checkpoint")):
        code, _, err = main_in_process("--mode", "cluster-sweep", "--checkpoint", ckpt, "--data-root", tiny_root,
                                       *args)
        assert code == 2 and re.search(words, err), (args, err)
    code, _, err = main_in_process("--mode", "cluster-sweep", "--data-root", tiny_root)
    assert code == 2 and "--checkpoint" in err
