"""Which images a trained method learns from: gray test sets the profile's training set, colour
test sets its colour one (``training: {rgb: cbsd432}``), part of each cell's identity; a gray
training set never serves colour images (those cells are skipped, saying how to fix it)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.core.errors import UserError
from benchmark.run import plan, profiles, runner
from tests.conftest import requires_shared

SMOKE = profiles.load("smoke")


def _colour_folder(folder: Path, count: int = 2) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def _profile(tmp_path: Path, methods: list[str], rgb: str | None) -> profiles.Profile:
    colour = profiles.DatasetSpec(name="mine", path=str(_colour_folder(tmp_path / "mine")))
    return dataclasses.replace(
        SMOKE, methods=methods, tasks=["denoising_s25"], datasets=[SMOKE.datasets[0], colour],
        training=dataclasses.replace(SMOKE.training, rgb=rgb),
    )


@requires_shared
def test_colour_sets_train_on_the_colour_set_and_it_is_part_of_the_cell(tmp_path: Path) -> None:
    cells, _ = plan.make_plan(_profile(tmp_path, ["unet", "tv"], rgb="cbsd432"))
    trained = {(c.dataset, c.training) for c in cells if c.method == "unet"}
    assert trained == {("embedded", "embedded"), ("mine", "cbsd432")}
    assert {c.training for c in cells if c.method == "tv"} == {""}  # untrained: no training set
    one = next(c for c in cells if c.method == "unet")
    assert dataclasses.replace(one, training="other").key != one.key


@requires_shared
def test_train_images_is_checked_against_the_set_each_dataset_trains_on(tmp_path: Path) -> None:
    """20 images: fine for the 432 of cbsd432, too many for the 13 of the gray embedded set."""
    profile = _profile(tmp_path, ["unet[train_images=20]"], rgb="cbsd432")
    with pytest.raises(UserError, match=r"train_images = 20 is more than the 13 images of the training set 'embedded'"):
        plan.make_plan(profile)
    colour_only = dataclasses.replace(profile, datasets=profile.datasets[1:])
    assert {c.training for c in plan.make_plan(colour_only)[0]} == {"cbsd432"}
    with pytest.raises(UserError, match=r"unknown training dataset 'nope'"):
        plan.make_plan(dataclasses.replace(profile, training=dataclasses.replace(profile.training, rgb="nope")))


def test_the_profile_key_rgb_is_parsed_and_checked() -> None:
    doc = {"name": "p", "methods": ["unet"], "tasks": ["denoising_s25"], "datasets": ["embedded"],
           "training": {"dataset": "train400", "rgb": "cbsd432"}}
    assert profiles.parse(doc).training.rgb == "cbsd432"
    with pytest.raises(UserError, match="training: rgb"):
        profiles.parse({**doc, "training": {"rgb": "../x"}})


def test_a_gray_training_set_for_colour_images_skips_the_cells_with_the_fix(tmp_path: Path) -> None:
    """No per-channel application of a gray net on colour images: the cells are skipped, not
    failed, and the reason names the profile key that fixes it; gray images still run."""
    profile = _profile(tmp_path, ["unet"], rgb=None)
    profile = dataclasses.replace(profile, datasets=[dataclasses.replace(SMOKE.datasets[0], limit=1),
                                                     profile.datasets[1]])
    summary = runner.run_benchmark(profile, results_dir=tmp_path / "r", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                                   progress=False)
    assert not summary.failed and summary.skipped == 2 and summary.ran == 3
    from benchmark.results.store import ResultsStore

    frame = ResultsStore(tmp_path / "r" / "results.sqlite").frame(summary.keys)
    skipped = frame[frame.status == "skipped"]
    assert set(skipped.dataset) == {"mine"} and set(frame[frame.status == "ok"].dataset) == {"embedded"}
    assert all("training: {rgb: cbsd432}" in e for e in skipped.error)
