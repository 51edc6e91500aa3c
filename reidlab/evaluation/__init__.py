"""Feature extraction, distances and re-ID metrics (mAP, CMC, mINP)."""
from .extract import evaluate_model, evaluate_run, extract_features
from .metrics import evaluate, evaluate_features, pairwise_distance

__all__ = ["evaluate", "evaluate_features", "evaluate_model", "evaluate_run", "extract_features", "pairwise_distance"]
