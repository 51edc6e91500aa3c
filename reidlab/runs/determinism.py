"""Same seed, same numbers: the thread count (``train.threads``) and the deterministic mode
(``train.deterministic``) of a run.

What makes two runs with one seed differ, as measured on the CPU (docs/results.md, "Same seed, same numbers"):

- **The thread count.** torch splits a reduction (a convolution's weight gradient over the batch, a
  matrix product) into one partial sum per thread, and faiss's kNN (OpenMP, BLAS) does the same; the
  partial sums are added in a fixed order, so a run is repeatable at one thread count and differs in
  the last bits at another, which training amplifies. ``train.threads`` pins both libraries' count
  (0: torch's default, the machine's physical cores, which differs from machine to machine).
- **Kernels that add in the order threads finish** exist on CUDA (atomics in ``index_add_``, cuDNN's
  and cuBLAS's fastest algorithms). ``torch.use_deterministic_algorithms`` picks the deterministic ones,
  ``cudnn.deterministic`` the deterministic cuDNN algorithms, and ``CUBLAS_WORKSPACE_CONFIG=:4096:8``
  (set here when the user has not, before the first cuBLAS call of the run) cuBLAS's.
  The few ops with no deterministic CUDA kernel that our models use (Pirt's adaptive max pooling to
  a grid, MLA's bilinear resizing of its position map when the input size is not the trained one) run
  anyway with a warning (``warn_only``): the run says which, rather than stopping minutes in.
- **Not sources** (each checked by running it twice): the batch-prefetch thread (it only copies), the
  label numbering after DBSCAN (our DBSCAN numbers clusters by their smallest core point), faiss's
  tie order (fixed at one thread count), and seeding (every generator derives from ``seed`` and the
  epoch; nothing reads the time or the process id).

So on the CPU a run at a fixed thread count is repeatable without the deterministic mode; the mode
pins the thread count of a run that does not set one to the count it starts with, and writes it in
the log. Bit-identical holds for the same torch and faiss versions on the same kind of CPU: torch's
and faiss's kernels are chosen for the CPU's instruction set, and another choice rounds differently.
"""
from __future__ import annotations

import contextlib
import logging
import os

import torch

from .config import Config

log = logging.getLogger("reidlab.determinism")

DEFAULT_THREADS = torch.get_num_threads()      # torch's own choice, before any run changed it
CUBLAS_WORKSPACE = ":4096:8"


def set_threads(n: int) -> int:
    """Pin torch's and faiss's CPU thread count to ``n`` (0: torch's default); returns the count."""
    n = n or DEFAULT_THREADS
    torch.set_num_threads(n)
    try:
        import faiss  # noqa: PLC0415  (optional dependency)
        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels on (``torch.use_deterministic_algorithms`` with ``warn_only``, cuDNN's
    deterministic algorithms, cuBLAS's fixed workspace) or back to torch's defaults."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = False


def configure(cfg: Config, device: torch.device) -> None:
    """A run's threads and kernels, set at its start (both are process-wide: every run sets them)."""
    t = cfg.train
    threads = set_threads(t.threads)
    set_deterministic(t.deterministic)
    if t.deterministic:
        log.info("deterministic mode: %d CPU threads, deterministic kernels%s; torch %s. The same seed gives "
                 "the same numbers with these, on the same kind of %s", threads,
                 " (cuDNN, cuBLAS workspace " + os.environ["CUBLAS_WORKSPACE_CONFIG"] + ")" if device.type == "cuda"
                 else "", torch.__version__, "GPU" if device.type == "cuda" else "CPU")
    else:
        log.info("%d CPU threads%s", threads, "" if t.threads else " (torch's default; train.threads pins it)")


@contextlib.contextmanager
def kept():
    """Within: a run may set threads and kernels (``configure``); after it, the process has them as before
    (torch's and faiss's thread counts, the deterministic mode, cuDNN's flags, the cuBLAS workspace variable),
    so that a run started from a notebook or the Python API leaves nothing behind."""
    threads = torch.get_num_threads()
    deterministic = (torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        yield
    finally:
        set_threads(threads)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = cublas
