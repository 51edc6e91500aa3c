"""Feature extraction, distances and re-ID metrics (mAP, CMC, mINP)."""
from .extract import evaluate_model, extract_features
from .metrics import evaluate, pairwise_distance

__all__ = ["evaluate", "evaluate_model", "extract_features", "pairwise_distance"]
