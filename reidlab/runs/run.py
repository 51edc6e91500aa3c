"""A run's folder, logging, device and seeding; JSON-lines metrics."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from rich.logging import RichHandler

from reidlab.data.datasets import dataset_label
from reidlab.data.files import TMP_PREFIX, check_names, disk_error, write_atomic
from reidlab.errors import ConfigError, ReIDError

from . import dist
from .config import Config

log = logging.getLogger("reidlab")


def resolve_device(name: str) -> torch.device:
    """The device of ``device`` (auto, cpu, cuda, cuda:N); under torchrun a CUDA device is this process's own,
    cuda:LOCAL_RANK (runs.dist), which the config never records (so a checkpoint reads on any machine)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    if dev.type == "cuda" and dist.launched():
        dev = torch.device("cuda", dist.local_rank())
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_epoch(seed: int, epoch: int) -> None:
    """The global generators (python's, numpy's, torch's on the CPU and every GPU), seeded from (seed, epoch)
    at the start of an epoch: what a model draws from them (dropout, drop-path) is then a function of the
    epoch alone, so a run resumed after epoch e trains epoch e + 1 exactly as the straight run, on any
    device and any number of processes (a saved generator state would tie a resume to the device kind and
    the rank count). The samplers' and the augmentation's generators are made per epoch from (seed, epoch)
    already; this derivation differs from theirs, so no two streams coincide."""
    state = np.random.SeedSequence([seed, epoch, 0x5EED]).generate_state(2)
    derived = int(state[0]) << 32 | int(state[1])
    random.seed(derived)
    np.random.seed(int(state[0]))
    torch.manual_seed(derived)


class RunLogHandler(logging.FileHandler):
    """log.txt; a write that fails (a full disk) stops this handler with one warning on the console,
    instead of logging's traceback at every line, and the run goes on to its own clear error."""

    def handleError(self, record: logging.LogRecord) -> None:
        logging.getLogger().removeHandler(self)
        log.warning("%s can no longer be written (the disk is full?); the console has the rest", self.baseFilename)


class StdoutHandler(logging.StreamHandler):
    """Plain log lines to whatever ``sys.stdout`` is when a line is written (a pipe, a file, a test's capture)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def _console_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "file_only", False)


def setup_logging(run_dir: Path | None = None, level: int = logging.INFO, quiet: bool | None = None) -> None:
    """The console's handler (rich on a terminal; plain, unwrapped lines otherwise) and, with ``run_dir``, its
    log.txt, which gets every line the console gets and the tables (runs.progress.show). ``quiet`` (--quiet;
    None keeps the last setting): the console shows warnings and errors only, and no progress."""
    from reidlab.progress import console as rich_console
    from reidlab.progress import quiet as quiet_state
    if quiet is not None:
        quiet_state["progress"] = quiet
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(level)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)   # its CPU-feature probing is noise
    if rich_console.is_terminal:
        console = RichHandler(show_path=False, log_time_format="%H:%M:%S", console=rich_console)
    else:
        console = StdoutHandler()
        console.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    console.setLevel(logging.WARNING if quiet_state["progress"] else level)
    console.addFilter(_console_only)
    root.addHandler(console)
    if run_dir is not None:
        fh = RunLogHandler(run_dir / "log.txt")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(fh)


LOCK_FILE = "run.lock"
FAILED_FILE = "FAILED.txt"
_held_locks: dict = {}          # run folder -> its open lock file, for the folders this process holds


def _owner(lock: Path) -> str:
    try:
        return lock.read_text().strip() or "?"
    except OSError:
        return "?"


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _lock(folder: Path, blocking: bool = False):
    """An exclusive ``flock`` on ``folder/run.lock`` with our pid in it, held until the process exits (the OS
    drops it when a process dies, so a killed run's lock is taken over). None when another process holds it."""
    key = str(Path(folder).resolve())
    if key in _held_locks:
        return _held_locks[key]
    lock = folder / LOCK_FILE
    previous = _owner(lock) if lock.is_file() and lock.stat().st_size else ""     # empty: released, not crashed
    fh = open(lock, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        fh.close()
        return None
    if previous and previous != str(os.getpid()) and not _pid_alive(previous):
        _note(folder, f"took over the lock left by process {previous}, which is no longer running")
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    _held_locks[key] = fh
    return fh


def _unlock(folder: Path) -> None:
    """Release the lock, emptied first: a run that ended is not a crashed owner the next run takes over."""
    fh = _held_locks.pop(str(Path(folder).resolve()), None)
    if fh is not None:
        try:
            fh.seek(0)
            fh.truncate()
        except OSError:
            pass
        fh.close()


def release_run_dir(run_dir: Path) -> None:
    """Give up this process's lock of a run folder (at the end of a run; the OS does it when a process dies)."""
    _unlock(run_dir)


def _note(folder: Path, message: str) -> None:
    """Log ``message`` and append it to the folder's log.txt (before this process's logging writes there)."""
    log.info("%s: %s", folder, message)
    if (Path(folder) / "log.txt").is_file():
        with open(Path(folder) / "log.txt", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} INFO reidlab: {message}\n")


def _writable_output(out: Path, create: bool = False) -> None:
    """``out`` is (or can be made) a writable folder; with ``create`` it is made."""
    try:
        check_names(out)
    except ReIDError as e:
        raise ConfigError(str(e)) from None
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output: {out} is a file, not a folder; give a folder for the run folders with --output")
    if create:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"output: cannot create {out} ({e.strerror}); give a writable folder with --output"
                              ) from None
    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"output: {existing} is a file, so {out} cannot be made; give a folder with --output")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"output: {existing} is not writable; give a writable folder with --output")


def _name_taken(target: Path) -> None:
    """The error for a run folder name the user gave that is taken."""
    if not target.is_dir():
        raise ConfigError(f"--name {target.name}: {target} is a file, not a run folder; choose another --name")
    if (target / LOCK_FILE).is_file():
        if _lock(target) is None:
            raise ConfigError(f"run folder {target} is in use by process {_owner(target / LOCK_FILE)}; "
                              f"wait for it to end, or choose another --name")
        _unlock(target)
    raise ConfigError(f"run folder {target} holds another run; continue it with --resume {target}, "
                      f"or choose another --name")


def check_run_dir(cfg: Config, explicit_name: bool = False) -> None:
    """Before any work: the output folder can be written, and a name the user gave is free."""
    out = Path(cfg.output)
    _writable_output(out)
    target = out / cfg.name if cfg.name else None
    if explicit_name and target is not None and target.exists() and (not target.is_dir() or any(target.iterdir())):
        _name_taken(target)


def make_run_dir(cfg: Config, explicit_name: bool = False) -> Path:
    """Claim a new run folder ``<output>/<name>`` and lock it, then write its ``config.yaml``.

    A new run never writes into a folder that holds another run: the folder is made under a temporary
    name with its lock held and renamed into place, which fails when the name is taken. A taken name
    that the user gave (``explicit_name``) is an error that says whether another process is using it
    (with its process id) or to continue it with ``--resume``; a recipe's or default name gets the
    first free ``<name>-2``, ``<name>-3``, ..."""
    out = Path(cfg.output)
    _writable_output(out, create=True)
    dataset = dataset_label(cfg.data.dataset)
    base = cfg.name or f"{cfg.mode}-{dataset}-{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for i in range(1, 10_000):
        name = base if i == 1 else f"{base}-{i}"
        target = out / name
        taken = target.exists() and (not target.is_dir() or any(target.iterdir()))
        if not taken:
            tmp = out / f".{name}.tmp-{os.getpid()}"
            try:
                tmp.mkdir()
            except OSError as e:
                raise ConfigError(f"output: cannot create a run folder in {out} ({e.strerror}); give a writable "
                                  f"folder with --output") from None
            _lock(tmp, blocking=True)
            try:
                os.rename(tmp, target)           # atomic; fails when another process took the name meanwhile
            except OSError:
                _unlock(tmp)
                shutil.rmtree(tmp, ignore_errors=True)
            else:                                # the lock (on the file itself) moved with the folder
                _held_locks[str(target.resolve())] = _held_locks.pop(str(tmp.resolve()))
                break
        if explicit_name:
            _name_taken(target)
    if name != base:
        log.info("%s holds another run; this run's folder is %s", out / base, target)
    try:
        write_atomic(target / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
    except ReIDError:                         # a full disk: no half-made run folder is left behind
        _unlock(target)
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def open_run_dir(run_dir: Path) -> Path:
    """Lock an existing run folder to continue it (``--resume``); remove what a killed run left behind
    (half-written checkpoints, the failed marker)."""
    run_dir = Path(run_dir)
    if _lock(run_dir) is None:
        raise ConfigError(f"run folder {run_dir} is in use by process {_owner(run_dir / LOCK_FILE)}; "
                          f"wait for it to end before resuming it")
    remove_orphans(run_dir)
    (run_dir / FAILED_FILE).unlink(missing_ok=True)
    return run_dir


def remove_orphans(run_dir: Path) -> None:
    """Temporary files of a save that was killed (``.tmp-<pid>-*``, and ``last.pt.*.tmp`` of earlier
    versions): only this process, which holds the folder's lock, could be writing them."""
    for tmp in [*Path(run_dir).glob(f"{TMP_PREFIX}*"), *Path(run_dir).glob("*.pt.*.tmp")]:
        _note(run_dir, f"removed {tmp.name}, left by a save that was interrupted")
        tmp.unlink(missing_ok=True)


def mark_failed(run_dir: Path, error: str) -> None:
    """``FAILED.txt`` in the run folder with the error (the log has it too); ``--resume`` clears it."""
    text = f"this run failed: {error}\nfix the cause, then continue it with --resume {run_dir}\n"
    try:                                      # atomic: a full disk leaves no file rather than an empty one
        write_atomic(Path(run_dir) / FAILED_FILE, text.encode())
    except ReIDError as e:
        log.warning("%s", e)


class MetricsLog:
    """metrics.jsonl: one JSON object per epoch."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, record: dict) -> None:
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:                  # a cut-short line is left out when read (the epoch trains again)
            raise disk_error(e, self.path, f"epoch {record.get('epoch')}'s metrics") from None

    def read(self) -> list[dict]:
        """The records; a last line cut short (the process killed while writing it) is left out with a
        warning, and the next ``truncate_after`` drops it from the file. A damaged line before the last is
        an error naming it (the file was edited or mixed with another's)."""
        return self._parse()[0]

    def _parse(self) -> tuple[list[dict], bool]:
        """(records, whether a cut-short last line was left out)."""
        if not self.path.is_file():
            return [], False
        lines = [(i, x) for i, x in enumerate(self.path.read_text(errors="replace").splitlines(), 1) if x.strip()]
        records = []
        for n, (i, line) in enumerate(lines):
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                    raise ValueError("not an epoch record")
            except ValueError:
                if n == len(lines) - 1:
                    log.warning("%s: its last line (%d) is cut short, as by a kill while it was written; "
                                "left out (the epoch is trained again)", self.path, i)
                    return records, True
                raise ConfigError(f"{self.path}: line {i} is not an epoch's record ({line[:60]!r}); the file "
                                  "was edited or mixed with another run's: restore it, or start a new run") from None
            records.append(record)
        return records, False

    def truncate_after(self, epoch: int) -> None:
        """Drop records of epochs after ``epoch`` (a resumed run writes them again), and say so; a cut-short
        last line goes too."""
        records, torn = self._parse()
        kept = [r for r in records if r["epoch"] <= epoch]
        if torn or len(kept) < len(records):
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        if len(kept) < len(records):
            log.info("metrics.jsonl: dropped %d record(s) past epoch %d (epochs %s), the resumed run writes them "
                     "again", len(records) - len(kept), epoch,
                     ", ".join(str(r["epoch"]) for r in records if r["epoch"] > epoch))
