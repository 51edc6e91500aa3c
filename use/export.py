"""``--mode export --format onnx``: the eval-mode model as an ONNX graph with a dynamic batch (opset 17),
checked against PyTorch with onnxruntime before the command reports success.

The graph's input ``images`` is a float32 B x 3 x H x W batch at the checkpoint's input size, RGB,
scaled to [0, 1] and normalised with ImageNet's mean and std (``data.augment.normalise``); its output
``features`` is the B x D L2-normalised retrieval feature (for part models: global and parts). onnx and
onnxruntime are optional extras (``pip install -r requirements-extras.txt``).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from errors import ReIDError

log = logging.getLogger("reid.use")
OPSET = 17
TOLERANCE = 1e-4


def export_onnx(model: torch.nn.Module, height: int, width: int, path: str | Path) -> float:
    """Export, then run both on a batch of another size than the traced one; returns the max abs difference."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ReIDError(f"--mode export needs onnx and onnxruntime ({e.name} is not installed): "
                        f"pip install -r requirements-extras.txt (or: pip install onnx onnxruntime)") from None
    net = getattr(model, "inference_model", lambda: model)().cpu().float().eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                # the TorchScript exporter's deprecation notice
        torch.onnx.export(net, (torch.randn(2, 3, height, width, generator=g),), str(path), input_names=["images"],
                          output_names=["features"], opset_version=OPSET, dynamo=False,
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
    onnx.checker.check_model(str(path))
    x = torch.randn(5, 3, height, width, generator=g)
    with torch.no_grad():
        expected = net(x).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["features"], {"images": x.numpy()})[0]
    if got.shape != expected.shape:
        raise ReIDError(f"the exported model gives {got.shape} for a batch of 5, PyTorch {expected.shape}")
    return float(np.abs(got - expected).max())


def run_export(model, cfg, ckpt, device, fmt: str, output: str | None) -> Path:
    if fmt != "onnx":
        raise ReIDError(f"--format {fmt}: only onnx is supported")
    path = Path(output or Path(ckpt["path"]).with_suffix(".onnx"))
    diff = export_onnx(model, cfg.data.height, cfg.data.width, path)
    if diff > TOLERANCE:
        path.unlink(missing_ok=True)
        raise ReIDError(f"the ONNX export of {ckpt['path']} differs from PyTorch by {diff:.2e} (> {TOLERANCE}); "
                        f"it was not kept")
    log.info("exported %s to %s (opset %d, dynamic batch, input 3 x %d x %d); onnxruntime matches PyTorch within "
             "%.1e", ckpt["path"], path, OPSET, cfg.data.height, cfg.data.width, diff)
    return path
