"""A reconstruction's per-pixel uncertainty (issue 24 item 5): the calibration metrics declared
once in the registry, measured by the harness only where a method returns a standard deviation
(DPS with several samples), its map stored beside the reconstruction, and the report's figure."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

import reports
from benchmark.problems import metrics, spaces, tasks
from benchmark.results.store import ResultsStore
from benchmark.run import profiles, runner

pytestmark = pytest.mark.usefixtures("one_thread")


def _context(std: torch.Tensor) -> metrics.MetricContext:
    return metrics.MetricContext(tasks.get("denoising_s25"), 1.0).with_uncertainty(std)


def test_coverage_and_correlation_on_synthetic_errors() -> None:
    """std = |error| exactly: every pixel is covered and the correlation is 1; a std half the
    error covers none; a std drawn independently of the error correlates with it about 0; a
    Gaussian error of the stated std is covered 95.4% of the time."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 128, 128, generator=g, dtype=torch.float64)
    error = 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    x_hat = x + error
    exact = _context(error.abs())
    assert metrics.coverage_2sd(x_hat, x, exact) == 1.0
    assert metrics.sd_error_corr(x_hat, x, exact) == pytest.approx(1.0)
    assert metrics.coverage_2sd(x_hat, x, _context(error.abs() / 2.5)) == 0.0
    independent = _context(torch.rand(x.shape, generator=g, dtype=torch.float64))
    assert abs(metrics.sd_error_corr(x_hat, x, independent)) < 0.03  # 16384 pixels: sd of r ~ 0.008
    calibrated = _context(torch.full(x.shape, 0.05, dtype=torch.float64))
    assert metrics.coverage_2sd(x_hat, x, calibrated) == pytest.approx(0.954, abs=0.01)
    assert metrics.sd_error_corr(x_hat, x, calibrated) != metrics.sd_error_corr(x_hat, x, calibrated)  # NaN
    with pytest.raises(ValueError, match="needs the reconstruction's uncertainty"):
        metrics.coverage_2sd(x_hat, x, metrics.MetricContext())


def test_calibration_metrics_apply_only_where_there_is_an_uncertainty() -> None:
    task = tasks.get("mri_x4")
    names = {m.name for m in metrics.applicable(task)}
    assert not names & {"coverage_2sd", "sd_error_corr"}
    assert {"coverage_2sd", "sd_error_corr"} <= {m.name for m in metrics.applicable(task, uncertainty=True)}
    assert not {"coverage_2sd", "sd_error_corr"} & set(metrics.table_columns())  # no best to bold
    assert metrics.header("coverage_2sd") == "coverage ±2σ" and metrics.higher_is_better("sd_error_corr")


def test_the_std_of_a_complex_image_is_the_std_of_its_complex_values() -> None:
    """MRI: the std of the (real, imaginary) pair per pixel, √(σ_re² + σ_im²), the shape of the
    magnitude metrics compare; real spaces keep the std as it is (never clipped)."""
    std = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    torch.testing.assert_close(spaces.MRI.view_std(std), torch.full((1, 1, 4, 4), 5.0))
    wide = torch.full((1, 1, 4, 4), 2.0)
    assert torch.equal(spaces.UNIT.view_std(wide), wide) and torch.equal(spaces.CT.view_std(wide), wide)


def _smoke_run(tmp_path: Path, methods: list[str], task: str) -> tuple[Path, Any, pd.DataFrame]:
    """The smoke profile's first image through a whole run of ``methods`` on ``task`` (no LPIPS):
    the results folder, the run's summary and its rows."""
    smoke = profiles.load("smoke")
    profile = dataclasses.replace(smoke, methods=methods, tasks=[task],
                                  datasets=[dataclasses.replace(smoke.datasets[0], limit=1)], metrics_off=["lpips"])
    results = tmp_path / "r"
    summary = runner.run_benchmark(profile, results_dir=results, tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                                   progress=False)
    return results, summary, ResultsStore(results / "results.sqlite").frame(summary.keys)


def test_dps_with_two_samples_carries_the_metrics_the_map_and_the_report_figure(tmp_path: Path) -> None:
    """Through the whole run: DPS with 2 samples records coverage and correlation and stores its
    std map beside its reconstruction (path in info); the single-sample DPS and the trivial
    baseline have no such values; the report shows the uncertainty figure and table."""
    tiny = "prior_steps=20,sampling_steps=5"  # the test budget's 8-channel prior, trained briefly
    results, summary, frame = _smoke_run(tmp_path, [f"dps[samples=2,{tiny}]", f"dps[{tiny}]", "trivial"],
                                         "inpainting_random50")
    assert not summary.failed and summary.ran == 3
    by_label = {row.label: row for row in frame.itertuples()}
    two = by_label["dps[prior_steps=20,samples=2,sampling_steps=5]"]
    one = by_label["dps[prior_steps=20,sampling_steps=5]"]
    assert 0.0 <= two.coverage_2sd <= 1.0 and -1.0 <= two.sd_error_corr <= 1.0
    assert two.info["samples"] == 2 and two.info["trained_on"].endswith("mean of 2 posterior samples")
    std_png = results / "recons" / two.info["uncertainty_path"]
    assert std_png.is_file() and std_png.name.endswith("_std.png") and 0 < two.info["uncertainty_max"] <= 1
    for row in (one, by_label["trivial"]):
        assert row.coverage_2sd != row.coverage_2sd and "uncertainty_path" not in row.info  # NaN: not measured
    index = reports.build_report(frame, tmp_path / "report", title="uncertainty", recon_root=results / "recons")
    text = index.read_text(encoding="utf-8")
    assert "alt='uncertainty inpainting_random50 · embedded'" in text
    assert (tmp_path / "report" / "figures" / "uncertainty-0.png").is_file()
    table = reports.uncertainty.calibration_table(frame)
    assert [name for name, _ in table.rows] == [two.label]
    assert "## Uncertainty" in (tmp_path / "report" / "tables.md").read_text()


def test_sgld_dip_records_its_calibration_and_std_map_through_a_run(tmp_path: Path) -> None:
    """SGLD DIP (Cheng et al.) through the harness at the test budget: its record carries the two
    calibration metrics and the std map of its thinned samples, and the report's calibration
    table lists it (the mechanism DPS uses, reached by the Bayesian DIP)."""
    results, summary, frame = _smoke_run(tmp_path, ["sgld_dip"], "denoising_s25")
    assert not summary.failed and summary.ran == 1
    (row,) = frame.itertuples()
    assert 0.0 <= row.coverage_2sd <= 1.0 and -1.0 <= row.sd_error_corr <= 1.0
    std_png = results / "recons" / row.info["uncertainty_path"]
    assert std_png.is_file() and std_png.name.endswith("_std.png") and 0 < row.info["uncertainty_max"] <= 1
    assert [name for name, _ in reports.uncertainty.calibration_table(frame).rows] == [row.label]
