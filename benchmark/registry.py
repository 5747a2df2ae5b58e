"""Method registry: every module in the ``methods`` package (``PLUGIN_PACKAGES``) that defines a ``Method`` subclass
with a ``name`` is discovered automatically, so adding a method touches one file."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from benchmark.api import Method
from benchmark.core.errors import unknown

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


#: the packages whose modules are method plug-ins, imported by name when the registry is first read
#: (the contract layer knows where plug-ins live, never what they are)
PLUGIN_PACKAGES = ("methods",)


@lru_cache(maxsize=1)
def discover() -> None:
    """Import every public module of the plug-in packages once (their decorators register them)."""
    for package_name in PLUGIN_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package_name}.{info.name}")


def available() -> dict[str, type[Method]]:
    discover()
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> type[Method]:
    methods = available()
    if name not in methods:
        raise unknown("method", name, methods)
    return methods[name]
