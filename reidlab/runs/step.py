"""One training step, from the forward to the commit or the discard of everything it changed.

``Step`` owns the whole of a step, so that a step that must not count leaves no trace:
  - the forward, under the run's autocast, of this rank's share of the batch (a stand-in of two rows where the
    share is empty: :func:`no_rows`), gathered over the ranks with its gradient (:func:`gather_output`);
  - the loss, the backward through the loss scaler (fp16), and the check (:class:`StepGuard`: the loss and every
    gradient finite, on every rank);
  - then either the **commit**: the optimiser's step (and the extra parameters': Bag of Tricks' centres), and
    the updates held during the step (``holds``: the cluster memories' momentum updates,
    ``memory.ClusterMemory.hold_updates``); or the **discard**: the BatchNorm buffers its forward moved put back,
    the held updates dropped;
  - and the loss scaler's update either way (an overflow makes it back off; its state is in the checkpoint, so a
    resumed fp16 run scales as the straight one: runs.checkpoint).
``StepGuard`` counts the skips, per epoch and in a row, and stops a run after ``train.max_nonfinite_steps`` in a
row; its streak is in the checkpoint too.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from reidlab.precision import amp_dtype

from . import dist


def gather_output(out, sizes: list[int]):
    """A model's training output with every rank's rows (runs.dist.gather; ``sizes``: each rank's rows);
    the identity in one process."""
    if not dist.active():
        return out

    def g(x):
        return dist.gather(x, sizes)
    return dataclasses.replace(
        out, embedding=g(out.embedding), features=g(out.features),
        logits=None if out.logits is None else g(out.logits),
        part_embeddings=[g(x) for x in out.part_embeddings], part_features=[g(x) for x in out.part_features],
        part_logits=[g(x) for x in out.part_logits],
        loss_terms=None if out.loss_terms is None else [
            dataclasses.replace(t, features=None if t.features is None else g(t.features),
                                logits=None if t.logits is None else g(t.logits)) for t in out.loss_terms])


def no_rows(out):
    """A rank's training output with none of its rows (a stand-in forward of a rank whose share of a short batch is
    empty, runs.dist.split_rows): every per-image output cut to 0 rows, and its own losses times 0, so that it
    adds nothing to the global batch's loss while its parameters still take part in the step (every gradient
    zero here, DistributedDataParallel's all-reduce as ever). Its BatchNorm buffers moved, and are rank 0's again
    after the epoch (runs.dist.broadcast_buffers); rank 0 always holds rows."""
    def cut(x):
        return None if x is None else x[:0]
    return dataclasses.replace(
        out, embedding=cut(out.embedding), features=cut(out.features), logits=cut(out.logits),
        part_embeddings=[cut(x) for x in out.part_embeddings], part_features=[cut(x) for x in out.part_features],
        part_logits=[cut(x) for x in out.part_logits], aux_losses={k: v * 0 for k, v in out.aux_losses.items()},
        loss_terms=None if out.loss_terms is None else [
            dataclasses.replace(t, features=cut(t.features), logits=cut(t.logits)) for t in out.loss_terms])


class NonFiniteSteps(Exception):
    """``train.max_nonfinite_steps`` steps in a row were skipped (raised by :class:`StepGuard`; ``fit`` turns it
    into the user's message)."""

    def __init__(self, steps: int, what: str):
        super().__init__(f"{steps} steps in a row had a non-finite {what}")
        self.steps, self.what = steps, what


class StepGuard:
    """Whether a step may be taken: its loss and every gradient finite, on every rank (one all-reduce, so all
    ranks skip alike and none waits for another). Counts the epoch's skips and the run's current streak;
    ``limit`` skips in a row raise :class:`NonFiniteSteps`. With fp16's loss scaler the gradients are
    checked unscaled; an overflow the scaler backs off from counts as a skip too."""

    def __init__(self, limit: int):
        self.limit, self.streak, self.skipped = limit, 0, 0
        self.history: dict[int, int] = {}        # epoch -> its skipped steps, the run's whole record

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the streak (a resumed run stops where the straight one would) and the history."""
        return {"streak": self.streak, "skipped": self.skipped, "history": dict(self.history)}

    def load_state_dict(self, state: dict) -> None:
        self.streak, self.skipped = int(state.get("streak", 0)), int(state.get("skipped", 0))
        self.history = {int(k): int(v) for k, v in (state.get("history") or {}).items()}

    def good(self, loss: torch.Tensor, params: list[torch.Tensor]) -> bool:
        grads = [p.grad for p in params if p.grad is not None]
        loss_ok = torch.isfinite(loss.detach()).all()
        grad_ok = torch.stack(torch._foreach_norm(grads, float("inf"))).isfinite().all() if grads else loss_ok
        flags = dist.all_min(torch.stack([loss_ok, grad_ok]).to(torch.int32))
        if bool(flags.all()):
            self.streak = 0
            return True
        self.streak += 1
        self.skipped += 1
        if self.streak >= self.limit:
            raise NonFiniteSteps(self.streak, "loss" if not bool(flags[0]) else "gradient")
        return False




class Step:
    """A step's life (module docstring). ``holds``: objects with ``commit()`` and ``discard()`` whose updates wait
    for the check (their ``hold_updates`` is set here)."""

    def __init__(self, net: torch.nn.Module, model: torch.nn.Module, optimizer, scaler, extra, guard: StepGuard,
                 device: torch.device, amp: str, layout=torch.contiguous_format, holds=()):
        self.net, self.optimizer, self.scaler, self.extra, self.guard = net, optimizer, scaler, extra, guard
        self.dtype, self.device, self.layout = amp_dtype(device, amp), device, layout
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.params += list(extra.module.parameters()) if extra is not None else []
        self.buffers = [b for b in model.buffers() if b.is_floating_point() or b.dtype == torch.long]
        self.holds = list(holds)
        for h in self.holds:
            h.hold_updates = True

    def __call__(self, x: torch.Tensor, teacher: dict, idx: torch.Tensor, sizes: list[int], stand_in: bool,
                 loss_fn: Callable, before: Callable[[], None] | None = None):
        """(taken, loss, parts): the step on ``x`` (this rank's rows; ``sizes``: every rank's), taken or skipped."""
        kept = [b.clone() for b in self.buffers]            # what a skipped step's forward must not change
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            raw = self.net(x.contiguous(memory_format=self.layout), **teacher)
            out = gather_output(no_rows(raw) if stand_in else raw, sizes)
        loss, parts = loss_fn(out, idx)
        if before is not None:
            before()
        self.optimizer.zero_grad(set_to_none=True)
        if self.extra is not None:
            self.extra.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if self.extra is not None:
            self.scaler.unscale_(self.extra.optimizer)
        good = self.guard.good(loss, self.params)
        if good:
            self.commit()
        else:
            self.discard(kept)
        self.scaler.update()
        return good, loss, parts

    def commit(self) -> None:
        if self.extra is not None:
            for p in self.extra.module.parameters():
                if p.grad is not None:
                    p.grad.mul_(self.extra.grad_scale)
        self.scaler.step(self.optimizer)
        if self.extra is not None:
            self.scaler.step(self.extra.optimizer)
        for h in self.holds:
            h.commit()

    def discard(self, kept: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for b, k in zip(self.buffers, kept):
                b.copy_(k)
        for h in self.holds:
            h.discard()
