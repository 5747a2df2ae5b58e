"""The DIP loop's mixed-precision option: the forward pass under autocast, the rest float32."""

from __future__ import annotations

import pytest
import torch

from benchmark.core import seeding
from benchmark.problems import metrics
from methods._dip import loop, streams
from methods._dip.networks import SkipNet
from methods._dip.objectives import measurement_loss


class _Identity:
    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 - deepinv's name
        return x


def _fit(precision: str) -> torch.Tensor:
    truth = torch.linspace(0, 1, 32 * 32).reshape(1, 1, 32, 32)
    y = truth + 0.1 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))
    net = seeding.seeded_build(lambda: SkipNet(4, 1, 8, 2, 3), 0, "network")
    z = torch.rand((1, 4, 32, 32), generator=seeding.generator(0, "input")) * 0.1
    settings = loop.LoopSettings(0.01, reg_noise_std=1 / 30, precision=precision)
    result = loop.fit_one(net, z, measurement_loss(_Identity(), y), settings, size=(32, 32), iterations=40,
                          stream=streams.Ema(0.9), noise=seeding.generator(0, "perturbation"))
    assert result.x.dtype == torch.float32  # the iterate the caller gets is float32 either way
    return result.x


def test_bf16_autocast_fits_about_as_well_as_float32(one_thread) -> None:  # type: ignore[no-untyped-def]
    truth = torch.linspace(0, 1, 32 * 32).reshape(1, 1, 32, 32)
    full, mixed = metrics.psnr(_fit("fp32"), truth), metrics.psnr(_fit("bf16"), truth)
    # the measurement is at 20 dB: both denoise it, bf16's 8-bit mantissa costs at most a few dB here
    assert full > 25 and mixed > 25 and abs(mixed - full) < 3, (full, mixed)


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16"):
        loop.LoopSettings(0.01, precision="fp8")
