"""Failing cells, strict mode, a benchmark killed mid-run and resumed, two writers at once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from benchmark import registry
from benchmark.api import Method
from benchmark.core import seeding
from benchmark.results.store import ResultsStore
from benchmark.results.tracking import EXPERIMENT
from benchmark.run import profiles, runner

ROOT = Path(__file__).resolve().parents[1]


class _Raises(Method):
    name = "test_raises"
    budgets = {"test": {}, "quick": {}}
    summary = "raises on purpose"

    def reconstruct(self, y, physics, *, seed, callback=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom on purpose")


class _Diverges(Method):
    name = "test_diverges"
    budgets = {"test": {}, "quick": {}}
    summary = "returns NaN on purpose"

    def reconstruct(self, y, physics, *, seed, callback=None):  # type: ignore[no-untyped-def]
        return torch.full_like(physics.A_adjoint(y), float("nan"))


class _FailsForOddSeeds(Method):
    """Solves batches (one by one, by default); raises for odd seeds, so a batch mixing seeds raises."""

    name = "test_odd_seeds_fail"
    budgets = {"test": {}, "quick": {}}
    summary = "raises for odd seeds on purpose"
    max_batch = 8

    def reconstruct(self, y, physics, *, seed, callback=None):  # type: ignore[no-untyped-def]
        if seed % 2:
            raise RuntimeError(f"seed {seed} fails on purpose")
        return physics.A_dagger(y)


@pytest.fixture
def broken_methods() -> Iterator[None]:
    registry.available()
    for cls in (_Raises, _Diverges, _FailsForOddSeeds):
        registry.register(cls)
    yield
    for cls in (_Raises, _Diverges, _FailsForOddSeeds):
        registry._REGISTRY.pop(cls.name, None)


def _profile(methods: list[str], **changes):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(profiles.load("smoke"), methods=methods, **changes)


def test_failing_and_diverging_cells_are_recorded_and_the_benchmark_goes_on(broken_methods: None,
                                                                            tmp_path: Path) -> None:
    profile = _profile(["test_raises", "test_diverges", "trivial"], metrics_off=["lpips"])
    summary = runner.run_benchmark(profile, results_dir=tmp_path / "r", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                                   progress=False)
    frame = ResultsStore(tmp_path / "r" / "results.sqlite").frame()
    assert len(frame) == summary.planned == 12
    assert set(frame[frame.method == "trivial"].status) == {"ok"}
    raised = frame[frame.method == "test_raises"]
    assert set(raised.status) == {"failed"} and raised.error.str.contains("boom on purpose").all()
    diverged = frame[frame.method == "test_diverges"]
    assert set(diverged.status) == {"failed"} and diverged.error.str.contains("NaN or Inf").all()
    assert len(summary.failed) == 8 and any("test_raises" in where for where, _ in summary.failed)
    # Failed cells are retried by the next run, finished ones are not.
    again = runner.run_benchmark(profile, results_dir=tmp_path / "r", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                                 progress=False)
    assert again.ran == 8 and again.already_done == 4


def test_a_method_whose_code_changed_is_recomputed_and_the_others_are_reused(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A store made before a method's ``revision`` bump (or the harness's ``PROTOCOL``) is not
    reused for that method: its cells run again and the report reads only the new ones."""
    from benchmark.run import plan

    profile = _profile(["trivial", "tv"], metrics_off=["lpips"], method_params={"tv": {"iterations": 5}})
    where = {"results_dir": tmp_path / "r", "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}", "progress": False,
             "report": None}
    first = runner.run_benchmark(profile, **where)
    assert first.ran == 8 and first.already_done == 0
    monkeypatch.setattr(registry.get("tv"), "revision", registry.get("tv").revision + 1)
    again = runner.run_benchmark(profile, **where)
    assert again.ran == 4 and again.already_done == 4  # tv again, trivial reused
    frame = ResultsStore(tmp_path / "r" / "results.sqlite").frame(again.keys)
    assert len(frame) == 8 and frame.groupby(["method", "task", "image_id", "seed"]).size().max() == 1
    monkeypatch.setattr(plan, "PROTOCOL", plan.PROTOCOL + 1)
    assert runner.run_benchmark(profile, **where).ran == 8  # a new protocol: everything again


def test_a_failing_problem_does_not_take_its_batch_down(broken_methods: None, tmp_path: Path) -> None:
    profile = _profile(["test_odd_seeds_fail"], seeds=[0, 1], metrics_off=["lpips"], batch_size=8)
    summary = runner.run_benchmark(profile, results_dir=tmp_path / "r", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                                   progress=False)
    frame = ResultsStore(tmp_path / "r" / "results.sqlite").frame()
    assert len(frame) == summary.planned == 2 * 2 * 2  # tasks × images × seeds, one batch per task
    # the method gets each cell's own seed (run seed mixed with dataset and image): odd ones fail
    odd = frame.apply(lambda r: seeding.method_seed(r.dataset, r.image_id, int(r.seed)) % 2 == 1, axis=1)
    assert 0 < odd.sum() < len(frame)  # both kinds in each run of this plan
    assert set(frame[odd].status) == {"failed"}
    assert frame[odd].error.str.contains("fails on purpose").all()
    assert set(frame[~odd].status) == {"ok"} and frame[~odd].psnr.notna().all()


def test_strict_makes_failures_fail_the_command(broken_methods: None, tmp_path: Path) -> None:
    with pytest.raises(runner.BenchmarkFailed, match="4 cell"):
        runner.run_benchmark(_profile(["test_raises", "trivial"], metrics_off=["lpips"]), results_dir=tmp_path / "r",
                             tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", progress=False, strict=True)


def _slow_profile(tmp_path: Path, methods: str = "[trivial, tv]") -> Path:
    path = tmp_path / "slow.yaml"
    path.write_text(
        f"name: slowsmoke\nmethods: {methods}\ntasks: [denoising_s25, inpainting_random50]\n"
        "datasets: [{name: embedded, crop: 48, limit: 4}]\nmetrics_off: [lpips]\n"
        "method_params: {tv: {iterations: 2500}}\n")
    return path


def _cli(tmp_path: Path, profile: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmark", "run", "--profile", str(profile), "--no-progress", "--no-report",
            "--results", str(tmp_path / "r"), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", *extra]


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_killed_benchmark_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    profile = _slow_profile(tmp_path)
    db = tmp_path / "r" / "results.sqlite"
    proc = subprocess.Popen(_cli(tmp_path, profile), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while _count(db) < 10 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "the benchmark finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = _count(db)
    assert 10 <= done_before < 16

    resumed = subprocess.run(_cli(tmp_path, profile), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"already done {done_before}, ran {16 - done_before}" in resumed.stdout
    frame = ResultsStore(db).frame()
    assert len(frame) == 16 and frame.cell_key.is_unique and set(frame.status) == {"ok"}
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], "tags.`dipbench.kind` = 'benchmark'")
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"], "the killed run must not stay open"
    assert not client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")


@pytest.mark.slow
def test_two_benchmarks_write_to_one_store_at_once(tmp_path: Path) -> None:
    first = subprocess.Popen(_cli(tmp_path, _slow_profile(tmp_path), "--methods", "tv"), cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    other = tmp_path / "other"
    other.mkdir()
    second = subprocess.Popen(_cli(tmp_path, _slow_profile(other), "--methods", "trivial"), cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for proc in (first, second):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    frame = ResultsStore(tmp_path / "r" / "results.sqlite").frame()
    assert sorted(frame.groupby("method").size().items()) == [("trivial", 8), ("tv", 8)]
    with sqlite3.connect(tmp_path / "r" / "results.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
