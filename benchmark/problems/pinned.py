"""Pinned files: the one way the suite gets a file it knows by sha256 (an image of a standard set,
released weights, the LPIPS backbone): each local candidate in order (the user's folder, then the
download cache), verified, else a verified download into the cache. Nothing unverified is used."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from benchmark.core.errors import UserError

WEIGHTS_ENV = "DIPBENCH_WEIGHTS"


class Unavailable(UserError):
    """Not in any local candidate and not downloadable here (no address, offline, refused)."""


class ChecksumMismatch(UserError):
    """A file (local or downloaded) whose content is not the pinned one: always an error, never
    taken for a file that cannot be had."""


def weights_root() -> Path | None:
    """The local folder of every released weight file (``$DIPBENCH_WEIGHTS``), when set."""
    root = os.environ.get(WEIGHTS_ENV)
    return Path(root) if root else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, sha256: str, fix: str = "", kind: str = "") -> Path:
    """``path`` if its content is the pinned file, else a UserError naming both digests."""
    actual = sha256_of(path)
    if actual != sha256:
        hint = f"; {fix}" if fix else ""
        raise ChecksumMismatch(f"checksum mismatch for {kind + ' ' if kind else ''}{path}: expected sha256 {sha256}, "
                        f"got {actual} "
                        f"(corrupt or different file){hint}")
    return path


def download(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``dest`` atomically, refusing content whose sha256 differs."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        actual = sha256_of(tmp)
        if actual != sha256:
            raise ChecksumMismatch(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}; "
                "the file was not kept"
            )
        os.replace(tmp, dest)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise Unavailable(f"could not download {url}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def locate(what: str, sha256: str, candidates: Sequence[Path], url: str | None = None, *,
           download_ok: bool = True, fix: str = "", kind: str = "") -> Path:
    """A verified local path of the pinned file ``what``: the first candidate that exists (a
    mismatch is an error, never skipped), else a download of ``url`` into the last candidate.
    :class:`Unavailable` when neither is possible, so callers can say what to set; a file whose
    content is not the pinned one is a :class:`ChecksumMismatch`, never taken for a missing one."""
    for path in candidates:
        if path.is_file():
            return verify(path, sha256, fix, kind)
    if url is None or not download_ok:
        raise Unavailable(f"{what} not found (looked in {', '.join(map(str, candidates))})")
    return download(url, candidates[-1], sha256)  # Unavailable when it cannot; a wrong file: ChecksumMismatch
