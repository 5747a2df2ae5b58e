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
    # each prepared as the profile says: the smoke profile crops to 64, and resizes its embedded
    # training images like its embedded test images (64); the folder's images are not resized
    assert trained == {("embedded", "embedded[crop=64,resize=64]"), ("mine", "cbsd432[crop=64]")}
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
    assert {c.training for c in plan.make_plan(colour_only)[0]} == {"cbsd432[crop=64]"}
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


def _scaled_doc(**training: object) -> dict[str, object]:
    return {"name": "scaled", "methods": ["unet"], "tasks": ["denoising_s25"], "budget": "test",
            "datasets": [{"name": "embedded", "resize": 96, "crop": 32, "limit": 1}],
            "training": {"dataset": "embedded", **training}}


@requires_shared
def test_trained_methods_learn_at_the_scale_they_are_tested_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """By default a training set is resized like the test images it serves (their entry's
    resize: shorter side 96 here, not the embedded images' native 512): the U-Net gets those
    images, its patches cut from them; the preparation names the training set, so it is part of
    each cell's key and of the checkpoint's cache key."""
    from methods.unet import SupervisedUNet

    seen: list[tuple[str, list[tuple[int, ...]]]] = []
    real_prepare = SupervisedUNet.prepare

    def spy(self: SupervisedUNet, ctx: object) -> object:
        seen.append((ctx.dataset, [tuple(img.shape) for img in ctx.images]))  # type: ignore[attr-defined]
        return real_prepare(self, ctx)  # type: ignore[arg-type]

    monkeypatch.setattr(SupervisedUNet, "prepare", spy)
    profile = profiles.parse(_scaled_doc())
    cells, _ = plan.make_plan(profile)
    assert {c.training for c in cells} == {"embedded[resize=96]"}
    summary = runner.run_benchmark(profile, results_dir=tmp_path / "r", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                                   progress=False)
    assert not summary.failed and summary.ran == 1
    ((name, shapes),) = seen
    assert name == "embedded[resize=96]" and len(shapes) == 13
    assert {min(shape[-2:]) for shape in shapes} == {96}
    native = plan.make_plan(profiles.parse(_scaled_doc(resize="native")))[0]
    assert {c.training for c in native} == {"embedded"} and native[0].key != cells[0].key
    assert {min(t.shape[-2:]) for t in profiles.PreparedSet.from_name("embedded").load()} != {96}
    explicit = plan.make_plan(profiles.parse(_scaled_doc(resize=64, crop=48)))[0]
    assert {c.training for c in explicit} == {"embedded[crop=48,resize=64]"}  # an explicit resize wins
    cropped = profiles.PreparedSet.from_name("embedded[crop=48,resize=64]").load()
    assert {tuple(t.shape) for t in cropped} == {(1, 48, 48)}


def test_the_training_resize_key_is_checked() -> None:
    for bad in ("big", 0, True, 1.5):
        with pytest.raises(UserError, match=r"training: resize: expected test \(like the test images\), native"):
            profiles.parse(_scaled_doc(resize=bad))
    assert profiles.parse(_scaled_doc()).training.resize == profiles.FOLLOW_TEST
    with pytest.raises(UserError, match="not a training set name"):
        profiles.PreparedSet.from_name("embedded[zoom=2]")
