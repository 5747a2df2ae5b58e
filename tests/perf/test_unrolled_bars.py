"""Issue 25's bar for the unrolled MRI network, measured through the harness (seed 0, CPU).

MoDL at its quick budget (``methods/modl.py`` ``quick_params``), trained on the 40 mri_brain_train
slices at 128², beats the zero-filled reconstruction and TV (at TV's tuned quick weight for mri_x4,
``benchmark/profiles/tuned/quick.yaml``) in mean PSNR on the first 4 mri_brain test slices at
128², 4× single-coil: the quick profile's MRI cells. ℓ1-wavelet CS at its tuned quick weight is
printed beside them. The training takes minutes of one core: run it alone, with one thread.
"""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from benchmark import registry
from benchmark.problems import data, tasks
from benchmark.run import profiles, tuned_values
from tests.conftest import cpu_bar
from tests.reference import harness_psnr, harness_psnr_trained

pytestmark = cpu_bar("DIPBENCH_MEDICAL_BARS", "3 minutes")

TASK = "mri_x4"


def _quick(method: str) -> dict[str, Any]:
    """The parameters the quick profile gives ``method`` on mri_x4 (its budget and tuned values)."""
    task = tasks.get(TASK)
    tuned = tuned_values.load(profiles.load("quick")).params_for(method, task)
    return registry.get(method).resolve_params(task, tuned, budget="quick")


def test_modl_on_the_40_training_slices_beats_zero_filled_and_tv(capsys: pytest.CaptureFixture[str]) -> None:
    images = data.load("mri_brain", limit=4, resize=128)
    training = [img.tensor for img in data.load("mri_brain_train", split="train", resize=128)]
    assert len(training) == 40
    tv_params = _quick("tv")
    assert tv_params["weight"] == tuned_values.load(profiles.load("quick")).params_for("tv", tasks.get(TASK))["weight"]
    mean = {name: statistics.fmean(harness_psnr(name, _quick(name), TASK, "mri_brain", images))
            for name in ("trivial", "tv", "cs_wavelet")}
    mean["modl"] = statistics.fmean(harness_psnr_trained("modl", _quick("modl"), TASK, "mri_brain", images, training,
                                                         "mri_brain_train"))
    with capsys.disabled():
        print(f"\nmri_brain 4x (4 slices, 128²): zero-filled {mean['trivial']:.2f} dB, TV "
              f"(weight {tv_params['weight']}) {mean['tv']:.2f} dB, l1-wavelet CS {mean['cs_wavelet']:.2f} dB, "
              f"MoDL (40 slices, quick budget) {mean['modl']:.2f} dB")
    assert mean["modl"] > mean["trivial"]
    assert mean["modl"] > mean["tv"]
