"""A model from the ``model`` part of a run's config (any object with its attributes), by registered name.

Every constructor gets ``pretrained``, ``num_classes`` and ``input_size``; the other common keys of
``model`` (``last_stride``, ``pooling``, ``attention``, ...) go to the constructors that take them, and
``model.args`` holds the keyword arguments of the model's own. A key the model does not take is an error
that names the model and what it accepts; no branch here knows a model by its name.
"""
from __future__ import annotations

import dataclasses
import inspect

import torch

from reidlab.errors import ConfigError

from .registry import MODELS

ALWAYS = ("pretrained", "num_classes", "input_size")
COMMON = ("last_stride", "pooling", "attention", "attention_args", "attention_placement", "attention_blocks", "head")


def accepted_arguments(fn) -> list[str]:
    """The keyword arguments ``fn`` takes by name; a constructor that passes ``**kwargs`` on declares the
    callable it passes them to as ``fn.passes_kwargs_to``."""
    names: list[str] = []
    while fn is not None:
        params = inspect.signature(fn).parameters.values()
        names += [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in names]
        has_var = any(p.kind is p.VAR_KEYWORD for p in params)
        fn = getattr(fn, "passes_kwargs_to", None) if has_var else None
    return names


def model_kwargs(m, num_classes: int, input_size: tuple[int, int]) -> dict:
    """The constructor's keyword arguments from the config's ``model`` part, checked against what it takes."""
    ctor = MODELS.get(m.name)
    accepted = accepted_arguments(ctor)
    kwargs = {"pretrained": m.pretrained, "num_classes": num_classes, "input_size": tuple(input_size)}
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(type(m))} if dataclasses.is_dataclass(m) else {}
    for key in COMMON:
        value = getattr(m, key)
        if key in accepted:
            kwargs[key] = value
        elif key in defaults and value != defaults[key]:
            raise ConfigError(f"model.{key}={value!r} does not apply to model {m.name!r}; it takes: "
                              f"{', '.join(a for a in accepted if a not in ALWAYS)}")
    args = dict(getattr(m, "args", {}) or {})
    own = [a for a in accepted if a not in ALWAYS + COMMON]
    wrong = sorted(set(args) - set(own))
    if wrong:
        raise ConfigError(f"model {m.name!r} takes no argument {', '.join(repr(w) for w in wrong)} (model.args); "
                          f"its arguments are: {', '.join(own) or 'none'}")
    return {**kwargs, **args}


def model_from_config(cfg, device: torch.device | str = "cpu", num_classes: int = 0) -> torch.nn.Module:
    """Build ``cfg.model.name`` for images of ``cfg.data.height x cfg.data.width``, on ``device``.

    ``num_classes`` adds the identity classifier of the supervised losses."""
    kwargs = model_kwargs(cfg.model, num_classes, (cfg.data.height, cfg.data.width))
    return MODELS.get(cfg.model.name)(**kwargs).to(device)
