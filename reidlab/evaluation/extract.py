"""Batched feature extraction from a uint8 image store, on the model's device."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from reidlab.data.augment import normalise
from reidlab.errors import NonFiniteError
from reidlab.precision import autocast
from reidlab.progress import track

from .local_rerank import local_rerank, require_global_feature, require_local_parts


@torch.no_grad()
def extract_features(model: torch.nn.Module, images, device: torch.device, batch_size: int = 256,
                     flip: bool = False, description: str = "extracting features", shard=None,
                     teacher: dict | None = None, progress: bool = True, amp: str = "auto") -> torch.Tensor:
    """L2-normalised eval-mode features (N x D, float32, on ``device``) of a uint8 N x 3 x H x W store (a
    tensor, or a disk store of data.store).

    With ``flip`` the features of the image and its mirror are summed before normalising. With ``shard``
    = (rank, world, gather) this process extracts its contiguous share and ``gather`` joins the shares.
    ``teacher``: targets a model needs at test time too (``model.test_teacher_targets``), aligned with
    ``images``; flipped with the image when ``flip``. ``progress``: show a progress bar (the library API
    passes False). ``amp``: the run's ``train.amp`` (reidlab.precision: bf16 autocast on a GPU that has it,
    fp32 on the CPU by default). Features that are not finite (a model whose weights hold NaN or inf) are
    an error, never a result: :func:`require_finite`."""
    was_training = model.training
    model.eval()
    out = []
    n = images.shape[0]
    lo, hi = (n * shard[0] // shard[1], n * (shard[0] + 1) // shard[1]) if shard else (0, n)
    quiet = not progress or (bool(shard) and shard[0] > 0)
    for s in track(range(lo, hi, batch_size), description=description, disable=quiet):
        x = normalise(images[s:min(s + batch_size, hi)].to(device, non_blocking=True))
        t = {k: v[s:min(s + batch_size, hi)].to(device) for k, v in (teacher or {}).items()}
        with autocast(device, amp):
            f = model(x, **t).float()
            if flip:
                f = f + model(x.flip(-1), **{k: v.flip(-1) for k, v in t.items()}).float()
        out.append(F.normalize(f, dim=1))
    model.train(was_training)
    feats = torch.cat(out) if out else torch.empty(0, device=device)
    return require_finite(shard[2](feats) if shard else feats, description)


def require_finite(feats: torch.Tensor, what: str = "features") -> torch.Tensor:
    """``feats`` when every value is finite; otherwise a ``NonFiniteError`` saying how many rows are not (under
    torchrun every rank checks the same gathered rows, so every rank stops alike)."""
    bad = ~torch.isfinite(feats)
    if bool(bad.any()):
        rows = int(bad.reshape(len(feats), -1).any(1).sum())
        raise NonFiniteError(f"{what}: {rows} of {len(feats)} images have non-finite (NaN or inf) features, so no "
                             f"distance or metric can be computed from them; the model's weights hold NaN or inf, or "
                             f"overflow in its precision")
    return feats


@torch.no_grad()
def extract_parts(model: torch.nn.Module, images, device: torch.device, batch_size: int = 256,
                  teacher: dict | None = None, shard=None, amp: str = "auto") -> dict[str, torch.Tensor]:
    """``model.retrieval_parts`` of every image (global, parts, confidence), for the local re-ranking."""
    was_training = model.training
    model.eval()
    n = images.shape[0]
    lo, hi = (n * shard[0] // shard[1], n * (shard[0] + 1) // shard[1]) if shard else (0, n)
    pieces: dict[str, list] = {}
    for s in range(lo, hi, batch_size):
        x = normalise(images[s:min(s + batch_size, hi)].to(device, non_blocking=True))
        t = {k: v[s:min(s + batch_size, hi)].to(device) for k, v in (teacher or {}).items()}
        with autocast(device, amp):
            for k, v in model.retrieval_parts(x, **t).items():
                pieces.setdefault(k, []).append(v.float())
    model.train(was_training)
    out = {k: torch.cat(v) for k, v in pieces.items()}
    return {k: require_finite(shard[2](v) if shard else v, f"{k} features") for k, v in out.items()}


def evaluate_model(model: torch.nn.Module, query_images: torch.Tensor, gallery_images: torch.Tensor, query, gallery,
                   device: torch.device, batch_size: int = 256, flip: bool = False, rerank: dict | None = None,
                   visualize: tuple | None = None, shard=None, teacher: tuple | None = None,
                   local: dict | None = None, width: int | None = None, amp: str = "auto") -> dict:
    """Extract query and gallery features and score them: mAP, rank1/5/10, mINP (fractions).

    ``rerank`` (keyword arguments of :func:`evaluation.rerank.re_ranking`) re-ranks the distances first;
    ``visualize`` = (path, queries) also writes rank lists of that many queries (``evaluation.visualize``);
    ``width``: rank by the first ``width`` columns of the feature alone, renormalised (``test.feature=global``:
    the global piece of a part model's retrieval feature, models.registry.retrieval_feature); ``amp``: the
    precision (``train.amp``, reidlab.precision)."""
    from .metrics import evaluate, evaluate_features, pairwise_distance
    qt, gt = teacher or (None, None)
    labels = ([s.pid for s in query], [s.pid for s in gallery], [s.camid for s in query], [s.camid for s in gallery])
    if local is not None:                                    # Pirt's global-then-local matching
        q = extract_parts(model, query_images, device, batch_size, qt, shard, amp)
        g = extract_parts(model, gallery_images, device, batch_size, gt, shard, amp)
        dist = local_rerank(1 - q["global"] @ g["global"].T, q["parts"], g["parts"], q["confidence"],
                            g["confidence"], local["top_n"], local["confidence"])
        r = evaluate(dist, *labels)
        return {"mAP": r["mAP"], "rank1": float(r["cmc"][0]), "rank5": float(r["cmc"][4]),
                "rank10": float(r["cmc"][9]), "mINP": r["mINP"]}
    qf = extract_features(model, query_images, device, batch_size, flip, "query features", shard, qt, amp=amp)
    gf = extract_features(model, gallery_images, device, batch_size, flip, "gallery features", shard, gt, amp=amp)
    if width is not None:
        qf, gf = F.normalize(qf[:, :width], dim=1), F.normalize(gf[:, :width], dim=1)
    if rerank is None and not visualize:                     # chunked, on the features' device
        r = evaluate_features(qf, gf, *labels)
    else:
        if rerank is not None:                                 # from the features, by row blocks
            from .rerank import re_ranking_features
            dist = re_ranking_features(qf, gf, **rerank, cams=(labels[2], labels[3]))
        else:
            dist = pairwise_distance(qf, gf)
        r = evaluate(dist, *labels)
        if visualize:
            from .visualize import dataset_rank_lists
            dataset_rank_lists(visualize[0], dist, query, gallery, query_images, gallery_images, visualize[1])
    return {"mAP": r["mAP"], "rank1": float(r["cmc"][0]), "rank5": float(r["cmc"][4]),
            "rank10": float(r["cmc"][9]), "mINP": r["mINP"]}


def evaluate_run(model: torch.nn.Module, query_images: torch.Tensor, gallery_images: torch.Tensor, ds, cfg,
                 device: torch.device, rank_lists=None, shard=None, teacher: tuple | None = None) -> dict:
    """``evaluate_model`` on a dataset's query/gallery with a run config's ``test`` options, timed (eval_s);
    with ``rank_lists`` (a path) and ``test.visualize`` > 0, rank lists of that many queries are drawn."""
    import time
    t = cfg.test
    rerank = dict(k1=t.rerank_k1, k2=t.rerank_k2, lambda_value=t.rerank_lambda) if t.rerank else None
    if rerank is not None and t.rerank_distance == "ca-jaccard":
        rerank["ca"] = dict(k1_intra=t.rerank_k1_intra, k1_inter=t.rerank_k1_inter, k2_intra=t.rerank_k2_intra,
                            k2_inter=t.rerank_k2_inter)
    start = time.perf_counter()
    visualize = (rank_lists, t.visualize) if rank_lists is not None and t.visualize > 0 else None
    local = dict(top_n=t.local_topn, confidence=t.local_confidence) if t.local_rerank else None
    if local is not None:
        require_local_parts(model, type(model).__name__)
    if t.feature == "global":
        require_global_feature(model, type(model).__name__)
    width = model.feature_splits[0] if t.feature == "global" else None
    r = evaluate_model(model, query_images, gallery_images, ds.query, ds.gallery, device, t.batch_size, t.flip, rerank,
                       visualize, shard, teacher, local, width, cfg.train.amp)
    r["eval_s"] = round(time.perf_counter() - start, 2)
    return r
