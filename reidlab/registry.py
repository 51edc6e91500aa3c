"""One registry class for everything a recipe names: models, attention blocks, datasets.

A registry maps a name to a constructor (and, optionally, a record of facts about it). Looking up an
unknown name raises the project's user error with the closest registered name and the full list.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

from reidlab.errors import ConfigError, ReIDError, closest

T = TypeVar("T", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Name -> constructor. ``kind`` ("model", "dataset", ...) words the errors; ``error`` is their class;
    ``hint`` is appended to the unknown-name error (e.g. another way to name a thing)."""

    def __init__(self, kind: str, error: type[ReIDError] = ConfigError, hint: str = ""):
        self.kind, self.error, self.hint = kind, error, hint
        self._items: dict[str, T] = {}
        self._info: dict[str, Any] = {}

    def register(self, name: str, info: Any = None) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name")`` on a class or function."""
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            self._info[name] = info
            return obj
        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            raise self.error(f"unknown {self.kind} {name!r}{closest(name, self._items)}; allowed (registered): "
                             f"{', '.join(self.names())}{self.hint}")
        return self._items[name]

    def resolve(self, spec: str, key: str) -> T:
        """A registered name, or an import path ``package.module:Attribute`` (a user's own, importable from the
        working directory or PYTHONPATH); ``key`` names the config key in the errors."""
        if not isinstance(spec, str) or not spec:
            raise self.error(f"{key}: give a registered {self.kind} (allowed: {', '.join(self.names())}) or "
                             f"package.module:Name")
        if ":" not in spec:
            if spec not in self._items:
                raise self.error(f"{key}: unknown {self.kind} {spec!r}{closest(spec, self._items)}; allowed "
                                 f"(registered): {', '.join(self.names())}, or give package.module:Name{self.hint}")
            return self._items[spec]
        import importlib
        module, _, attr = spec.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as e:
            raise self.error(f"{key}: cannot import {spec!r} ({type(e).__name__}: {e}); give package.module:Name "
                             f"importable from the working directory or PYTHONPATH") from None

    def info(self, name: str) -> Any:
        self.get(name)
        return self._info[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
