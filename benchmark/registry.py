"""Method registry: every module in the ``methods`` package that defines a ``Method`` subclass
with a ``name`` is discovered automatically, so adding a method touches one file."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from benchmark.api import Method
from benchmark.errors import unknown

_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} needs a non-empty `name`")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"method name {cls.name!r} registered twice ({existing} and {cls})")
    _REGISTRY[cls.name] = cls
    return cls


@lru_cache(maxsize=1)
def discover() -> None:
    """Import every module of the ``methods`` package once (their decorators register them)."""
    import methods

    for info in pkgutil.iter_modules(methods.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"methods.{info.name}")


def available() -> dict[str, type[Method]]:
    discover()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> type[Method]:
    methods = available()
    if name not in methods:
        raise unknown("method", name, methods)
    return methods[name]
