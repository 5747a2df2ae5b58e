"""Every number says what budget made it: the store, the export, MLflow, the leaderboard and the
report carry the profile's budget, and a report under a CPU budget opens by saying so."""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import reports
from benchmark import cli
from benchmark.results import leaderboard
from benchmark.results import statistics as stats
from benchmark.results.export import long_curves, long_results
from benchmark.results.store import Record, ResultsStore, records_frame
from benchmark.results.tracking import EXPERIMENT
from benchmark.run import profiles, runner
from reports import tables


def _record(key: str, budget: str, label: str = "", seed: int = 0, image: str = "a") -> Record:
    return Record(cell_key=key, method="tv", task="denoising_s25", dataset="embedded", image_id=image, seed=seed,
                  label=label, run_budget=budget, metrics={"psnr": 25.0 + seed}, runtime_s=1.0,
                  trajectory=[{"step": 10.0, "psnr": 24.0}])


def test_a_store_written_before_the_budget_was_recorded_reads_it_as_empty(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    ResultsStore(db).put(_record("old", "quick"))
    with sqlite3.connect(db) as conn:  # as an older release wrote it: no run_budget column
        conn.execute("ALTER TABLE records DROP COLUMN run_budget")
        assert "run_budget" not in {r[1] for r in conn.execute("PRAGMA table_info(records)")}
    store = ResultsStore(db)  # opening adds the column
    assert [r.run_budget for r in store.records()] == [""]
    store.put(_record("new", "paper"))
    assert store.frame().set_index("cell_key")["run_budget"].to_dict() == {"old": "", "new": "paper"}
    assert stats.budget_text(store.frame()) == "budget paper"  # the unrecorded one is not a budget


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, runner.Summary]:
    """The smoke profile (test budget) with the trivial baseline: 4 cells."""
    root = tmp_path_factory.mktemp("budget")
    profile = dataclasses.replace(profiles.load("smoke"), methods=["trivial"], metrics_off=["lpips"],
                                  save_reconstructions=False)
    uri = f"sqlite:///{root / 'ml.db'}"
    summary = runner.run_benchmark(profile, results_dir=root / "r", tracking_uri=uri, progress=False)
    assert summary.planned == 4 and not summary.failed
    return root, uri, summary


def test_the_driver_records_the_budget_and_mlflow_and_the_leaderboard_show_it(
        smoke_run: tuple[Path, str, runner.Summary]) -> None:
    root, uri, summary = smoke_run
    frame = ResultsStore(root / "r" / "results.sqlite").frame()
    assert set(frame["run_budget"]) == {"test"}
    client = MlflowClient(uri)
    assert client.get_run(summary.parent_run_id).data.tags["budget"] == "test"
    exp = client.get_experiment_by_name(EXPERIMENT)
    children = client.search_runs([exp.experiment_id], "tags.`dipbench.kind` = 'result'")
    assert children and {r.data.tags["budget"] for r in children} == {"test"}
    boards = leaderboard.publish(client, exp.experiment_id, summary.parent_run_id)
    views = {k: v for k, v in client.get_experiment(exp.experiment_id).tags.items()
             if k.startswith(leaderboard.VIEW_TAG_PREFIX)}
    assert len(views) == len(boards) == 2
    for text in views.values():
        view = json.loads(text)
        assert "· budget test ·" in view["name"]
        assert "tags.`budget`" in json.loads(view["state"])["selectedColumns"]


def test_the_export_carries_the_budget_and_the_instance_label(smoke_run: tuple[Path, str, runner.Summary]) -> None:
    root, _, _ = smoke_run
    frame = ResultsStore(root / "r" / "results.sqlite").frame()
    for long in (long_results(frame), long_curves(frame)):
        assert {"run_budget", "label"} <= set(long.columns)
    results = long_results(frame)
    assert set(results["run_budget"]) == {"test"} and set(results["label"]) == {"trivial"}
    # as the tables group: by instance label, not by method name
    grid = records_frame([_record("a", "quick", "tv[weight=0.01]"), _record("b", "quick", "tv[weight=tuned]"),
                          _record("c", "quick", "tv[weight=tuned]", seed=1)])
    long = long_results(grid)
    assert long[long.metric == "psnr"].groupby("label")["value"].mean().to_dict() == {
        "tv[weight=0.01]": 25.0, "tv[weight=tuned]": 25.5}
    assert set(long_curves(grid)["label"]) == {"tv[weight=0.01]", "tv[weight=tuned]"}


def test_a_cpu_budget_report_opens_by_saying_so(smoke_run: tuple[Path, str, runner.Summary], tmp_path: Path) -> None:
    root, _, _ = smoke_run
    frame = ResultsStore(root / "r" / "results.sqlite").frame()
    index = reports.build_report(frame, tmp_path / "cpu", title="small run")
    page = index.read_text(encoding="utf-8")
    first = re.search(r"<h1>small run</h1><p class='banner'>([^<]*)</p>", page)
    assert first is not None and "CPU-budget rankings on small images (budget test)" in first.group(1)
    assert "not the paper-scale comparison" in first.group(1)
    md = (tmp_path / "cpu" / "tables.md").read_text(encoding="utf-8").splitlines()
    assert md[0] == "# small run" and "CPU-budget rankings" in md[2]
    header = md[4]
    assert "budget test" in header and "images per block: denoising_s25 · embedded 2 images" in header
    assert "intervals and tests are over images" in header
    for table in (tables.comparison(frame), tables.es_gap(frame), tables.seed_spread(frame), tables.failed(frame)):
        assert table.caption.startswith("Budget test.")


def test_a_paper_budget_report_has_no_banner(tmp_path: Path) -> None:
    frame = records_frame([_record("a", "paper"), _record("b", "paper", image="b")])
    page = reports.build_report(frame, tmp_path / "paper", title="paper run").read_text(encoding="utf-8")
    assert "class='banner'" not in page and "budget paper" in page
    assert "CPU-budget" not in (tmp_path / "paper" / "tables.md").read_text(encoding="utf-8")
    mixed = records_frame([_record("a", "paper"), _record("b", "quick", image="b")])
    assert "budget quick" in reports.budget_banner(mixed) and "budgets paper, quick" in reports._meta(mixed)


def test_the_command_line_summary_opens_with_the_budget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["run", "--no-progress", "--no-report", "--profile", "smoke", "--methods", "trivial", "--tasks",
                     "denoising_s25", "--limit", "1", "--results", str(tmp_path / "res"),
                     "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("These are CPU-budget rankings on small images (budget test)")
    assert "Budget test." in out  # the table's caption too
