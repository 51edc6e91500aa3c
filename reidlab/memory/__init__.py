"""The ClusterNCE memory bank of Cluster Contrast."""
from .cluster_memory import ClusterMemory

__all__ = ["ClusterMemory"]
