"""The CT bar of issue 14, measured through the harness (seed 0, CPU).

- ct_chest, 60 views at 256²: FBP < TV in mean PSNR (first 2 test slices); FBP < DIP is not
  met with the quick DIP budget (see the test).
"""

from __future__ import annotations

import statistics

import pytest
from reference import harness_psnr

from benchmark import data, registry, tasks
from tests.conftest import requires_shared

pytestmark = [pytest.mark.slow, requires_shared]


def _mean(method: str, task: str, dataset: str, images: list[data.Image]) -> float:
    params = registry.get(method).resolve_params(tasks.get(task).family, {}, budget="quick")
    return statistics.fmean(harness_psnr(method, params, task, dataset, images))


def test_ct_views60_fbp_is_beaten_by_tv(capsys: pytest.CaptureFixture[str]) -> None:
    """FBP < TV. FBP < DIP is not met on a CPU budget: DIP with the quick network and 500
    iterations reached 23.65 dB against FBP's 23.90 on these 2 slices (24.76/22.55 against
    24.27/23.53), still rising; it is not asserted here."""
    images = data.load("ct_chest", limit=2, resize=256)
    fbp = _mean("trivial", "ct_views60", "ct_chest", images)
    tv = _mean("tv", "ct_views60", "ct_chest", images)
    with capsys.disabled():
        print(f"\nct_chest 60 views (2 slices, 256²): FBP {fbp:.2f} dB, TV {tv:.2f} dB")
    assert fbp < tv
