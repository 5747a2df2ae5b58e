"""The harness's own share of the wall time on many small cells (issue 16: under 5%).

Runs the ``harness90`` profile (90 cells of 96² BSD68 crops: DIP with the quick network, TV and
the trivial baseline) through the normal driver, MLflow and report included, and prints the CLI's
split: reconstruction, training, calibration, and where the harness's share goes (plan and data,
metrics, trajectory, PNG encoding, files and store, MLflow, report).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.run import profiles, runner

pytestmark = pytest.mark.perf


def test_harness_share_on_90_small_cells(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    profile = profiles.load("harness90")
    summary = runner.run_benchmark(profile, results_dir=tmp_path / "results",
                                   tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}", progress=False)
    assert summary.ran == 90 and not summary.failed, summary.failed
    share = summary.harness_s / summary.wall_s
    with capsys.disabled():
        print(f"\nharness90: wall {summary.wall_s:.1f} s, reconstruction {summary.reconstruct_s:.1f} s, "
              f"training {summary.prepare_s:.1f} s, calibration {summary.calibrate_s:.1f} s, "
              f"harness {summary.harness_s:.1f} s = {share:.1%}")
        print("  split: " + ", ".join(f"{k} {v:.2f} s" for k, v in summary.parts.items()))
    assert share < 0.05, f"the harness takes {share:.1%} of the wall time (bar: 5%)"
