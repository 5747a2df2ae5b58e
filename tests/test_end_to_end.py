"""End to end: the smoke profile into a temporary SQLite store, as `make benchmark` would run it."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from benchmark import cli, registry
from benchmark.results.store import ResultsStore
from benchmark.results.tracking import EXPERIMENT
from benchmark.run import profiles, runner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    profile = profiles.load("smoke")
    summary = runner.run_benchmark(profile, results_dir=tmp / "results", tracking_uri=uri, progress=False,
                                   report=cli.report_builder(profile))
    return profile, summary, uri, tmp


def test_every_cell_is_in_the_per_image_table(smoke_run) -> None:  # type: ignore[no-untyped-def]
    profile, summary, _, tmp = smoke_run
    frame = ResultsStore(tmp / "results" / "results.sqlite").frame()
    n_images = profile.datasets[0].limit
    methods = registry.available()
    assert summary.planned == len(methods) * len(profile.tasks) * n_images * len(profile.seeds)
    assert len(frame) == summary.planned and frame.cell_key.is_unique
    assert not summary.failed, summary.failed
    ok = frame[frame.status == "ok"]
    assert ok.psnr.notna().all() and ok.ssim.between(-1, 1).all() and ok.lpips.between(0, 1).all()
    assert (ok.runtime_s > 0).all() and ok.peak_mem_mb.notna().all()
    # the wall time splits into the methods' work, training and the harness's own share
    # (a batched cell's runtime_s is solo-equivalent; the time it took is its share of the batch)
    as_run = [row["info"].get("batch_share_s", row.runtime_s) for _, row in ok.iterrows()]
    assert summary.reconstruct_s == pytest.approx(sum(as_run))
    assert summary.prepare_s > 0 and summary.prepare_s + summary.reconstruct_s <= summary.wall_s
    assert summary.harness_s == pytest.approx(
        summary.wall_s - summary.prepare_s - summary.reconstruct_s - summary.calibrate_s)
    skipped = frame[frame.status == "skipped"]
    assert (skipped.error.str.len() > 0).all(), "a skipped cell must carry its reason"
    # The measurement is the same for every method on a (task, image, seed).
    assert ok.groupby(["task", "image_id", "seed"]).measurement_value.nunique().max() == 1
    for rel in ok.recon_path:
        assert (tmp / "results" / "recons" / rel).is_file()


def test_iterative_methods_have_trajectories_and_oracle(smoke_run) -> None:  # type: ignore[no-untyped-def]
    _, _, _, tmp = smoke_run
    frame = ResultsStore(tmp / "results" / "results.sqlite").frame()
    dip = frame[(frame.family == "dip") & (frame.status == "ok")]
    assert len(dip) > 0
    for _, row in dip.iterrows():
        steps = [p["step"] for p in row.trajectory]
        assert steps == sorted(steps) and len(steps) >= 2
        # The oracle is over every iterate, so at least the best sampled one and the returned one.
        assert row.oracle_value >= max([p["psnr"] for p in row.trajectory] + [row.psnr]) - 1e-9
        # every variant states the stream its oracle ranges over (raw outputs, an EMA, a posterior mean, …)
        assert isinstance(row["info"]["oracle_stream"], str) and row["info"]["oracle_stream"].strip()
        assert row.es_gap == pytest.approx(row.oracle_value - row.psnr) and row.es_gap >= 0
        # DIP fits the smoke profile's images of one task together: a cell's share of the batch's
        # time, scaled to what one image alone costs by the calibrated solo/batch ratio
        # (`auto` batches only where the calibration on this machine says it pays)
        info = row["info"]
        if "solo_cost" in info:  # a method that reports its costs: the network's share by group size, its own work
            parts = info["solo_cost"]
            network = sum(s * parts["factors"][g] for g, s in parts["network_s"].items())
            assert parts["own_s"] >= 0 and row.runtime_s == pytest.approx(network + parts["own_s"])
        elif info.get("batch_size", 1) > 1:
            assert info["batch_size"] == 2 and 0 < info["batch_share_s"] <= info["batch_runtime_s"]
            factor = info["solo_factor"] if isinstance(info["solo_factor"], float) else 1.0
            assert row.runtime_s == pytest.approx(info["batch_share_s"] * factor)


def test_mlflow_parent_and_child_runs(smoke_run) -> None:  # type: ignore[no-untyped-def]
    profile, summary, uri, tmp = smoke_run
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["profile"] == "smoke" and parent.data.tags["git_commit"]
    assert "version.torch" in parent.data.tags and parent.data.tags["device"] == "cpu"
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}' "
                                  "and tags.`dipbench.kind` = 'result'")
    frame = ResultsStore(tmp / "results" / "results.sqlite").frame()
    assert len(children) == frame.groupby(["method", "task", "dataset"]).ngroups
    leaderboard = client.search_runs([exp.experiment_id], "tags.task = 'denoising_s25' and tags.dataset = 'embedded' "
                                     "and tags.`dipbench.kind` = 'result'", order_by=["metrics.psnr DESC"])
    psnrs = [r.data.metrics.get("psnr") for r in leaderboard if "psnr" in r.data.metrics]
    assert psnrs == sorted(psnrs, reverse=True) and len(psnrs) >= 2
    tv = next(r for r in leaderboard if r.data.tags["method"] == "tv")
    expected = frame[(frame.method == "tv") & (frame.task == "denoising_s25")].psnr.mean()
    assert tv.data.metrics["psnr"] == pytest.approx(expected)
    assert tv.data.metrics["psnr_ci95_low"] <= tv.data.metrics["psnr"] <= tv.data.metrics["psnr_ci95_high"]
    assert [a.path for a in client.list_artifacts(tv.info.run_id)] == ["per_image.csv", "reconstructions"]
    tv_cells = frame[(frame.method == "tv") & (frame.task == "denoising_s25")]
    assert len(client.list_artifacts(tv.info.run_id, "reconstructions")) == len(tv_cells)
    assert "report/index.html" in [a.path for a in client.list_artifacts(parent.info.run_id, "report")]
    dip_runs = [r for r in children if r.data.tags["family"] == "dip"]
    assert dip_runs and len(client.get_metric_history(dip_runs[0].info.run_id, "trajectory_psnr")) >= 2


def test_rendered_table_and_report(smoke_run) -> None:  # type: ignore[no-untyped-def]
    import reports

    _, summary, _, tmp = smoke_run
    frame = ResultsStore(tmp / "results" / "results.sqlite").frame()
    markdown = reports.comparison_table(frame, fmt="markdown")
    for method in registry.available():
        assert method in markdown
    assert "denoising_s25" in markdown and "**" in markdown
    assert summary.report is not None and summary.report.is_file()


def test_rerun_resumes_without_duplicates(smoke_run) -> None:  # type: ignore[no-untyped-def]
    profile, summary, uri, tmp = smoke_run
    again = runner.run_benchmark(profile, results_dir=tmp / "results", tracking_uri=uri, progress=False)
    assert again.ran == 0 and again.already_done == summary.planned
    assert len(ResultsStore(tmp / "results" / "results.sqlite").frame()) == summary.planned


def test_sgld_rows_carry_the_uncertainty_metrics(smoke_run) -> None:  # type: ignore[no-untyped-def]
    """SGLD DIP returns a per-pixel std: its rows carry the calibration metrics, within their
    ranges, and methods without an uncertainty do not."""
    _, _, _, tmp = smoke_run
    frame = ResultsStore(tmp / "results" / "results.sqlite").frame()
    sgld = frame[(frame.method == "sgld_dip") & (frame.status == "ok")]
    assert len(sgld) > 0
    assert sgld.coverage_2sd.between(0, 1).all() and sgld.sd_error_corr.between(-1, 1).all()
    assert frame[(frame.method == "dip") & (frame.status == "ok")].coverage_2sd.isna().all()
