"""Speed, memory and ablation scripts, run as ``python -m benchmarks.NAME``."""
import reid  # noqa: F401  (first: OpenMP's wait policy, before torch loads; reid/__init__.py)
