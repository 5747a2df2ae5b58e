"""Issue 13's DPS bar at a CPU budget: DPS (Chung et al., ICLR 2023) with a colour prior the
suite trains on all 432 cbsd432 images, against TV at the paper profile's tuned weights, on
random inpainting and bicubic ×4 super-resolution of Set5, both through the harness.

At this budget the bar holds for inpainting only: measured (one thread, loaded 2-core AMD EPYC)
DPS 31.58 dB against TV 22.59 dB on ``inpainting_random50``, but 25.16 dB against TV's 28.61 dB
on ``sr_x4_bicubic`` (PSNR-Y 27.47 against 30.83). So the test asserts the inpainting win and
that the super-resolution gap stays within ``SR_GAP_DB`` (a regression guard, not the bar);
whether the paper profile's prior beats TV on super-resolution needs a GPU run.

The paper profile's prior (30000 steps of 32 × 64² on a 64-channel, 3-level net) is a GPU's;
this CPU run trains ``BUDGET`` on one thread and samples ``SAMPLING_STEPS`` steps on
``CROP``² centre crops of Set5. It takes about 35 minutes of one core of a loaded 2-core
machine (training, then 5 images per task through each method), so it runs only when asked:

    DIPBENCH_PERF=1 DIPBENCH_DPS_BAR=1 DIPBENCH_CACHE=~/.cache/dipbench \\
        .venv/bin/python -m pytest tests/perf/test_dps_set5.py -s

With a lasting DIPBENCH_CACHE a second run loads the prior and only samples. The figures (both
means per task) are printed in the summary.
"""

from __future__ import annotations

import os
import statistics

import pytest

from benchmark import data, profiles, tasks, tuning
from tests.conftest import requires_shared
from tests.reference import harness_psnr, harness_psnr_trained

#: the stated CPU budget: 3000 Adam steps of 16 patches of 48², a 32-channel, 3-level prior
BUDGET = {"prior_channels": 32, "prior_depth": 3, "prior_patch": 48, "prior_batch": 16, "prior_steps": 3000}
SAMPLING_STEPS = 500
CROP = 64
#: how far DPS may stay behind TV on sr_x4_bicubic at this budget (measured: 3.45 dB)
SR_GAP_DB = 5.0

pytestmark = [
    pytest.mark.perf,
    requires_shared,
    pytest.mark.skipif(not os.environ.get("DIPBENCH_DPS_BAR"), reason="35 minutes of CPU: set DIPBENCH_DPS_BAR=1"),
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.timeout(3 * 3600),
]


def test_dps_with_a_cbsd432_prior_beats_paper_tv_on_set5_inpainting(record_property: pytest.RecordProperty) -> None:
    training = [img.tensor for img in data.load("cbsd432", split="train")]
    test = data.load("set5", crop=CROP)
    tuned = tuning.load(profiles.load("paper"))
    means: dict[str, tuple[float, float]] = {}
    for task in ("inpainting_random50", "sr_x4_bicubic"):
        dps = harness_psnr_trained("dps", {**BUDGET, "sampling_steps": SAMPLING_STEPS}, task, "set5", test,
                                   training, "cbsd432")
        tv = harness_psnr("tv", tuned.params_for("tv", tasks.get(task)), task, "set5", test)
        means[task] = (statistics.fmean(dps), statistics.fmean(tv))
    figures = "; ".join(f"{task}: DPS {d:.2f} dB, TV {t:.2f} dB" for task, (d, t) in means.items())
    figures = f"Set5, {len(test)} centre crops of {CROP}², DPS ({BUDGET}, {SAMPLING_STEPS} steps): {figures}"
    record_property("figures", figures)
    print(figures)
    dps_inpainting, tv_inpainting = means["inpainting_random50"]
    assert dps_inpainting > tv_inpainting, figures
    dps_sr, tv_sr = means["sr_x4_bicubic"]
    assert tv_sr - dps_sr <= SR_GAP_DB, figures
