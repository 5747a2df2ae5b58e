"""One primary metric, declared once (``Metric(..., primary=True)``): the oracle of early stopping,
the ES gap, tuning, the leaderboard's order and the data-efficiency figure read it."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
import torch

from benchmark.problems import metrics
from benchmark.results import leaderboard
from benchmark.results.record import Record
from benchmark.results.store import ResultsStore
from benchmark.run.clock import Stopwatch
from benchmark.run.recording import TrajectoryRecorder


def test_psnr_is_the_one_primary_metric_and_a_second_is_refused() -> None:
    assert metrics.primary() is metrics.PSNR and metrics.PSNR.from_mse is not None
    with pytest.raises(ValueError, match="cannot be primary: 'psnr' is"):
        metrics.register(metrics.Metric("psnr2", metrics.psnr, True, primary=True))
    assert "psnr2" not in {m.name for m in metrics.registered()}


@pytest.fixture
def ssim_primary(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """SSIM as the primary metric (no per-step form: the oracle is over the sampled iterates)."""
    registry = dict(metrics._REGISTRY)
    registry["psnr"] = dataclasses.replace(metrics.PSNR, primary=False)
    registry["ssim"] = dataclasses.replace(metrics.SSIM, primary=True)
    monkeypatch.setattr(metrics, "_REGISTRY", registry)
    return registry["ssim"]


def test_the_oracle_and_the_leaderboard_follow_the_primary_metric(ssim_primary) -> None:  # type: ignore[no-untyped-def]
    truth = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    recorder = TrajectoryRecorder(truth, Stopwatch(torch.device("cpu")), every=2, measured=[ssim_primary])
    assert recorder.primary is ssim_primary
    noisy = [truth + 0.3 / (1 + abs(k - 3)) * torch.randn(truth.shape, generator=torch.Generator().manual_seed(k))
             for k in range(1, 9)]
    for step, x in enumerate(noisy, start=1):
        recorder(step, x)
    recorder.flush()
    sampled = {int(p["step"]): p["ssim"] for p in recorder.points}
    assert set(sampled) == {2, 4, 6, 8}  # no per-step form: only the sampled iterates count
    assert recorder.oracle_step == max(sampled, key=sampled.get) and recorder.oracle_value == max(sampled.values())
    assert leaderboard.sort_key() == "metrics.`ssim`"


def test_a_version_2_store_is_migrated_to_the_primary_metric_columns(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    store = ResultsStore(path)
    store.put(Record(cell_key="k", method="dip", task="denoising_s25", dataset="d", image_id="i", seed=0,
                     metrics={"psnr": 25.0}, oracle_value=26.5, es_gap=1.5, measurement_value=20.0))
    with sqlite3.connect(path) as conn:  # as the previous release wrote it
        for old, new in (("oracle_psnr", "oracle_value"), ("es_gap_db", "es_gap"),
                         ("measurement_psnr", "measurement_value")):
            conn.execute(f"ALTER TABLE records RENAME COLUMN {new} TO {old}")
        conn.execute("PRAGMA user_version = 2")
    (record,) = ResultsStore(path).records()
    assert (record.oracle_value, record.es_gap, record.measurement_value) == (26.5, 1.5, 20.0)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
