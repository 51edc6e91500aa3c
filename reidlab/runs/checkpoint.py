"""Checkpoints: state dicts, config and progress, written atomically, read with weights_only=True."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from reidlab.data.files import write_atomically
from reidlab.errors import CheckpointError, NonFiniteError


def non_finite(state, prefix: str = "") -> list[str]:
    """The names of the floating-point tensors in ``state`` (nested dicts and lists: a model's state dict, an
    optimiser's) that hold NaN or inf."""
    if torch.is_tensor(state):
        return [prefix] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    return [name for k, v in items for name in non_finite(v, f"{prefix}.{k}" if prefix else str(k))]


def require_finite_state(state: dict, what: str) -> None:
    """A ``NonFiniteError`` naming the tensors of ``state`` that are not finite, if any."""
    bad = non_finite(state)
    if bad:
        raise NonFiniteError(f"{what} would hold {len(bad)} non-finite tensor(s) (NaN or inf), e.g. {bad[0]}; it is "
                             f"not written")


def save_checkpoint(path: Path, state: dict) -> None:
    """Written to a temporary file in the same folder, then renamed over ``path`` (a kill leaves either the
    old or the new file, never half of one); a full disk is a clear error (runs.files.write_atomically).
    Its one caller, ``TrainingState.save``, has checked every tensor finite (:func:`require_finite_state`)."""
    write_atomically(path, lambda tmp: torch.save(state, tmp), f"the checkpoint {Path(path).name}")


def find_checkpoint(path: str | os.PathLike, name: str = "last.pt") -> Path:
    """``path`` itself, or a run folder's ``name``; a run folder without ``best.pt`` (a run that never
    evaluated: no query and gallery) gives its ``last.pt``, and says so."""
    p = Path(path)
    if p.is_dir():
        if name == "best.pt" and not (p / name).exists() and (p / "last.pt").is_file():
            logging.getLogger("reidlab").info("%s has no best.pt (it never evaluated: no query and gallery); using "
                                           "its last.pt", p)
            return p / "last.pt"
        p = p / name
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p} (give a .pt file or a run folder holding {name})")
    return p


def describe_file(p: Path) -> str:
    """A few words on what a file is that is not what was asked for (a checkpoint, a features .npz)."""
    size = p.stat().st_size
    if size == 0:
        return "it is empty (0 bytes), e.g. a save that never finished"
    head = p.open("rb").read(512)
    if head[:2] == b"PK":
        return "a zip archive (a PyTorch file?) that cannot be read in full; it may be truncated"
    if b"\0" not in head:
        try:
            head.decode("utf-8")
            return f"a text file of {size} bytes"
        except UnicodeDecodeError:
            pass
    return f"a binary file of {size} bytes that is not a PyTorch checkpoint"


def load_checkpoint(path: str | os.PathLike, name: str = "last.pt") -> dict:
    p = find_checkpoint(path, name)
    expected = "expected a last.pt or best.pt written by this project (or the run folder holding it)"
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:
        raise CheckpointError(f"{p} is not a checkpoint: {describe_file(p)}; {expected}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{p} is a PyTorch file but not a checkpoint of this project (no model state and "
                              f"config; a bare state dict goes to --set model.pretrained=PATH); {expected}")
    model = ckpt["model"]
    if (not isinstance(ckpt["config"], dict) or not isinstance(model, dict) or not model
            or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in model.items())):
        raise CheckpointError(f"{p} has the keys of a checkpoint of this project but not their contents (its "
                              f"'model' must be a non-empty state dict of tensors, its 'config' a mapping); it was "
                              f"edited or written by other code; {expected}")
    ckpt["path"] = str(p)
    portable_device(ckpt)
    return ckpt


def portable_device(ckpt: dict) -> None:
    """A checkpoint's recorded device, where this machine lacks it (``cuda:1`` on a one-GPU machine, any CUDA
    device on a CPU machine: a torchrun or GPU run's checkpoint read elsewhere), becomes ``auto``, with a line
    in the log; ``--device`` (or ``device=``) still chooses."""
    config = ckpt["config"]
    name = str(config.get("device", "auto"))
    if not name.startswith("cuda"):
        return
    index = int(name.split(":")[1]) if ":" in name and name.split(":")[1].isdigit() else 0
    if torch.cuda.is_available() and index < torch.cuda.device_count():
        return
    config["device"] = "auto"
    logging.getLogger("reidlab").info("%s was written on %s, which this machine does not have: device auto (%s) "
                                   "unless --device says otherwise", ckpt["path"], name,
                                   "cuda" if torch.cuda.is_available() else "cpu")


def load_resumable(path: str | os.PathLike) -> dict:
    """A checkpoint ``--resume`` can continue from: ``last.pt`` (``best.pt`` holds the weights only).

    A run folder without ``last.pt`` (stopped before its first checkpoint, while loading its data) is
    continued from its ``config.yaml``: ``{"config", "path", "fresh": True}``, a fresh start in the folder."""
    folder = Path(path)
    if folder.is_dir() and not (folder / "last.pt").exists() and (folder / "config.yaml").is_file():
        import yaml
        try:
            config = yaml.safe_load((folder / "config.yaml").read_text())
        except yaml.YAMLError as e:
            raise CheckpointError(f"{folder / 'config.yaml'} is not valid YAML: {e}") from None
        logging.getLogger("reidlab").info("%s has no last.pt yet (stopped before its first checkpoint): it starts "
                                       "again from its config.yaml", folder)
        return {"config": config, "path": str(folder / "last.pt"), "fresh": True}
    ckpt = load_checkpoint(path)
    if "optimizer" not in ckpt:
        raise CheckpointError(f"{ckpt['path']} holds the weights only (a best.pt); resume from the run's "
                              f"last.pt (give the run folder)")
    check_belongs(ckpt, Path(ckpt["path"]).parent)
    return ckpt


def state_digest(state: dict) -> str:
    """A digest of a state dict's names and bytes (16 hex digits): two models with the same digest hold the
    same weights."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def run_identity(folder: Path) -> str | None:
    """A run folder's identity: the digest of its ``config.yaml``, written once when the folder is made
    and never again (None when the folder has none)."""
    try:
        return hashlib.sha256((Path(folder) / "config.yaml").read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def _what_run(config: dict) -> str:
    model, data = config.get("model") or {}, config.get("data") or {}
    return (f"a {config.get('mode', '?')} run of {model.get('name', '?')} on {data.get('dataset', '?')}, "
            f"seed {config.get('seed', '?')}")


def check_belongs(ckpt: dict, folder: Path) -> None:
    """``ckpt`` (a last.pt) was written by the run of ``folder``: its recorded run identity is the folder's
    (checkpoints of earlier versions, without one: the same mode, model and dataset as the folder's
    config.yaml). A checkpoint copied in from another run would otherwise be resumed into this run's
    folder, its epochs appended to this run's metrics."""
    own = run_identity(folder)
    if own is None:
        return
    import yaml
    try:
        config = yaml.safe_load((Path(folder) / "config.yaml").read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        config = {}
    theirs = ckpt.get("config") or {}
    if ckpt.get("run"):
        foreign = ckpt["run"] != own
    else:
        keys = (("mode",), ("model", "name"), ("data", "dataset"))

        def get(c, k):
            for part in k:
                c = c.get(part) if isinstance(c, dict) else None
            return c
        foreign = isinstance(config, dict) and any(get(config, k) != get(theirs, k) for k in keys)
    if foreign:
        raise CheckpointError(f"{ckpt['path']} was written by another run ({_what_run(theirs)}), not by the run of "
                              f"{folder} ({_what_run(config if isinstance(config, dict) else {})}, its config.yaml); "
                              f"resuming would mix the two. Put this run's own last.pt back, resume the other run "
                              f"in its own folder, or start a new run")


def load_model_state(model: torch.nn.Module, ckpt: dict) -> None:
    """Load a checkpoint's weights; a checkpoint of another model is a clear error."""
    own = model.state_dict()
    state = ckpt["model"]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        their = ckpt["config"].get("model", {}).get("name", "?")
        detail = (f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} of another shape"
                  + (f", e.g. {(missing + unexpected + wrong)[0]}" if missing or unexpected or wrong else ""))
        raise CheckpointError(f"{ckpt.get('path', 'checkpoint')} holds a {their!r} model that does not fit the "
                              f"model this run builds ({detail}); use the checkpoint's own config, or the "
                              f"matching --set model.name=...")
    model.load_state_dict(state)


class TrainingState:
    """What a trainer checkpoints each epoch: ``last.pt`` always (model, optimiser, schedule, epoch, config,
    best mAP, and the state of ``extras``, e.g. a loss's own parameters and optimiser: everything
    ``--resume`` needs), ``best.pt`` when the epoch's mAP is the best so far (model, epoch, config, mAP:
    what evaluation and deployment need, a third of ``last.pt`` with Adam's moments)."""

    def __init__(self, run_dir: Path, model: torch.nn.Module, optimizer, scheduler, config: dict,
                 extras: dict | None = None, progress: dict | None = None):
        self.run_dir, self.model, self.optimizer, self.scheduler = Path(run_dir), model, optimizer, scheduler
        self.config = config
        self.extras = extras or {}
        # the run's state outside the weights, under last.pt's "progress": the loss scaler's, the NaN guard's (its
        # streak and skips), the trainer's own (the unsupervised loop's last pseudo-labels); objects with
        # state_dict() / load_state_dict(); a checkpoint of an earlier version without one starts it afresh
        self.progress = progress or {}
        self.best = -1.0
        self.run = run_identity(self.run_dir)
        self.saved_epoch: int | None = None      # the epoch of the last last.pt written (or resumed from)

    def resume(self, ckpt: dict | None, metrics=None) -> int:
        """Load a checkpoint of this run (None: a fresh run) and cut ``metrics`` (a ``MetricsLog``) after
        its epoch; returns the epoch it finished (0 for a fresh run)."""
        if ckpt is None:
            return 0
        load_model_state(self.model, ckpt)
        self.load_schedule(ckpt)
        for key, obj in self.extras.items():
            if key not in ckpt:
                raise CheckpointError(f"{ckpt.get('path', 'checkpoint')} has no {key!r} state, which this run's "
                                      f"config needs; resume with the run's own config")
            obj.load_state_dict(ckpt[key])
        saved = ckpt.get("progress") or {}
        for key, obj in self.progress.items():
            if key not in saved:
                logging.getLogger("reidlab").info("%s holds no %s state (an earlier version's checkpoint): it starts "
                                                  "afresh", ckpt.get("path", "checkpoint"), key)
                continue
            try:
                obj.load_state_dict(saved[key])
            except (RuntimeError, ValueError, KeyError) as e:      # fp16's scaler state into an fp32 run, ...
                logging.getLogger("reidlab").info("%s: its %s state does not fit this run (%s): it starts afresh",
                                                  ckpt.get("path", "checkpoint"), key, str(e).splitlines()[0])
        self.best = float(ckpt["best_map"])
        epoch = self.saved_epoch = int(ckpt["epoch"])
        if metrics is not None:
            metrics.truncate_after(epoch)
        logging.getLogger("reidlab").info("resumed from %s at epoch %d", ckpt.get("path", "checkpoint"), epoch)
        return epoch

    def load_schedule(self, ckpt: dict) -> None:
        """The optimiser's state and the schedule's position (its epoch) from ``ckpt``; the schedule itself
        (base rate, epochs, steps, warm-up) stays this config's, so that ``--resume --epochs N`` stretches a
        cosine to N and ``--set train.lr=...`` continues at the new rate. (LambdaLR's own state dict would
        bring back the stopped run's schedule object, and the optimiser's its rates.)"""
        base = list(self.scheduler.base_lrs)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict({**ckpt["scheduler"], "base_lrs": base,
                                        "lr_lambdas": [None] * len(self.scheduler.lr_lambdas)})
        rates = [b * f(self.scheduler.last_epoch) for b, f in zip(base, self.scheduler.lr_lambdas)]
        for group, b, rate in zip(self.optimizer.param_groups, base, rates):
            group["initial_lr"], group["lr"] = b, rate
        self.scheduler._last_lr = rates
        was = (ckpt["config"].get("train") or {}).get("lr")
        if was is not None and base and was != base[0]:
            logging.getLogger("reidlab").info("train.lr %g -> %g: the schedule continues at the new rate", was, base[0])

    def save(self, epoch: int, record: dict, write: bool = True) -> None:
        """``last.pt`` (and ``best.pt`` on a new best mAP) of ``epoch``; every tensor is checked finite first, so
        a diverged model is never saved. ``write=False`` (torchrun's other ranks): the check alone, so that
        every rank stops alike."""
        weights = {"model": self.model.state_dict(), "epoch": epoch, "config": self.config,
                   "best_map": max(self.best, record.get("mAP", -1.0)), "run": self.run}
        last = {**weights, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                **{k: v.state_dict() for k, v in self.extras.items()},
                "progress": {k: v.state_dict() for k, v in self.progress.items()}}
        require_finite_state(last, f"epoch {epoch}'s checkpoint")
        if write:
            save_checkpoint(self.run_dir / "last.pt", last)
        self.saved_epoch = epoch
        if record.get("mAP", -1.0) > self.best:
            self.best = record["mAP"]
            if write:
                save_checkpoint(self.run_dir / "best.pt", weights)
