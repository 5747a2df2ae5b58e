"""The oracle (best iterate in hindsight) is over every iterate, not only the sampled ones."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmark import registry
from benchmark.api import ORACLE_STREAM, Method, Reconstruction
from benchmark.problems import data, metrics
from benchmark.run.clock import Stopwatch
from benchmark.run.harness import run_cells
from benchmark.run.plan import Cell, canonical_json
from benchmark.run.pool import MethodPool
from benchmark.run.recording import TrajectoryRecorder

PSNR = next(m for m in metrics.registered() if m.name == "psnr")
PEAK = 7  # between the callback steps 5 and 10
EVERY = 5
STEPS = 12


def _scale(step: int) -> float:
    """Iterate k is s_k · y with s_k = 1 at the peak: on noiseless inpainting y = M x, so the
    error of s·y falls strictly as s rises to 1 and the best iterate is exactly step PEAK."""
    return 1.0 - 0.05 * abs(step - PEAK)


class _PeakBetweenSamples(Method):
    name = "test_peak_between_samples"
    budgets = {"test": {}, "quick": {}}
    summary = "iterates whose best lies between two callback samples"

    def reconstruct(self, y, physics, *, seed, callback=None):
        for step in range(1, STEPS + 1):
            x = _scale(step) * y
            if callback is not None:
                callback(step, x)
        return Reconstruction(x=x, iterations=STEPS, budget=STEPS, info={ORACLE_STREAM: "raw outputs"})


@pytest.fixture
def peak_method() -> Iterator[None]:
    registry.available()
    registry.register(_PeakBetweenSamples)
    yield
    registry._REGISTRY.pop(_PeakBetweenSamples.name, None)


def test_recorder_finds_a_peak_between_two_samples() -> None:
    truth = 0.1 + 0.8 * torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    recorder = TrajectoryRecorder(truth, Stopwatch(torch.device("cpu")), every=EVERY, measured=[PSNR])
    for step in range(1, STEPS + 1):
        recorder(step, truth + 0.01 * abs(step - PEAK))
    recorder.flush()
    assert [p["step"] for p in recorder.points] == [5, 10]  # the peak is not among the samples
    assert recorder.oracle_step == PEAK
    assert recorder.oracle_value == math.inf  # iterate PEAK is the truth itself
    assert max(p["psnr"] for p in recorder.points) == pytest.approx(20 * math.log10(1 / 0.02))  # step 5, 0.02 off


def test_recorder_reads_back_only_at_the_interval() -> None:
    truth = torch.zeros(1, 1, 16, 16)
    recorder = TrajectoryRecorder(truth, Stopwatch(torch.device("cpu")), every=4, measured=[PSNR])
    for step in range(1, 4):
        recorder(step, torch.full_like(truth, 0.1 * step))
    assert recorder.oracle_step is None and recorder.points == []  # queued on the device, not read
    recorder(4, torch.full_like(truth, 0.4))
    assert recorder.oracle_step == 1 and recorder.oracle_value == pytest.approx(20.0)
    assert recorder._queued == []


def test_the_record_has_the_oracle_over_every_iterate(peak_method: None, tmp_path: Path) -> None:
    image = data.load("embedded", split="test", crop=32, limit=1, resize=64)[0]
    cell = Cell(_PeakBetweenSamples.name, canonical_json({}), "inpainting_random50", "embedded", image.id,
                "resize64-crop32", 0)
    pool = MethodPool(lambda: [], "embedded", tmp_path, torch.device("cpu"), progress=False)
    (outcome,) = run_cells([cell], [image.tensor], pool, trajectory_every=EVERY, skip_metrics=("lpips",),
                           save_reconstruction=False)
    record = outcome.record
    assert record.status == "ok", record.error
    assert [p["step"] for p in record.trajectory] == [5, 10]
    assert record.oracle_iteration == PEAK
    psnr = record.metrics["psnr"]
    assert record.oracle_value is not None and record.measurement_value is not None
    # Iterate PEAK is y itself: its PSNR is the measurement's (A† y = y for inpainting); the
    # per-step error runs in the iterate's float32, the measurement's PSNR in float64.
    assert record.oracle_value == pytest.approx(record.measurement_value, abs=1e-5)
    assert record.oracle_value > max(p["psnr"] for p in record.trajectory) + 0.01
    assert record.es_gap is not None and record.es_gap > 0
    assert record.es_gap == pytest.approx(record.oracle_value - psnr)
    assert record.info[ORACLE_STREAM] == "raw outputs"
