"""Paired verdicts: is row b better than row a, beyond the noise of the seeds?

Two rows of a table run with the same seed share their initial weights (where the shapes allow), their data
order and their augmentation draws (docs/results.md, "Paired seeds"), so the seed's own luck largely cancels in
their difference. For seeds s = 1..n with both rows finished, d_s = metric_b(s) - metric_a(s), in percentage
points; the comparison is

    mean d  +-  t(0.975, n - 1) * sd(d) / sqrt(n)           (Student's t interval of the mean paired difference)

and its verdict ``gain`` when the whole interval lies above 0, ``loss`` when below, ``undecided`` otherwise (and
with fewer than two seeds, which give no interval). The runner adds seeds to an undecided comparison up to the
table's ``max_seeds``. Adding seeds while looking at the interval (sequential testing) makes a 95% interval
somewhat less than 95% sure over the whole procedure; with a cap of 6 seeds, and a verdict needing the interval
to clear 0 at its last look, we accept that and say it where the verdicts are reported.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A difference in mAP points with its 95% interval (None: too few runs for one) and the verdict it gives."""
    mean: float | None
    low: float | None
    high: float | None

    @property
    def verdict(self) -> str:
        if self.low is None:
            return "undecided"
        return "gain" if self.low > 0 else "loss" if self.high < 0 else "undecided"

    def words(self) -> str:
        if self.mean is None:
            return "-"
        if self.low is None:
            return f"{self.mean:+.1f} (no interval: too few runs)"
        return f"{self.mean:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


@dataclass(frozen=True)
class Paired(Interval):
    seeds: tuple[int, ...] = ()
    differences: tuple[float, ...] = ()   # b - a per seed, percentage points

    @property
    def n(self) -> int:
        return len(self.seeds)

    def words(self) -> str:
        return f"{self.mean:+.1f} (one seed: no interval)" if self.n == 1 else super().words()


def paired(a: dict[int, float], b: dict[int, float], level: float = 0.95) -> Paired:
    """The paired difference b - a over the seeds both have (values as fractions, e.g. mAP 0.781), in points."""
    seeds = tuple(sorted(set(a) & set(b)))
    d = tuple(100.0 * (b[s] - a[s]) for s in seeds)
    if not d:
        return Paired(None, None, None, seeds, d)
    mean = statistics.fmean(d)
    if len(d) < 2:
        return Paired(mean, None, None, seeds, d)
    half = float(stats.t.ppf(0.5 + level / 2, len(d) - 1)) * statistics.stdev(d) / math.sqrt(len(d))
    return Paired(mean, mean - half, mean + half, seeds, d)


def next_seed(p: Paired, have: set[int]) -> int:
    """The seed to add to an undecided comparison: the smallest one above every seed either row has."""
    return max(have | set(p.seeds) | {0}) + 1


@dataclass(frozen=True)
class Unpaired(Interval):
    n_a: int = 0
    n_b: int = 0


def welch(a: list[float], b: list[float], level: float = 0.95) -> Unpaired:
    """mean(b) - mean(a) in points with Welch's t interval (unequal variances, Welch-Satterthwaite degrees of
    freedom): for runs that share no seed's draws (two codes' random streams)."""
    x, y = [100.0 * v for v in a], [100.0 * v for v in b]
    if not x or not y:
        return Unpaired(None, None, None, len(x), len(y))
    diff = statistics.fmean(y) - statistics.fmean(x)
    if len(x) < 2 or len(y) < 2:
        return Unpaired(diff, None, None, len(x), len(y))
    va, vb = statistics.variance(x) / len(x), statistics.variance(y) / len(y)
    se = math.sqrt(va + vb)
    if se == 0:
        return Unpaired(diff, diff, diff, len(x), len(y))
    df = (va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return Unpaired(diff, diff - half, diff + half, len(x), len(y))
