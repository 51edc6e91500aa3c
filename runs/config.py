"""Typed run configuration: YAML recipes (with ``_base_`` inheritance) plus command-line overrides.

Every key is declared here with its type; an unknown key is an error that names the closest valid one.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from errors import ConfigError, closest

RECIPES = Path(__file__).parent / "recipes"


@dataclass
class DataConfig:
    dataset: str = "synthetic"           # registry name; several joined by '+' train together (ids kept apart)
    test_dataset: str = ""               # evaluate on this dataset's query/gallery instead (cross-domain)
    root: str = ""                       # default: env REID_DATA, else ./data
    synthetic_size: str = "small"        # tiny | small | market
    synthetic_seed: int = 0
    height: int = 256
    width: int = 128
    workers: int = 4                     # image decoding threads


@dataclass
class DAAFConfig:
    """DAAF's training-only branches (models/daaf.py); used when model.name is daaf."""
    base: str = "resnet50"               # the base network's backbone: resnet50 | resnet18
    hab: bool = True                     # holistic attention branch (person mask, eq. 2)
    pab: bool = True                     # partial attention branch (keypoint heatmaps, eq. 4)
    lambda_h: float = 0.003              # eq. 1 weights, the paper's 0.003 each
    lambda_p: float = 0.003
    groups: str = "fig4c"                # keypoint grouping: fig4c (6 groups) | all (1) | each (17)
    sigma: float = 0.0                   # Gaussian of the keypoint heatmaps, pixels of the input; 0: height / 32


@dataclass
class ModelConfig:
    name: str = "resnet50"
    pretrained: str = "imagenet"         # imagenet | none | path to a state dict
    last_stride: int = 1
    pooling: str = "gem"
    attention: str = ""                  # a registered block (pla, hla, pla+hla, dla, mla) or package.module:Class
    attention_args: dict = field(default_factory=dict)   # keyword arguments of the block
    attention_placement: str = "conv2"   # conv2 (replaces the last stage's 3x3 convs) | after (on its output)
    attention_blocks: str = "all"        # with conv2: all residual blocks of the last stage, or the last one
    head: str = "bnneck"                 # bnneck (Bag of Tricks) | trinet (FC 1024-BN-ReLU-FC 128, Hermans et al.)
    daaf: DAAFConfig = field(default_factory=DAAFConfig)   # with name: daaf


@dataclass
class TeacherConfig:
    """Teacher annotations (person masks, COCO keypoints) for models that learn from them (DAAF)."""
    noisy: bool = False                  # degrade them as an off-the-shelf detector would (data.annotations)
    jitter: float = 0.04                 # keypoint position noise, std as a fraction of the image height
    drop: float = 0.15                   # probability that a keypoint is missed
    morph: float = 0.03                  # mask erosion/dilation radius up to this fraction of the height
    holes: int = 2                       # up to this many missed blobs in each mask


@dataclass
class ClusterConfig:
    k1: int = 30
    k2: int = 6
    eps: float = 0.4
    min_samples: int = 4
    knn: str = "auto"                    # auto (faiss if installed) | faiss | torch | faiss-ivf | faiss-hnsw


@dataclass
class MemoryConfig:
    temp: float = 0.05
    momentum: float = 0.1
    update: str = "momentum"             # momentum | hard
    init: str = "mean"                   # mean | random


@dataclass
class LossConfig:
    """Supervised losses (supervised/losses.py): ID (cross-entropy) + triplet; a model's own come on top."""
    id: float = 1.0                      # weight of the cross-entropy on the classifier logits
    label_smoothing: float = 0.1
    triplet: float = 1.0                 # weight of the batch-hard triplet loss on the pre-neck features
    margin: float = 0.3                  # 0: soft margin, log(1 + exp(d_ap - d_an))


@dataclass
class TrainConfig:
    epochs: int = 50
    iters: int = 200                     # iterations per epoch; 0: one pass over the training images
    num_ids: int = 16                    # P pseudo-identities per batch
    num_instances: int = 16              # K images each
    optimizer: str = "adam"
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    scheduler: str = "step"              # step (every step_size epochs, or at the epochs in steps) | cosine
    step_size: int = 20
    steps: list = field(default_factory=list)   # e.g. [40, 70]; overrides step_size
    gamma: float = 0.1
    warmup_epochs: int = 0               # linear warm-up from warmup_factor * lr
    warmup_factor: float = 0.01
    amp: bool = True                     # mixed precision, on CUDA only


@dataclass
class AugConfig:
    flip: float = 0.5
    pad: int = 10
    erasing: float = 0.5


@dataclass
class TestConfig:
    eval_every: int = 10
    eval_initial: bool = True            # evaluate the model before training (epoch 0)
    batch_size: int = 256
    flip: bool = False
    rerank: bool = False                 # k-reciprocal re-ranking (Zhong et al. 2017) of query x gallery
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3


@dataclass
class Config:
    mode: str = "unsup"
    seed: int = 1
    device: str = "auto"                 # auto | cpu | cuda | cuda:N
    output: str = "outputs"
    name: str = ""                       # run folder name; default <dataset>-<model>-<time>
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
        return self.data.root or os.environ.get("REID_DATA", "") or "data"


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


def _apply(obj, values: dict, prefix: str = "") -> None:
    hints = get_type_hints(type(obj))
    names = [f.name for f in fields(obj)]
    for k, v in values.items():
        key = f"{prefix}{k}"
        if k not in names:
            valid = [f"{prefix}{n}" for n in names]
            raise ConfigError(f"unknown config key {key!r}{closest(key, valid)}; valid keys here: {', '.join(valid)}")
        cur = getattr(obj, k)
        if isinstance(cur, dict) and isinstance(v, dict):
            setattr(obj, k, {**cur, **v})
        elif dataclasses.is_dataclass(cur):
            if not isinstance(v, dict):
                raise ConfigError(f"{key}: expected a mapping of its keys, got {v!r}")
            _apply(cur, v, key + ".")
        else:
            setattr(obj, k, _coerce(v, hints[k], key))


def all_keys(obj=None, prefix: str = "") -> list[str]:
    obj = obj or Config()
    out = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        out += all_keys(v, f"{prefix}{f.name}.") if dataclasses.is_dataclass(v) else [prefix + f.name]
    return out


def read_recipe(path: str | os.PathLike) -> dict:
    """A recipe as a nested dict, its ``_base_`` (relative to it) merged underneath."""
    p = Path(path)
    for cand in (RECIPES / p, RECIPES / f"{p}.yaml"):
        if not p.is_file() and cand.is_file():
            p = cand
    if not p.is_file():
        known = sorted(x.name for x in RECIPES.glob("*.yaml"))
        raise ConfigError(f"no recipe file {path}{closest(Path(path).name, known)}; recipes: {', '.join(known)}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a recipe is a mapping of config keys")
    base = data.pop("_base_", None)
    return _merge(read_recipe(p.parent / base), data) if base else data


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> dict:
    """'train.lr=1e-4' -> {'train': {'lr': 1e-4}} (the value read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        v = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        v = value
    out: dict = {}
    cur = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = v
    return out


def build_config(recipe: str | None = None, overrides: list[dict] | None = None, base: dict | None = None) -> Config:
    """Defaults, then ``base`` (e.g. a checkpoint's config), then the recipe, then each override."""
    cfg = Config()
    if base:
        _apply(cfg, base)
    if recipe:
        _apply(cfg, read_recipe(recipe))
    for o in overrides or []:
        _apply(cfg, o)
    return cfg
