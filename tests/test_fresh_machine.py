"""A fresh machine: no weights folder, no data folder, no cache, no network. Methods whose
released weights, and datasets whose files, cannot be had are skipped with the reason and the
fix, never failed, and the summary says so; every other cell runs. A corrupt file is an error."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import urllib.request
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from benchmark.cli import main
from benchmark.problems import data
from methods import dncnn, ffdnet
from tests.conftest import SHARED


def _offline(*args: Any, **kwargs: Any) -> Any:
    raise OSError("network unreachable (test)")


def test_missing_weights_skip_their_cells_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "weights").mkdir()
    monkeypatch.setenv("DIPBENCH_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    for name, value in {"PIP_CONFIG_FILE": "/dev/null", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(urllib.request, "urlopen", _offline)
    code = _run_weighted_methods(tmp_path)
    out = capsys.readouterr().out
    assert code == 0, out  # --strict: no failed cell
    lines = [line for line in out.splitlines() if "weights unavailable" in line]
    assert len(lines) == 1 and "dncnn, ffdnet" in lines[0] and "$DIPBENCH_WEIGHTS" in lines[0]
    with sqlite3.connect(tmp_path / "res" / "results.sqlite") as conn:
        rows = conn.execute("SELECT method, status, error FROM records").fetchall()
    by_method: dict[str, set[str]] = {}
    for method, status, _ in rows:
        by_method.setdefault(method, set()).add(status)
    assert by_method == {"dncnn": {"skipped"}, "ffdnet": {"skipped"}, "trivial": {"ok"}}
    for method, _, error in rows:
        if method != "trivial":
            assert "$DIPBENCH_WEIGHTS" in error and f"{method}/" in error
    if not (SHARED / "weights" / "ffdnet").is_dir():
        pytest.skip("the rerun with the weights needs ../shared/weights")
    monkeypatch.setenv("DIPBENCH_WEIGHTS", str(SHARED / "weights"))  # the fix the summary gave
    code = _run_weighted_methods(tmp_path)
    assert code == 0 and "weights unavailable" not in capsys.readouterr().out
    with sqlite3.connect(tmp_path / "res" / "results.sqlite") as conn:
        statuses = {method: status for method, status in conn.execute("SELECT method, status FROM records")}
    assert statuses == {"dncnn": "ok", "ffdnet": "ok", "trivial": "ok"}  # the skipped cells were retried


def _run_weighted_methods(tmp_path: Path) -> int:
    """``benchmark run`` of DnCNN, FFDNet and trivial on the smoke profile, with the weight caches
    cleared before and after, so that each run looks for the weights afresh."""
    dncnn._state_dict.cache_clear()
    ffdnet._state_dict.cache_clear()
    try:
        return main(["run", "--no-progress", "--no-report", "--strict", "--profile", "smoke",
                     "--methods", "dncnn,ffdnet,trivial", "--tasks", "denoising_s25",
                     "--results", str(tmp_path / "res"), "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}"])
    finally:
        dncnn._state_dict.cache_clear()
        ffdnet._state_dict.cache_clear()


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        pass


@pytest.fixture
def mri_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """mri_brain's pinned source moved to an HTTP server on 127.0.0.1 serving an empty folder
    (every file: 404, refused); no DIPBENCH_DATA, an empty cache. Yields the served folder."""
    www = tmp_path / "www"
    www.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    pinned = data.manifests()
    moved = {**pinned, "mri_brain": dataclasses.replace(pinned["mri_brain"],
                                                         url=f"http://127.0.0.1:{server.server_address[1]}/{{name}}")}
    monkeypatch.setattr(data, "manifests", lambda: moved)
    monkeypatch.delenv("DIPBENCH_DATA", raising=False)
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    try:
        yield www
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _quick(tmp_path: Path, methods: str = "trivial") -> int:
    """The default profile's denoising and MRI cells of ``methods`` (4 embedded images, 4 brain slices)."""
    return main(["run", "--no-progress", "--no-report", "--strict", "--profile", "quick", "--methods", methods,
                 "--tasks", "denoising_s25,mri_x4", "--results", str(tmp_path / "res"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}"])


def _statuses(tmp_path: Path) -> dict[str, set[str]]:
    with sqlite3.connect(tmp_path / "res" / "results.sqlite") as conn:
        rows = conn.execute("SELECT dataset, status, error FROM records").fetchall()
    out: dict[str, set[str]] = {}
    for dataset, status, error in rows:
        out.setdefault(dataset, set()).add(status)
        if status == "skipped":
            assert "DIPBENCH_DATA" in error and "'mri_brain'" in error and "internet" in error, error
    return out


def test_a_dataset_that_cannot_be_had_skips_its_cells_with_the_fix(
        mri_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`make benchmark` on a machine without the MRI slices: their cells are skipped (one summary
    line names the set and the variable), the others run; once the data is there, they run too."""
    assert _quick(tmp_path) == 0  # --strict: no failed cell
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "datasets unavailable" in line]
    assert len(lines) == 1 and "mri_brain" in lines[0] and "DIPBENCH_DATA" in lines[0], out
    assert _statuses(tmp_path) == {"embedded": {"ok"}, "mri_brain": {"skipped"}}
    if not (SHARED / "datasets" / "mri_brain").is_dir():
        pytest.skip("the rerun with the data needs ../shared/datasets")
    monkeypatch.setenv("DIPBENCH_DATA", str(SHARED / "datasets"))
    assert _quick(tmp_path) == 0
    assert "datasets unavailable" not in capsys.readouterr().out
    assert _statuses(tmp_path) == {"embedded": {"ok"}, "mri_brain": {"ok"}}  # skipped cells were retried


def test_a_corrupt_dataset_file_is_an_error_not_a_skip(
        mri_source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A file whose sha256 is not the pinned one stops the run before any work (exit 2), whether
    it is downloaded or found in the data folder."""
    first = sorted(data.manifests()["mri_brain"].files)[0]
    (mri_source / first).write_bytes(b"not the slice")  # served in place of the real file
    assert _quick(tmp_path) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    local = tmp_path / "data" / "mri_brain"
    local.mkdir(parents=True)
    (local / first).write_bytes(b"not the slice either")
    monkeypatch.setenv("DIPBENCH_DATA", str(tmp_path / "data"))
    assert _quick(tmp_path) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and str(local / first) in err
    assert not (tmp_path / "res" / "results.sqlite").exists()
