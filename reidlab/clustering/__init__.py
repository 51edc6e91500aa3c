"""Pseudo-labels for the unsupervised loop: kNN, k-reciprocal Jaccard distance, DBSCAN.

Pure functions on tensors and sparse matrices; no N x N dense array is built."""
from .dbscan import dbscan
from .jaccard import jaccard_distance, jaccard_graph
from .knn import knn
from .pseudo import pseudo_labels

__all__ = ["dbscan", "jaccard_distance", "jaccard_graph", "knn", "pseudo_labels"]
