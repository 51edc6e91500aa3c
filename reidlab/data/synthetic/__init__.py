"""The synthetic re-ID benchmark: ``render`` draws one pedestrian image with its teacher annotations,
``generate`` plans and writes a whole Market-1501-format tree (see its docstring for the layout)."""
from .generate import GENERATOR_VERSION, SIZES, SizeSpec, dataset_dir, ensure_synthetic, generate

__all__ = ["GENERATOR_VERSION", "SIZES", "SizeSpec", "dataset_dir", "ensure_synthetic", "generate"]
