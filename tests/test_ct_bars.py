"""The CT bar of issue 14, measured through the harness (seed 0, CPU): on ct_chest at 60 views
(256²), FBP < TV and FBP < DIP in mean PSNR, on the first 2 test slices.

DIP runs with its CT settings (``methods/_dip/common.py``: the filtered back-projection as the
network's input, no input perturbation, the raw output; Baguer et al. 2020, Barbano et al. 2022)
and the quick network (32 channels). Figures: see the test.
"""

from __future__ import annotations

import statistics

import pytest
from reference import harness_psnr

from benchmark import data, profiles, registry, tasks, tuning
from tests.conftest import requires_shared

pytestmark = [pytest.mark.slow, requires_shared]

#: DIP's steps here: each 256² step costs a projection and its adjoint besides the network
#: (~0.5 s on one shared core), so the test stops well before the budget tuned for the ct_cpu
#: profile on ct_chest_train (tuned/ct_cpu.yaml), where DIP is still rising
CPU_STEPS = 150


def _mean(method: str, task: str, images: list[data.Image], **overrides: object) -> float:
    params = {**registry.get(method).resolve_params(tasks.get(task), {}, budget="quick"), **overrides}
    return statistics.fmean(harness_psnr(method, params, task, "ct_chest", images))


def test_ct_views60_fbp_is_beaten_by_tv_and_by_dip(capsys: pytest.CaptureFixture[str]) -> None:
    """FIGURES"""
    task = tasks.get("ct_views60")
    tuned = tuning.load(profiles.load("ct_cpu"))
    images = data.load("ct_chest", limit=2, resize=256)
    fbp = _mean("trivial", task.name, images)
    tv = _mean("tv", task.name, images, **tuned.params_for("tv", task))
    steps = min(CPU_STEPS, tuned.params_for("dip", task)["iterations"])
    dip = _mean("dip", task.name, images, iterations=steps)
    with capsys.disabled():
        print(f"\nct_chest 60 views (2 slices, 256²): FBP {fbp:.2f} dB, TV {tv:.2f} dB, DIP ({steps} steps) "
              f"{dip:.2f} dB")
    assert fbp < tv
    assert fbp < dip
