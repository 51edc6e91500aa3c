"""The project's own user-facing errors. ``main.py`` prints them without a traceback and exits 2."""
from __future__ import annotations

import difflib


class ReIDError(Exception):
    """A problem the user can fix; the message says how."""


class ConfigError(ReIDError):
    pass


class DatasetError(ReIDError):
    pass


class CheckpointError(ReIDError):
    pass


class NonFiniteError(ReIDError):
    """NaN or inf where numbers must be finite: a model's features, a checkpoint's tensors, a run's steps."""


def closest(name: str, choices) -> str:
    """' (did you mean X?)' for the nearest valid choice, or ''."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""
