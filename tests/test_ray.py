"""The smoke profile on a local Ray instance gives the same results as the local executor.

Bit for bit: Ray's tasks compute with the driver's thread count on the same machine's CPU (the
README's reproducibility claim). The comparison runs on the CPU even where a GPU is present,
since cuDNN may pick non-deterministic kernels.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import sys
import tempfile
from pathlib import Path

import pytest

from benchmark.results.store import ResultsStore
from benchmark.run import profiles, runner
from benchmark.run.ray_executor import RayExecutor, follow_stderr

pytestmark = pytest.mark.slow


def test_ray_executor_matches_local_executor(tmp_path: Path) -> None:
    profile = dataclasses.replace(profiles.load("smoke"), methods=["trivial", "tv", "dip"], metrics_off=["lpips"],
                                  save_reconstructions=True, device="cpu")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    local = runner.run_benchmark(profile, results_dir=tmp_path / "local", tracking_uri=uri, progress=False)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    # Ray's socket paths must stay short, so its temp dir lives directly under /tmp.
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    executor = RayExecutor(num_cpus=2, temp_dir=ray_tmp)
    try:
        remote = runner.run_benchmark(profile, results_dir=tmp_path / "ray", tracking_uri=uri, executor=executor,
                                      progress=False)
    finally:
        executor.shutdown()
    assert remote.ran == local.ran == local.planned and not remote.failed
    a = ResultsStore(tmp_path / "local" / "results.sqlite").frame().set_index("cell_key").sort_index()
    b = ResultsStore(tmp_path / "ray" / "results.sqlite").frame().set_index("cell_key").sort_index()
    assert list(a.index) == list(b.index)
    for column in ("psnr", "ssim", "iterations", "oracle_value", "measurement_value"):
        assert a[column].tolist() == pytest.approx(b[column].tolist(), rel=1e-6, nan_ok=True), column
    assert a.trajectory.tolist() == b.trajectory.tolist()
    # Only the driver writes the reconstructions, next to its own results.
    for rel in b.recon_path:
        assert (tmp_path / "ray" / "recons" / rel).is_file()


def test_ray_logs_go_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's console handler bound to a stream that is closed later (pytest's capture file at
    the end of a session) printed "--- Logging error ---" tracebacks at exit; after
    ``follow_stderr`` its messages go to whatever ``sys.stderr`` is when they are written."""
    import ray  # noqa: F401 - sets up Ray's own handlers, bound to the stderr of this moment

    ray_logger = logging.getLogger("ray")
    before = list(ray_logger.handlers)
    closed = io.StringIO()
    mine = logging.StreamHandler(closed)
    ray_logger.addHandler(mine)
    try:
        follow_stderr()
        closed.close()
        now = io.StringIO()
        monkeypatch.setattr(sys, "stderr", now)
        monkeypatch.setattr(logging, "raiseExceptions", True)
        ray_logger.warning("written after the first stream closed")
        assert now.getvalue().count("written after the first stream closed") == len(ray_logger.handlers)
        assert len(ray_logger.handlers) == len(before) + 1
    finally:  # Ray's own handler stays (following stderr); the one added here goes
        ray_logger.handlers[:] = [h for h in ray_logger.handlers if h is not mine][: len(before)]
