"""``benchmark plan``: a profile's cells and estimated cost, without running anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark import cli
from benchmark.run import estimate, plan, profiles


def test_the_plan_lists_every_cell_and_a_cost_per_method_without_running_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written: no results folder, no MLflow store
    assert cli.main(["plan", "--profile", "smoke", "--methods", "trivial,tv,dip", "--groups"]) == 0
    out = capsys.readouterr().out
    profile = profiles.load("smoke")
    cells, _ = plan.make_plan(profiles.parse({**_doc(profile), "methods": ["trivial", "tv", "dip"]}))
    assert f"{len(cells)} cells" in out
    for method in ("trivial", "tv", "dip"):
        assert any(line.startswith(method) for line in out.splitlines())
    assert "on a GPU" in out and "NVIDIA H200" in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "mlruns.db").exists()


def test_an_iterative_method_costs_its_budget_of_steps() -> None:
    """A DIP probe reports its budget; twice the iterations, about twice the estimate."""
    task_name = "denoising_s25"
    profile = profiles.load("smoke")
    doc = {**_doc(profile), "methods": ["dip[iterations=20,40]"], "tasks": [task_name]}
    groups = estimate.estimate(profiles.parse(doc))
    by_label = {g.label: g for g in groups}
    short, long_ = by_label["dip[iterations=20]"], by_label["dip[iterations=40]"]
    assert (short.steps, long_.steps) == (20, 40)
    assert short.cell_s is not None and long_.cell_s is not None and long_.cell_s > short.cell_s


def test_a_trained_method_s_training_is_estimated_once_per_task() -> None:
    profile = profiles.load("smoke")
    doc = {**_doc(profile), "methods": ["unet"], "tasks": ["denoising_s25"]}
    (group,) = estimate.estimate(profiles.parse(doc))
    assert group.train_s > 0 and group.total_s is not None and group.total_s > group.train_s


def _doc(profile: profiles.Profile) -> dict[str, object]:
    return {"name": profile.name, "methods": profile.methods, "tasks": profile.tasks,
            "datasets": [{"name": d.name, "resize": d.resize, "crop": d.crop, "limit": d.limit}
                         for d in profile.datasets],
            "seeds": profile.seeds, "budget": profile.budget,
            "training": {"dataset": profile.training.dataset, "crop": profile.training.crop}}
