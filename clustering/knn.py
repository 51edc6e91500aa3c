"""k nearest neighbours by inner product of L2-normalised features, self first.

faiss when it is installed (a GPU index when faiss sees a GPU and the features are on one),
otherwise an exact blockwise matmul + top-k in torch on the features' device.
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def _faiss():
    try:
        import faiss  # noqa: PLC0415  (optional dependency, imported where used)
        return faiss
    except ImportError:
        return None


def knn_torch(features: torch.Tensor, k: int, block: int = 1024) -> torch.Tensor:
    n = features.shape[0]
    out = torch.empty((n, k), dtype=torch.long, device=features.device)
    for s in range(0, n, block):
        sims = features[s:s + block] @ features.T
        out[s:s + block] = sims.topk(k, dim=1).indices
    return out


def knn_faiss(features: torch.Tensor, k: int, faiss) -> torch.Tensor:
    x = features.detach().float().cpu().contiguous().numpy()
    index = faiss.IndexFlatIP(x.shape[1])
    if features.is_cuda and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), features.device.index or 0, index)
    index.add(x)
    _, idx = index.search(x, k)
    return torch.from_numpy(idx).long().to(features.device)


def self_first(ranking: torch.Tensor) -> torch.Tensor:
    """Put each row's own index in column 0 (ties between duplicates may have put another first)."""
    n, k = ranking.shape
    own = torch.arange(n, device=ranking.device)[:, None]
    is_self = ranking == own
    rest = ranking.masked_fill(is_self, -1)
    # stable order of the others, self removed, then prepend self and drop the overflow
    order = torch.argsort((rest < 0).to(torch.int8), dim=1, stable=True)
    rest = rest.gather(1, order)
    return torch.cat([own, rest[:, : k - 1]], dim=1)


def knn(features: torch.Tensor, k: int, backend: str = "auto") -> torch.Tensor:
    """N x k neighbour indices (int64, on the features' device), nearest first, self in column 0."""
    k = min(k, features.shape[0])
    faiss = _faiss() if backend in ("auto", "faiss") else None
    if backend == "faiss" and faiss is None:
        raise ImportError("knn backend 'faiss' asked for, but faiss is not installed (pip install faiss-cpu)")
    ranking = knn_faiss(features, k, faiss) if faiss is not None else knn_torch(features, k)
    return self_first(ranking)
