"""The medical report as a reader sees it: a tiny MRI + CT run through the whole pipeline, its
report opened in headless Chromium: tables with rows, the data-efficiency figure (U-Net and DPS
lines up to the whole training set, untrained bands) and example reconstructions (magnitude
PNGs) of both modalities, and no LPIPS column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark import cli
from benchmark.results import statistics as stats
from benchmark.results.store import ResultsStore
from benchmark.run import plan, profiles, runner
from benchmark.run.profiles import parse
from reports import data_efficiency, plots
from tests.conftest import requires_shared
from tests.test_report_browser import CHROMIUM, report_page, screenshot_dir

pytestmark = [pytest.mark.slow, requires_shared]

PROFILE = {
    "name": "medical_tiny", "budget": "test", "trajectory_every": 5, "batch_size": 1,
    # the medical profile's sweep in small: each trained method on 1 slice and (its default
    # instance) the whole training set, 40 MRI / 80 CT slices: a line of two points
    "methods": ["trivial", "tv", "unet", "unet[train_images=1]", "dps", "dps[train_images=1]"],
    "tasks": ["mri_x4", "ct_views60"],
    "datasets": [{"name": "mri_brain", "resize": 32, "limit": 2, "tasks": ["mri_x4"]},
                 {"name": "ct_chest", "resize": 32, "limit": 2, "tasks": ["ct_views60"]}],
    "training": {"dataset": "embedded", "spaces": {"mri": {"dataset": "mri_brain_train", "resize": 32},
                                                   "ct": {"dataset": "ct_chest_train", "resize": 32}}},
}


@pytest.fixture(scope="module")
def medical_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("medical")
    profile = parse(PROFILE)
    summary = runner.run_benchmark(profile, results_dir=tmp / "results", tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}",
                                   progress=False, report=cli.report_builder(profile))
    assert summary.planned == 6 * 2 * 2 and not summary.failed and not summary.skipped, summary.failed
    return tmp / "results"


def test_medical_cells_are_measured_in_their_space(medical_run: Path) -> None:
    frame = ResultsStore(medical_run / "results.sqlite").frame()
    assert (frame.status == "ok").all()
    assert frame.psnr.notna().all() and frame.ssim.notna().all()
    assert frame.lpips.isna().all()  # not meaningful on MR magnitudes or CT windows
    for method in ("unet", "dps"):
        for task, whole in (("mri_x4", 40), ("ct_views60", 80)):
            assert set(frame[(frame.method == method) & (frame.task == task)].train_images) == {1, whole}
    truth = np.asarray(Image.open(next((medical_run / "recons" / "mri_brain" / "mri_x4").glob("*_truth.png"))))
    assert truth.ndim == 2 and truth.max() == 255  # one magnitude channel, scaled by its largest value


def test_the_data_efficiency_figure_has_both_trained_lines_and_the_bands_per_task(medical_run: Path) -> None:
    """What the figure draws, per task: a U-Net and a DPS line through 1 and all the training
    slices (40 MRI, 80 CT), and the untrained methods as bands at zero."""
    frame = stats.normalize(ResultsStore(medical_run / "results.sqlite").frame())
    curves = data_efficiency._curves(frame, "psnr")
    trained, untrained = curves.trained, curves.untrained
    for task, dataset, whole in (("mri_x4", "mri_brain", 40), ("ct_views60", "ct_chest", 80)):
        lines = trained[(trained.task == task) & (trained.dataset == dataset)]
        assert {m: sorted(part.n_train) for m, part in lines.groupby("method")} == {
            "dps": [1, whole], "unet": [1, whole]}, task
        assert set(untrained[untrained.task == task].method) == {"trivial", "tv"}
    assert data_efficiency.figure(frame, plots.method_palette(frame["method"])) is not None
    assert (medical_run / "report" / "figures" / "data-efficiency.png").exists()


def test_the_medical_profile_sweeps_every_training_set_size() -> None:
    """The shipped profile: U-Net and DPS on 1, 4, 10 slices and on the whole training set (the
    default instance), on every MRI and CT task, each learning from its modality's slices."""
    cells, _ = plan.make_plan(profiles.load("medical"))
    for method in ("unet", "dps"):
        for task in ("mri_x4", "mri_x8", "mri_multicoil_x4", "ct_views60", "ct_views30"):
            mine = [c for c in cells if c.method == method and c.task == task]
            assert {c.params.get("train_images") for c in mine} == {1, 4, 10, None}, (method, task)
            assert {c.training for c in mine} == {"ct_chest_train" if task.startswith("ct") else "mri_brain_train"}


def test_medical_report_renders_in_chromium(medical_run: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium")
    index = medical_run / "report" / "index.html"
    shot = screenshot_dir(tmp_path) / "medical_report.png"
    with report_page(index, shot) as page:
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
        headers = page.eval_on_selector_all("table#comparison th", "els => els.map(e => e.textContent)")
        rows = page.eval_on_selector_all("table#comparison tbody tr", "els => els.length")
    assert all(complete and width > 0 for _, complete, width in images), images
    alts = " ".join(alt for alt, _, _ in images)
    assert "quality vs training images" in alts
    assert "examples mri_x4" in alts and "examples ct_views60" in alts, alts
    assert rows >= 3 and not any("LPIPS" in h for h in headers), headers
    assert shot.stat().st_size > 10_000
