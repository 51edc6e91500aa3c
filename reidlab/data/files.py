"""Where results are written: checked before the work, written atomically, every ``OSError`` a clear error.

Training's run folders, the synthetic benchmark, the teachers' annotations and the use modes (extract,
search, explain, export) write through these, so that a read-only place, a full disk, a folder where a
file is meant (or the reverse), a suffix nothing can write, a link that leads nowhere or a name too long
for the file system is said before any minute is spent, in words that say what to do; and a write that
fails half-way (a kill, a disk that fills meanwhile) leaves the previous file, never half of one, and
several processes writing one file see one or the other whole (``locked``).
"""
from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from reidlab.errors import ReIDError


@contextmanager
def locked(path: Path):
    """An exclusive ``flock`` on ``path`` (created if missing), held until the block ends; the OS drops it
    if the process dies."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()   # an ordinary file's mode: 0644 under the usual umask 022
TMP_PREFIX = ".tmp-"            # write_atomically's temporary files: .tmp-<pid>-<random><suffix>
NAME_MAX = 255                  # bytes of one path component on Linux, macOS and Windows file systems
HEADROOM = 24                   # room for a suffix; temporary files have short names of their own


def nearest_existing(p: Path) -> Path:
    """``p`` or its nearest ancestor that exists (a dangling link counts: it exists as a link)."""
    return next(q for q in (p, *p.absolute().parents) if os.path.lexists(q))


def check_names(p: Path, flag: str = "--output") -> None:
    """Every component of ``p`` short enough for the file system, and no dangling link or link loop on it."""
    for part in Path(p).parts:
        if len(part.encode()) > NAME_MAX - HEADROOM:
            raise ReIDError(f"{flag} {p}: the name {part[:40]}... is {len(part.encode())} bytes; file systems take "
                            f"{NAME_MAX}, so give a shorter one (at most {NAME_MAX - HEADROOM})")
    q = Path(p)
    for r in (q, *q.absolute().parents):
        if os.path.islink(r) and not os.path.exists(r):
            raise ReIDError(f"{flag} {p}: {r} is a symbolic link that leads nowhere (its target is missing, or it "
                            f"loops back on itself); remove it or give another path")


def check_writable_folder(folder: Path, flag: str = "--output") -> None:
    """``folder`` exists as a folder, or can be made: the nearest existing ancestor is a folder in which a
    file can really be created (a permission check alone says yes to root on a read-only file system)."""
    folder = Path(folder)
    check_names(folder, flag)
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise ReIDError(f"{flag} {folder}: {existing} is a file, not a folder, so nothing can be written "
                        f"there; give another path")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ReIDError(f"{flag} {folder}: nothing can be written in {existing} ({e.strerror}); give a writable "
                        f"place") from None


def check_free_space(folder: Path, needed: int, what: str, flag: str = "--output") -> None:
    """At least ``needed`` bytes (and 10% more) free where ``folder`` is or will be."""
    free = shutil.disk_usage(nearest_existing(Path(folder))).free
    if free < needed * 1.1:
        raise ReIDError(f"{flag} {folder}: {what} needs about {mb(needed)} and only {mb(free)} is free there; free "
                        f"some space or give another place")


def mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB" if n < 2**30 else f"{n / 2**30:.1f} GB"


def check_file_output(path: str | os.PathLike, what: str, suffixes: list[str], example: str,
                      flag: str = "--output") -> Path:
    """``path`` can receive ``what`` (a file with one of ``suffixes``): not a folder, not a device, its
    folder writable. Returns it as a Path."""
    p = Path(path)
    check_names(p, flag)
    if p.is_dir():
        raise ReIDError(f"{flag} {p} is a folder, and {what} is a file: give a file name, e.g. {flag} "
                        f"{p / example}")
    if p.exists() and not p.is_file():
        raise ReIDError(f"{flag} {p} is not a regular file (a device or a socket); give a file name, e.g. "
                        f"{flag} {example}")
    if p.suffix.lower() not in suffixes:
        shown = ", ".join(suffixes[:8]) + (", ..." if len(suffixes) > 8 else "")
        raise ReIDError(f"{flag} {p}: {what} is written as {shown}, not {p.suffix or 'a name without a suffix'}; "
                        f"e.g. {flag} {p.with_suffix(Path(example).suffix)}")
    check_writable_folder(p.parent, flag)
    return p


def check_folder_output(path: str | os.PathLike, what: str, flag: str = "--output") -> Path:
    p = Path(path)
    check_names(p, flag)
    if os.path.lexists(p) and not p.is_dir():
        raise ReIDError(f"{flag} {p} is a file, and {what} go into a folder: give a folder (it is made if needed)")
    check_writable_folder(p, flag)
    return p


def figure_suffixes() -> list[str]:
    """The file suffixes matplotlib writes (.png first)."""
    from matplotlib.backend_bases import FigureCanvasBase
    kinds = sorted(f".{k}" for k in FigureCanvasBase.get_supported_filetypes())
    return [".png", *(k for k in kinds if k != ".png")]



def disk_error(e: OSError, path: Path, what: str) -> ReIDError:
    """The project's error for an ``OSError`` while writing ``path``."""
    full = e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    hint = ("the disk is full (or a size limit was reached): free some space" if full
            else "check that the place is writable")
    return ReIDError(f"could not write {what} to {path} ({e.strerror or e}); {hint}, then run the command again")


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None], what: str) -> Path:
    """``write(tmp)`` to a temporary file next to ``path`` (with its suffix, which writers such as
    matplotlib and numpy read), then rename it over ``path``: a failure leaves ``path`` as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=path.suffix)
        os.close(fd)
    except OSError as e:
        raise disk_error(e, path, what) from None
    failure = None
    try:
        write(Path(tmp))
        os.chmod(tmp, FILE_MODE)                     # what open() gives, not mkstemp's 0600
        os.replace(tmp, path)
    except OSError as e:
        failure = disk_error(e, path, what)
    except RuntimeError:                      # torch's writer reports a full disk as its own RuntimeError
        cause = _out_of_room(Path(tmp))
        if cause is None:
            raise
        failure = disk_error(cause, path, what)
    finally:                                  # (outside the except blocks, the failed writer and its open
        if os.path.exists(tmp):               # file are released, so the space it took is free again)
            os.remove(tmp)
    if failure is not None:
        raise failure
    return path


def _out_of_room(tmp: Path) -> OSError | None:
    """Why a write to ``tmp`` that failed without an ``OSError`` failed, when it is room: the disk nearly
    full, or the file at the process's file-size limit (``ulimit -f``). None: something else."""
    import resource
    if shutil.disk_usage(tmp.parent).free < 4 * 2**20:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and tmp.exists() and tmp.stat().st_size >= limit - 2**16:
        return OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    return None


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` written atomically to ``path`` (write_atomically)."""
    write_atomically(path, lambda tmp: tmp.write_bytes(data), Path(path).name)


def walk_files(base: Path) -> tuple[list[Path], list[Path]]:
    """Every file under ``base``, sorted, following links to folders (a camera folder linked from another disk is
    read, under the name of the link), and the folders left out because a link led back to a folder already
    read (a loop, or a second way to one folder: its files once)."""
    base = Path(base)
    seen: set[tuple[int, int]] = set()
    files: list[Path] = []
    repeated: list[Path] = []
    for root, dirs, names in os.walk(base, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:
            repeated.append(Path(root))
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs.sort()
        files += [Path(root) / n for n in names if os.path.isfile(os.path.join(root, n))]
    return sorted(files), repeated
