"""Every numeric config key at the edges of its declared range, and drawn across and beyond it: the config
is either refused when it is built (a ConfigError) or the code that consumes the value runs. A value the
checks accept and the code then rejects is a mistake found minutes late, after the run folder exists.

``tiny_step`` runs each consumer of a numeric key with the config's values on tiny data (random images
at the config's size, a tiny pseudo-label set): the sampler, augmentation, the model (its BatchNorm
slices, its layout), both losses, the cluster memory, the optimiser and its schedule, the clustering,
feature extraction, re-ranking, the teacher noise and the teachers' thresholds, seeding, threads and
the image decoding. ``CONSUMED`` lists the keys it reads: a new numeric key without a consumer fails
``test_every_numeric_key_has_a_consumer``."""
import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reidlab.errors import ConfigError
from reidlab.runs.config import Config, build_config

BASE = [{"data": {"synthetic_size": "tiny", "height": 32, "width": 16}, "train": {"num_ids": 4, "num_instances": 4,
                                                                                  "iters": 1, "epochs": 2},
         "model": {"pretrained": "none"}, "cluster": {"k1": 10, "eps": 0.6}, "test": {"batch_size": 64}}]
CONSUMED = {
    "seed", "data.synthetic_seed", "data.height", "data.width", "data.workers", "data.memory_budget",
    "model.last_stride", "cluster.k1", "cluster.k2", "cluster.eps", "cluster.min_samples", "memory.temp",
    "memory.momentum", "loss.id", "loss.label_smoothing", "loss.triplet", "loss.margin", "loss.center",
    "loss.center_lr", "loss.parts", "teacher.jitter", "teacher.drop", "teacher.morph", "teacher.holes",
    "teacher.keypoint_threshold", "teacher.score_threshold", "teacher.min_size", "teacher.batch_size",
    "teacher.splits", "train.epochs", "train.iters", "train.num_ids", "train.num_instances", "train.lr",
    "train.weight_decay", "train.step_size", "train.steps", "train.gamma", "train.warmup_epochs",
    "train.warmup_factor", "train.cosine_start", "train.bn_images", "train.threads",
    "train.max_nonfinite_steps", "aug.flip", "aug.pad",
    "aug.erasing", "test.eval_every", "test.batch_size", "test.rerank_k1", "test.rerank_k2", "test.rerank_lambda",
    "test.visualize", "test.local_topn", "test.pool_ranklists", "test.pool_ranklists_every",
    "cluster.k1_intra", "cluster.k1_inter", "cluster.k2_intra", "cluster.k2_inter", "test.rerank_k1_intra",
    "test.rerank_k1_inter", "test.rerank_k2_intra", "test.rerank_k2_inter", "data.synthetic_hard",
    "cluster.hdc_num_clusters", "cluster.hdc_max_iter", "cluster.hdc_dbscan_epochs", "train.iters_for"}


def numeric_keys() -> dict[str, dataclasses.Field]:
    out = {}

    def walk(obj, prefix=""):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                walk(v, f"{prefix}{f.name}.")
            elif isinstance(v, (int, float, list)) and not isinstance(v, bool):
                out[prefix + f.name] = f
    walk(Config())
    return out


def nested(key: str, value) -> dict:
    d = value
    for part in reversed(key.split(".")):
        d = {part: d}
    return d


IMAGES: list[str] = []                     # two small image files for the decoding consumers


@pytest.fixture(scope="module", autouse=True)
def image_files_for_decoding(tmp_path_factory):
    from PIL import Image
    folder = tmp_path_factory.mktemp("config_edges")
    for i in range(2):
        Image.new("RGB", (20 + i, 40), (i * 90, 50, 200)).save(folder / f"{i}.png")
    IMAGES[:] = [str(folder / f"{i}.png") for i in range(2)]


def image_files() -> list[str]:
    assert IMAGES, "the module's fixture writes them"
    return IMAGES


def tiny_step(cfg) -> None:
    """Each consumer of a numeric key, run with ``cfg``'s values on tiny data (on the CPU)."""
    from reidlab.clustering import pseudo_labels
    from reidlab.clustering.methods import cluster_epoch
    from reidlab.data.annotations import TeacherNoise, degrade
    from reidlab.data.augment import augment_with_teacher
    from reidlab.data.images import load_images
    from reidlab.data.samplers import PKSampler, PseudoLabelSampler
    from reidlab.data.store import budget_bytes
    from reidlab.data.synthetic.generate import SIZES, _plan, hard_switches
    from reidlab.data.teachers import pick_person
    from reidlab.evaluation import extract_features
    from reidlab.evaluation.rerank import re_ranking
    from reidlab.models.factory import model_from_config
    from reidlab.models.sliced_bn import slice_batchnorms
    from reidlab.runs import determinism
    from reidlab.runs.loop import StepGuard, epoch_iters
    from reidlab.runs.optim import build_optimizer
    from reidlab.runs.run import seed_everything
    from reidlab.supervised.losses import CenterLoss
    from reidlab.supervised.trainer import reid_loss
    from reidlab.unsup.label_free import draw_pool_now, pool_queries
    from reidlab.clustering.ca_jaccard import ca_arguments
    from reidlab.unsup.trainer import cluster_contrast_loss, cluster_memories
    t, cpu = cfg.train, torch.device("cpu")
    threads = torch.get_num_threads()
    try:
        determinism.configure(cfg, cpu)                               # train.threads
    finally:
        torch.set_num_threads(threads)
    seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed * 100003 + t.epochs)
    _plan(SIZES["tiny"], False, cfg.data.synthetic_seed, hard_switches(cfg.data.synthetic_hard))
    H, W = cfg.data.height, cfg.data.width
    budget_bytes(cfg.data.memory_budget, cpu)
    load_images(image_files(), H, W, cfg.data.workers, resize=cfg.data.resize)

    n, ids = 16, 4
    labels, camids = np.arange(n) % ids, np.arange(n) // ids % 4
    rng = np.random.default_rng([cfg.seed, 1])
    iters = t.iters or 1
    assert epoch_iters(t, n) >= 1                                # train.iters_for
    batch = next(PseudoLabelSampler(labels, camids, t.num_ids, t.num_instances, rng, t.pass_end,
                                    t.replace_below).batches(iters))
    next(PKSampler(labels, camids, t.num_ids, t.num_instances, rng).batches(1))
    images = torch.randint(0, 256, (n, 3, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x, _ = augment_with_teacher(images[batch], {}, gen, cfg.aug.flip, cfg.aug.pad, cfg.aug.erasing,
                                cfg.aug.erasing_box)

    model = model_from_config(cfg, cpu, num_classes=ids)
    feats = extract_features(model, images, cpu, cfg.test.batch_size, cfg.test.flip)
    net = (slice_batchnorms(model, t.bn_images, t.bn_running, t.num_ids * t.num_instances, t.num_instances)
           if t.bn_images else model)
    net.train()
    idx = torch.as_tensor(batch)
    y = torch.as_tensor(labels)[idx]
    out = net(x)
    memories = cluster_memories(feats, torch.as_tensor(labels), model.feature_splits, cfg, cfg.seed)
    nce, _ = cluster_contrast_loss(memories, torch.as_tensor(labels))(out, idx)
    center = CenterLoss(ids, model.feature_dim) if cfg.loss.center > 0 else None
    sup, _ = reid_loss(out, y, cfg, center)
    loss = nce + sup
    assert torch.isfinite(loss), f"loss {loss}"
    optimizer, scheduler = build_optimizer(model, t)
    center_opt = torch.optim.SGD(center.parameters(), lr=cfg.loss.center_lr) if center is not None else None
    loss.backward()
    assert StepGuard(t.max_nonfinite_steps).good(loss, list(model.parameters()))
    optimizer.step()
    if center_opt is not None:
        center_opt.step()
    for epoch in range(min(t.epochs, 3)):
        scheduler.step()
        assert math.isfinite(optimizer.param_groups[0]["lr"]) and optimizer.param_groups[0]["lr"] >= 0
    _ = [e for e in range(1, min(t.epochs, 3) + 1) if e % cfg.test.eval_every == 0]
    for m in memories:
        assert torch.isfinite(m.features).all()

    g = torch.Generator().manual_seed(0)
    centers = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    points = torch.nn.functional.normalize(centers.repeat_interleave(8, 0) + 0.1 * torch.randn(64, 16, generator=g),
                                           dim=1)
    pseudo_labels(points, cfg.cluster.k1, cfg.cluster.k2, cfg.cluster.eps, cfg.cluster.min_samples, cfg.cluster.knn)
    cams = np.arange(64) % 4
    hdc = dataclasses.replace(cfg.cluster, method="hdc", hdc_num_clusters=min(cfg.cluster.hdc_num_clusters, 8))
    for epoch in (1, cfg.cluster.hdc_dbscan_epochs + 1):       # HDC's DBSCAN epochs and its first own epoch
        cluster_epoch(points, hdc, cams, epoch=epoch, seed=cfg.seed)
    for epoch in (1, 2):                                        # CA-Jaccard, its first epoch's warm-up and after
        ca = ca_arguments(dataclasses.replace(cfg.cluster, distance="ca-jaccard"), epoch == 1)
        pseudo_labels(points, cfg.cluster.k1, cfg.cluster.k2, cfg.cluster.eps, cfg.cluster.min_samples, "torch",
                      cams=cams, ca=ca)
    d = (1 - points @ points.T).clamp(min=0).numpy()
    re_ranking(d[:8, 8:], d[:8, :8], d[8:, 8:], cfg.test.rerank_k1, cfg.test.rerank_k2, cfg.test.rerank_lambda)
    t_ = cfg.test
    re_ranking(d[:8, 8:], d[:8, :8], d[8:, 8:], t_.rerank_k1, t_.rerank_k2, t_.rerank_lambda, cams=(cams[:8], cams[8:]),
               ca=dict(k1_intra=t_.rerank_k1_intra, k1_inter=t_.rerank_k1_inter, k2_intra=t_.rerank_k2_intra,
                       k2_inter=t_.rerank_k2_inter))
    min(cfg.test.visualize, 8)
    queries = pool_queries(len(points), cfg.test.pool_ranklists)
    [draw_pool_now(e, cfg.test.pool_ranklists_every, len(queries)) for e in range(1, 4)]
    torch.topk(torch.rand(4, 56), min(cfg.test.local_topn, 56), dim=1)         # local re-ranking's top-n

    tc = cfg.teacher
    teacher = {"keypoints": torch.rand(4, 17, 3) * torch.tensor([W - 1.0, H - 1.0, 2.0]),
               "mask": (torch.rand(4, 1, H, W) > 0.5).float()}
    degrade(teacher, TeacherNoise(tc.jitter, tc.drop, tc.morph, tc.holes, seed=cfg.seed))
    detections = {"labels": torch.tensor([1, 1]), "scores": torch.tensor([0.9, 0.3]),
                  "boxes": torch.tensor([[0.0, 0.0, W / 2, H], [1.0, 1.0, 4.0, 4.0]])}
    pick_person(detections, W, H, tc.score_threshold)
    float(tc.keypoint_threshold)
    from torchvision.models.detection.transform import GeneralizedRCNNTransform
    GeneralizedRCNNTransform(tc.min_size, 4 * tc.min_size, [0.5] * 3, [0.5] * 3)([torch.rand(3, H, W)])
    assert list(range(0, 3, tc.batch_size)) and set(tc.splits) <= {"train", "query", "gallery"}


def test_every_numeric_key_has_a_consumer():
    assert set(numeric_keys()) == CONSUMED


def default_of(f: dataclasses.Field):
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def edges(f: dataclasses.Field) -> list:
    """The declared range's edges: (value, allowed) pairs at each bound and just past it (for a list, its
    items')."""
    m, default = f.metadata, default_of(f)
    if "choices" in m:
        return [(c, True) for c in m["choices"]]
    typ = int if isinstance(default, (int, list)) else float
    step = 1 if typ is int else 1e-6
    out = []
    for bound, inclusive, side in ((m.get("ge"), True, -1), (m.get("gt"), False, -1), (m.get("le"), True, 1),
                                   (m.get("lt"), False, 1)):
        if bound is None:
            continue
        inside = bound if inclusive else bound - side * step
        outside = bound + side * step if inclusive else bound
        out += [(typ(inside), True), (typ(outside) if typ is int else outside, False)]
    return out


EDGE_CASES = [(k, v, ok) for k, f in numeric_keys().items() for v, ok in edges(f)]


@pytest.mark.parametrize("key,value,allowed", EDGE_CASES, ids=[f"{k}={v}" for k, v, _ in EDGE_CASES])
def test_each_edge_is_refused_at_build_time_or_runs(key, value, allowed):
    if isinstance(default_of(numeric_keys()[key]), list):
        value = [value]
    try:
        cfg = build_config("demo", [*BASE, nested(key, value)])
    except ConfigError:
        assert not allowed, f"{key}={value} is inside the declared range but refused"
        return
    assert allowed, f"{key}={value} is outside the declared range but accepted"
    tiny_step(cfg)


def values_for(f: dataclasses.Field):
    """Values across and beyond a key's declared range: its bounds, between them, past them, and the
    numbers no range allows (NaN, infinities)."""
    m, default = f.metadata, default_of(f)
    if "choices" in m:
        return st.sampled_from([*m["choices"], "nonsense"]) if not isinstance(default, list) else \
            st.lists(st.sampled_from([*m["choices"], "nonsense"]), min_size=1, max_size=3)
    lo = next((m[k] for k in ("ge", "gt") if k in m), None)
    hi = next((m[k] for k in ("le", "lt") if k in m), None)
    lo_draw = (lo if lo is not None else -10) - 3
    hi_draw = hi + 3 if hi is not None else max(4, abs(default) * 4 if isinstance(default, (int, float)) else 8)
    if isinstance(default, list):
        return st.lists(st.integers(int(lo_draw), int(hi_draw) + 60), max_size=3)
    if isinstance(default, int):
        return st.integers(int(lo_draw), int(hi_draw))
    return st.one_of(st.floats(lo_draw, hi_draw), st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0]))


KEYS = sorted(numeric_keys())
SMALL = {"data.height": 96, "data.width": 48, "teacher.min_size": 512, "test.batch_size": 512}   # the step stays tiny


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_drawn_values_are_refused_at_build_time_or_run(data):
    """One to three keys at a time (values interact: num_ids x num_instances, bn_images, warm-up and steps)."""
    keys = data.draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True), label="keys")
    overrides = []
    for key in keys:
        f = numeric_keys()[key]
        value = data.draw(values_for(f), label=key)
        if key in SMALL and isinstance(value, (int, float)) and math.isfinite(value):
            value = type(value)(min(value, SMALL[key]))
        overrides.append(nested(key, value))
    try:
        cfg = build_config("demo", [*BASE, *overrides])
    except ConfigError:
        return
    tiny_step(cfg)
