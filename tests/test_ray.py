"""The smoke profile on a local Ray instance gives the same results as the local executor."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import pytest

from benchmark import profiles, runner
from benchmark.ray_executor import RayExecutor
from benchmark.store import ResultsStore

pytestmark = pytest.mark.slow


def test_ray_executor_matches_local_executor(tmp_path: Path) -> None:
    profile = dataclasses.replace(profiles.load("smoke"), methods=["trivial", "tv", "dip"], lpips=False,
                                  save_reconstructions=True)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    local = runner.run_benchmark(profile, results_dir=tmp_path / "local", tracking_uri=uri, progress=False,
                                 report=False)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    # Ray's socket paths must stay short, so its temp dir lives directly under /tmp.
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    executor = RayExecutor(num_cpus=2, temp_dir=ray_tmp)
    try:
        remote = runner.run_benchmark(profile, results_dir=tmp_path / "ray", tracking_uri=uri, executor=executor,
                                      progress=False, report=False)
    finally:
        executor.shutdown()
    assert remote.ran == local.ran == local.planned and not remote.failed
    a = ResultsStore(tmp_path / "local" / "results.sqlite").frame().set_index("cell_key").sort_index()
    b = ResultsStore(tmp_path / "ray" / "results.sqlite").frame().set_index("cell_key").sort_index()
    assert list(a.index) == list(b.index)
    for column in ("psnr", "ssim", "iterations", "oracle_psnr", "measurement_psnr"):
        assert a[column].tolist() == pytest.approx(b[column].tolist(), rel=1e-6, nan_ok=True), column
    assert a.trajectory.tolist() == b.trajectory.tolist()
    # Only the driver writes the reconstructions, next to its own results.
    for rel in b.recon_path:
        assert (tmp_path / "ray" / "recons" / rel).is_file()
