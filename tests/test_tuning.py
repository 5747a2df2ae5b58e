"""`benchmark tune` (issue 12, item 7): hyperparameters chosen on validation images drawn from the
training split, never on test images; the run uses and records the choice; the shipped profiles'
tuned values trace to such records."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml

from benchmark import cli, registry
from benchmark.core.errors import UserError
from benchmark.problems import data, tasks
from benchmark.run import plan, profiles, tuned_values, tuning
from tests.conftest import requires_shared

TINY_DOC: dict[str, Any] = {
    "name": "tiny", "methods": ["tv", "trivial"], "tasks": ["denoising_s25", "inpainting_random50"],
    "datasets": [{"name": "embedded", "resize": 64, "crop": 32, "limit": 2}],
    "training": {"dataset": "embedded"}, "budget": "test",
    "tune": {"images": 2, "resize": 64, "crop": 32, "grids": {"tv": {"weight": [0.005, 0.05, 0.5]}}},
    "tuned": "tiny_tuned.yaml",
}


def _write(tmp_path: Path, **changes: Any) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY_DOC, **changes}))
    return str(path)


def _record(psnr: float, trajectory: list[dict[str, float]] | None = None) -> Any:
    return SimpleNamespace(status="ok", metrics={"psnr": psnr}, trajectory=trajectory or [], error="")


def test_the_best_grid_point_is_chosen_and_budgets_come_from_one_trajectory() -> None:
    """A fixture where the answer is known: PSNR peaks at step 300 for λ = 0.01, lower elsewhere."""
    calls: list[dict[str, Any]] = []

    def run(method: str, params: dict[str, Any], task: tasks.Task, images: Any, every: int,
            held_out: Any = None) -> list[Any]:
        calls.append({**params, "every": every, "task": task.name})
        bonus = 1.0 if params["tv_weight"] == 0.01 else 0.0
        traj = [{"step": s, "psnr": bonus + 20 - abs(s - 300) / 100} for s in range(100, params["iterations"] + 1, 100)]
        return [_record(0.0, traj), _record(0.0, [{**p, "psnr": p["psnr"] + 1} for p in traj])]

    grid: dict[str, list[Any]] = {"tv_weight": [0.001, 0.01, 0.1], "iterations": [100, 300, 500]}
    task = tasks.get("denoising_s25")
    fixed = {task.name: {"iterations": 1800, "tv_weight": 0.5, "lr": 0.01}}
    chosen, scored = tuning.score_grid("dip_tv", grid, fixed, [task], {task.name: []}, run)
    assert chosen == {"tv_weight": 0.01, "iterations": 300}
    assert len(scored) == 9 and len(calls) == 3  # one run per λ, at the largest budget
    assert all(c["iterations"] == 500 and c["every"] == 100 and c["lr"] == 0.01 for c in calls)
    best = max(scored, key=lambda p: p["value"])
    assert best["params"] == chosen and best["value"] == pytest.approx(21.5)
    assert best["per_image"] == {task.name: [21.0, 22.0]}


def test_a_family_is_scored_over_all_its_tasks() -> None:
    """DIP-TV's λ is one per family: the mean over the family's tasks decides, not its first one."""
    def run(method: str, params: dict[str, Any], task: tasks.Task, images: Any, every: int,
            held_out: Any = None) -> list[Any]:
        favourite = {"denoising_s15": 0.001, "denoising_s50": 0.1}[task.name]
        gain = 3.0 if task.name == "denoising_s50" else 1.0
        return [_record(gain if params["tv_weight"] == favourite else 0.0,
                        [{"step": 10, "psnr": gain if params["tv_weight"] == favourite else 0.0}])]

    group = [tasks.get("denoising_s15"), tasks.get("denoising_s50")]
    assert tuning.targets("dip_tv", group) == [("family", "denoising", group)]
    fixed = {t.name: {"iterations": 10} for t in group}
    chosen, _ = tuning.score_grid("dip_tv", {"tv_weight": [0.001, 0.1], "iterations": [10]}, fixed, group,
                                  {t.name: [] for t in group}, run)
    assert chosen == {"tv_weight": 0.1, "iterations": 10}


def test_the_loader_never_gets_a_test_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every image load of a tune asks for the training split, and no test image reaches a run."""
    loads: list[dict[str, Any]] = []
    real_load = data.load

    def spy(name: str, **kwargs: Any) -> list[data.Image]:
        loads.append({"name": name, **kwargs})
        return real_load(name, **kwargs)

    monkeypatch.setattr(data, "load", spy)
    seen: list[str] = []
    profile = profiles.load(_write(tmp_path))
    real_runner = tuning.harness_runner(profile, plan_device())

    def run(method: str, params: dict[str, Any], task: tasks.Task, images: Any, every: int,
            held_out: Any = None) -> list[Any]:
        seen.extend(img.id for img in images)
        return real_runner(method, params, task, images, every, held_out)

    records = tuning.tune(profile, run=run, log=lambda _: None)
    assert loads and all(call.get("split") == "train" for call in loads)
    assert set(seen) and set(seen) <= set(data.EMBEDDED_TRAIN)
    assert not set(seen) & set(data.EMBEDDED_TEST)
    assert all(rec["validation"]["images"] == sorted(set(seen), key=seen.index) for rec in records)


def test_a_trained_method_is_tuned_on_images_it_never_trained_on(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """DPS's ζ is chosen on validation images drawn from the training split: its prior then
    trains on the rest of the split, never on them, resized like the profile's test images
    (shorter side 64), and the record says so."""
    from methods.dps import DPS

    seen: list[tuple[str, list[Any]]] = []
    real_prepare = DPS.prepare

    def spy(self: DPS, ctx: Any) -> Any:
        seen.append((ctx.dataset, list(ctx.images)))
        return real_prepare(self, ctx)

    monkeypatch.setattr(DPS, "prepare", spy)
    path = _write(tmp_path, methods=["dps"], tasks=["inpainting_random50"],
                  tune={**TINY_DOC["tune"], "methods": ["dps"], "grids": {"dps": {"zeta": [0.2, 0.8]}}})
    (rec,) = tuning.tune(profiles.load(path), log=lambda _: None)
    validation = rec["validation"]["images"]
    assert rec["chosen"]["zeta"] in (0.2, 0.8) and len(rec["scores"]) == 2
    expected = f"embedded[resize=64] without validation images {','.join(validation)}"
    assert seen and {name for name, _ in seen} == {expected}
    full = {img.id: img.tensor for img in data.load("embedded", split="train", resize=64)}
    for _, images in seen:
        assert len(images) == len(full) - len(validation)
        assert {min(img.shape[-2:]) for img in images} == {64}
        assert not any(torch.equal(img, full[i]) for img in images for i in validation)
    assert "left out of dps's training set" in rec["validation"]["held_out"]


def test_a_held_out_set_that_misses_its_validation_images_is_refused() -> None:
    held = tuning.HeldOut("embedded", ("not-an-image",))
    with pytest.raises(UserError, match="not all in the training split"):
        held.load()


def plan_device() -> Any:
    from benchmark.run.harness import pick_device

    return pick_device("cpu")


def test_validation_images_are_a_seeded_draw_from_the_training_split() -> None:
    profile = profiles.parse({**TINY_DOC, "tune": {**TINY_DOC["tune"], "images": 5}})
    ids = [img.id for img in tuning.validation_images(profile)]
    assert len(set(ids)) == 5 and set(ids) <= set(data.EMBEDDED_TRAIN)
    assert ids == [img.id for img in tuning.validation_images(profile)]
    other = dataclasses.replace(profile, tune=dataclasses.replace(profile.tune, seed=1))
    assert ids != [img.id for img in tuning.validation_images(other)]
    with pytest.raises(UserError, match="validation images"):
        tuning.validation_images(dataclasses.replace(profile, tune=dataclasses.replace(profile.tune, images=99)))


@requires_shared
def test_tasks_run_only_on_colour_sets_are_tuned_on_the_colour_training_set() -> None:
    """The paper profile: inpainting (dip9) and super-resolution (Set5, Set14) are colour only,
    so their validation images are colour crops of cbsd432; denoising also runs on the gray
    Set12 and BSD68, so it validates on train400 (gray)."""
    paper = profiles.load("paper")
    colour = [tasks.get(t) for t in ("inpainting_random50", "sr_x4", "sr_x4_bicubic")]
    assert all(tuning.colour_only(paper, [t]) for t in colour)
    assert not tuning.colour_only(paper, [tasks.get("denoising_s25")])
    assert not tuning.colour_only(paper, [tasks.get("denoising_s25"), colour[0]])  # a family with a gray set
    picked = tuning.validation_images(paper, colour=True)
    assert {tuple(img.tensor.shape) for img in picked} == {(3, paper.tune.crop, paper.tune.crop)}
    assert {img.id for img in picked} <= {Path(f).stem for f in data.manifests()["cbsd432"].files}
    assert {tuple(img.tensor.shape[:1]) for img in tuning.validation_images(paper)} == {(1,)}
    no_rgb = dataclasses.replace(paper, training=dataclasses.replace(paper.training, rgb=None))
    assert not tuning.colour_only(no_rgb, colour)


def test_tune_then_run_uses_and_records_the_tuned_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    path = _write(tmp_path)
    assert cli.main(["tune", "--profile", path, "--tracking-uri", uri]) == 0
    doc = yaml.safe_load((tmp_path / "tiny_tuned.yaml").read_text())
    chosen = {}
    for rec in doc["records"]:
        assert rec["validation"]["split"] == "train" and len(rec["validation"]["images"]) == 2
        assert [p["params"]["weight"] for p in rec["scores"]] == [0.005, 0.05, 0.5]
        assert rec["chosen"] == max(rec["scores"], key=lambda p: p["value"])["params"]
        assert rec["command"].startswith("python -m benchmark tune") and rec["date"] and rec["commit"]
        chosen[rec["applies_to"]] = rec["chosen"]["weight"]
    assert set(chosen) == {"denoising_s25", "inpainting_random50"}

    results = tmp_path / "results"
    assert cli.main(["run", "--profile", path, "--tracking-uri", uri, "--results", str(results), "--no-progress"]) == 0
    with sqlite3.connect(results / "results.sqlite") as conn:
        rows = conn.execute("SELECT label, task, params FROM records WHERE method = 'tv'").fetchall()
    assert rows and {label for label, _, _ in rows} == {"tv[weight=tuned]"}
    for _, task, params in rows:
        assert yaml.safe_load(params)["weight"] == chosen[task]
    tables = (results / "report" / "tables.md").read_text()
    assert "## Tuned hyperparameters" in tables and "2 of embedded/train" in tables
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("dipbench")
    assert experiment is not None
    tuned_runs = client.search_runs([experiment.experiment_id], "tags.`dipbench.kind` = 'tune'")
    under_parent = [r for r in tuned_runs if r.data.tags.get("mlflow.parentRunId")]
    assert {r.data.params["chosen.weight"] for r in under_parent} == {str(v) for v in chosen.values()}
    # an explicit value in the profile still wins over the tuned one, and the label says so
    pinned = dataclasses.replace(profiles.load(path), method_params={"tv": {"weight": 0.123}})
    instance = next(i for i in plan.method_instances(pinned) if i.name == "tv")
    assert instance.label == "tv[weight=0.123]"
    assert plan.resolved_params(pinned, instance, tasks.get("denoising_s25"))["weight"] == 0.123
    # a second tune of one task replaces its record and keeps the other
    assert cli.main(["tune", "--profile", path, "--tasks", "denoising_s25", "--tracking-uri", uri]) == 0
    assert len(yaml.safe_load((tmp_path / "tiny_tuned.yaml").read_text())["records"]) == 2


@pytest.mark.parametrize(("changes", "message"), [
    ({"tune": {"image": 3}}, "unknown key 'image'"),
    ({"tune": {"images": 0}}, "expected an integer >= 1"),
    ({"tune": {"grids": {"tv": {"weight": []}}}}, "non-empty list"),
    ({"tune": {"grids": {"tv": {"weight": 0.1}}}}, "non-empty list"),
    ({"tune": {"grids": {"tv": {"weight": [0.1, 0.1]}}}}, "listed twice"),
    ({"tune": {"grids": {"tv": {"weight": [-1.0]}}}}, "'weight' must be a number >= 0"),
    ({"tune": {"grids": {"tv": {"tau": [0.1]}}}}, "tv.tau is not tunable"),
    ({"tune": {"grids": {"nope": {"x": [1]}}}}, "unknown method"),
    ({"tune": {"methods": ["trivial"]}}, "declares no tunable parameter"),
    ({"tune": {"methods": ["unet"]}}, "declares no tunable parameter"),
    ({"tune": {"methods": ["dps"], "grids": {"dps": {"zeta": [-1.0]}}}}, "'zeta' must be a number >= 0"),
    ({"method_params": {"tv": {"weight": 0.1}}}, "would override the tuned value"),
    ({"tuned": 5}, "expected text"),
    ({"tuned": "../elsewhere.yaml"}, "leads outside"),
    ({"tuned": "/etc/passwd"}, "relative to the profile's folder"),
])
def test_a_bad_tune_request_exits_2_with_one_line(changes: dict[str, Any], message: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["tune", "--profile", _write(tmp_path, **changes)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "tiny_tuned.yaml").exists()


def test_a_missing_or_malformed_tuned_file_stops_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--profile", _write(tmp_path), "--results", str(tmp_path / "r")]) == 2
    assert "does not exist; run `python -m benchmark tune" in capsys.readouterr().err
    (tmp_path / "tiny_tuned.yaml").write_text(yaml.safe_dump({"records": [{"method": "tv"}]}))
    assert cli.main(["run", "--profile", _write(tmp_path), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "lacks" in err and err.count("\n") == 1
    assert not (tmp_path / "r" / "results.sqlite").exists()


def _test_ids(profile: profiles.Profile) -> set[tuple[str, str]]:
    ids = set()
    for spec in profile.datasets:
        if spec.name == data.EMBEDDED:
            ids |= {(spec.name, i) for i in data.EMBEDDED_TEST}
        else:
            ids |= {(spec.name, Path(f).stem) for f in data.manifests()[spec.name].files}
    return ids


def _train_ids(name: str) -> set[str]:
    if name == data.EMBEDDED:
        return set(data.EMBEDDED_TRAIN)
    manifest = data.manifests()[name]
    assert manifest.role == "train"
    return {Path(f).stem for f in manifest.files}


#: the medical profile's TV on CT runs at 512², 300 steps of a ~4 s projection pair per slice on
#: the 2-core CPU: its weight is left for a GPU (the profile says so); every other task has it
@pytest.mark.parametrize(("name", "left_for_a_gpu"), [("quick", ()), ("quick_full", ()), ("paper", ()), ("ct_cpu", ()),
                                                      ("dps_cpu", ()), ("restoration_cpu", ()), ("robustness", ()),
                                                      ("medical", ("ct_views60", "ct_views30"))])
def test_shipped_tuned_values_trace_to_training_images(name: str, left_for_a_gpu: tuple[str, ...]) -> None:
    """Issue 12's bar: every tuned value of the shipped profiles has a tune record on training
    images, chose the grid's best, still fits the parameters it was tuned with, and no profile
    comment says a value was picked on test images."""
    profile = profiles.load(name)
    values = tuned_values.load(profile)
    assert values.records, f"{name} names no tuned values"
    for rec in values.records:
        val = rec["validation"]
        group = [tasks.get(t) for t in rec["tasks"]]
        # MRI and CT tasks draw from their space's set, colour-only tasks from the colour set
        expected = profile.training.for_space(group[0].space.name).dataset
        if expected == profile.training.dataset and tuning.colour_only(profile, group):
            expected = str(profile.training.rgb)
        assert val["split"] == "train" and val["dataset"] == expected
        assert set(val["images"]) <= _train_ids(val["dataset"])
        if profile.training.for_space(group[0].space.name) is profile.training:  # prepared as ``tune`` says
            assert (val["resize"], val["crop"]) == (profile.tune.resize, profile.tune.crop), rec["applies_to"]
        assert not {(val["dataset"], i) for i in val["images"]} & _test_ids(profile)
        assert rec["chosen"] == max(rec["scores"], key=lambda p: p["value"])["params"]
        assert rec["date"] and rec["commit"] and rec["command"].startswith("python -m benchmark tune")
        assert not set(rec["chosen"]) & set(profile.method_params.get(rec["method"], {}))
        if registry.get(rec["method"]).needs_training:  # tuned on images its training never saw
            # the held-out set's name carries its preparation where it has one (embedded[resize=128])
            held_out = rf"\({re.escape(val['dataset'])}(\[[^\]]*\])? without validation images "
            assert re.search(held_out + re.escape(",".join(val["images"])) + r"\)$", val["held_out"]), val["held_out"]
    for row in tuning.report_rows(profile):
        assert not row.get("stale"), f"{row['method']} {row['applies_to']}: retune, {row['stale']} changed"
    for task_name in set(profile.tasks) - set(left_for_a_gpu):
        assert "weight" in values.params_for("tv", tasks.get(task_name)), f"tv's weight untuned on {task_name}"
    text = Path(profile.source).read_text()
    assert not re.search(r"(picked|chosen|tuned|selected) on (the )?(\w+ )?test", text, re.IGNORECASE)


@pytest.mark.parametrize("name", ["quick", "quick_full", "paper", "ct_cpu", "dps_cpu", "restoration_cpu", "medical",
                                  "robustness"])
def test_the_report_lists_every_tunable_used_untuned(name: str) -> None:
    profile = profiles.load(name)
    values = tuned_values.load(profile)
    rows = tuning.report_rows(profile)
    untuned = {(r["method"], r["applies_to"], r["untuned"]) for r in rows if "untuned" in r}
    for method in plan.selected_methods(profile):
        for task_name in profile.tasks:
            chosen = values.params_for(method, tasks.get(task_name))
            for parameter in registry.get(method).tunable:
                listed = (method, task_name, parameter) in untuned
                assert listed == (parameter not in chosen and tuning.runs_on(profile, method, tasks.get(task_name)))


def test_the_report_lists_no_untuned_value_where_the_method_does_not_run() -> None:
    """quick_full runs DPS on the embedded images only, not on its MRI slices: no row says DPS's
    ζ is untuned on mri_x4; DIP, which runs there, has its budget's record."""
    rows = tuning.report_rows(profiles.load("quick_full"))
    assert not [r for r in rows if r["method"] == "dps" and r["applies_to"] == "mri_x4"]
    assert [r["chosen"] for r in rows if r["method"] == "dip" and r["applies_to"] == "mri_x4"] == [{"iterations": 800}]


def test_an_interrupted_tune_keeps_the_records_it_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tuning.harness_runner

    def interrupted(profile: profiles.Profile, device: Any) -> tuning.Runner:
        run = real(profile, device)

        def stop_on_inpainting(method: str, params: dict[str, Any], task: tasks.Task, images: Any,
                               every: int, held_out: Any) -> list[Any]:
            if task.family == "inpainting":
                raise KeyboardInterrupt
            return run(method, params, task, images, every, held_out)

        return stop_on_inpainting

    monkeypatch.setattr(tuning, "harness_runner", interrupted)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert cli.main(["tune", "--profile", _write(tmp_path), "--tracking-uri", uri]) == 130
    records = yaml.safe_load((tmp_path / "tiny_tuned.yaml").read_text())["records"]
    assert [r["applies_to"] for r in records] == ["denoising_s25"]


def test_a_parameter_added_since_a_record_ran_is_stale_only_off_its_default(tmp_path: Path) -> None:
    """A record written before DIP had `input` ran with its default ("noise"): not stale on the
    quick profile's tasks; a record that held another value is."""
    shipped = profiles.load("quick")
    rec = next(r for r in tuned_values.load(shipped).records if r["method"] == "dip")
    before = {**rec, "fixed": {k: v for k, v in rec["fixed"].items() if k != "input"}}
    other = {**rec, "fixed": {**before["fixed"], "input": "fbp"}}
    (tmp_path / "quick.yaml").write_text(Path(shipped.source).read_text())
    for record, stale in ((before, []), (other, ["input"])):
        (tmp_path / "t.yaml").write_text(yaml.safe_dump({"profile": "quick", "records": [record]}))
        profile = dataclasses.replace(shipped, source=str(tmp_path / "quick.yaml"), tuned="t.yaml")
        rows = [r for r in tuning.report_rows(profile) if "stale" in r]
        assert [r["stale"] for r in rows] == [stale]
