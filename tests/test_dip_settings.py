"""DIP's per-task settings are the official notebooks', and per-task defaults may depend on the task."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from benchmark import tasks
from benchmark.api import Method
from benchmark.errors import UserError
from methods._dip import common
from methods.dip import DeepImagePrior
from methods.dip_eswmv import DipESWMV


def _dip(task: str) -> dict[str, Any]:
    return DeepImagePrior.resolve_params(tasks.get(task), {})


def test_input_perturbation_is_one_twentieth_at_sigma_50_only() -> None:
    assert _dip("denoising_s50")["reg_noise_std"] == pytest.approx(1 / 20)
    assert _dip("denoising_s25")["reg_noise_std"] == pytest.approx(1 / 30)
    assert _dip("denoising_s15")["reg_noise_std"] == pytest.approx(1 / 30)
    assert {_dip(f"denoising_s{s}")["ema"] for s in (15, 25, 50)} == {0.99}  # the denoising notebook averages


def test_inpainting_and_super_resolution_follow_their_notebooks() -> None:
    random = _dip("inpainting_random50")  # restoration.ipynb, 50% of the pixels missing
    assert (random["lr"], random["iterations"], random["reg_noise_std"], random["ema"]) == (0.001, 11000, 0.03, 0.0)
    assert (random["skip_channels"], random["upsample"]) == (4, "bilinear")
    box = _dip("inpainting_box")  # inpainting.ipynb's text-inpainting net
    assert (box["lr"], box["iterations"], box["skip_channels"], box["upsample"], box["ema"]) == (0.01, 6000, 128,
                                                                                                   "nearest", 0.0)
    sr = _dip("sr_x4")
    assert (sr["iterations"], sr["reg_noise_std"], sr["ema"]) == (2000, 0.03, 0.0)  # no averaging for SR


def test_profile_overrides_win_and_stopping_variants_keep_the_task_settings() -> None:
    assert DeepImagePrior.resolve_params(tasks.get("denoising_s50"), {"reg_noise_std": 0.0})["reg_noise_std"] == 0.0
    es = DipESWMV.resolve_params(tasks.get("denoising_s50"), {})
    assert es["reg_noise_std"] == pytest.approx(1 / 20) and es["iterations"] >= 5000 and es["ema"] == 0.0
    assert DipESWMV.resolve_params(tasks.get("inpainting_random50"), {})["iterations"] == 11000


class _SigmaScaled(Method):
    name = "test_sigma_scaled"
    defaults = {"weight": 1.0}
    task_defaults = {"inpainting_box": {"weight": 3.0}}

    @classmethod
    def defaults_for(cls, task: Any) -> dict[str, Any]:
        scaled = {"weight": task.noise_sigma * 10} if task.family == "denoising" else {}
        return {**super().defaults_for(task), **scaled}


def test_task_defaults_may_be_a_function_of_the_task() -> None:
    assert _SigmaScaled.resolve_params(tasks.get("denoising_s50"), {})["weight"] == pytest.approx(500 / 255)
    assert _SigmaScaled.resolve_params(tasks.get("inpainting_random50"), {})["weight"] == 1.0
    assert _SigmaScaled.resolve_params(tasks.get("inpainting_box"), {})["weight"] == 3.0


def test_nearest_upsampling_network_fits_and_a_bad_mode_is_refused() -> None:
    y = torch.rand(1, 1, 32, 32)
    task = tasks.get("denoising_s25")
    physics = task.physics((1, 32, 32), torch.device("cpu"), torch.Generator().manual_seed(0))
    params = {**common.SKIP_DEFAULTS, "channels": 8, "scales": 3, "skip_channels": 8, "upsample": "nearest"}
    setup = common.skip_setup(params, y, physics, seed=0)
    assert setup.network(setup.z).shape[-2:] == (32, 32)
    with pytest.raises(UserError, match="upsample"):
        common.skip_setup({**params, "upsample": "cubic"}, y, physics, seed=0)
