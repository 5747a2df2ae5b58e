"""The CT bar of issue 14, measured through the harness (seed 0, CPU): on ct_chest at 60 views
(256²), FBP < TV and FBP < DIP in mean PSNR, on the first 2 test slices.

DIP runs with its CT settings (``methods/_dip/common.py``: the filtered back-projection as the
network's input, no input perturbation, the raw output; Baguer et al. 2020, Barbano et al. 2022)
and the quick network (32 channels). Figures: see the test.
"""

from __future__ import annotations

import statistics

import pytest

from benchmark import registry
from benchmark.problems import data, tasks
from benchmark.run import profiles, tuned_values
from tests.conftest import cpu_bar
from tests.reference import harness_psnr

pytestmark = cpu_bar("DIPBENCH_MEDICAL_BARS", "5 minutes")

#: DIP's steps here: each 256² step costs a projection and its adjoint besides the network
#: (~0.5 s on one shared core), so the test stops well before the budget tuned for the ct_cpu
#: profile on ct_chest_train (tuned/ct_cpu.yaml), where DIP is still rising
CPU_STEPS = 100


def _psnrs(method: str, task: str, images: list[data.Image], **overrides: object) -> list[float]:
    params = {**registry.get(method).resolve_params(tasks.get(task), {}, budget="quick"), **overrides}
    return harness_psnr(method, params, task, "ct_chest", images)


def test_ct_views60_fbp_is_beaten_by_tv_and_by_dip(capsys: pytest.CaptureFixture[str]) -> None:
    """Measured with the photon-count noise (10⁵ photons per ray) and the Hann FBP (1 thread,
    the 2-core EPYC at load ~10 from other jobs; 19.8 min wall): FBP 27.49 dB (28.13 / 26.86), TV
    29.99 dB (31.46 / 28.52; weight 0.001), DIP after 100 steps 27.95 dB (28.93 / 26.98). The TV
    weight and the DIP budget in tuned/ct_cpu.yaml were chosen under the earlier Gaussian
    sinogram noise and Ram-Lak FBP (FBP was then 23.91 dB here, TV 30.78, DIP 28.09): the Hann
    filter lifts FBP by more than the noise model lowers it, so DIP's margin at this CPU cap is
    now under 0.5 dB. With the denoising notebook's noise input, perturbation and EMA, DIP stayed
    below FBP (23.65 dB after 500 steps under the earlier noise)."""
    task = tasks.get("ct_views60")
    tuned = tuned_values.load(profiles.load("ct_cpu"))
    images = data.load("ct_chest", limit=2, resize=256)
    steps = min(CPU_STEPS, tuned.params_for("dip", task)["iterations"])
    runs = {"FBP": _psnrs("trivial", task.name, images), "TV": _psnrs("tv", task.name, images,
                                                                     **tuned.params_for("tv", task)),
            f"DIP ({steps} steps)": _psnrs("dip", task.name, images, iterations=steps)}
    with capsys.disabled():
        print("\nct_chest 60 views (2 slices, 256²): " + ", ".join(
            f"{name} {statistics.fmean(v):.2f} dB ({' / '.join(f'{p:.2f}' for p in v)})" for name, v in runs.items()))
    fbp, tv, dip = (statistics.fmean(v) for v in runs.values())
    assert fbp < tv
    assert fbp < dip
