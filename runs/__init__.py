"""One run's lifecycle: recipes and typed config, output folder, logging, checkpoints, seeding.

Imported first by ``main.py``, ``benchmarks`` and the tests, so that this runs before torch loads its
OpenMP runtime: OpenMP threads that wait by spinning hold on to cores that another process needs, and on a
machine that is not idle (a CPU-bound process beside) they slowed ``evaluation.metrics.evaluate`` 6-fold
(README, "A loaded machine"). Sleeping threads (``OMP_WAIT_POLICY=PASSIVE``) do not; a value the user set
wins. Where torch was imported before this package, the setting comes too late and changes nothing.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
