"""Attention blocks that plug into the re-ID ResNet by name.

The block contract: a ``torch.nn.Module`` whose constructor takes ``channels``, ``height`` and ``width``
(the feature map it will see) plus its own keyword arguments, and whose forward maps B x C x H x W to
B x C x H x W. A recipe names a block by registry name (``model.attention: mla``) or by import path
(``model.attention: mypackage.blocks:MyBlock``), with ``model.attention_args`` passed to its constructor.

Placements (``model.attention_placement``):
  - ``conv2``: the block replaces the 3x3 convolution of each residual block of the last stage
    (``model.attention_blocks: all``) or of its last residual block only (``last``), as BoTNet places
    its self-attention and MLA its three attention modules; C is then that block's width (512 for
    ResNet-50, 512 for ResNet-18);
  - ``after``: the block is applied to the last stage's output (C = 2048 for ResNet-50, 512 for ResNet-18).
"""
from __future__ import annotations

import importlib
from typing import Callable
from torch import nn

from reidlab.errors import ConfigError
from reidlab.registry import Registry

ATTENTION_BLOCKS: Registry = Registry("attention block", hint=", or an import path 'package.module:Class'")


def register_block(name: str):
    return ATTENTION_BLOCKS.register(name)


def resolve_block(spec: str) -> Callable[..., nn.Module]:
    """A registered name, or ``package.module:Attribute``."""
    if ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"model.attention: cannot import {spec!r} ({e}); give 'package.module:Class' "
                              f"importable from the working directory or PYTHONPATH") from None
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise ConfigError(f"model.attention: {spec!r} is {cls!r}, not a torch.nn.Module class; give the class of "
                              f"your block (constructor: channels, height, width, **kwargs; forward: B x C x H x W)")
        return cls
    from . import mla  # noqa: F401  (registers the MLA blocks)
    return ATTENTION_BLOCKS.get(spec)


def build_block(spec: str, channels: int, height: int, width: int, **kwargs) -> nn.Module:
    cls = resolve_block(spec)
    try:
        return cls(channels=channels, height=height, width=width, **kwargs)
    except TypeError as e:
        raise ConfigError(f"attention block {spec!r} cannot be built with channels, height, width and "
                          f"{sorted(kwargs)}: {e}") from None
