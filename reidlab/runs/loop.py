"""The skeleton both trainers share, written once: set a run up, evaluate the untrained model, then for
each epoch let the trainer prepare it, train its batches, step the schedule, evaluate, checkpoint, log.

A trainer (``unsup.trainer``, ``supervised.trainer``) keeps only what is its own:
  - ``prepare_epoch(epoch) -> EpochPlan``: the epoch's batches and its loss (clustering and a memory in
    the unsupervised loop; a P x K sampler of true identities in the supervised one);
  - the loss itself, as ``plan.loss(model_output, batch_indices) -> (total, {name: part})``.

Everything else is here, read top to bottom in :func:`fit`. This module is the one part of ``runs/``
that sits above ``data/``, ``models/`` and ``evaluation/``: it is the trainers' common code.

Mixed precision (``train.amp``, default ``auto``; reidlab/precision.py, which evaluation follows too): bf16
autocast on a CUDA device that supports it (no loss scaling needed), fp16 with the gradient scaler on older
GPUs, fp32 on the CPU; ``bf16`` runs bf16 autocast on the CPU too (the GPU path's numerics, tested in
tests/test_amp.py).

Training is right or it stops (:class:`StepGuard`): a step whose loss or gradients are not finite is
skipped before the optimiser step, with the BatchNorm statistics its forward moved put back and the
memory bank's update dropped; the skips are counted per epoch; ``train.max_nonfinite_steps`` skips in a
row stop the run (exit 2) with the likely causes and the last good checkpoint. No checkpoint holds a
non-finite tensor (runs.checkpoint) and no metric comes from non-finite features (evaluation.extract).
Under torchrun every rank takes the same decision from all-reduced flags.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from torch.nn.parallel import DistributedDataParallel

from reidlab.data import dataset_from_config
from reidlab.data.annotations import TeacherNoise, load_teacher
from reidlab.data.augment import Streams, augment_with_teacher, batch_streams
from reidlab.data.datasets import ReIDDataset, require_cameras, require_training_split
from reidlab.data.store import load_dataset_images
from reidlab.data.store import prefetch
from reidlab.errors import CheckpointError, ConfigError, NonFiniteError, ReIDError
from reidlab.evaluation import evaluate_run
from reidlab.evaluation.local_rerank import require_global_feature, require_local_parts
from reidlab.models import model_from_config
from reidlab.models.sliced_bn import describe_slices, slice_batchnorms
from reidlab.precision import amp_dtype, precision_name

from . import determinism, dist
from .checkpoint import TrainingState
from .config import Config
from .curves import plot_curves
from .events import Events
from .optim import build_optimizer
from reidlab.progress import metrics_table, progress_bar, show
from .run import MetricsLog, check_run_dir, resolve_device, seed_epoch, seed_everything
from .step import NonFiniteSteps, Step, StepGuard, gather_output, no_rows  # noqa: F401 (re-exported)

log = logging.getLogger("reidlab.loop")

LossFn = Callable[[object, torch.Tensor], "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


@dataclass
class Session:
    """A run's device, data and model, built by :func:`start`."""
    cfg: Config
    run_dir: Path
    device: torch.device
    ds: ReIDDataset
    train_images: torch.Tensor          # uint8 N x 3 x H x W on the device
    query_images: torch.Tensor          # uint8, on the CPU
    gallery_images: torch.Tensor
    model: torch.nn.Module
    teacher: dict[str, torch.Tensor]    # the teacher targets the model asks for (model.teacher_targets)
    test_teacher: tuple | None = None   # (query, gallery) targets of a model that needs them at test time


@dataclass
class EpochPlan:
    """What a trainer's preparation gives the loop for one epoch."""
    batches: Iterable[list[int]] | None     # index lists into the training images; None: no training
    iters: int = 0
    loss: LossFn | None = None
    record: dict = field(default_factory=dict)     # the trainer's own fields of the epoch's metrics record
    summary: str = ""                              # the trainer's own words in the epoch's log line
    finish: Callable[[], dict] | None = None       # after the epoch's training: more fields of the record
    # what a step updates outside the optimiser and must commit or discard with it (runs.step.Step): objects with
    # commit() and discard() whose hold_updates the step sets (the cluster memories)
    holds: list = field(default_factory=list)
    unit: str = "identities"                       # what the batches hold P of (identities, clusters)


@dataclass
class ExtraParameters:
    """Parameters a loss owns (Bag of Tricks' centres) with their own optimiser; their gradients are
    multiplied by ``grad_scale`` before the step (BoT divides by the centre-loss weight)."""
    module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    grad_scale: float = 1.0


def check_amp(amp: str, device: torch.device) -> None:
    """fp16 autocast is for CUDA; bf16 on a GPU that lacks it: refused before the run starts."""
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"train.amp=fp16 needs a CUDA device (the device is {device}); on the CPU give bf16 or off")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.amp=bf16: this GPU does not support bf16; give auto (fp16 with a loss scaler) or off")


def teacher_noise(cfg: Config) -> TeacherNoise | None:
    t = cfg.teacher
    return TeacherNoise(t.jitter, t.drop, t.morph, t.holes, seed=cfg.seed) if t.noisy else None


def check_model_builds(cfg: Config) -> None:
    """The model the config names is built once, without weights, on the meta device (no memory, no time):
    a value its constructor refuses (a ViT size, a stride, an input size its patches do not tile) stops
    the run before its folder exists. A constructor that reads tensor values (timm's position-embedding
    resampling) cannot run on meta: it is built on the CPU (about a second for ViT-B). With a weight file
    (``model.pretrained=PATH``) it is built on the CPU with the file, so that weights of another model stop
    the run here too."""
    from reidlab.models.factory import model_kwargs
    from reidlab.models.registry import MODELS
    kwargs = {**model_kwargs(cfg.model, 0, (cfg.data.height, cfg.data.width)), "pretrained": "none"}
    ctor = MODELS.get(cfg.model.name)
    weight_file = cfg.model.pretrained not in ("", "none", "imagenet")
    try:
        if weight_file:                  # a file of weights is loaded too: one of another model stops here
            model = ctor(**{**kwargs, "pretrained": cfg.model.pretrained})
        else:
            try:
                with torch.device("meta"):
                    model = ctor(**kwargs)
            except NotImplementedError:
                model = ctor(**kwargs)
    except ReIDError:
        raise
    except (ValueError, TypeError, AssertionError, RuntimeError, KeyError) as e:
        raise ConfigError(f"model {cfg.model.name!r} cannot be built from this config ({type(e).__name__}: {e}); "
                          f"check model.args and data.height / data.width") from None
    if cfg.test.feature == "global":
        require_global_feature(model, cfg.model.name)


def check_run_inputs(cfg: Config, new_run: bool = True, explicit_name: bool = False) -> ReIDDataset:
    """What a training run needs, checked before its folder is made (a mistake then costs no folder and no
    minutes): the device, the output folder and a run name the user gave (``new_run``), the model's name
    and arguments, the attention block, a weights file, and the dataset (built here, generated first
    when it is the synthetic benchmark; returned for ``start``)."""
    from reidlab.models.attention import resolve_block
    check_amp(cfg.train.amp, resolve_device(cfg.device))
    if new_run:
        check_run_dir(cfg, explicit_name)
    weights = cfg.model.pretrained
    if weights not in ("imagenet", "none", "") and not Path(weights).is_file():
        raise ConfigError(f"model.pretrained: no file {weights} (use imagenet, none, or the path of a state dict)")
    check_model_builds(cfg)
    if cfg.model.attention:
        resolve_block(cfg.model.attention)
    ds = dataset_from_config(cfg)
    require_training_split(ds)
    require_cameras(ds, cfg)
    if cfg.mode == "unsup" and cfg.cluster.method == "hdc" and cfg.cluster.hdc_num_clusters > len(ds.train):
        raise ConfigError(f"cluster.hdc_num_clusters={cfg.cluster.hdc_num_clusters} is more than {ds.name}'s "
                          f"{len(ds.train)} training images: give at most {len(ds.train)} (choose it with --mode "
                          f"cluster-sweep --clusters)")
    if cfg.mode == "supervised" and not ds.labelled:
        raise ConfigError(f"{ds.name} has no identity labels: supervised training needs them; train it with "
                          f"--mode unsup, or give data.labels_csv with a pid column")
    return ds


def check_resume(cfg: Config, ckpt: dict, ds: ReIDDataset, extra_parameters=None) -> None:
    """Before a resumed run's folder is opened: what ``TrainingState.resume`` will load fits what this config
    builds on this data (the model with ``ds``'s identities, the optimiser of ``train.optimizer``, the
    schedule, and ``extra_parameters(cfg, num_pids, model, device)``, the trainer's own parameters), so that
    a refused resume leaves the run as it was (no FAILED.txt, no log line in it). On the CPU, without the
    run's data images. A checkpoint holding NaN or inf (written before the NaN guard, or damaged) is refused here
    too: training on it would only fail at the first evaluation, after writing into the run."""
    import copy
    from reidlab.runs.checkpoint import load_model_state, non_finite
    bad = non_finite({"model": ckpt["model"], "optimizer": ckpt.get("optimizer") or {},
                      **{k: ckpt[k] for k in ("extra", "extra_optimizer") if k in ckpt}})
    if bad:
        raise CheckpointError(f"{ckpt['path']} holds {len(bad)} tensor(s) with NaN or inf (e.g. {bad[0]}): a "
                              f"checkpoint of a diverged run written before the NaN guard, or a damaged file. Resuming "
                              f"would train on them; start a new run (or resume from a good copy of the run's last.pt)")
    c = copy.deepcopy(cfg)
    c.model.pretrained = "none"                          # the checkpoint brings the weights
    supervised = cfg.mode == "supervised"
    pids = ds.num_train_pids if supervised else 0
    model = model_from_config(c, "cpu", num_classes=pids)
    try:
        load_model_state(model, ckpt)
    except ReIDError as e:
        theirs = (ckpt["config"].get("data") or {}).get("dataset", "?")
        why = (f"; this data ({ds.name}) has {pids} training identities, the checkpoint's classifier was made for "
               f"those of {theirs}") if supervised else ""
        raise ConfigError(f"{e}{why}") from None
    optimizer, scheduler = build_optimizer(model, cfg.train)
    saved = ckpt["optimizer"].get("param_groups") or [{}]
    kind = "adam" if "betas" in saved[0] else "sgd" if "momentum" in saved[0] else None
    if kind is not None and kind != cfg.train.optimizer:
        raise ConfigError(f"{ckpt['path']} holds the state of {kind}, and this config's train.optimizer is "
                          f"{cfg.train.optimizer}: an optimiser cannot continue from another's state. Resume "
                          f"with --set train.optimizer={kind}, or start a new run")
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
    except (ValueError, KeyError, RuntimeError) as e:
        raise ConfigError(f"{ckpt['path']}: its optimiser or schedule does not fit this config's ({e}); resume "
                          f"with the run's own config") from None
    extra = extra_parameters(cfg, pids, model, torch.device("cpu")) if extra_parameters else None
    for key, obj in ({"extra": extra.module, "extra_optimizer": extra.optimizer} if extra else {}).items():
        if key not in ckpt:
            raise ConfigError(f"{ckpt['path']} has no {key!r} state, which this run's config needs (e.g. "
                              f"loss.center > 0 on a run trained without it); resume with the run's own config")
        try:
            obj.load_state_dict(ckpt[key])
        except (ValueError, KeyError, RuntimeError) as e:
            raise ConfigError(f"{ckpt['path']}: its {key!r} state does not fit this run ({str(e).splitlines()[0]}); "
                              f"resume with the run's own config and data") from None


def start(cfg: Config, run_dir: Path, num_classes: Callable[[ReIDDataset], int] | None = None,
          ds: ReIDDataset | None = None) -> Session:
    """Device, seed, dataset (``ds`` when already built), image stores, model (with ``num_classes(ds)``
    identity classes) and the teacher targets the model learns from."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    determinism.configure(cfg, device)
    log.info("run folder %s, device %s", run_dir, device)
    if ds is None:
        ds = dataset_from_config(cfg)
        require_training_split(ds)
    else:                                    # built (and said on the console) before log.txt existed
        log.info("%s", ds.summary(), extra={"file_only": True})
    if cfg.mode == "supervised" and ds.query_from_train:
        log.info("%s: its query and gallery are training images whose labels this supervised run trains on: no "
                 "evaluation on them (give a labelled test set with --test-dataset)", ds.name)
        ds = dataclasses.replace(ds, query=[], gallery=[], query_from_train=False)
    if len({x.camid for x in ds.train}) == 1:
        log.info("%s: one camera in the training images, so the sampler's other-camera rule has nothing to "
                 "prefer (camera ids: data.camera_from)", ds.name)
    train, query, gallery = load_dataset_images(ds, cfg.data.height, cfg.data.width, cfg.data.workers, device,
                                                cfg.data.memory_budget, cfg.data.resize)
    seed_everything(cfg.seed)               # the initial weights: a function of the seed alone (paired rows share them)
    model = model_from_config(cfg, device, num_classes=num_classes(ds) if num_classes else 0)
    needs = tuple(getattr(model, "teacher_targets", ()))
    teacher = {}
    if needs:
        teacher = load_teacher(ds, ds.train, cfg.data.height, cfg.data.width, needs, teacher_noise(cfg),
                               cfg.data.workers)
        teacher = {k: v.to(device) for k, v in teacher.items()}
    if cfg.test.local_rerank:
        require_local_parts(model, cfg.model.name)
    test_needs = tuple(getattr(model, "test_teacher_targets", ()))
    test_teacher = None
    if test_needs:
        test_teacher = tuple(load_teacher(ds, split, cfg.data.height, cfg.data.width, test_needs, teacher_noise(cfg),
                                          cfg.data.workers) for split in (ds.query, ds.gallery))
    return Session(cfg, run_dir, device, ds, train, query, gallery, model, teacher, test_teacher)


def short_batch_words(plan: EpochPlan, rows: int, cfg: Config) -> str:
    """What the log says, once per epoch, of a batch smaller than P x K (fewer clusters or identities than P)."""
    t = cfg.train
    K = t.num_instances
    words = (f"batches of {rows} images ({rows // K} {plan.unit} x {K}: fewer than train.num_ids={t.num_ids} "
             f"{plan.unit} to draw from)" if rows % K == 0 else f"batches of {rows} images (not P x K = "
             f"{t.num_ids} x {K})")
    shares = dist.split_rows(rows, dist.world(), K)
    if dist.active():
        words += f"; the {dist.world()} processes' shares: {'+'.join(map(str, shares))} images"
    if t.bn_images and t.bn_images < t.num_ids * K // dist.world():
        devices = t.num_ids * K // dist.world() // t.bn_images
        words += f"; BatchNorm slices of {describe_slices(shares[dist.rank()], devices, K)} (train.bn_images)"
    return words


def train_epoch(s: Session, net: torch.nn.Module, plan: EpochPlan, gen: Callable[[int], Streams], optimizer, scaler,
                extra: ExtraParameters | None, title: str, before_step=None,
                guard: StepGuard | None = None) -> dict[str, float]:
    """One epoch of ``plan.batches``: augment on the device (teacher targets moved with the images), then a
    :class:`runs.step.Step` per batch (forward under autocast, the plan's loss, backward, the check, and the commit
    or discard of everything the step changed, ``plan.holds`` included). Returns the mean of each loss part over
    the steps taken, and ``skipped_steps``. ``gen(i)``: the i-th batch's augmentation generators
    (data.augment.batch_streams).

    Under torchrun every rank augments the whole global batch (the same random draws as one process)
    and trains on its share (whole identities where it can, runs.dist.share); the loss is that of the
    gathered global batch (runs.dist). ``before_step(i)``, when given, runs before the i-th step (0-based):
    the per-iteration warm-up sets the learning rate."""
    cfg, device = s.cfg, s.device
    guard = guard or StepGuard(cfg.train.max_nonfinite_steps)
    net.train()
    layout = torch.channels_last if channels_last(s) else torch.contiguous_format
    step = Step(net, s.model, optimizer, scaler, extra, guard, device, cfg.train.amp, layout, plan.holds)
    K, full = cfg.train.num_instances, cfg.train.num_ids * cfg.train.num_instances
    sums: dict[str, float] = {}
    n, skipped_before, said, said_empty = 0, guard.skipped, False, False
    with progress_bar() as bar:
        task = bar.add_task(title, total=plan.iters, info="")
        for i, (idx, images) in enumerate(prefetch(plan.batches, s.train_images, device)):
            idx_t = torch.as_tensor(idx, device=device)
            x, t = augment_with_teacher(images, {k: v[idx_t] for k, v in s.teacher.items()}, gen(i),
                                        cfg.aug.flip, cfg.aug.pad, cfg.aug.erasing, cfg.aug.erasing_box)
            # SyncBN normalises over every rank's rows, so a share of one row is fine there; alone, never
            mine, sizes = dist.share(len(idx), K, least=1 if cfg.train.sync_bn else 2)
            if len(idx) != full and not said:
                log.info("%s: %s", title, short_batch_words(plan, len(idx), cfg))
                said = True
            if len(idx) < 2 or (cfg.train.sync_bn and min(sizes) == 0):
                if not said_empty:              # one image: no BatchNorm normalises it in training
                    log.warning("%s: batches of %d image(s)%s are not trained on (train with fewer processes, or on "
                                "more data)", title, len(idx), f" over {dist.world()} processes with SyncBN"
                                if cfg.train.sync_bn else "")
                said_empty = True
                bar.update(task, advance=1)
                continue
            stand_in = dist.active() and not mine     # no rows here: the batch's first two stand in, adding nothing
            if dist.active():
                mine_t = torch.as_tensor(list(mine) or [0, 1], device=device)
                x, t = x[mine_t], {k: v[mine_t] for k, v in t.items()}
            good, loss, parts = step(x, t, idx_t, sizes, stand_in, plan.loss,
                                     None if before_step is None else lambda i=i: before_step(i))
            if good:
                n += 1
                for k, v in {"loss": loss.detach(), **parts}.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
            bar.update(task, advance=1, info=" ".join(f"{k} {v / max(n, 1):.3f}" for k, v in sums.items()))
    out = {k: dist.mean(v / max(n, 1)) for k, v in sums.items()}     # aux losses are per rank
    return {**out, "skipped_steps": guard.skipped - skipped_before}


def epoch_iters(train, images: int) -> int:
    """Iterations of an epoch over ``images`` training images (the unsupervised loop: the clustered ones):
    ``train.iters``, scaled by ``images / train.iters_for`` when that is set (an epoch of the paper's passes over
    the data); 0 gives one pass of P x K batches over them."""
    if not train.iters:
        return math.ceil(images / (train.num_ids * train.num_instances))
    if train.iters_for:
        return max(1, round(train.iters * images / train.iters_for))
    return train.iters


def iteration_warmup(train, optimizer, scheduler, epoch: int, iters: int):
    """With ``train.warmup_by=iter``, in a warm-up epoch: the hook that sets every group's learning rate to its
    base times ``LRFactor.at(epoch - 1 + i / iters)`` before step i (None otherwise: the epoch's rate stands)."""
    if train.warmup_by != "iter" or epoch - 1 >= train.warmup_epochs or not iters:
        return None
    factor = scheduler.lr_lambdas[0]

    def before_step(i: int) -> None:
        f = factor.at(epoch - 1 + i / iters)
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs):
            group["lr"] = base * f
    return before_step


def channels_last(s: Session) -> bool:
    """Whether the training steps run channels-last: ``train.channels_last`` ``on``, or ``auto`` on a GPU (on
    the CPU it changes the last bits of the CPU path for no gain); convolutional models only."""
    mode = s.cfg.train.channels_last
    wanted = mode == "on" or (mode == "auto" and s.device.type == "cuda")
    return wanted and getattr(s.model, "convolutional", False)


def training_module(s: Session) -> torch.nn.Module:
    """The module the training steps call: the model, in channels-last layout, with its BatchNorms over
    slices of ``train.bn_images`` images (models.sliced_bn) or SyncBN, wrapped in
    DistributedDataParallel under torchrun, compiled with ``train.compile``; checkpoints and evaluation use
    ``s.model`` itself (its parameters are the same)."""
    cfg, net = s.cfg, s.model
    if channels_last(s):
        net = net.to(memory_format=torch.channels_last)
    if cfg.train.bn_images:
        t = cfg.train
        net = slice_batchnorms(net, t.bn_images, t.bn_running, batch=t.num_ids * t.num_instances // dist.world(),
                               group=t.num_instances)
    if dist.active():
        if cfg.train.sync_bn:
            net = dist.convert_sync_batchnorm(net, s.device)
        net = DistributedDataParallel(net, device_ids=[s.device.index] if s.device.type == "cuda" else None)
    if cfg.train.compile:
        net = torch.compile(net)
    return net


def diverged(s: Session, state: TrainingState, epoch: int, what: str) -> NonFiniteError:
    """The error that stops a run whose numbers stopped being finite: what happened, the likely causes, and
    the last checkpoint (every checkpoint written is finite: runs.checkpoint)."""
    cfg = s.cfg
    good = f"{s.run_dir / 'last.pt'} (epoch {state.saved_epoch})" if state.saved_epoch is not None else "none"
    return NonFiniteError(
        f"epoch {epoch}: {what}, so the run stops. Likely causes: a learning rate too high for this model and batch "
        f"(train.lr={cfg.train.lr:g}), or mixed precision overflowing (train.amp={cfg.train.amp}, "
        f"{precision_name(s.device, cfg.train.amp)} here; off is fp32); also a "
        f"weight file or data holding NaN. The last good checkpoint: {good}; no checkpoint with a non-finite tensor "
        f"was written. Fix the cause and continue with --resume {s.run_dir} --set train.lr=... (if its weights were "
        f"already diverging, start again instead)")


def fit(s: Session, prepare_epoch: Callable[[int], EpochPlan], title: str, resume: dict | None = None,
        extra: ExtraParameters | None = None, carried=None) -> list[dict]:
    """Train ``s.model`` for ``train.epochs`` epochs; returns the run's metrics records.

    ``last.pt`` is written before the first epoch (so ``--resume`` works from any point after the run
    folder exists) and after every epoch; ``best.pt`` whenever the evaluated mAP is the best so far, the
    evaluation before training (epoch 0) included.
    All randomness of epoch e derives from (seed, e), the global generators' included (``seed_epoch``:
    dropout and drop-path draw from torch's), so a resumed run ends as an uninterrupted one, bit for bit.
    Under torchrun rank 0 alone writes the run folder; after each epoch's training every rank takes rank
    0's BatchNorm buffers (DistributedDataParallel's own rule at each forward), so that the evaluation, the
    pseudo-labels and the checkpoint come from one model. A run whose numbers stop being finite stops
    (module docstring, :func:`diverged`). ``last.pt`` also carries what the next epoch needs beyond the weights
    and the optimiser, so that a resumed run is the straight one: the loss scaler's state (fp16), the NaN guard's
    streak and history, and ``carried``, the trainer's own (an object with ``state_dict`` / ``load_state_dict``:
    the unsupervised loop's last pseudo-labels)."""
    cfg, model, device = s.cfg, s.model, s.device
    net = training_module(s)
    optimizer, scheduler = build_optimizer(model, cfg.train)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype(device, cfg.train.amp) == torch.float16)
    metrics = MetricsLog(s.run_dir / "metrics.jsonl")
    extras = {"extra": extra.module, "extra_optimizer": extra.optimizer} if extra else {}
    guard = StepGuard(cfg.train.max_nonfinite_steps)
    progress = {"scaler": scaler, "guard": guard, **({"trainer": carried} if carried is not None else {})}
    state = TrainingState(s.run_dir, model, optimizer, scheduler, cfg.to_dict(), extras, progress)
    main = dist.is_main()
    begin = state.resume(resume, metrics if main else None)
    log.info("training and evaluation in %s (train.amp=%s on %s)", precision_name(device, cfg.train.amp),
             cfg.train.amp, device)
    if resume is None and main:
        metrics.truncate_after(-1)          # a fresh start in a folder that was stopped before its first checkpoint
        state.save(0, {})
    # a resumed run's events past its checkpoint go, as its metrics records do (a run started again: all of them)
    purge = None if resume is None else 0 if resume.get("fresh") else begin + 1
    events = Events(s.run_dir, purge, write=main)    # its writer's thread is a daemon

    def evaluate(last: bool = False) -> dict:
        return evaluate_run(model, s.query_images, s.gallery_images, s.ds, cfg, device,
                            rank_lists=s.run_dir / "ranklist.png" if last and main else None,
                            shard=dist.shard_spec(), teacher=s.test_teacher)

    can_evaluate = bool(len(s.ds.query) and len(s.ds.gallery))
    if not can_evaluate:
        log.info("%s has no query and gallery: no evaluation, so no best.pt (last.pt only); each epoch records "
                 "what is known without labels. To evaluate, give a labelled set with --test-dataset "
                 "(e.g. market:PATH)", s.ds.name)
    done_initial = dist.broadcast_object(any(r["epoch"] == 0 for r in metrics.read()) if main else None)
    if can_evaluate and begin == 0 and cfg.test.eval_initial and not done_initial:
        record = {"epoch": 0, **evaluate()}
        if main:
            metrics.append(record)
            events.record(record)
        state.save(0, record, write=main)    # best.pt weighs the model before training too
        log.info("epoch 0 (before training): mAP %.1f%%, rank-1 %.1f%%", 100 * record["mAP"], 100 * record["rank1"])

    for epoch in range(begin + 1, cfg.train.epochs + 1):
        seed_epoch(cfg.seed, epoch)
        lr = optimizer.param_groups[0]["lr"]
        try:
            plan = prepare_epoch(epoch)
            record = {"epoch": epoch, "lr": lr, **plan.record, "loss": None}
            t1 = time.perf_counter()
            losses = {}
            if plan.batches is not None:
                def gen(i: int, epoch=epoch):
                    return batch_streams(cfg.seed, epoch, i, device)
                losses = train_epoch(s, net, plan, gen, optimizer, scaler, extra,
                                     f"epoch {epoch}/{cfg.train.epochs}",
                                     iteration_warmup(cfg.train, optimizer, scheduler, epoch, plan.iters), guard)
                record.update({k: round(v, 6) for k, v in losses.items()}, iters=plan.iters)
                guard.history[epoch] = record["skipped_steps"]
                if plan.finish is not None:
                    record.update(plan.finish())
            dist.broadcast_buffers(model)
            with warnings.catch_warnings():      # an epoch without training made no optimizer step
                warnings.filterwarnings("ignore", message="Detected call of")
                scheduler.step()
            record["train_s"] = round(time.perf_counter() - t1, 2)
            if can_evaluate and (epoch % cfg.test.eval_every == 0 or epoch == cfg.train.epochs):
                record.update(evaluate(last=epoch == cfg.train.epochs))
            if main:
                metrics.append(record)
                events.record(record, losses)
            state.save(epoch, record, write=main)    # every rank checks the tensors are finite; rank 0 writes
        except NonFiniteSteps as e:
            raise diverged(s, state, epoch, f"{e.steps} training steps in a row had a non-finite {e.what} and were "
                                     f"skipped") from None
        except NonFiniteError as e:
            raise diverged(s, state, epoch, str(e)) from None
        if record.get("skipped_steps"):
            log.warning("epoch %d: %d of %d steps skipped: their loss or gradients were not finite (NaN or inf); "
                        "%d skipped in a row stop the run (train.max_nonfinite_steps)", epoch,
                        record["skipped_steps"], plan.iters, cfg.train.max_nonfinite_steps)
        log.info(epoch_line(record, plan.summary, [k for k in losses if k not in ("loss", "skipped_steps")]))
    events.close()
    if not main:
        return []
    records = metrics.read()
    show(metrics_table(records, f"{s.ds.name}: {cfg.model.name}, {title}"))
    best = max((r for r in records if "mAP" in r), key=lambda r: r["mAP"], default=None)
    if best is not None:
        log.info("best.pt holds epoch %d (mAP %.1f%%)%s", best["epoch"], 100 * best["mAP"],
                 ": the model before training; no trained epoch did better" if best["epoch"] == 0 else "")
    plot_curves(records, s.run_dir / "curves.png", f"{s.ds.name}: {cfg.model.name}, {title}")
    return records


def epoch_line(record: dict, summary: str = "", parts: list[str] | None = None) -> str:
    """``epoch 3: <trainer's words>; lr 3.50e-04, loss 1.234 (id 0.9, triplet 0.3); extract 1.2s, ...``;
    ``parts``: the record's loss parts."""
    parts = parts or []
    loss = "no training" if record["loss"] is None else f"loss {record['loss']:.3f}"
    if parts and record["loss"] is not None:
        loss += " (" + ", ".join(f"{k} {record[k]:.3f}" for k in parts) + ")"
    if record.get("skipped_steps"):
        loss += f", {record['skipped_steps']} of {record.get('iters', '?')} steps skipped (not finite)"
    times = ", ".join(f"{k[:-2]} {record[k]}s" for k in record if k.endswith("_s"))
    line = f"epoch {record['epoch']}: " + (f"{summary}; " if summary else "")
    line += f"lr {record['lr']:.2e}, {loss}; {times}"
    if "mAP" in record:
        line += f"; mAP {100 * record['mAP']:.1f}%, rank-1 {100 * record['rank1']:.1f}%"
    return line
