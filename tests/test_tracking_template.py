"""A new MLflow store is a copy of an empty store MLflow migrated once (benchmark/results/tracking.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.results import tracking


def test_a_new_store_is_the_migrated_template_with_its_own_default_experiment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    template = tracking.empty_store_template()
    built_at = template.stat().st_mtime_ns
    assert tracking.empty_store_template() == template and template.stat().st_mtime_ns == built_at

    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    tracker = tracking.Tracker("sqlite:///nested/mlruns.db")
    assert (workdir / "nested" / "mlruns.db").stat().st_size > 0
    experiments = {e.name: e for e in tracker.client.search_experiments()}
    assert set(experiments) == {"Default", tracking.EXPERIMENT}
    # MLflow recreated "Default" where this store was opened, not where the template was built
    assert experiments["Default"].artifact_location.startswith(str(workdir))
    run = tracker.client.create_run(experiments[tracking.EXPERIMENT].experiment_id)
    tracker.client.log_metric(run.info.run_id, "psnr", 30.0)
    reopened = tracking.Tracker("sqlite:///nested/mlruns.db")
    assert reopened.client.get_run(run.info.run_id).data.metrics == {"psnr": 30.0}
    assert template.stat().st_mtime_ns == built_at  # the template itself is never written


def test_an_existing_store_is_opened_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    first = tracking.Tracker(uri)
    run_id = first.client.create_run(first.experiment_id).info.run_id
    again = tracking.Tracker(uri)
    assert again.experiment_id == first.experiment_id
    assert again.client.get_run(run_id).info.run_id == run_id
