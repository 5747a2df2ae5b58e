"""Batch size ``auto`` and solo-equivalent cost: what a user fitting one image would see."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from benchmark import registry
from benchmark.api import Method, Problem, Reconstruction
from benchmark.run import calibration, runner
from benchmark.run.calibration import Calibration, Calibrator
from benchmark.run.harness import run_cells
from benchmark.run.plan import Cell, canonical_json
from benchmark.run.pool import MethodPool
from benchmark.run.profiles import parse

STEPS = 12
WORKSPACE_MB = 256


class _Workspace(Method):
    """Iterative, batchable: each step sleeps (a fixed cost plus a little per problem), and every
    call holds one workspace of WORKSPACE_MB whatever the batch size: its peak memory alone is
    its peak in any batch."""

    name = "_workspace"
    family = "dip"
    max_batch = 8
    defaults = {"step_s": 0.01, "per_problem_s": 0.001}

    def reconstruct(self, y, physics, *, seed, callback=None):  # type: ignore[no-untyped-def]
        return self.reconstruct_batch([Problem(y, physics, seed, callback)])[0]

    def reconstruct_batch(self, problems: Sequence[Problem]) -> list[Reconstruction]:  # type: ignore[override]
        workspace = torch.ones(WORKSPACE_MB * 2**20 // 4)
        running = list(range(len(problems)))
        steps = [STEPS] * len(problems)
        for step in range(1, STEPS + 1):
            time.sleep(self.params["step_s"] + self.params["per_problem_s"] * len(running))
            for i in list(running):
                callback = problems[i].callback
                if callback is not None and not callback(step, problems[i].y.clamp(0, 1)):
                    running.remove(i)
                    steps[i] = step
            if not running:
                break
        del workspace
        return [Reconstruction(p.y.clamp(0, 1), iterations=n, budget=STEPS)
                for p, n in zip(problems, steps, strict=True)]


@pytest.fixture
def workspace_method(monkeypatch: pytest.MonkeyPatch) -> type[Method]:
    monkeypatch.setitem(registry._REGISTRY, _Workspace.name, _Workspace)
    return _Workspace


def _cells(count: int) -> list[Cell]:
    params = canonical_json(dict(_Workspace.defaults))
    return [Cell(_Workspace.name, params, "denoising_s25", "embedded", f"img{i}", "none", 0) for i in range(count)]


def test_auto_never_picks_a_batch_slower_than_one_by_one() -> None:
    assert Calibration({1: 10.0, 2: 9.0, 4: 8.0, 8: 7.0}).best(8) == 1
    assert Calibration({1: 10.0, 2: 10.2}).best(8) == 1  # within the noise margin: not worth it
    assert Calibration({1: 10.0, 2: 14.0, 4: 19.0, 8: 12.0}).best(8) == 4
    assert Calibration({1: 10.0, 2: 14.0, 4: 19.0, 8: 25.0}).best(4) == 4  # never above the limit
    assert Calibration().best(8) == 1  # nothing measured: one by one
    assert calibration.candidates(3) == [1, 2] and calibration.candidates(64) == [1, 2, 4, 8]


def test_a_batched_cell_reports_solo_runtime_and_undivided_memory(workspace_method, tmp_path: Path) -> None:
    cells = _cells(4)
    images = [torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    pool = MethodPool(lambda: [], "embedded", tmp_path, torch.device("cpu"), progress=False)
    outcomes = run_cells(cells, images, pool, skip_metrics=("lpips",), save_reconstruction=False)
    for outcome in outcomes:
        record = outcome.record
        assert record.status == "ok", record.error
        info = record.info
        assert info["batch_size"] == 4
        solo_rate, batch_rate = (float(part.split(":")[1]) for part in info["batch_rates"].split(","))
        # runtime_s: the cell's share of the batch, scaled to what it costs alone
        assert info["solo_factor"] == pytest.approx(batch_rate / solo_rate, rel=1e-3)
        assert record.runtime_s == pytest.approx(info["batch_share_s"] * info["solo_factor"])
        assert record.runtime_s > info["batch_runtime_s"] / 4  # not the batch's time ÷ B
        assert record.throughput == pytest.approx(4 / info["batch_runtime_s"])
        # peak memory is never divided by B: the workspace is there alone and in the batch
        assert record.peak_mem_mb > 0.6 * WORKSPACE_MB
        assert info["batch_peak_mem_mb"] > 0.6 * WORKSPACE_MB


def test_calibration_is_measured_once_and_cached_on_disk(workspace_method, tmp_path: Path) -> None:
    method = _Workspace()
    problem = Problem(torch.rand(1, 1, 8, 8), None, 0)
    first = Calibrator(tmp_path, torch.device("cpu"))
    measured = first.measure("key", method, lambda b: [problem] * b, (1, 2))
    assert set(measured.rates) == {1, 2} and measured.per_step and first.measured_s > 0
    again = Calibrator(tmp_path, torch.device("cpu"))  # a new process: read from disk
    assert again.measure("key", method, lambda b: [problem] * b, (1, 2)).rates == measured.rates
    assert again.measured_s == 0
    (tmp_path / "key.json").write_text("{not json")
    remeasured = Calibrator(tmp_path, torch.device("cpu")).measure("key", method, lambda b: [problem] * b, (1,))
    assert set(remeasured.rates) == {1}


def test_a_calibration_cached_by_an_older_measurement_is_measured_again(workspace_method, tmp_path: Path) -> None:
    """A peak cached before the heap trim (0 MB for every DIP cell) must not be served again."""
    method = _Workspace()
    problem = Problem(torch.rand(1, 1, 8, 8), None, 0)
    stale = {"rates": {"1": 123.0}, "peak_mb": {"1": 0.0}, "per_step": True}  # no "measurement": before it
    (tmp_path / "key.json").write_text(json.dumps(stale))
    calibrator = Calibrator(tmp_path, torch.device("cpu"))
    fresh = calibrator.measure("key", method, lambda b: [problem] * b, (1,))
    assert calibrator.measured_s > 0 and fresh.peak_mb[1] > 0.6 * WORKSPACE_MB
    saved = json.loads((tmp_path / "key.json").read_text())
    assert saved["measurement"] == calibration.MEASUREMENT and saved["peak_mb"]["1"] > 0.6 * WORKSPACE_MB


def test_auto_records_its_choice_and_a_fixed_size_still_works(tmp_path: Path, monkeypatch, one_thread) -> None:  # type: ignore[no-untyped-def]
    doc = {"name": "auto", "methods": ["dip"], "tasks": ["denoising_s25"], "metrics_off": ["lpips"],
           "datasets": [{"name": "embedded", "resize": 64, "crop": 32, "limit": 2}],
           "method_params": {"dip": {"iterations": 12, "channels": 8, "scales": 3}}, "trajectory_every": 4}
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    summary = runner.run_benchmark(parse(doc), results_dir=tmp_path / "auto", tracking_uri=uri,
                                   progress=False)
    assert summary.ran == 2 and not summary.failed and summary.calibrate_s > 0
    frame = runner.ResultsStore(tmp_path / "auto" / "results.sqlite").frame()
    for info in frame["info"]:
        assert set(dict(part.split(":") for part in info["batch_rates"].split(","))) == {"1", "2"}
    saved = list((tmp_path / "cache" / "checkpoints" / "calibration").glob("*.json"))
    assert len(saved) == 1 and set(json.loads(saved[0].read_text())["rates"]) == {"1", "2"}
    import mlflow

    client = mlflow.tracking.MlflowClient(uri)
    params = client.get_run(summary.parent_run_id).data.params
    assert params["batch_size.dip.denoising_s25.1x32x32"] in {"1", "2"}

    fixed = runner.run_benchmark(parse({**doc, "batch_size": 2}), results_dir=tmp_path / "fixed",
                                 tracking_uri=uri, progress=False)
    assert fixed.calibrate_s == 0  # the same method and shape: served from the cache
    infos = runner.ResultsStore(tmp_path / "fixed" / "results.sqlite").frame()["info"]
    assert [info["batch_size"] for info in infos] == [2, 2]


def test_bad_batch_sizes_are_refused() -> None:
    from benchmark.core.errors import UserError

    base = {"name": "x", "methods": ["dip"], "tasks": ["denoising_s25"], "datasets": ["embedded"]}
    assert parse(base).batch_size == "auto"
    for bad in (0, "eight", 2.5, True):
        with pytest.raises(UserError, match="batch_size"):
            parse({**base, "batch_size": bad})
