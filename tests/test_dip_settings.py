"""DIP's per-task settings are the official notebooks', and per-task defaults may depend on the task."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from benchmark.api import Method
from benchmark.core.errors import UserError
from benchmark.problems import tasks
from methods._dip import common
from methods._dip.loop import LoopSettings
from methods._dip.networks import DeepDecoder, decoder_parameter_count, decoder_width_for, parameter_count
from methods.deep_decoder import DENOISING_RATIO, INPAINTING_RATIO, DeepDecoderMethod
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
    text = _dip("inpainting_text")  # inpainting.ipynb's kate (text) net, 32 noise channels as input
    assert (text["lr"], text["iterations"], text["skip_channels"], text["upsample"], text["ema"]) == (
        0.01, 6000, 128, "nearest", 0.0)
    assert (text["channels"], text["scales"], text["input_channels"], text["input"]) == (128, 5, 32, "noise")
    assert text["reg_noise_std"] == pytest.approx(0.03)
    assert _dip("inpainting_box") == text  # the box takes the text masks' settings
    assert DipESWMV.resolve_params(tasks.get("inpainting_text"), {})["iterations"] >= 6000
    sr = _dip("sr_x4")
    assert (sr["iterations"], sr["reg_noise_std"], sr["ema"]) == (2000, 0.03, 0.0)  # no averaging for SR


def test_profile_overrides_win_and_stopping_variants_keep_the_task_settings() -> None:
    assert DeepImagePrior.resolve_params(tasks.get("denoising_s50"), {"reg_noise_std": 0.0})["reg_noise_std"] == 0.0
    es = DipESWMV.resolve_params(tasks.get("denoising_s50"), {})
    assert es["reg_noise_std"] == pytest.approx(1 / 20) and es["iterations"] >= 5000 and es["ema"] == 0.0
    assert DipESWMV.resolve_params(tasks.get("inpainting_random50"), {})["iterations"] == 11000


def test_the_mri_lr_chosen_with_the_quick_network_survives_the_quick_budget() -> None:
    """DIP's MRI lr (0.003) was chosen at the quick network's sizes: the quick budget's lr 0.01
    (which undoes the inpainting notebook's 0.001) replaces it on no MRI task, and nowhere else."""
    for budget in ("paper", "quick"):
        assert DeepImagePrior.resolve_params(tasks.get("mri_x4"), {}, budget)["lr"] == 0.003
        assert DeepImagePrior.resolve_params(tasks.get("mri_x8"), {}, budget)["lr"] == 0.003
    assert DeepImagePrior.resolve_params(tasks.get("inpainting_random50"), {}, "quick")["lr"] == 0.01
    assert DeepImagePrior.resolve_params(tasks.get("denoising_s25"), {}, "quick")["lr"] == 0.01
    assert DeepImagePrior.resolve_params(tasks.get("mri_x4"), {"lr": 0.02}, "quick")["lr"] == 0.02  # a profile wins


class _SigmaScaled(Method):
    name = "test_sigma_scaled"
    budgets = {"test": {}, "quick": {}}
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


def test_dip_on_ct_fits_from_the_filtered_back_projection_without_perturbation_or_averaging() -> None:
    for method in (DeepImagePrior, DipESWMV):  # every skip-network variant gets the CT settings
        params = method.resolve_params(tasks.get("ct_views30"), {})
        assert (params["input"], params["reg_noise_std"], params["ema"]) == ("fbp", 0.0, 0.0)
    assert _dip("denoising_s25")["input"] == "noise"
    task = tasks.get("ct_views60")
    generator = torch.Generator().manual_seed(0)
    physics = task.physics((1, 32, 32), torch.device("cpu"), generator)
    x = torch.rand(1, 1, 32, 32, generator=generator)
    y = task.measure(x, physics, generator)
    params = {**_dip("ct_views60"), "channels": 8, "scales": 3}
    setup = common.skip_setup(params, y, physics, seed=0)
    assert torch.equal(setup.z, physics.A_dagger(y).clamp(0, 1))  # 32 = a multiple of 2**3: no padding
    assert setup.noise is None and setup.network(setup.z).shape == (1, 1, 32, 32)
    padded = common.skip_setup({**params, "scales": 5}, y, physics, seed=0)  # 2 pixels left at the 5th scale
    assert padded.z.shape[-2:] == (64, 64) and torch.equal(padded.z[..., 16:48, 16:48], setup.z)
    with pytest.raises(UserError, match="'input' must be one of noise, fbp"):
        DeepImagePrior(**{**params, "input": "zeros"})


@pytest.mark.parametrize("side", [64, 256])
@pytest.mark.parametrize("channels", [1, 3])
def test_deep_decoder_is_sized_under_the_stated_ratio(side: int, channels: int) -> None:
    ratio = DENOISING_RATIO
    k = decoder_width_for(ratio, channels, side, side, scales=5)
    values = channels * side * side
    net = DeepDecoder(channels, k, scales=5)
    assert parameter_count(net) == decoder_parameter_count(k, 5, channels)
    assert parameter_count(net) / values <= ratio  # under-parameterised as stated
    assert decoder_parameter_count(k + 1, 5, channels) / values > ratio  # and as wide as the ratio allows
    assert parameter_count(net) / values > 0.7 * ratio


def test_deep_decoder_ratios_are_the_authors_configurations() -> None:
    assert DENOISING_RATIO == pytest.approx(100224 / 786432)  # k=128 on a 512x512 RGB image
    assert DENOISING_RATIO == pytest.approx(0.127, abs=5e-4)
    assert INPAINTING_RATIO == pytest.approx(397312 / 1048576)  # k=256 on the 512x512 RGBA poster
    params = DeepDecoderMethod.resolve_params(tasks.get("inpainting_random50"), {})
    assert (params["lr"], params["iterations"], params["reg_noise_std"], params["reg_noise_decay_every"]) == (
        0.0025, 40000, 0.005, 500)


def test_deep_decoder_records_its_width_and_ratio() -> None:
    task = tasks.get("denoising_s25")
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    physics = task.physics((1, 64, 64), torch.device("cpu"), torch.Generator().manual_seed(0))
    method = DeepDecoderMethod(**{**DeepDecoderMethod.resolve_params(task, {}), "iterations": 3})
    result = method.reconstruct(task.measure(x, physics, torch.Generator().manual_seed(1)), physics, seed=0)
    assert result.info["channels_k"] == decoder_width_for(DENOISING_RATIO, 1, 64, 64, 5) == 8
    assert result.info["parameters_per_value"] <= DENOISING_RATIO


def test_input_perturbation_decays_as_the_authors_schedule() -> None:
    settings = LoopSettings(lr=0.01, reg_noise_std=0.005, reg_noise_decay=0.7,
                            reg_noise_decay_every=500)
    assert settings.noise_std(1) == pytest.approx(0.0035)  # decayed before the first step, as in their fit()
    assert settings.noise_std(500) == pytest.approx(0.0035)
    assert settings.noise_std(501) == pytest.approx(0.00245)
    assert LoopSettings(lr=0.01, reg_noise_std=0.03).noise_std(9) == 0.03
