"""k nearest neighbours by inner product of L2-normalised features, self first.

faiss when it is installed (a GPU index when faiss sees a GPU and the features are on one),
otherwise an exact blockwise matmul + top-k in torch on the features' device.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)


def _faiss():
    try:
        import faiss  # noqa: PLC0415  (optional dependency, imported where used)
        return faiss
    except ImportError:
        return None


def knn_torch(features: torch.Tensor, k: int, block: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    n = features.shape[0]
    idx = torch.empty((n, k), dtype=torch.long, device=features.device)
    val = torch.empty((n, k), dtype=features.dtype, device=features.device)
    for s in range(0, n, block):
        top = (features[s:s + block] @ features.T).topk(k, dim=1)
        idx[s:s + block], val[s:s + block] = top.indices, top.values
    return idx, val


def knn_faiss(features: torch.Tensor, k: int, faiss) -> tuple[torch.Tensor, torch.Tensor]:
    x = features.detach().float().cpu().contiguous().numpy()
    index = faiss.IndexFlatIP(x.shape[1])
    if features.is_cuda and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), features.device.index or 0, index)
    index.add(x)
    sims, idx = index.search(x, k)
    return torch.from_numpy(idx).long().to(features.device), torch.from_numpy(sims).to(features.device)


def self_first(ranking: torch.Tensor, sims: torch.Tensor | None = None, self_sims: torch.Tensor | None = None):
    """Put each row's own index in column 0 (ties between duplicates may have put another first).

    With ``sims`` (the similarities of ``ranking``) and ``self_sims`` (N), returns both, reordered alike."""
    n, k = ranking.shape
    own = torch.arange(n, device=ranking.device)[:, None]
    is_self = ranking == own
    rest = ranking.masked_fill(is_self, -1)
    # stable order of the others, self removed, then prepend self and drop the overflow
    order = torch.argsort((rest < 0).to(torch.int8), dim=1, stable=True)[:, : k - 1]
    out = torch.cat([own, rest.gather(1, order)], dim=1)
    if sims is None:
        return out
    return out, torch.cat([self_sims[:, None].to(sims.dtype), sims.gather(1, order)], dim=1)


def knn_faiss_approximate(features: torch.Tensor, k: int, kind: str, faiss) -> tuple[torch.Tensor, torch.Tensor]:
    """faiss IVF (nlist ~ 4 sqrt(N), 32 probes) or HNSW (32 links, efSearch 128), inner product."""
    x = features.detach().float().cpu().contiguous().numpy()
    n, d = x.shape
    if kind == "ivf":
        nlist = max(1, int(4 * n ** 0.5))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        index.train(x[rng.choice(n, size=min(n, 64 * nlist), replace=False)])
        index.nprobe = min(nlist, 32)
    else:
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = max(128, 2 * k)
    index.add(x)
    sims, idx = index.search(x, k)
    missing = idx < 0                                          # unfilled slots (rare): self
    idx = np.where(missing, np.arange(n)[:, None], idx)
    sims = np.where(missing, (x * x).sum(1)[:, None], sims)
    return torch.from_numpy(idx).long().to(features.device), torch.from_numpy(sims).to(features.device)


def recall_at_k(features: torch.Tensor, ranking: torch.Tensor, samples: int = 1000, seed: int = 0) -> float:
    """Fraction of the exact k nearest neighbours found, measured on a random sample of points."""
    n, k = ranking.shape
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(n, generator=g)[: min(samples, n)].to(features.device)
    exact = (features[pick] @ features.T).topk(k, dim=1).indices
    found = (exact[:, :, None] == ranking[pick][:, None, :]).any(-1).float().mean()
    return float(found)


def knn(features: torch.Tensor, k: int, backend: str = "auto", return_sims: bool = False):
    """N x k neighbour indices (int64, on the features' device), nearest first, self in column 0;
    with ``return_sims`` also their inner products (N x k).

    backend: ``auto`` (exact faiss Flat when faiss is installed, else exact torch), ``faiss``,
    ``torch``, or the approximate ``faiss-ivf`` / ``faiss-hnsw`` for very large N (their measured
    recall is logged)."""
    k = min(k, features.shape[0])
    if backend not in ("auto", "faiss", "torch", "faiss-ivf", "faiss-hnsw"):
        raise ValueError(f"unknown knn backend {backend!r}: auto, faiss, torch, faiss-ivf or faiss-hnsw")
    faiss = _faiss() if backend != "torch" else None
    if backend != "auto" and backend != "torch" and faiss is None:
        raise ImportError(f"knn backend {backend!r} asked for, but faiss is not installed (pip install faiss-cpu)")
    if backend in ("faiss-ivf", "faiss-hnsw"):
        ranking, sims = knn_faiss_approximate(features, k, backend.split("-")[1], faiss)
        log.info("approximate kNN (%s): recall@%d %.3f on 1000 sampled points", backend, k,
                 recall_at_k(features, ranking))
    else:
        ranking, sims = knn_faiss(features, k, faiss) if faiss is not None else knn_torch(features, k)
    if not return_sims:
        return self_first(ranking)
    return self_first(ranking, sims, (features * features).sum(1))


def _padded(top, ok: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A top-k of masked similarities with its masked-out slots (-inf) as -1 indices and 0 similarities."""
    return top.indices.masked_fill(~ok, -1), top.values.masked_fill(~ok, 0)


def _camera_knn_faiss(features: torch.Tensor, cams: torch.Tensor, k_intra: int, k_inter: int, faiss):
    """camera_knn with exact faiss indexes: per camera, one over its images and one over all the others'."""
    x = features.detach().float().cpu().contiguous().numpy()
    c = cams.cpu().numpy()
    n = x.shape[0]
    out = [np.full((n, k_intra), -1, dtype=np.int64), np.zeros((n, k_intra), dtype=np.float32),
           np.full((n, k_inter), -1, dtype=np.int64), np.zeros((n, k_inter), dtype=np.float32)]
    for cam in np.unique(c):
        mine = np.flatnonzero(c == cam)
        for members, k, (idx, sim) in ((mine, k_intra, (out[0], out[1])),
                                       (np.flatnonzero(c != cam), k_inter, (out[2], out[3]))):
            k = min(k, len(members))
            if k == 0:
                continue
            index = faiss.IndexFlatIP(x.shape[1])
            index.add(x[members])
            s, i = index.search(x[mine], k)
            idx[mine, :k], sim[mine, :k] = members[i], s
    return [torch.from_numpy(a).to(features.device) for a in out]


def camera_knn(features: torch.Tensor, cams: torch.Tensor, k_intra: int, k_inter: int, block: int = 1024,
               backend: str = "auto"):
    """The two ranking lists of CA-Jaccard (Chen et al., CVPR 2024): each item's ``k_intra`` nearest among
    the images of its own camera (self first) and its ``k_inter`` nearest among the other cameras' images,
    by inner product, exact: with faiss (``auto`` when it is installed, or ``faiss``: per camera, an index of
    its images and one of the others'), or in row blocks of torch on the features' device (``torch``, or
    ``auto`` without faiss; one product per block serves both lists).

    Returns ``(intra, intra_sims, inter, inter_sims)``: N x k_intra and N x k_inter index and similarity
    tensors; where a camera (or the rest) holds fewer images, the row ends in -1 (similarity 0)."""
    n = features.shape[0]
    cams = torch.as_tensor(cams, device=features.device).long()
    if cams.shape != (n,):
        raise ValueError(f"camera_knn: {cams.numel()} camera ids for {n} features")
    k_intra, k_inter = min(k_intra, n), min(k_inter, n)
    faiss = _faiss() if backend in ("auto", "faiss") else None
    if backend == "faiss" and faiss is None:
        raise ImportError("knn backend 'faiss' asked for, but faiss is not installed (pip install faiss-cpu)")
    if faiss is not None:
        intra, intra_s, inter, inter_s = _camera_knn_faiss(features, cams, k_intra, k_inter, faiss)
        inter_s = inter_s.to(features.dtype)
    else:
        intra = torch.empty((n, k_intra), dtype=torch.long, device=features.device)
        inter = torch.empty((n, k_inter), dtype=torch.long, device=features.device)
        intra_s = torch.empty((n, k_intra), dtype=features.dtype, device=features.device)
        inter_s = torch.empty((n, k_inter), dtype=features.dtype, device=features.device)
        for s in range(0, n, block):
            sim = features[s:s + block] @ features.T
            same = cams[s:s + block, None] == cams[None, :]
            top = sim.masked_fill(~same, float("-inf")).topk(k_intra, dim=1)
            intra[s:s + block], intra_s[s:s + block] = _padded(top, top.values > float("-inf"))
            top = sim.masked_fill_(same, float("-inf")).topk(k_inter, dim=1)
            inter[s:s + block], inter_s[s:s + block] = _padded(top, top.values > float("-inf"))
    intra, intra_s = self_first(intra, intra_s.to(features.dtype), (features * features).sum(1))
    return intra, intra_s, inter, inter_s
