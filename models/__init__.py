"""Backbones, heads and each paper's model, built by name through ``build_model``."""
from .registry import MODELS, ModelOutput, build_model, register_model
from . import resnet  # noqa: F401  (registers the ResNets)

__all__ = ["MODELS", "ModelOutput", "build_model", "register_model"]
