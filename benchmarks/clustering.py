"""Pseudo-label step at re-ID scale: seconds and peak memory per phase, next to a dense reference.

Features: L2-normalised, D = 2048, clusters of 5-30 members like re-ID identities. For each N, prints one
JSON line per phase (kNN, reciprocal sets, weights, query expansion, Jaccard, DBSCAN) of this project's
sparse code, and -- where N <= --dense-max -- the same run through a dense re-implementation with the
structure of the published code (dense N x N V, Python loops over points, an inverted index for the
Jaccard sums) followed by scikit-learn's DBSCAN on the dense matrix, with the largest difference of
the two distance matrices and whether the labels agree.

With ``--method hdc`` (3C's clustering, clustering.hdc) one graph of 3C's Jaccard distance (k1 + 1 ranked), then DBSCAN
(eps 0.6, min_samples 4: 3C's warm-up) and HDC (into 750 clusters up to 20,000 points, as 3C on Market-1501, 1,000
beyond, as on MSMT17; its recipe's outliers and k-means++2) on that same graph, each timed with its peak memory: the
step with either method, and their ratio.

With ``--distance ca-jaccard`` the same for CA-Jaccard (clustering.ca_jaccard; its recipe's values: k1_intra 5,
k1_inter 20, k2_intra 2, k2_inter 4), and with ``--distance both`` the two one after the other on the same
features (cameras: 6 up to 20,000 points, as Market-1501, else 15, as MSMT17), with their ratios.

    python -m benchmarks.clustering                      # N = 12,936, 32,621, 100,000 (and 1,000,000 on a GPU)
    python -m benchmarks.clustering --sizes 12936 --device cuda
    python -m benchmarks.clustering --distance both --dense-max 0
    python -m benchmarks.clustering --method hdc
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F

from reidlab.clustering import dbscan, knn
from reidlab.clustering.ca_jaccard import ca_jaccard_graph
from reidlab.clustering.jaccard import jaccard_graph, to_csr


class Meter:
    """Seconds and peak memory (GPU: allocated by torch; CPU: the process' resident set) per phase."""

    def __init__(self, device: torch.device, label: dict):
        self.device, self.label, self.rows = device, label, []

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    @contextlib.contextmanager
    def __call__(self, name: str):
        peak = [0.0]
        stop = threading.Event()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            def poll():
                while not stop.is_set():
                    peak[0] = max(peak[0], self._rss_mb())
                    stop.wait(0.005)
            watcher = threading.Thread(target=poll, daemon=True)
            watcher.start()
        t = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
                peak[0] = torch.cuda.max_memory_allocated(self.device) / 2**20
            else:
                stop.set()
                watcher.join()
                peak[0] = max(peak[0], self._rss_mb())
            row = {**self.label, "phase": name, "seconds": round(time.perf_counter() - t, 3),
                   "peak_mb": round(peak[0])}
            self.rows.append(row)
            print(json.dumps(row), flush=True)


def clustered_features(n: int, dim: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    g = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(g.integers(5, 31)))
    sizes[-1] -= sum(sizes) - n
    labels = torch.from_numpy(np.repeat(np.arange(len(sizes)), sizes)).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    centers = F.normalize(torch.randn(len(sizes), dim, generator=gen, device=device), dim=1)
    x = centers[labels] + 0.65 / dim ** 0.5 * torch.randn(n, dim, generator=gen, device=device)
    return F.normalize(x, dim=1)


# ---- the dense reference, structured as the published compute_jaccard_distance ----------------

def _recip(ranking: np.ndarray, i: int, k: int) -> np.ndarray:
    fw = ranking[i, : k + 1]
    return fw[np.where(ranking[fw, : k + 1] == i)[0]]


def dense_reference(x: torch.Tensor, ranking: np.ndarray, k1: int, k2: int, meter: Meter) -> np.ndarray:
    n = x.shape[0]
    with meter("reciprocal"):
        r1 = [_recip(ranking, i, k1) for i in range(n)]
        rh = [_recip(ranking, i, int(np.around(k1 / 2))) for i in range(n)]
    with meter("weights"):
        V = np.zeros((n, n), dtype=np.float32)
        for i in range(n):
            exp = r1[i]
            for c in r1[i]:
                if len(np.intersect1d(rh[c], r1[i])) > 2 / 3 * len(rh[c]):
                    exp = np.append(exp, rh[c])
            exp = np.unique(exp)
            d = 2 - 2 * (x[i:i + 1] @ x[exp].T)
            V[i, exp] = torch.softmax(-d, dim=1).view(-1).cpu().numpy()
    if k2 != 1:
        with meter("query_expansion"):
            V_qe = np.zeros_like(V)
            for i in range(n):
                V_qe[i] = V[ranking[i, :k2]].mean(0)
            V = V_qe
            del V_qe
    with meter("jaccard"):
        inv = [np.where(V[:, i] != 0)[0] for i in range(n)]
        jac = np.zeros((n, n), dtype=np.float32)
        for i in range(n):
            tmin = np.zeros(n, dtype=np.float32)
            nz = np.where(V[i] != 0)[0]
            for k in nz:
                tmin[inv[k]] += np.minimum(V[i, k], V[inv[k], k])
            jac[i] = 1 - tmin / (2 - tmin)
        np.maximum(jac, 0, out=jac)
    return jac


CA_RECIPE = dict(k1_intra=5, k1_inter=20, k2_intra=2, k2_inter=4)


def cameras(n: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """Camera ids: 6 cameras up to 20,000 images (Market-1501's count), 15 beyond (MSMT17's), drawn at random."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 6 if n <= 20000 else 15, (n,), generator=g).to(device)


def run_ca(n: int, device: torch.device, eps: float, min_samples: int, x: torch.Tensor | None = None) -> dict:
    """CA-Jaccard's pseudo-label step, phase by phase (its kNN is the two camera-split lists)."""
    x = clustered_features(n, 2048, device) if x is None else x
    cams = cameras(n, device)
    meter = Meter(device, {"N": n, "impl": "sparse-ca-jaccard", "device": str(device)})
    i, j, d = ca_jaccard_graph(x, cams, phase=meter, **CA_RECIPE)
    with meter("dbscan"):
        labels = dbscan((i, j, d, n), eps, min_samples)
    summary = {"N": n, "summary": True, "distance": "ca-jaccard", "cameras": int(cams.max()) + 1,
               "sparse_s": round(sum(r["seconds"] for r in meter.rows), 2),
               "jaccard_dbscan_s": round(sum(r["seconds"] for r in meter.rows if r["phase"] != "knn"), 2),
               "sparse_peak_mb": max(r["peak_mb"] for r in meter.rows), "clusters": int(labels.max() + 1),
               "outliers": int((labels < 0).sum()), "pairs": int(d.numel())}
    print(json.dumps(summary), flush=True)
    return summary


def run(n: int, device: torch.device, dense_max: int, k1: int, k2: int, eps: float, min_samples: int) -> dict:
    x = clustered_features(n, 2048, device)
    meter = Meter(device, {"N": n, "impl": "sparse", "device": str(device)})
    with meter("knn"):
        ranking, sims = knn(x, k1, return_sims=True)
    i, j, d = jaccard_graph(x, k1, k2, ranking=ranking, ranking_sims=sims, phase=meter)
    with meter("dbscan"):
        labels = dbscan((i, j, d, n), eps, min_samples)
    sparse_s = sum(r["seconds"] for r in meter.rows)
    summary = {"N": n, "summary": True, "sparse_s": round(sparse_s, 2),
               "jaccard_dbscan_s": round(sum(r["seconds"] for r in meter.rows if r["phase"] != "knn"), 2),
               "sparse_peak_mb": max(r["peak_mb"] for r in meter.rows), "clusters": int(labels.max() + 1),
               "outliers": int((labels < 0).sum()), "pairs": int(d.numel())}
    if n <= dense_max:
        from sklearn.cluster import DBSCAN
        ref = Meter(device, {"N": n, "impl": "dense_reference", "device": str(device)})
        with ref("knn"):
            rk = knn(x, k1).cpu().numpy()
        jac = dense_reference(x, rk, k1, k2, ref)
        with ref("dbscan"):
            ref_labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed", n_jobs=-1).fit_predict(jac)
        mine = to_csr(i, j, d, n).toarray()
        mine[mine == 0] = 1
        coo = to_csr(i, j, d, n).tocoo()
        mine[coo.row, coo.col] = coo.data
        dense_s = sum(r["seconds"] for r in ref.rows)
        dense_jd = sum(r["seconds"] for r in ref.rows if r["phase"] != "knn")
        summary.update(dense_s=round(dense_s, 2), speedup=round(dense_s / sparse_s, 1),
                       dense_jaccard_dbscan_s=round(dense_jd, 2),
                       speedup_without_knn=round(dense_jd / summary["jaccard_dbscan_s"], 1),
                       dense_peak_mb=max(r["peak_mb"] for r in ref.rows),
                       max_abs_diff=float(np.abs(mine - jac).max()),
                       same_labels=bool(np.array_equal(labels, ref_labels)),
                       same_ranking=bool(np.array_equal(rk, ranking.cpu().numpy())))
    print(json.dumps(summary), flush=True)
    return summary


def run_hdc(n: int, device: torch.device, k1: int, k2: int) -> dict:
    """One graph of 3C's Jaccard distance, then DBSCAN and HDC on it (module docstring)."""
    from reidlab.clustering.hdc import hdc
    x = clustered_features(n, 2048, device)
    meter = Meter(device, {"N": n, "impl": "sparse-3c", "device": str(device)})
    with meter("knn"):
        ranking, sims = knn(x, k1 + 1, return_sims=True)
    i, j, d = jaccard_graph(x, k1, k2, ranking=ranking, ranking_sims=sims, phase=meter)
    graph_s = sum(r["seconds"] for r in meter.rows)
    graph_mb = max(r["peak_mb"] for r in meter.rows)
    with meter("dbscan"):
        labels = dbscan((i, j, d, n), 0.6, 4)
    clusters = 750 if n <= 20000 else 1000
    with meter("hdc"):
        r = hdc(x, (i, j, d), clusters, outlier=True, init="k-means++2", seed=0)
    by = {row["phase"]: row for row in meter.rows}
    summary = {"N": n, "summary": True, "method": "hdc vs dbscan", "clusters_asked": clusters,
               "graph_s": round(graph_s, 2), "graph_peak_mb": graph_mb,
               "dbscan_s": by["dbscan"]["seconds"], "dbscan_peak_mb": by["dbscan"]["peak_mb"],
               "hdc_s": by["hdc"]["seconds"], "hdc_peak_mb": by["hdc"]["peak_mb"], "hdc_iterations": r.iterations,
               "step_with_dbscan_s": round(graph_s + by["dbscan"]["seconds"], 2),
               "step_with_hdc_s": round(graph_s + by["hdc"]["seconds"], 2),
               "step_time_hdc_over_dbscan": round((graph_s + by["hdc"]["seconds"])
                                                  / (graph_s + by["dbscan"]["seconds"]), 2),
               "dbscan_clusters": int(labels.max() + 1), "hdc_clusters": int(r.labels.max() + 1),
               "hdc_outliers": int((r.labels < 0).sum())}
    print(json.dumps(summary), flush=True)
    return summary


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dense-max", type=int, default=12936, help="largest N run through the dense reference")
    p.add_argument("--k1", type=int, default=30)
    p.add_argument("--k2", type=int, default=6)
    p.add_argument("--eps", type=float, default=0.4)
    p.add_argument("--min-samples", type=int, default=4)
    p.add_argument("--distance", choices=("jaccard", "ca-jaccard", "both"), default="jaccard")
    p.add_argument("--method", choices=("dbscan", "hdc"), default="dbscan",
                   help="hdc: 3C's clustering against DBSCAN on one graph of its Jaccard distance")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    sizes = a.sizes or ([12936, 32621, 100000] + ([1000000] if device.type == "cuda" else []))
    for n in sizes:
        if a.method == "hdc":
            run_hdc(n, device, a.k1, a.k2)
        elif a.distance == "jaccard":
            run(n, device, a.dense_max, a.k1, a.k2, a.eps, a.min_samples)
        elif a.distance == "ca-jaccard":
            run_ca(n, device, a.eps, a.min_samples)
        else:                        # each in a fresh process: the peak memory is the process' resident set
            plain, ca = (child(n, distance, a) for distance in ("jaccard", "ca-jaccard"))
            print(json.dumps({"N": n, "ca_over_jaccard": {
                "time": round(ca["sparse_s"] / plain["sparse_s"], 2),
                "time_without_knn": round(ca["jaccard_dbscan_s"] / plain["jaccard_dbscan_s"], 2),
                "peak_memory": round(ca["sparse_peak_mb"] / plain["sparse_peak_mb"], 2)}}), flush=True)


def child(n: int, distance: str, a) -> dict:
    """One size and distance in a new process; its lines are printed here, its summary returned."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "benchmarks.clustering", "--sizes", str(n), "--distance", distance,
                          "--device", a.device, "--dense-max", str(a.dense_max), "--k1", str(a.k1), "--k2", str(a.k2),
                          "--eps", str(a.eps), "--min-samples", str(a.min_samples)],
                         check=True, capture_output=True, text=True).stdout
    print(out, end="", flush=True)
    return [json.loads(line) for line in out.splitlines() if '"summary"' in line][-1]


if __name__ == "__main__":
    main()
