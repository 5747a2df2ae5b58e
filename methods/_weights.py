"""Pretrained weights: find a released file locally or download it, always checking its sha256.

A weight file is looked up, in order, at

1. ``$DIPBENCH_WEIGHTS/<group>/<file>`` — a read-only folder of released weights (tests and CI
   point it at a shared copy, e.g. ``DIPBENCH_WEIGHTS=../shared/weights``);
2. ``<cache>/weights/<group>/<file>``, where ``<cache>`` is ``benchmark.data.cache_root()``
   (``$DIPBENCH_CACHE``, by default ``~/.cache/dipbench``);

and when neither holds it, it is downloaded from its public address into the cache. Every file
found or fetched must match its pinned sha256: a different file is refused rather than silently
giving different numbers. The weights are never part of the repository.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from benchmark import data
from benchmark.errors import UserError

WEIGHTS_ENV = "DIPBENCH_WEIGHTS"


@dataclass(frozen=True)
class WeightFile:
    """One released weight file: where it lives locally, where it comes from, what it hashes to."""

    group: str  # folder name, usually the method (e.g. "dncnn")
    name: str  # file name in that folder
    url: str  # public address of the exact same bytes
    sha256: str

    def describe(self) -> str:
        return f"{self.group}/{self.name}"


def weights_root() -> Path | None:
    """The local folder of released weights (``$DIPBENCH_WEIGHTS``), when set."""
    root = os.environ.get(WEIGHTS_ENV)
    return Path(root) if root else None


def cache_dir() -> Path:
    """Where downloaded weights are kept."""
    return data.cache_root() / "weights"


def candidates(spec: WeightFile) -> list[Path]:
    """The places ``spec`` is looked for, in order; the last one is where a download goes."""
    root = weights_root()
    paths = [root / spec.group / spec.name] if root else []
    paths.append(cache_dir() / spec.group / spec.name)
    return paths


def verify(path: Path, spec: WeightFile) -> Path:
    """``path`` if its content is the pinned file, else a UserError that says what to do."""
    actual = data.sha256_of(path)
    if actual != spec.sha256:
        raise UserError(
            f"checksum mismatch for weights {path}: expected sha256 {spec.sha256}, got {actual} "
            f"(corrupt or different file); delete it or replace it with {spec.url}"
        )
    return path


def locate(spec: WeightFile, *, download: bool = True) -> Path:
    """A verified local path of ``spec``: the weights folder, then the cache, then a download."""
    paths = candidates(spec)
    for path in paths:
        if path.exists():
            return verify(path, spec)
    if not download:
        raise UserError(
            f"weights {spec.describe()} not found (looked in {', '.join(map(str, paths))}); "
            f"set ${WEIGHTS_ENV} to a folder holding {spec.describe()} or allow the download"
        )
    try:
        return data.download(spec.url, paths[-1], spec.sha256)
    except UserError as exc:
        raise UserError(
            f"{exc}. To work offline, set ${WEIGHTS_ENV} to a folder holding {spec.describe()}"
        ) from exc
