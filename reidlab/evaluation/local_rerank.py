"""Global-then-local matching (Pirt, section 3.4, "Matching strategy"; ``test.local_rerank``): the global
distance ranks the gallery; the top N (100) of each query are then ordered by the global distance plus a
confidence-weighted distance of the part features, and stay ahead of the rest, whose order is kept.

local(q, g) = sum_p w_p d_p(q, g) / sum_p w_p, with d_p the cosine distance of part p and w_p the product of
the two images' confidences for it (``qg``: Table 5's "Q & G"), the query's alone (``q``), the gallery
image's alone (``g``) or 1 (``none``). A pair whose weights are all zero gets the mean part distance.
Any model with ``retrieval_parts(images, ...)`` -> {global, parts, confidence} and the capability
attribute ``local_parts = True`` can use it (Pirt without pose features has no parts and says False).
"""
from __future__ import annotations

import torch

CONFIDENCE = ("qg", "q", "g", "none")


def require_local_parts(model: torch.nn.Module, name: str) -> None:
    """The ConfigError of ``test.local_rerank`` on a model without part features (``local_parts``)."""
    if not getattr(model, "local_parts", False):
        from reidlab.errors import ConfigError
        raise ConfigError(f"test.local_rerank needs a model whose retrieval_parts() gives part features (pirt "
                          f"with model.args.pose=true), not {name!r}: set test.local_rerank=false")


def require_global_feature(model: torch.nn.Module, name: str) -> None:
    """The ConfigError of ``test.feature=global`` on a model whose retrieval feature has no global piece (PCB: its
    first piece is the top stripe, which ranking alone would pass off as a global feature)."""
    if not getattr(model, "global_feature", True):
        from reidlab.errors import ConfigError
        raise ConfigError(f"test.feature=global ranks by the model's global feature alone, and {name!r} has none "
                          f"(its retrieval feature is its {len(model.feature_splits)} stripes): set test.feature=all")


def local_rerank(global_dist: torch.Tensor, q_parts: torch.Tensor, g_parts: torch.Tensor, q_conf: torch.Tensor,
                 g_conf: torch.Tensor, top_n: int = 100, confidence: str = "qg") -> torch.Tensor:
    """Q x G distances whose order is the re-ranked top N of each row, then the rest in the global order."""
    n = min(top_n, global_dist.shape[1])
    top = torch.topk(global_dist, n, dim=1, largest=False).indices                     # Q x N
    cand = g_parts[top]                                                                # Q x N x P x D
    d = 1 - (q_parts[:, None] * cand).sum(-1)                                          # Q x N x P
    ones = torch.ones_like(d)
    w = {"qg": q_conf[:, None, :] * g_conf[top], "q": q_conf[:, None, :] * ones, "g": g_conf[top],
         "none": ones}[confidence]
    total = w.sum(-1)
    local = torch.where(total > 0, (w * d).sum(-1) / total.clamp(min=1e-12), d.mean(-1))
    out = global_dist + 10.0                                                           # behind every top-N entry
    out.scatter_(1, top, global_dist.gather(1, top) + local)
    return out
