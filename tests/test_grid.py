"""Parameter grids as a user writes them: ``dip[iterations=500,2000]`` in a profile or on the
command line, ``--set dip.iterations=500``, labels in every table and MLflow run, and bad values
refused with exit 2 before any work."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.core.errors import UserError
from benchmark.problems import tasks
from benchmark.run import grid, plan, profiles

SMOKE = profiles.load("smoke")


def _profile(methods: list[str], **changes: object) -> profiles.Profile:
    return dataclasses.replace(SMOKE, methods=methods, tasks=["denoising_s25"], **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        ("dip", "dip", {}),
        ("dip[iterations=500,2000]", "dip", {"iterations": [500, 2000]}),
        ("dip_tv[tv_weight=0.003,0.01,0.03]", "dip_tv", {"tv_weight": [0.003, 0.01, 0.03]}),
        ("dip[iterations=[500,2000],lr=1e-3]", "dip", {"iterations": [500, 2000], "lr": [0.001]}),
        ("dps[pretrained=ffhq,zeta=0.1,0.2]", "dps", {"pretrained": ["ffhq"], "zeta": [0.1, 0.2]}),
        ("x[flag=true,name='a b',none=null]", "x", {"flag": [True], "name": ["a b"], "none": [None]}),
    ],
)
def test_specs_parse_to_a_name_and_a_grid(text: str, name: str, expected: dict[str, list[object]]) -> None:
    spec = grid.parse_spec(text)
    assert (spec.name, spec.grid) == (name, expected)


@pytest.mark.parametrize("text", ["dip[", "dip]", "dip[iterations]", "dip[500]", "dip[iterations=]", "1dip",
                                  "dip[iterations=5,iterations=6]", "dip[iterations=5]x"])
def test_malformed_specs_are_refused(text: str) -> None:
    with pytest.raises(UserError):
        grid.parse_spec(text)


def test_commas_inside_brackets_belong_to_the_grid() -> None:
    assert grid.split_top_level("tv, dip[iterations=5,10],dip_tv[tv_weight=[0.1,0.2]]") == [
        "tv", "dip[iterations=5,10]", "dip_tv[tv_weight=[0.1,0.2]]"]


def test_a_label_reads_back_as_the_same_instance() -> None:
    params = {"tv_weight": 0.003, "iterations": 500, "pretrained": "ffhq", "flag": False}
    text = grid.label("m", params)
    assert text == "m[flag=false,iterations=500,pretrained=ffhq,tv_weight=0.003]"
    assert grid.parse_spec(text).grid == {k: [v] for k, v in params.items()}


def test_a_grid_expands_to_one_instance_per_combination() -> None:
    instances = plan.method_instances(_profile(["tv", "dip[iterations=5,7,scales=2,3]"]))
    assert [i.label for i in instances] == [
        "tv", "dip[iterations=5,scales=2]", "dip[iterations=5,scales=3]",
        "dip[iterations=7,scales=2]", "dip[iterations=7,scales=3]"]
    cells, _ = plan.make_plan(_profile(["tv", "dip[iterations=5,7,scales=2,3]"]))
    assert len(cells) == 5 * SMOKE.datasets[0].limit  # type: ignore[operator]
    params = {c.label: c.params for c in cells}
    assert params["dip[iterations=7,scales=2]"]["iterations"] == 7
    assert params["dip[iterations=7,scales=2]"]["channels"] == 16  # the rest from the test budget


def test_a_label_shows_only_what_differs_from_the_budget_defaults() -> None:
    # 60 iterations is dip's test budget: not shown (and the same cells as plain `dip`)
    labels = [i.label for i in plan.method_instances(_profile(["dip[iterations=60,lr=0.02]"]))]
    assert labels == ["dip[lr=0.02]"]
    cells, _ = plan.make_plan(_profile(["dip", "dip[iterations=60]"]))
    assert {c.label for c in cells} == {"dip"}


def test_set_overrides_one_value_of_every_instance() -> None:
    profile = _profile(["dip[scales=2,3]", "tv"], settings={"dip": {"iterations": [9]}})
    instances = plan.method_instances(profile)
    assert [i.label for i in instances] == ["dip[iterations=9,scales=2]", "dip[iterations=9,scales=3]", "tv"]
    task = tasks.get("denoising_s25")
    assert all(plan.resolved_params(profile, i, task)["iterations"] == 9 for i in instances if i.name == "dip")
    with pytest.raises(UserError, match="--set names method 'dps', which this run does not include"):
        plan.method_instances(_profile(["tv"], settings={"dps": {"steps": [3]}}))


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        (["dip[iterations=0]"], "method 'dip': parameter 'iterations' must be an integer >= 1, got 0"),
        (["dip[iterations=many]"], "method 'dip': parameter 'iterations' must be an integer, got 'many'"),
        (["dip[iterations=1.5]"], "method 'dip': parameter 'iterations' must be an integer, got 1.5"),
        (["dip_tv[tv_weight=-1]"], "method 'dip_tv': parameter 'tv_weight' must be a number >= 0, got -1"),
        (["dip_holdout[holdout=1.0]"], "method 'dip_holdout': parameter 'holdout' must be a fraction in \\(0, 1\\)"),
        (["dip_sv[ae_setting=fast]"], "method 'dip_sv': parameter 'ae_setting' must be one of authors, cpu"),
        (["tv[tau=3]"], "method 'tv': parameter 'tau' must be a number in \\(0, 2\\), got 3"),
        (["dip[iteratoins=5]"], "method 'dip' has no parameter 'iteratoins'; valid parameters: .*iterations"),
        (["dps[pretrained=celeba]"], "method 'dps': parameter 'pretrained' must be one of ffhq, imagenet"),
        (["dncnn[model_sigma=17]"], "method 'dncnn': parameter 'model_sigma' must be 'auto' or one of"),
    ],
)
def test_a_bad_value_is_refused_when_the_plan_is_made(methods: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        plan.make_plan(_profile(methods))


def _run(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["run", "--profile", "smoke", "--tasks", "denoising_s25", "--no-progress", "--no-report",
                 "--results", str(tmp_path / "res"), "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--methods", "dip[iterations=0,10]"], r"parameter 'iterations' must be an integer >= 1, got 0"),
        (["--methods", "tv", "--set", "tv.iterations=-5"], r"parameter 'iterations' must be an integer >= 1"),
        (["--methods", "tv", "--set", "tv=5"], r"expected METHOD.PARAM=VALUE"),
        (["--methods", "dip[iterations=5"], r"unbalanced '\['"),
        (["--methods", "unet[train_images=0]"], r"parameter 'train_images' must be an integer >= 1"),
        (["--methods", "dps", "--set", "dps.train_images=-2"], r"parameter 'train_images' must be an integer >= 1"),
        (["--methods", "unet[train_images=4,14]"],
         r"unet\[train_images=14\]: train_images = 14 is more than the 13 images of the training set 'embedded'"),
    ],
)
def test_cli_bad_values_exit_2_before_any_work(args: list[str], message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(args, tmp_path, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "res" / "results.sqlite").exists() and not (tmp_path / "ml.db").exists()


def test_a_cli_grid_gives_labelled_rows_and_mlflow_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The bar: --methods "dip_tv[tv_weight=0.003,0.03]" gives two labelled rows in the tables and
    two MLflow child-run groups (tiny budgets: 3 iterations, one image)."""
    code, out, err = _run(["--methods", "dip_tv[tv_weight=0.003,0.03]", "--set", "dip_tv.iterations=3",
                           "--limit", "1"], tmp_path, capsys)
    assert code == 0, err
    labels = ["dip_tv[iterations=3,tv_weight=0.003]", "dip_tv[iterations=3,tv_weight=0.03]"]
    rows = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| dip_tv")]
    assert list(dict.fromkeys(rows)) == labels  # the training-images table, then the task's
    assert "| dip_tv[iterations=3,tv_weight=0.03] | 0 |" in out  # untrained: 0 training images
    with sqlite3.connect(tmp_path / "res" / "results.sqlite") as conn:
        stored = conn.execute("SELECT label, params FROM records ORDER BY label").fetchall()
    assert [s[0] for s in stored] == labels and '"tv_weight": 0.003' in stored[0][1]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'ml.db'}")
    experiment = client.get_experiment_by_name("dipbench")
    runs = client.search_runs([experiment.experiment_id], "tags.`dipbench.kind` = 'result'")
    assert sorted(r.data.tags["label"] for r in runs) == labels
    assert sorted(r.data.params["tv_weight"] for r in runs) == ["0.003", "0.03"]
    assert all(r.info.run_name.startswith(r.data.tags["label"]) for r in runs)
    # `make leaderboard` prints one ranked page per task of this run
    store = f"sqlite:///{tmp_path / 'ml.db'}"
    assert main(["leaderboard", "--tracking-uri", store, "--profile", "smoke", "--no-serve", "--port", "5123"]) == 0
    out = capsys.readouterr().out
    page = r"denoising_s25 · embedded: http://127\.0\.0\.1:5123/#/experiments/\d+/runs\?viewStateShareKey="
    assert re.search(page, out), out
    assert main(["leaderboard", "--tracking-uri", store, "--profile", "quick", "--no-serve"]) == 2
    assert "no benchmark run of profile 'quick'" in capsys.readouterr().err


def test_train_images_is_a_swept_parameter_of_a_trained_method(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``unet[train_images=1,2]``: two instances, two cells per image, the count in the record
    and in the comparison table's "training images" column."""
    code, out, err = _run(["--methods", "unet[train_images=1,2],trivial", "--set", "unet.train_steps=2",
                           "--limit", "1"], tmp_path, capsys)
    assert code == 0, err
    with sqlite3.connect(tmp_path / "res" / "results.sqlite") as conn:
        stored = conn.execute("SELECT label, train_images, status FROM records ORDER BY label").fetchall()
    assert stored == [("trivial", 0, "ok"), ("unet[train_images=1,train_steps=2]", 1, "ok"),
                      ("unet[train_images=2,train_steps=2]", 2, "ok")]
    assert "| unet[train_images=2,train_steps=2] | 2 |" in out


def test_a_dataset_entry_can_run_a_subset_of_the_methods() -> None:
    spec = profiles.DatasetSpec(name="embedded", resize=64, crop=32, limit=2)
    methods = ["trivial", "tv", "dip[iterations=5,10]"]
    every, _ = plan.make_plan(_profile(methods, datasets=[spec]))
    assert sorted({c.label for c in every}) == ["dip[iterations=10]", "dip[iterations=5]", "trivial", "tv"]
    few = dataclasses.replace(spec, methods=["tv", "dip[iterations=5]"])  # by label
    some, _ = plan.make_plan(_profile(methods, datasets=[few]))
    assert sorted({c.label for c in some}) == ["dip[iterations=5]", "tv"]
    by_name = dataclasses.replace(spec, methods=["dip"])  # no instance is labelled dip: every dip instance
    dips, _ = plan.make_plan(_profile(methods, datasets=[by_name]))
    assert sorted({c.label for c in dips}) == ["dip[iterations=10]", "dip[iterations=5]"]
    assert {c.key for c in some} <= {c.key for c in every}  # the same cells, fewer of them


def test_a_dataset_entry_naming_an_unknown_method_is_refused() -> None:
    spec = profiles.DatasetSpec(name="embedded", resize=64, crop=32, limit=2, methods=["tv", "bm4d"])
    with pytest.raises(UserError, match="dataset 'embedded' lists method 'bm4d', which is not a registered method"):
        plan.make_plan(_profile(["tv"], datasets=[spec]))
    narrowed = dataclasses.replace(spec, methods=["tv", "bm3d"])  # bm3d: registered, left out by this run
    cells, _ = plan.make_plan(_profile(["tv"], datasets=[narrowed]))
    assert {c.method for c in cells} == {"tv"}
