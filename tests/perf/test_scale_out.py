"""Figures for scaling out and resuming, measured side by side in one run (printed, not asserted).

* Ray versus the local executor on the smoke profile's untrained methods (same results, tested
  in tests/test_ray.py): wall time of each, on a local Ray instance with this machine's CPUs.
* A benchmark killed with SIGKILL mid-run and resumed: cells done before the kill (skipped by
  the resume), and the time lost to the interruption (killed + resumed − uninterrupted).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from benchmark.run import profiles, runner
from benchmark.run.ray_executor import RayExecutor

pytestmark = pytest.mark.perf

ROOT = Path(__file__).resolve().parents[2]
UNTRAINED = ["trivial", "tv", "dip", "dip_tv", "deep_decoder", "dip_sv", "dip_holdout", "dip_eswmv", "dncnn"]


@pytest.mark.parametrize("threads", [1, 2])
def test_ray_versus_local_on_smoke(tmp_path: Path, threads: int, capsys) -> None:  # type: ignore[no-untyped-def]
    """Each Ray task uses the driver's thread count: with 1, two tasks run at once on 2 cores."""
    profile = dataclasses.replace(profiles.load("smoke"), methods=UNTRAINED, metrics_off=["lpips"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        local = runner.run_benchmark(profile, results_dir=tmp_path / "local", tracking_uri=uri, progress=False)
        remote, ray_start_s = _on_ray(profile, tmp_path, uri)
    finally:
        torch.set_num_threads(before)
    with capsys.disabled():
        print(f"\nsmoke ({len(UNTRAINED)} untrained methods, {local.planned} cells, {threads} thread(s) per task, "
              f"{os.cpu_count()} CPUs): local {local.wall_s:.1f} s, Ray {remote.wall_s:.1f} s "
              f"(+{ray_start_s:.1f} s to start Ray), local/Ray {local.wall_s / remote.wall_s:.2f}x")


def _on_ray(profile: profiles.Profile, tmp_path: Path, uri: str) -> tuple[runner.Summary, float]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    executor = RayExecutor(num_cpus=os.cpu_count(), temp_dir=Path(tempfile.mkdtemp(prefix="ray", dir="/tmp")))
    start = time.perf_counter()
    try:
        executor._init()
        ray_start_s = time.perf_counter() - start
        remote = runner.run_benchmark(profile, results_dir=tmp_path / "ray", tracking_uri=uri, executor=executor,
                                      progress=False)
    finally:
        executor.shutdown()
    return remote, ray_start_s


def _cli(tmp: Path, profile: Path) -> list[str]:
    return [sys.executable, "-m", "benchmark", "run", "--profile", str(profile), "--no-progress", "--no-report",
            "--results", str(tmp / "r"), "--tracking-uri", f"sqlite:///{tmp / 'm.db'}"]


def _done(db: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


def test_time_lost_to_a_kill_and_resume(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    profile = tmp_path / "resume.yaml"
    profile.write_text("name: resume\nmethods: [trivial, tv]\ntasks: [denoising_s25, inpainting_random50]\n"
                       "datasets: [{name: embedded, crop: 48, limit: 4}]\nmetrics_off: [lpips]\n"
                       "method_params: {tv: {iterations: 2500}}\n")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    start = time.perf_counter()
    subprocess.run(_cli(whole, profile), cwd=ROOT, check=True, capture_output=True)
    uninterrupted = time.perf_counter() - start

    start = time.perf_counter()
    proc = subprocess.Popen(_cli(killed, profile), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while _done(killed / "r" / "results.sqlite") < 10 and proc.poll() is None:
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first_part = time.perf_counter() - start
    before = _done(killed / "r" / "results.sqlite")
    start = time.perf_counter()
    subprocess.run(_cli(killed, profile), cwd=ROOT, check=True, capture_output=True)
    resumed = time.perf_counter() - start
    total = _done(killed / "r" / "results.sqlite")
    with capsys.disabled():
        print(f"\nkill + resume: {total} cells, {before} done before SIGKILL and skipped by the resume, "
              f"{total - before} run after it; uninterrupted {uninterrupted:.1f} s, killed run {first_part:.1f} s "
              f"+ resume {resumed:.1f} s = {first_part + resumed:.1f} s: "
              f"{first_part + resumed - uninterrupted:.1f} s lost (process start, the cell cut short)")
