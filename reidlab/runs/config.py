"""Typed run configuration: YAML recipes (with ``_base_`` inheritance) plus command-line overrides.

Every key is declared here with its type; an unknown key is an error that names the closest valid one.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from reidlab.errors import ConfigError, closest

RECIPES = Path(__file__).parent / "recipes"


def key(default, *, choices: tuple | None = None, ge: float | None = None, gt: float | None = None,
        le: float | None = None, lt: float | None = None):
    """A config field with what it allows, declared next to it and checked when the config is built."""
    meta = {k: v for k, v in dict(choices=choices, ge=ge, gt=gt, le=le, lt=lt).items() if v is not None}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def allowed(meta: dict) -> str:
    """What a field's metadata allows, in words."""
    if "choices" in meta:
        return "one of " + ", ".join(repr(c) if isinstance(c, str) else str(c) for c in meta["choices"])
    lo = f"> {meta['gt']}" if "gt" in meta else f">= {meta['ge']}" if "ge" in meta else ""
    hi = f"< {meta['lt']}" if "lt" in meta else f"<= {meta['le']}" if "le" in meta else ""
    return "a value " + " and ".join(x for x in (lo, hi) if x)


def violates(value, meta: dict) -> bool:
    values = value if isinstance(value, list) else [value]
    if "choices" in meta:
        return any(v not in meta["choices"] for v in values)
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            return True
        if ("ge" in meta and v < meta["ge"]) or ("gt" in meta and v <= meta["gt"]) \
                or ("le" in meta and v > meta["le"]) or ("lt" in meta and v >= meta["lt"]):
            return True
    return False


@dataclass
class DataConfig:
    """The training (and test) data: which dataset, where, at what input size (docs/datasets.md)."""
    dataset: str = "synthetic"           # registry name; several joined by '+' train together (ids kept apart)
    test_dataset: str = ""               # evaluate on this dataset's query/gallery instead (cross-domain)
    root: str = ""                       # default: env REID_DATA, else ./datasets
    # the synthetic benchmark's size; pretrain: the population the pretrain_* recipes pretrain on
    synthetic_size: str = key("small", choices=("tiny", "small", "market", "pretrain"))
    synthetic_seed: int = key(0, ge=0)   # 0: synthetic-<size>/; N: synthetic-<size>-seedN/
    # the harder synthetic generator's switches (data/synthetic/generate.py): lookalike (realistic shared clothing),
    # crops (detector boxes), crowd (a second person), viewpoint (view-only details), camera (resolution, response,
    # clutter), or all; each set is its own tree, synthetic-<size>-hard[-<switches>]/
    synthetic_hard: list = key([], choices=("lookalike", "crops", "crowd", "viewpoint", "camera", "all"))
    height: int = key(256, ge=16)        # input height in pixels: every image is resized to height x width
    width: int = key(128, ge=8)          # input width in pixels
    workers: int = key(4, ge=1)          # image decoding threads
    resize: str = key("bilinear", choices=("bilinear", "bicubic"))   # PIL filter to height x width (data.images)
    memory_budget: float = key(0.0, ge=0)   # GB for in-memory image stores; beyond it, disk (data.store); 0: auto
    # cameras of a folder:PATH dataset (data/folder_dataset.py): auto | none | folder (first folder level) |
    # pattern (camera_pattern's first group over the relative path) | csv (labels_csv: path,camera[,pid])
    camera_from: str = key("auto", choices=("auto", "none", "folder", "pattern", "csv"))
    camera_pattern: str = ""             # e.g. _c(\d+)_ ; a regular expression with one group
    labels_csv: str = ""                 # a CSV of path,camera (and pid where known), paths relative to the folder


@dataclass
class ModelConfig:
    """The model, by registered name. The keys below are common to the models that take them (a model
    that does not take one leaves it at its default, or it is an error); ``args`` holds the keyword
    arguments of that model's own constructor (e.g. DAAF's ``hab``, ``pab``, ``lambda_h``, ``loss_form``)."""
    name: str = "resnet50"               # a registered model (python main.py --list)
    pretrained: str = "imagenet"         # imagenet | none | path to a state dict
    last_stride: int = key(1, choices=(1, 2))   # the ResNet's last stage stride (1: Bag of Tricks' 16 x 8 map)
    pooling: str = key("gem", choices=("gem", "avg", "max"))   # global pooling: generalised mean, average, max
    attention: str = ""                  # a registered block (pla, hla, pla+hla, dla, mla) or package.module:Class
    attention_args: dict = field(default_factory=dict)   # keyword arguments of the block
    attention_placement: str = key("conv2", choices=("conv2", "after"))   # conv2: replaces the last stage's 3x3
    attention_blocks: str = key("all", choices=("all", "last"))  # with conv2: all blocks of the last stage, or the last
    # bnneck: Bag of Tricks' BN neck | trinet: FC 1024-BN-ReLU-FC 128 (Hermans et al.) | none: no neck, the classifier
    # (with a bias) and the triplet on the pooled feature (BoT's Baseline-S, its code's neck='no'); ResNets
    head: str = key("bnneck", choices=("bnneck", "trinet", "none"))
    args: dict = field(default_factory=dict)   # keyword arguments of the model's constructor


@dataclass
class TeacherConfig:
    """Teacher annotations (person masks, COCO keypoints, part parsing) for models that learn from them."""
    noisy: bool = False                  # degrade them as an off-the-shelf detector would (data.annotations)
    jitter: float = key(0.04, ge=0)      # keypoint position noise, std as a fraction of the image height
    drop: float = key(0.15, ge=0, le=1)  # probability that a keypoint is missed
    morph: float = key(0.03, ge=0)       # mask erosion/dilation radius up to this fraction of the height
    holes: int = key(2, ge=0)            # up to this many missed blobs in each mask
    # --mode teachers (data/teachers.py): the detectors that write them for a dataset
    pose: str = key("keypointrcnn", choices=("keypointrcnn", ""))   # "": no keypoints
    mask: str = key("maskrcnn", choices=("maskrcnn", ""))           # "": no masks
    pose_weights: str = ""               # a local state dict; "" = torchvision's cache / download; random
    mask_weights: str = ""               # as pose_weights, for Mask R-CNN
    keypoint_threshold: float = 2.0      # Keypoint R-CNN keypoint score (a heat-map logit) for v = 2
    score_threshold: float = key(0.5, ge=0, le=1)   # person detections below this score are ignored
    min_size: int = key(256, ge=32)      # images upscaled so that their shorter side has this many pixels
    batch_size: int = key(8, ge=1)       # images per detector batch
    splits: list = key(["train", "query", "gallery"], choices=("train", "query", "gallery"))   # splits annotated


@dataclass
class ClusterConfig:
    """The unsupervised loop's pseudo-labels: k-reciprocal Jaccard distances, then DBSCAN (clustering/);
    ``--mode cluster-sweep`` tries a grid of these on a checkpoint's features."""
    k1: int = key(30, ge=1)              # neighbours of the k-reciprocal sets (Zhong et al. 2017)
    k2: int = key(6, ge=1)               # neighbours of the query expansion (1: none)
    eps: float = key(0.4, gt=0, lt=1)    # DBSCAN's radius; Jaccard distances lie in [0, 1]; pairs not stored are at 1
    min_samples: int = key(4, ge=1)      # DBSCAN: neighbours within eps (the point included) of a core point
    # the kNN search: auto (faiss when installed, else torch), exact faiss or torch, approximate faiss-ivf / -hnsw
    knn: str = key("auto", choices=("auto", "faiss", "torch", "faiss-ivf", "faiss-hnsw"))
    # the distance the clustering reads (clustering/methods.py; a registered name or package.module:Class):
    # jaccard: k-reciprocal Jaccard (k1, k2) as Cluster Contrast's code; jaccard-3c: the same with one more ranked
    # neighbour, as 3C's and CA-Jaccard's code; ca-jaccard: camera-aware Jaccard (Chen et al., CVPR 2024;
    # clustering/ca_jaccard.py): neighbours and query expansion on per-camera ranking lists; needs 2+ cameras.
    # Measured (docs/results.md): 1.04-1.17x the Jaccard's time, 0.80-0.96x its memory at 12,936-100,000 points;
    # in the demo 2.0 mAP below it over seeds 1-3 (ahead in the first epochs)
    distance: str = "jaccard"
    # the clustering (a registered name or package.module:Class): dbscan (eps, min_samples) | hdc (3C's
    # harmonic-discrepancy clustering into hdc_num_clusters, clustering/hdc.py; its hdc_* keys below)
    method: str = "dbscan"
    k1_intra: int = key(5, ge=1)         # ca-jaccard: k-reciprocal neighbours among the image's own camera
    k1_inter: int = key(20, ge=1)        # ca-jaccard: k-reciprocal neighbours among the other cameras
    k2_intra: int = key(3, ge=1)         # ca-jaccard's CLQE: first of the own camera's list averaged (self first)
    k2_inter: int = key(3, ge=0)         # ca-jaccard's CLQE: first of the other cameras' list averaged
    ckrnns: bool = True                  # ca-jaccard: camera-aware neighbours (false: the Jaccard's, with k1)
    clqe: bool = True                    # ca-jaccard: camera-aware query expansion (false: the first k2 overall)
    # ca-jaccard: the first epoch's CLQE averages 3 + 3 whatever k2_intra / k2_inter say (its code's warm-up)
    clqe_warmup: bool = True
    # hdc: the number of clusters (3C: 750 on Market-1501, 1000 on MSMT17); the one value a user of their own data
    # cannot know: choose it with --mode cluster-sweep --clusters (docs/datasets.md)
    hdc_num_clusters: int = key(750, ge=1)
    hdc_outlier: bool = False            # hdc: leave each cluster's peripheral members out (its --hdc-outlier)
    hdc_centroids: bool = False          # hdc: the memory from HDC's own centroids (--hdc-centroids), not label means
    hdc_init: str = key("k-means++2", choices=("k-means++2", "k-means++", "random"))   # hdc: its --hdc-init
    hdc_max_iter: int = key(80, ge=1)    # hdc: iterations at most (--hdc-max-iter)
    # hdc: the sample-to-centroid distance (--hdc-similarity: Euler Cosine, Euclidean, Cosine)
    hdc_similarity: str = key("euler-cosine", choices=("euler-cosine", "euclidean", "cosine"))
    hdc_normalize: bool = False          # hdc: L2-normalised centroids (--hdc-normalize)
    # hdc: the first epochs cluster with DBSCAN (eps, min_samples) instead (--warmup-iters with --warmup-with-dbscan)
    hdc_dbscan_epochs: int = key(0, ge=0)


@dataclass
class MemoryConfig:
    """The cluster memory of the unsupervised loop's ClusterNCE loss (memory/cluster_memory.py)."""
    # ClusterNCE temperature: logits are similarities / temp in fp32; near 0 they become inf and the loss NaN
    # (measured at 2e-49), so at least 1e-3 (logits of +-1000); the papers use 0.05
    temp: float = key(0.05, ge=1e-3)
    momentum: float = key(0.1, ge=0, le=1)   # m of M[y] <- m M[y] + (1 - m) x, then M[y] normalised
    # how a batch moves the memory (memory/updates.py; a registered name or package.module:function): mean, every
    # sample in turn (Cluster Contrast's cm; "momentum" before); hard, per cluster the sample least like M[y]
    # (cm_hard); hard_camera, that per cluster and camera, applied in turn (3C's cm_hard_camera); hd_camera, per
    # cluster the camera sample of the largest harmonic discrepancy (3C's default and published setting)
    update: str = "mean"
    # 3C's --loss-with-camera: each cluster's ClusterNCE weighed by the entropy of its batch samples' cameras
    camera_weighted: bool = False
    init: str = key("mean", choices=("mean", "random"))   # each cluster's entry: its members' mean, or one member (MLA)


@dataclass
class LossConfig:
    """Supervised losses (supervised/losses.py): ID (cross-entropy) + triplet; a model's own come on top."""
    id: float = key(1.0, ge=0)           # weight of the cross-entropy on the classifier logits
    label_smoothing: float = key(0.1, ge=0, lt=1)   # of the cross-entropy's targets (Bag of Tricks: 0.1)
    triplet: float = key(1.0, ge=0)      # weight of the batch-hard triplet loss on the pre-neck features
    margin: float = key(0.3, ge=0)       # 0: soft margin, log(1 + exp(d_ap - d_an))
    center: float = key(0.0, ge=0)       # weight of Bag of Tricks' centre loss (0.0005 in BoT); 0: off
    center_lr: float = key(0.5, gt=0)    # SGD learning rate of the centres (BoT)
    parts: float = key(1.0, ge=0)        # part models: weight of the part terms against the global ones


@dataclass
class TrainConfig:
    """Training: budget, batch, optimiser and schedule, precision and devices (runs/loop.py)."""
    epochs: int = key(50, ge=1)          # epochs of the run (the unsupervised loop clusters at each epoch's start)
    iters: int = key(200, ge=0)          # iterations per epoch; 0: one pass over the (clustered) training images
    # the training images `iters` was set for (a paper's dataset: 12936 for Market-1501); with it, an epoch takes
    # iters x (this dataset's training images / iters_for) iterations, as many passes over the data as the paper's
    # epoch (the papers' regime on smaller data, benchmarks/ablate.py --regime paper); 0: iters as given
    iters_for: int = key(0, ge=0)
    num_ids: int = key(16, ge=1)         # P (pseudo-)identities per batch
    num_instances: int = key(16, ge=1)   # K images each
    sampler: str = key("pk", choices=("pk", "identity"))   # supervised: pk (P ids in turn) | identity (BoT's)
    # unsupervised sampler (data.samplers.PseudoLabelSampler): at the end of a pass over the clusters,
    # carry the ids left over into the next batch, or drop them (a DataLoader's drop_last, as Cluster Contrast)
    pass_end: str = key("carry", choices=("carry", "drop"))
    # draw a cluster's other members with replacement when fewer than K (Cluster Contrast) or K-1 are available
    replace_below: str = key("k-1", choices=("k", "k-1"))
    optimizer: str = key("adam", choices=("adam", "sgd"))   # Adam, or SGD with momentum 0.9
    lr: float = key(3.5e-4, gt=0)        # the base learning rate, after the warm-up
    weight_decay: float = key(5e-4, ge=0)   # L2 weight decay
    scheduler: str = key("step", choices=("step", "cosine"))   # step: every step_size epochs, or at `steps`
    step_size: int = key(20, ge=1)       # step: the learning rate is multiplied by gamma every step_size epochs
    steps: list = key([], ge=1)          # e.g. [40, 70]; overrides step_size
    gamma: float = key(0.1, gt=0)        # step: the factor at each step
    warmup_epochs: int = key(0, ge=0)    # linear warm-up from warmup_factor * lr
    warmup_factor: float = key(0.01, gt=0, le=1)   # the warm-up's first learning rate, as a fraction of lr
    # the warm-up's unit: epoch (the factor changes once per epoch, as the papers' code has it) or iter (linear
    # over every iteration of the warm-up epochs: for budgets of a few epochs, where a whole epoch at 1% of lr
    # is a large share)
    warmup_by: str = key("epoch", choices=("epoch", "iter"))
    cosine_start: int = key(0, ge=0)     # cosine: the epoch its decay starts (0: right after the warm-up)
    # mixed precision (runs.loop.amp_dtype): auto = on CUDA bf16 where supported, else fp16 with a loss scaler,
    # fp32 on the CPU; bf16 = bf16 autocast on any device, the CPU included; fp16 (CUDA); off = fp32.
    # true / false (earlier configs) read as auto / off
    amp: str = key("auto", choices=("auto", "bf16", "fp16", "off"))
    # memory layout of convolutional models' training steps: auto = channels-last on CUDA (the tensor cores'
    # layout), the default layout on the CPU; on = channels-last on any device (tests the GPU path's layout on
    # the CPU); off. true / false (earlier configs) read as auto / off
    channels_last: str = key("auto", choices=("auto", "on", "off"))
    compile: bool = False                # torch.compile the training forward (the CPU needs a C++ compiler)
    sync_bn: bool = False                # under torchrun: synchronised BatchNorm across the ranks
    # images each BatchNorm normalises together, as nn.DataParallel over batch / bn_images devices splits a
    # batch (models.sliced_bn); 0 (or the batch and more): the whole batch (each rank's share under torchrun)
    bn_images: int = key(0, ge=0)
    bn_running: str = key("first", choices=("first", "mean"))   # running stats: first slice (DataParallel) | mean
    # the whole run's CPU threads, torch's and faiss's (0: torch's default, the physical cores); results
    # depend on it in the last bits (runs.determinism)
    threads: int = key(0, ge=0)
    # same seed, same numbers: deterministic kernels (CUDA), threads pinned; bit-identical metrics and weights
    deterministic: bool = False
    # a step whose loss or gradients are NaN or inf is skipped (runs.loop.StepGuard); this many in a row stop the
    # run with exit 2 (fp16's loss scaler backs off from an overflow in a few steps: 20 leaves it room)
    max_nonfinite_steps: int = key(20, ge=1)


@dataclass
class AugConfig:
    """Training augmentation, on the device (data/augment.py)."""
    flip: float = key(0.5, ge=0, le=1)   # probability of a horizontal flip
    pad: int = key(10, ge=0)             # pixels of padding before a random crop back to height x width
    erasing: float = key(0.5, ge=0, le=1)   # probability of random erasing (Zhong et al. 2020)
    # random erasing's box (data.augment): redraw until it fits, as Zhong et al.'s code (100 attempts); torchvision's
    # RandomErasing (10 attempts, a log-uniform aspect; 3C's code); or clip it to the image (this project's earlier)
    erasing_box: str = key("clip", choices=("clip", "redraw", "torchvision"))


@dataclass
class TestConfig:
    """Evaluation (evaluation/), the features a trained model gives (use/), and a run's pictures."""
    eval_every: int = key(10, ge=1)      # evaluate every this many epochs (and at the last)
    eval_initial: bool = True            # evaluate the model before training (epoch 0)
    batch_size: int = key(256, ge=1)     # images per batch of feature extraction
    flip: bool = False                   # the feature of the image plus that of its mirror image
    rerank: bool = False                 # k-reciprocal re-ranking (Zhong et al. 2017) of query x gallery
    rerank_k1: int = key(20, ge=1)       # re-ranking's k-reciprocal neighbours
    rerank_k2: int = key(6, ge=1)        # re-ranking's query expansion neighbours
    rerank_lambda: float = key(0.3, ge=0, le=1)   # weight of the original distance against the Jaccard one
    # the re-ranking's distance: jaccard (Zhong et al.) or ca-jaccard (CA-Jaccard's re-ranking, with the query
    # and gallery images' cameras; its code's defaults below; rerank_k1 / rerank_k2 then serve no part)
    rerank_distance: str = key("jaccard", choices=("jaccard", "ca-jaccard"))
    rerank_k1_intra: int = key(5, ge=1)  # ca-jaccard re-ranking: k-reciprocal neighbours in the own camera
    rerank_k1_inter: int = key(20, ge=1)   # ca-jaccard re-ranking: k-reciprocal neighbours in the other cameras
    rerank_k2_intra: int = key(3, ge=1)  # ca-jaccard re-ranking's CLQE: own camera's first, self included
    rerank_k2_inter: int = key(3, ge=0)  # ca-jaccard re-ranking's CLQE: the other cameras' first
    visualize: int = key(0, ge=0)        # rank lists of this many queries at the last evaluation (ranklist.png)
    # unsupervised runs: rank lists of this many fixed training images against the training pool, for the models
    # after 0, every, 2 x every, ... epochs (pool_ranklists/epoch_E.png; a run without labels has no other picture)
    pool_ranklists: int = key(8, ge=0, le=64)
    pool_ranklists_every: int = key(5, ge=1)   # epochs between two of those pictures
    # the evaluation's feature: all (the model's retrieval feature: global and part features, each normalised,
    # concatenated) or global (the global one alone: AAformer's [CLS], Pirt's global; a check of what the parts add)
    feature: str = key("all", choices=("all", "global"))
    local_rerank: bool = False           # global ranking, then the top N re-ranked with part features (Pirt)
    local_topn: int = key(100, ge=1)     # with local_rerank: how many of the global ranking are re-ranked
    local_confidence: str = key("qg", choices=("qg", "q", "g", "none"))   # Pirt's Table 5


@dataclass
class Config:
    mode: str = key("unsup", choices=("unsup", "supervised"))   # the unsupervised loop, or supervised training
    seed: int = key(1, ge=0, le=2 ** 32 - 1)     # numpy's seeds are 32-bit
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    output: str = "outputs"              # the folder that holds the run folders
    name: str = ""                       # run folder name; default <mode>-<dataset>-<model>-<time>
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    aug: AugConfig = field(default_factory=AugConfig)
    test: TestConfig = field(default_factory=TestConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def data_root(self) -> str:
        return self.data.root or os.environ.get("REID_DATA", "") or "datasets"


DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def validate(cfg: Config) -> Config:
    """Every field's declared choices and ranges, and the few rules between fields; the first broken one
    is a ``ConfigError`` with the key, the value and what is allowed."""
    def walk(obj, prefix: str):
        for f in fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{prefix}{f.name}.")
            elif any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, list)
                                                                              else [value])):
                raise ConfigError(f"{prefix}{f.name}={value!r} is not allowed: give a finite number"
                                  + (f" ({allowed(f.metadata)})" if f.metadata else ""))
            elif f.metadata and violates(value, f.metadata):
                raise ConfigError(f"{prefix}{f.name}={value!r} is not allowed: give {allowed(f.metadata)}")
    walk(cfg, "")
    if not DEVICE.match(cfg.device):
        raise ConfigError(f"device={cfg.device!r} is not a device: give auto, cpu, cuda or cuda:N")
    t = cfg.train
    if t.num_ids * t.num_instances < 2:
        raise ConfigError(f"train.num_ids x train.num_instances = {t.num_ids} x {t.num_instances} is a batch of one "
                          f"image: BatchNorm in training needs at least 2; give more ids or instances")
    if t.bn_images == 1:
        raise ConfigError("train.bn_images=1 is not allowed: a BatchNorm over one image has no batch statistics; "
                          "give 0 (the whole batch) or a multiple of train.num_instances of at least 2")
    if t.bn_images:
        batch = t.num_ids * t.num_instances
        if t.sync_bn:
            raise ConfigError("train.bn_images and train.sync_bn exclude each other: slices of one device's batch, "
                              "or one BatchNorm over every rank's; set one of them (train.bn_images=0 for SyncBN)")
        if t.bn_images < batch and (batch % t.bn_images or t.bn_images % t.num_instances):
            raise ConfigError(f"train.bn_images={t.bn_images} is not allowed: the BatchNorm slices hold whole "
                              f"identities of the {t.num_ids} x {t.num_instances} batch, so give a multiple of "
                              f"train.num_instances={t.num_instances} that divides {batch} (or 0, or {batch} and "
                              f"more: the whole batch)")
    from reidlab.clustering.methods import resolve_distance, resolve_method
    from reidlab.memory.updates import MEMORY_UPDATES
    for spec, resolve in ((cfg.cluster.distance, resolve_distance), (cfg.cluster.method, resolve_method),
                          (cfg.memory.update, lambda n: MEMORY_UPDATES.resolve(n, "memory.update"))):
        resolve(spec)                        # a misspelt name or an import path that fails stops here
    if cfg.test.feature == "global" and cfg.test.local_rerank:
        raise ConfigError("test.feature=global ranks by the global feature alone, and test.local_rerank=true re-ranks "
                          "with the part features: set one of them")
    d = cfg.data
    if d.camera_pattern:
        try:
            groups = re.compile(d.camera_pattern).groups
        except re.error as e:
            raise ConfigError(f"data.camera_pattern={d.camera_pattern!r} is not a regular expression ({e})") from None
        if groups < 1:
            raise ConfigError(f"data.camera_pattern={d.camera_pattern!r} has no group: put the camera id in "
                              f"parentheses, e.g. _c(\\d+)_")
    if d.camera_from == "pattern" and not d.camera_pattern:
        raise ConfigError("data.camera_from=pattern needs data.camera_pattern (a regular expression with one group)")
    if d.camera_from == "csv" and not d.labels_csv:
        raise ConfigError("data.camera_from=csv needs data.labels_csv (a CSV of path,camera and optionally pid)")
    if d.labels_csv and not Path(d.labels_csv).expanduser().is_file():
        raise ConfigError(f"data.labels_csv: no file {d.labels_csv}")
    for key in ("output", "data.root", "data.labels_csv", "model.pretrained"):     # '~/x' from a recipe or --set
        section, _, name = key.rpartition(".")
        holder = getattr(cfg, section) if section else cfg
        if getattr(holder, name).startswith("~"):
            setattr(holder, name, os.path.expanduser(getattr(holder, name)))
    encoding = sys.getfilesystemencoding()
    for key, value in (("name", cfg.name), ("output", cfg.output), ("data.root", cfg.data.root)):
        try:
            value.encode(encoding)
        except UnicodeEncodeError:
            raise ConfigError(f"{key}={value.encode(encoding, 'surrogateescape')!r} holds characters that this "
                              f"process's file-system encoding ({encoding}: a C or POSIX locale) cannot write; give "
                              f"ASCII, or run under a UTF-8 locale (export LC_ALL=C.UTF-8, or PYTHONUTF8=1)") from None
    if "/" in cfg.name or cfg.name in (".", ".."):
        raise ConfigError(f"name={cfg.name!r} is not allowed: a run folder name without '/' (it goes under output)")
    size = len(cfg.name.encode(encoding))
    if size > 200:
        raise ConfigError(f"name={cfg.name[:30]}... is {size} bytes: give a run folder name of at most 200 (file "
                          f"systems take 255, and a run's files are named inside it)")
    return cfg


def _coerce(value: Any, typ, key: str):
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if typ in (int, float):
        try:
            if isinstance(value, bool):
                raise ValueError
            num = float(value) if isinstance(value, str) else value
            if typ is int and not float(num).is_integer():
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected {'an integer' if typ is int else 'a number'}, got {value!r}") from None
        return typ(num)
    if typ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected text, got {value!r} (quote it in a recipe)")
        return "" if value is None else str(value)
    if typ is list:
        if value is None:
            return []
        if not isinstance(value, (list, tuple)):
            value = [value]
        return list(value)
    if typ is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type")


MOVED = {"model.daaf": "model.args"}      # keys of earlier versions -> where they live now
# values of earlier versions -> what they are now
RENAMED_VALUES = {"train.amp": {True: "auto", False: "off"}, "train.channels_last": {True: "auto", False: "off"},
                  "memory.update": {"momentum": "mean"}}


def _leaves(value) -> list[str]:
    """Dotted paths of the leaves of a nested mapping ([] for a plain value)."""
    if not isinstance(value, dict):
        return []
    return [f"{k}.{leaf}" if leaf else str(k) for k, v in value.items() for leaf in (_leaves(v) or [""])]


def _apply(obj, values: dict, prefix: str = "") -> None:
    hints = get_type_hints(type(obj))
    names = [f.name for f in fields(obj)]
    for k, v in values.items():
        key = f"{prefix}{k}"
        if key in MOVED:
            leaves = [f"{key}.{leaf}" for leaf in _leaves(v)] or [key]
            now = [MOVED[key] + leaf[len(key):] for leaf in leaves]
            raise ConfigError(f"config key {', '.join(leaves)} is now {', '.join(now)} "
                              f"({key}.* moved to {MOVED[key]}.*)")
        if k not in names:
            valid = [f"{prefix}{n}" for n in names]
            raise ConfigError(f"unknown config key {key!r}{closest(key, valid)}; valid keys here: {', '.join(valid)}")
        cur = getattr(obj, k)
        if isinstance(v, Typed) or not dataclasses.is_dataclass(cur):    # a section's keys are read below
            v = str(v) if isinstance(v, Typed) and hints[k] is str else _parsed(v)
        if isinstance(cur, dict) and isinstance(v, dict):
            setattr(obj, k, {**cur, **v})
        elif dataclasses.is_dataclass(cur):
            if not isinstance(v, dict):
                raise ConfigError(f"{key}: expected a mapping of its keys, got {v!r}")
            _apply(cur, v, key + ".")
        else:
            if key in RENAMED_VALUES and isinstance(v, (bool, str)) and v in RENAMED_VALUES[key]:
                v = RENAMED_VALUES[key][v]
            setattr(obj, k, _coerce(v, hints[k], key))


def all_keys(obj=None, prefix: str = "") -> list[str]:
    obj = obj or Config()
    out = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        out += all_keys(v, f"{prefix}{f.name}.") if dataclasses.is_dataclass(v) else [prefix + f.name]
    return out


def find_recipe(name: str | os.PathLike, folder: Path | None = None) -> Path:
    """A recipe file: ``name`` as a path (relative to ``folder`` when given, i.e. the recipe that names it as
    its ``_base_``), then as a shipped recipe in runs/recipes/, with or without ``.yaml``."""
    p = Path(name)
    firsts = [folder / p, folder / f"{p}.yaml"] if folder is not None and not p.is_absolute() else [p]
    for cand in [*firsts, RECIPES / p, RECIPES / f"{p}.yaml"]:
        if cand.is_file():
            return cand
    known = sorted(x.name for x in RECIPES.glob("*.yaml"))
    where = f" (looked in {folder} and {RECIPES})" if folder is not None else ""
    raise ConfigError(f"no recipe file {name}{where}{closest(p.name, known)}; shipped recipes: {', '.join(known)}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error (PyYAML keeps the last one)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            k = self.construct_object(key_node, deep=deep)
            if k in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {k!r} is given twice",
                                                        key_node.start_mark)
            seen.add(k)
        return super().construct_mapping(node, deep)


def read_recipe(path: str | os.PathLike, folder: Path | None = None, _chain: tuple = ()) -> dict:
    """A recipe as a nested dict, its ``_base_`` (its own folder first, then the shipped recipes) merged
    underneath. A ``_base_`` is one recipe name or path; a chain of bases that comes back to a recipe is
    an error, as are a key given twice, a file that is not UTF-8 and YAML that does not parse."""
    p = find_recipe(path, folder)
    if p.resolve() in _chain:
        names = " -> ".join(str(x.name) for x in (*_chain, p.resolve()))
        raise ConfigError(f"{p}: its _base_ chain comes back to it ({names}); a recipe cannot base on itself")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); save the recipe as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot be read ({e.strerror})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a recipe is a mapping of config keys")
    base = data.pop("_base_", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{p}: _base_ is one recipe's name or path (e.g. _base_: demo.yaml), not {base!r}")
    return _merge(read_recipe(base, p.parent, (*_chain, p.resolve())), data) if base else data


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Typed(str):
    """A command line's value: its text, and ``parsed``, the text read as YAML. A key of text takes the text
    as typed (``--dataset market:`` is ``market:``, not the mapping ``{market: None}``; ``--name no`` is ``no``,
    not false); any other key takes the YAML value."""
    parsed: object

    def __new__(cls, text: str):
        obj = super().__new__(cls, text)
        try:
            obj.parsed = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError:
            obj.parsed = text
        return obj


def _parsed(value):
    """``value`` with every command-line text read as YAML (in nested mappings too)."""
    if isinstance(value, Typed):
        return value.parsed
    if isinstance(value, dict):
        return {k: _parsed(v) for k, v in value.items()}
    return value


def parse_override(text: str) -> dict:
    """'train.lr=1e-4' -> {'train': {'lr': Typed('1e-4')}}: the text, read as YAML for the keys that are not text."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    v = Typed(value)
    out: dict = {}
    cur = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = v
    return out


def migrate(saved: dict) -> dict:
    """A config saved by an earlier version (a checkpoint's) in today's keys: ``model.daaf`` -> ``model.args``."""
    model = saved.get("model")
    if isinstance(model, dict) and "daaf" in model:
        model = dict(model)
        daaf = model.pop("daaf") or {}
        if model.get("name") == "daaf":
            model["args"] = {**daaf, **(model.get("args") or {})}
        saved = {**saved, "model": model}
    return saved


def build_config(recipe: str | None = None, overrides: list[dict] | None = None, base: dict | None = None) -> Config:
    """Defaults, then ``base`` (e.g. a checkpoint's config), then the recipe, then each override."""
    cfg = Config()
    if base:
        _apply(cfg, migrate(base))
    if recipe:
        _apply(cfg, read_recipe(recipe))
    for o in overrides or []:
        _apply(cfg, o)
    return validate(cfg)
