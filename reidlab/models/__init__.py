"""Backbones, heads and each paper's model, built by name through ``build_model``."""
from .registry import MODELS, LossTerm, ModelOutput, build_model, register_model
from . import aaformer, daaf, pcb, pirt, resnet, sap, vit  # noqa: F401  (register the models)
from .factory import model_from_config

__all__ = ["MODELS", "LossTerm", "ModelOutput", "build_model", "model_from_config", "register_model"]
