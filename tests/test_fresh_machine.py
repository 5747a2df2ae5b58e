"""A fresh machine: no weights folder, no cache, no network. Methods whose released weights
cannot be had are skipped with the reason and the fix, never failed, and the summary says so."""

from __future__ import annotations

import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from benchmark.cli import main
from methods import dncnn, ffdnet


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
    dncnn._state_dict.cache_clear()
    ffdnet._state_dict.cache_clear()
    try:
        code = main(["run", "--no-progress", "--no-report", "--strict", "--profile", "smoke",
                     "--methods", "dncnn,ffdnet,trivial", "--tasks", "denoising_s25",
                     "--results", str(tmp_path / "res"), "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}"])
    finally:
        dncnn._state_dict.cache_clear()
        ffdnet._state_dict.cache_clear()
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
