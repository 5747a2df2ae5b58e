"""Adding a metric is one declaration: a toy metric registered here reaches the store, the
export, the tables, the plots and MLflow with no other change; the export's row counts."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

import reports
from benchmark import cli
from benchmark.problems import metrics, spectral
from benchmark.results import statistics as stats
from benchmark.results.export import long_curves, long_results
from benchmark.results.store import ResultsStore
from benchmark.results.tracking import EXPERIMENT
from benchmark.run import profiles, runner
from benchmark.run.pool import MethodPool
from reports import plots

SEEN: list[metrics.MetricContext] = []


def _mean_abs_error(x_hat: torch.Tensor, x: torch.Tensor, ctx: metrics.MetricContext) -> float:
    SEEN.append(ctx)
    return float((x_hat.double() - x.double()).abs().mean()) / ctx.data_range


@pytest.fixture
def toy_metric() -> Iterator[metrics.Metric]:
    """Mean absolute error, on denoising only, measured along the iterations too."""
    metric = metrics.register(metrics.Metric(
        "toy_mae", _mean_abs_error, higher_is_better=False, label="toy MAE", trajectory=True, decimals=4,
        applies=lambda task: task.family == "denoising"))
    SEEN.clear()
    yield metric
    metrics.unregister(metric.name)


def test_a_metric_name_must_not_shadow_a_record_field() -> None:
    for name in ("seed", "runtime_s", "value", "not an identifier"):
        with pytest.raises(ValueError, match="taken or not an identifier"):
            metrics.register(metrics.Metric(name, _mean_abs_error, higher_is_better=True))


@pytest.mark.slow
def test_a_registered_metric_reaches_store_export_tables_plots_and_mlflow(
        toy_metric: metrics.Metric, tmp_path: Path) -> None:
    profile = dataclasses.replace(profiles.load("smoke"), methods=["trivial", "tv"], metrics_off=["lpips"],
                                  save_reconstructions=False)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    summary = runner.run_benchmark(profile, results_dir=tmp_path / "r", tracking_uri=uri, progress=False)
    assert summary.planned == 8 and not summary.failed
    # (the plan's size check probes every metric once on a zero image, without a task)
    measured = [ctx for ctx in SEEN if ctx.task is not None]
    assert measured and {ctx.task.family for ctx in measured} == {"denoising"}
    assert {ctx.data_range for ctx in measured} == {1.0}

    # the store: a row per denoising cell in its metrics table, a column of the per-image table
    frame = ResultsStore(tmp_path / "r" / "results.sqlite").frame()
    denoising = frame[frame.task == "denoising_s25"]
    assert denoising.toy_mae.notna().all() and frame[frame.task != "denoising_s25"].toy_mae.isna().all()
    for row in denoising.itertuples():  # MAE ≤ RMSE = 10^(-PSNR/20) for images in [0, 1]
        assert 0 < row.toy_mae <= 10 ** (-row.psnr / 20)
    tv = denoising[denoising.method == "tv"]
    assert all(len(t) > 0 and all("toy_mae" in p for p in t) for t in tv.trajectory)

    # the export: one row per finished cell and value; the curves carry it too
    results, curves = long_results(frame), long_curves(frame)
    counts = results.groupby("metric").size()
    assert counts["toy_mae"] == 4 and counts["psnr"] == counts["ssim"] == counts["runtime_s"] == 8
    assert "lpips" not in counts  # switched off in this run: no row, rather than an empty one
    points = sum(len(t) for t in frame.trajectory)
    bands = {band.metric: points for band in spectral.BANDS}  # the registry's own per-band PSNRs
    assert (curves.groupby("metric").size().to_dict()
            == {"psnr": points, "ssim": points, **bands, "toy_mae": sum(len(t) for t in tv.trajectory)})

    # the tables: a column with its direction, its best method in bold
    table = reports.comparison_table(frame)
    assert "toy MAE" in table and "lower toy MAE" in table
    best = stats.summarize(frame).query("metric == 'toy_mae' and best")
    assert list(best.method) == ["tv"]
    fig = plots.distributions(stats.normalize(frame), plots.method_palette(frame.method))
    assert fig is not None and "toy MAE" in {ax.get_ylabel() for ax in fig.axes}

    # MLflow: the mean on each denoising child run, its trajectory as a stepped metric
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], "tags.`dipbench.kind` = 'result'")
    by_group = {(r.data.tags["method"], r.data.tags["task"]): r for r in runs}
    for method in ("trivial", "tv"):
        run = by_group[(method, "denoising_s25")]
        mean = denoising[denoising.method == method].toy_mae.mean()
        assert run.data.metrics["toy_mae"] == pytest.approx(mean)
        assert "toy_mae" not in by_group[(method, "inpainting_random50")].data.metrics
    assert client.get_metric_history(by_group[("tv", "denoising_s25")].info.run_id, "trajectory_toy_mae")


def test_export_writes_the_long_tables_with_their_row_counts(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The fixture store (8 finished cells, tv with trajectories) as CSV and Parquet."""
    folder = tmp_path / "r"
    folder.mkdir()
    shutil.copyfile(Path(__file__).parent / "fixtures" / "store_v1.sqlite", folder / "results.sqlite")
    frame = ResultsStore(folder / "results.sqlite").frame()
    tv_points = sum(len(t) for t in frame.trajectory)
    for fmt in ("csv", "parquet"):
        assert cli.main(["export", "--format", fmt, "--results", str(folder), "--out", str(tmp_path / fmt)]) == 0
        read = pd.read_csv if fmt == "csv" else pd.read_parquet
        results, curves = read(tmp_path / fmt / f"results.{fmt}"), read(tmp_path / fmt / f"curves.{fmt}")
        counts = results.groupby("metric").size().to_dict()
        # every cell has the three metrics and two costs; tv (4 cells) the early-stopping figures
        assert counts == {"psnr": 8, "ssim": 8, "lpips": 8, "runtime_s": 8, "peak_mem_mb": 8,
                          "oracle_value": 4, "es_gap": 4, "iterations": 4, "iterations_saved": 4}
        assert len(curves) == 2 * tv_points and set(curves.metric) == {"psnr", "ssim"}
        assert list(results.columns) == ["cell_key", "method", "label", "params", "family", "task", "dataset",
                                         "image_id", "seed", "run_budget", "train_task", "train_set", "shift",
                                         "metric", "value"]
        # a store of the first release: each instance is its method, the budget was not recorded
        assert (results.label == results.method).all() and results.run_budget.fillna("").eq("").all()
        one = results[(results.metric == "psnr")].set_index("cell_key").value
        assert one.to_dict() == pytest.approx(frame.set_index("cell_key").psnr.to_dict())
        pivot = results.pivot_table(index=["method", "task"], columns="metric", values="value", aggfunc="count")
        assert pivot.loc[("tv", "denoising_s25"), "psnr"] == 2
    with pytest.raises(SystemExit) as exit_:
        cli.main(["export", "--format", "xlsx", "--results", str(folder), "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "invalid choice: 'xlsx'" in capsys.readouterr().err
    assert cli.main(["export", "--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "no results store at" in capsys.readouterr().err


def test_a_profile_leaves_out_any_registered_metric_by_name(toy_metric: metrics.Metric) -> None:
    """``metrics_off`` names registered metrics (a new one included); an unknown name or the
    primary metric (it ranks methods) is refused with the profile."""
    from benchmark.core.errors import UserError
    from benchmark.run import harness
    from benchmark.run.plan import Cell

    doc = {"name": "p", "methods": ["trivial"], "tasks": ["denoising_s25"],
           "datasets": [{"name": "embedded", "crop": 32, "limit": 1}], "metrics_off": ["toy_mae", "lpips"]}
    profile = profiles.parse(doc)
    assert profile.metrics_off == ["toy_mae", "lpips"]
    image = torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(0))
    cell = Cell("trivial", "{}", "denoising_s25", "embedded", "img", "crop32", 0)
    pool = MethodPool(lambda: [], "embedded", Path("unused"), torch.device("cpu"))
    (outcome,) = harness.run_cells([cell], [image], pool, skip_metrics=profile.metrics_off,
                                   save_reconstruction=False)
    assert outcome.record.status == "ok"
    assert "toy_mae" not in outcome.record.metrics and "lpips" not in outcome.record.metrics
    assert "ssim" in outcome.record.metrics
    with pytest.raises(UserError, match="unknown metric"):
        profiles.parse({**doc, "metrics_off": ["nope"]})
    with pytest.raises(UserError, match="primary metric"):
        profiles.parse({**doc, "metrics_off": ["psnr"]})
    with pytest.raises(UserError, match="unknown key|lpips"):
        profiles.parse({**doc, "lpips": False})
