"""Batch samplers: P identities (or pseudo-identities) x K images each.

Both yield lists of dataset indices, one list per batch, for a fixed number of iterations; their
randomness comes from the ``numpy.random.Generator`` they are given, so a run is reproducible from
its seed and an epoch from its own seed.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np


def _groups(labels: np.ndarray) -> dict[int, np.ndarray]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels.tolist()):
        if y >= 0:
            groups[y].append(i)
    return {y: np.asarray(ix) for y, ix in groups.items()}


class _PKBase:
    def __init__(self, labels, camids, num_ids: int, num_instances: int, rng: np.random.Generator):
        self.labels, self.camids = np.asarray(labels), np.asarray(camids)
        self.groups = _groups(self.labels)
        if not self.groups:
            raise ValueError("no labelled sample to draw batches from")
        self.ids = np.array(sorted(self.groups))
        self.P, self.K, self.rng = num_ids, num_instances, rng
        self._queue: list[int] = []

    def _next_ids(self) -> list[int]:
        """P distinct ids, going through all ids in a random order before repeating any."""
        out: list[int] = []
        while len(out) < min(self.P, len(self.ids)):
            if not self._queue:
                self._queue = self.rng.permutation(self.ids).tolist()
            y = self._queue.pop()
            if y not in out:
                out.append(y)
        return out

    def batches(self, iterations: int):
        for _ in range(iterations):
            yield [i for y in self._next_ids() for i in self._instances(y)]


class PKSampler(_PKBase):
    """Supervised PK sampling: K images of each of P identities (with replacement when fewer)."""

    def _instances(self, y: int) -> list[int]:
        ix = self.groups[y]
        return self.rng.choice(ix, size=self.K, replace=len(ix) < self.K).tolist()


class PseudoLabelSampler(_PKBase):
    """Cluster Contrast's sampler (its ``RandomMultipleGallerySampler`` read by a DataLoader of batch P x K):
    for each of P clusters, a random anchor image and K-1 other members, taken from cameras other than
    the anchor's when the cluster has such images, otherwise from the anchor's camera; a cluster of one
    image repeats it K times (Cluster Contrast's code then yields the anchor alone, which shifts every
    later batch of the pass; DBSCAN with min_samples >= 2 rarely makes such a cluster).

    Two rules, where this project's earlier sampler and the published code differ:
      - ``replace_below``: the K-1 members are drawn with replacement when the pool (other-camera
        members, else the other members) holds fewer than K images (``"k"``: Cluster Contrast's and
        SpCL's ``len(select) >= num_instances`` test, so a pool of exactly K-1 is drawn with
        replacement), or fewer than K-1 (``"k-1"``: a pool of exactly K-1 gives each member once).
      - ``pass_end``: a pass goes through all clusters in a random order, P at a time. ``"drop"``: the
        fewer than P clusters left at its end are dropped and the next batch starts a new pass (the
        published code's ``DataLoader(drop_last=True)``, restarted by its ``IterLoader``); with fewer
        than P clusters in all, every batch holds all of them. ``"carry"``: they open the next batch,
        which the next pass's first clusters fill (without a cluster twice in one batch)."""

    def __init__(self, labels, camids, num_ids: int, num_instances: int, rng: np.random.Generator,
                 pass_end: str = "carry", replace_below: str = "k-1"):
        super().__init__(labels, camids, num_ids, num_instances, rng)
        if pass_end not in ("carry", "drop"):
            raise ValueError(f"train.pass_end: 'carry' or 'drop', not {pass_end!r}")
        if replace_below not in ("k", "k-1"):
            raise ValueError(f"train.replace_below: 'k' or 'k-1', not {replace_below!r}")
        self.pass_end = pass_end
        self.threshold = self.K if replace_below == "k" else self.K - 1

    def _next_ids(self) -> list[int]:
        if self.pass_end == "carry":
            return super()._next_ids()
        p = min(self.P, len(self.ids))
        if len(self._queue) < p:                   # the pass's tail is dropped: a new pass
            self._queue = self.rng.permutation(self.ids).tolist()
        out, self._queue = self._queue[:p], self._queue[p:]
        return out

    def _instances(self, y: int) -> list[int]:
        ix = self.groups[y]
        anchor = int(self.rng.choice(ix))
        others = ix[ix != anchor]
        cross = others[self.camids[others] != self.camids[anchor]]
        pool = cross if len(cross) else others
        if len(pool) == 0:
            return [anchor] * self.K
        rest = self.rng.choice(pool, size=self.K - 1, replace=len(pool) < self.threshold)
        return [anchor] + rest.tolist()


class IdentitySampler:
    """Bag of Tricks' ``RandomIdentitySampler``: each identity's images are shuffled (repeated at random up
    to K when it has fewer) and cut into chunks of K; batches take one chunk from each of P identities
    drawn at random among those with chunks left, until fewer than P have any. One pass is therefore
    about one epoch of the training images, and every image is seen at most once per pass (but for the
    repeats that fill small identities); ``batches(n)`` starts new passes as needed. With fewer identities
    than P in all, P is their number (BoT's sampler would yield no batch at all)."""

    def __init__(self, labels, num_ids: int, num_instances: int, rng: np.random.Generator):
        self.groups = _groups(np.asarray(labels))
        if not self.groups:
            raise ValueError("no labelled sample to draw batches from")
        self.P, self.K, self.rng = num_ids, num_instances, rng

    def one_pass(self) -> list[list[int]]:
        chunks: dict[int, list[list[int]]] = {}
        for y, ix in self.groups.items():
            ix = self.rng.choice(ix, size=self.K, replace=True) if len(ix) < self.K else self.rng.permutation(ix)
            whole = len(ix) // self.K * self.K                      # a last incomplete chunk is dropped
            chunks[y] = [ix[i:i + self.K].tolist() for i in range(0, whole, self.K)]
        out = []
        available = sorted(chunks)
        P = min(self.P, len(chunks))             # fewer identities than P: each batch holds all of them
        while len(available) >= P:
            picked = self.rng.choice(available, size=P, replace=False).tolist()
            out.append([i for y in picked for i in chunks[y].pop(0)])
            available = [y for y in available if chunks[y]]
        return out

    def batches(self, iterations: int | None = None):
        """``iterations`` batches (None: one pass)."""
        if iterations is None:
            yield from self.one_pass()
            return
        done = 0
        while done < iterations:
            batch_list = self.one_pass()
            for b in batch_list[: iterations - done]:
                yield b
                done += 1
