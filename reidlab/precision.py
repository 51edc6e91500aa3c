"""A run's numeric precision (``train.amp``), one rule for training, evaluation and the use of a trained model.

``auto``: bf16 autocast on a CUDA device that supports it (no loss scaling needed), fp16 (with the gradient
scaler in training) on older GPUs, fp32 on the CPU; ``bf16`` on any device (on the CPU, autocast runs the
convolutions and matrix products in bf16, as a GPU would: the GPU path's numerics, tested on the CPU);
``fp16`` (CUDA); ``off``: fp32.
"""
from __future__ import annotations

import torch


def amp_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device`` (None: fp32)."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision_name(device: torch.device, amp: str = "auto") -> str:
    """``bf16 autocast`` / ``fp16 autocast`` / ``fp32``: what ``train.amp`` means on ``device``, for the log."""
    dtype = amp_dtype(device, amp)
    return "fp32" if dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype] + " autocast"


def autocast(device: torch.device, amp: str = "auto"):
    """The autocast context of ``train.amp`` on ``device`` (disabled for fp32)."""
    dtype = amp_dtype(device, amp)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
