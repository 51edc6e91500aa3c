"""A run's curves as TensorBoard events, in its folder (``tensorboard --logdir outputs``).

One step per epoch (epoch 0: the untrained model's evaluation), one scalar per number of the epoch's
``metrics.jsonl`` record, grouped by what it is:

- ``loss/``: the loss and each of its parts (``nce``, ``id``, ``triplet``, ``center``, a model's own);
- ``train/``: the learning rate, the iterations, the steps skipped for a non-finite loss or gradient;
- ``clusters/``: the unsupervised loop's clusters and outliers and the numbers it knows without labels
  (the largest cluster's share, the median size, intra-cluster similarity, labels moved, ARI to the last
  epoch), and the cluster-size histogram as a histogram;
- ``eval/``: mAP, rank-1, rank-5, rank-10, mINP;
- ``time/``: each phase's seconds.

``tensorboard`` is an optional dependency (``pip install reidlab[tensorboard]``; the test tools include it):
without it the run says once that it writes no events, and trains as before. Rank 0 alone writes (under
torchrun). A resumed run drops the events a stopped run wrote past its checkpoint (``purge_step``), as
``metrics.jsonl`` drops its records.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
EVAL = ("mAP", "rank1", "rank5", "rank10", "mINP")
TRAIN = ("lr", "iters", "skipped_steps")
LEFT_OUT = ("epoch", "ranks_agree")


def tag(key: str, losses) -> str:
    """The TensorBoard tag of a record's key (module docstring)."""
    if key in TRAIN:
        return f"train/{key}"
    if key == "loss" or key in losses:
        return f"loss/{key}"
    if key in EVAL:
        return f"eval/{key}"
    if key.endswith("_s"):
        return f"time/{key}"
    return f"clusters/{key}"


class Events:
    """The TensorBoard writer of one run (None where ``tensorboard`` cannot be used, or on another rank).

    ``purge_step``: on a resumed run, the first step the stopped run may have written past its checkpoint
    (``epoch + 1``; 0 for a run started again before its first checkpoint), whose events TensorBoard then drops;
    None for a new run. An events file that cannot be written (a full disk, no write access) or a tensorboard that
    fails to import (a protobuf that does not fit it raises TypeError) stops the events with one warning; the
    run goes on, and metrics.jsonl and curves.png hold the same numbers."""

    def __init__(self, run_dir: Path, purge_step: int | None = None, write: bool = True):
        self.writer = None
        if not write:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed: this run writes no TensorBoard events (pip install tensorboard; "
                     "metrics.jsonl and curves.png hold the same numbers)")
            return
        except Exception as e:           # installed, but broken (protobuf's TypeError, ...)
            log.warning("tensorboard cannot be imported (%s: %s): this run writes no TensorBoard events (reinstall "
                        "tensorboard and protobuf; metrics.jsonl and curves.png hold the same numbers)",
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            return
        try:
            self.writer = SummaryWriter(str(run_dir), purge_step=purge_step)
        except Exception as e:
            self._stop(e)

    def _stop(self, e: Exception) -> None:
        log.warning("TensorBoard events can no longer be written in this run's folder (%s: %s); the run goes on "
                    "without them (metrics.jsonl and curves.png hold the same numbers)", type(e).__name__, e)
        self.writer = None

    def record(self, record: dict, losses=()) -> None:
        """An epoch's record of metrics.jsonl, at step ``record["epoch"]``."""
        if self.writer is None:
            return
        step = int(record["epoch"])
        try:
            for key, value in record.items():
                if key in LEFT_OUT:
                    continue
                if key == "cluster_size_hist" and isinstance(value, list) and sum(value):
                    sizes = np.repeat(np.arange(len(value)), value)      # bins 1, 2-3, 4-7, ...: their index
                    self.writer.add_histogram("clusters/cluster_size_bins", sizes, step)
                elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self.writer.add_scalar(tag(key, losses), value, step)
            self.writer.flush()
        except Exception as e:           # a full disk, a folder made read-only: the writer's thread raises here
            self._stop(e)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception as e:
                self._stop(e)
