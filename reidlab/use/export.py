"""``--mode export --format onnx``: the eval-mode model as an ONNX graph with a dynamic batch (opset 17),
checked against PyTorch with onnxruntime before the command reports success.

The graph's input ``images`` is a float32 B x 3 x H x W batch at the checkpoint's input size, RGB,
scaled to [0, 1] and normalised with ImageNet's mean and std (``data.augment.normalise``); its output
``features`` is the B x D L2-normalised retrieval feature (for part models: global and parts). onnx and
onnxruntime are optional extras (``pip install -e ".[onnx]"``).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from reidlab.errors import ReIDError
from reidlab.data.files import check_file_output, check_free_space, write_atomically

log = logging.getLogger("reidlab.use")
OPSET = 17
TOLERANCE = 1e-4


def export_onnx(model: torch.nn.Module, height: int, width: int, path: str | Path) -> float:
    """Export, then run both on a batch of another size than the traced one; returns the max abs difference.
    The file is kept only when they agree within TOLERANCE (written to a temporary file, then renamed)."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ReIDError(f"--mode export needs onnx and onnxruntime ({e.name} is not installed): "
                        f"pip install -e '.[onnx]' (or: pip install onnx onnxruntime)") from None
    net = getattr(model, "inference_model", lambda: model)().cpu().float().eval()
    g = torch.Generator().manual_seed(0)
    diffs = []

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                # the TorchScript exporter's deprecation notice
            torch.onnx.export(net, (torch.randn(2, 3, height, width, generator=g),), str(tmp), input_names=["images"],
                              output_names=["features"], opset_version=OPSET, dynamo=False,
                              dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
        onnx.checker.check_model(str(tmp))
        x = torch.randn(5, 3, height, width, generator=g)
        with torch.no_grad():
            expected = net(x).numpy()
        session = onnxruntime.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(["features"], {"images": x.numpy()})[0]
        if got.shape != expected.shape:
            raise ReIDError(f"the exported model gives {got.shape} for a batch of 5, PyTorch {expected.shape}")
        diffs.append(float(np.abs(got - expected).max()))
        if diffs[0] > TOLERANCE:
            raise ReIDError(f"the ONNX export differs from PyTorch by {diffs[0]:.2e} (> {TOLERANCE}); it was not kept")

    check_free_space(Path(path).parent, 4 * sum(p.numel() for p in net.parameters()), "the ONNX model")
    write_atomically(path, write, "the ONNX model")
    return diffs[0]


def run_export(model, cfg, ckpt, device, fmt: str, output: str | None) -> Path:
    if fmt != "onnx":
        raise ReIDError(f"--format {fmt}: only onnx is supported")
    path = Path(output) if output else check_file_output(Path(ckpt["path"]).with_suffix(".onnx"), "the ONNX model",
                                                         [".onnx"], "model.onnx")
    diff = export_onnx(model, cfg.data.height, cfg.data.width, path)
    log.info("exported %s to %s (opset %d, dynamic batch, input 3 x %d x %d); onnxruntime matches PyTorch within "
             "%.1e", ckpt["path"], path, OPSET, cfg.data.height, cfg.data.width, diff)
    return path
