"""Speed, memory and ablation scripts, run as ``python -m benchmarks.NAME``."""
import reidlab  # noqa: F401  (first: OpenMP's wait policy, before torch loads; reidlab/__init__.py)
