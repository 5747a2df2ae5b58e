"""Issue 13's DPS bar at a CPU budget: DPS (Chung et al., ICLR 2023) with a colour prior the
suite trains on all 432 cbsd432 images, against TV at the paper profile's tuned weights, on
random inpainting and bicubic ×4 super-resolution of Set5, both through the harness with the
parameters a paper-profile cell resolves to (DPS's ζ per family, TV's iterations per task).

At this budget the bar does NOT hold: measured (one thread, loaded 2-core AMD EPYC) DPS 30.17 dB
against TV 31.70 dB on ``inpainting_random50`` and 26.08 dB against 28.82 dB on
``sr_x4_bicubic`` (README, "DPS measured on this CPU"). So the test asserts what holds, that
DPS stays within ``MAX_GAP_DB`` of TV per task (a regression guard, not the bar); whether the
paper profile's prior (64 channels, 30000 steps of 32 × 64²) beats TV needs a GPU run.

This CPU run trains ``BUDGET`` on one thread and samples ``SAMPLING_STEPS`` steps on ``CROP``²
centre crops of Set5. It takes about 35 minutes of one core of a loaded 2-core machine
(training 26 minutes, then 5 images per task through each method), so it runs only when asked:

    DIPBENCH_PERF=1 DIPBENCH_DPS_BAR=1 DIPBENCH_CACHE=~/.cache/dipbench \\
        .venv/bin/python -m pytest tests/perf/test_dps_set5.py -s

With a lasting DIPBENCH_CACHE a second run loads the prior and only samples. The figures (both
means per task) are printed in the summary.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

import pytest

from benchmark import data, profiles, registry, tasks, tuning
from tests.conftest import requires_shared
from tests.reference import harness_psnr, harness_psnr_trained

#: the stated CPU budget: 3000 Adam steps of 16 patches of 48², a 32-channel, 3-level prior
BUDGET = {"prior_channels": 32, "prior_depth": 3, "prior_patch": 48, "prior_batch": 16, "prior_steps": 3000}
SAMPLING_STEPS = 500
CROP = 64
#: how far DPS may stay behind TV at this budget (measured: 1.53 dB inpainting, 2.74 dB SR)
MAX_GAP_DB = {"inpainting_random50": 2.5, "sr_x4_bicubic": 4.0}

pytestmark = [
    pytest.mark.perf,
    requires_shared,
    pytest.mark.skipif(not os.environ.get("DIPBENCH_DPS_BAR"), reason="35 minutes of CPU: set DIPBENCH_DPS_BAR=1"),
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.timeout(3 * 3600),
]


def resolved(method: str, task: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The parameters a paper-profile cell runs with: the per-task defaults (DPS's ζ per family,
    TV's iterations) under ``overrides``, as the plan resolves them."""
    return registry.get(method).resolve_params(tasks.get(task), overrides)


def test_dps_with_a_cbsd432_prior_stays_near_paper_tv_on_set5(record_property: pytest.RecordProperty) -> None:
    training = [img.tensor for img in data.load("cbsd432", split="train")]
    test = data.load("set5", crop=CROP)
    tuned = tuning.load(profiles.load("paper"))
    means: dict[str, tuple[float, float]] = {}
    for task in MAX_GAP_DB:
        dps = harness_psnr_trained("dps", resolved("dps", task, {**BUDGET, "sampling_steps": SAMPLING_STEPS}),
                                   task, "set5", test, training, "cbsd432")
        tv = harness_psnr("tv", resolved("tv", task, tuned.params_for("tv", tasks.get(task))), task, "set5", test)
        means[task] = (statistics.fmean(dps), statistics.fmean(tv))
    figures = "; ".join(f"{task}: DPS {d:.2f} dB, TV {t:.2f} dB" for task, (d, t) in means.items())
    figures = f"Set5, {len(test)} centre crops of {CROP}², DPS ({BUDGET}, {SAMPLING_STEPS} steps): {figures}"
    record_property("figures", figures)
    print(figures)
    for task, (dps_mean, tv_mean) in means.items():
        assert tv_mean - dps_mean <= MAX_GAP_DB[task], figures
