"""Speed, memory and ablation scripts, run as ``python -m benchmarks.NAME``."""
import runs  # noqa: F401  (first: OpenMP's wait policy, before torch loads; runs/__init__.py)
