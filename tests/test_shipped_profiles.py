"""Every profile the suite ships passes every check that runs before any work (names, values,
images each task's metrics can measure, memory), as `benchmark run --profile X` makes them."""

from __future__ import annotations

import json

import pytest

from benchmark import registry
from benchmark.problems import tasks
from benchmark.run import plan, profiles, runner
from tests.conftest import requires_shared


@requires_shared
@pytest.mark.parametrize("name", sorted(profiles.available()))
def test_a_shipped_profile_passes_the_plan_time_checks(name: str) -> None:
    cells, _, by_id, _ = runner.checked_plan(profiles.load(name))
    assert cells, f"profile {name} plans no cell"
    assert {(c.dataset, c.task, c.image_id) for c in cells} <= set(by_id)


RESTORATION = ("deblurring_gaussian", "inpainting_box", "inpainting_text")
#: every method of the CPU profile runs every restoration task, BM3D deblurring only
RESTORATION_METHODS = {"trivial", "tv", "pnp_ffdnet", "dps", "dip", "dip_tv", "dip_eswmv", "dip_esemv", "dip_sv",
                       "dip_holdout", "deep_decoder"}


@requires_shared
@pytest.mark.parametrize("name", ["paper", "restoration_cpu"])
def test_the_paper_and_cpu_profiles_run_deblurring_box_and_text_inpainting(name: str) -> None:
    """On dip9 (colour), with the DIP family, TV, BM3D where it deblurs, PnP-FFDNet and DPS; text
    and box inpainting on the same images, DIP with inpainting.ipynb's settings on both."""
    cells, images = plan.make_plan(profiles.load(name))
    for task in RESTORATION:
        planned = [c for c in cells if c.task == task and c.dataset == "dip9"]
        runs = {c.method for c in planned
                if registry.get(c.method)(**json.loads(c.params_json)).skip_reason(tasks.get(task), 3) is None}
        assert RESTORATION_METHODS <= runs
        assert ("bm3d" in runs) == (task == "deblurring_gaussian")
        assert {c.image_id for c in planned} == {img.id for img in images[("dip9", 1)]}
        assert all(img.tensor.shape[0] == 3 for img in images[("dip9", 1)])

    def dip_params(task: str) -> dict[str, object]:
        return next(json.loads(c.params_json) for c in cells if c.task == task and c.method == "dip")

    assert dip_params("inpainting_text") == dip_params("inpainting_box")
    assert dip_params("inpainting_text")["upsample"] == "nearest"
