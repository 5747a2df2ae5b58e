"""Super-resolution as the SR literature measures it: MATLAB-bicubic 8-bit low-resolution
images, luma PSNR/SSIM with the border shaved, and the bicubic floor on Set5/Set14."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.problems import data, metrics, tasks
from benchmark.run.harness import run_cells
from benchmark.run.plan import Cell
from benchmark.run.pool import MethodPool
from tests.conftest import requires_shared

#: An independent MATLAB-protocol check on the shared Set5/Set14 files (shared datasets README).
BICUBIC_PSNR_Y = {"set5": 28.43, "set14": 26.09}
SR = tasks.get("sr_x4_bicubic")


def _image(seed: int = 0, channels: int = 3, size: tuple[int, int] = (32, 40)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.round(torch.rand(1, channels, *size, generator=g, dtype=torch.float64) * 255) / 255


def _measure(x: torch.Tensor) -> tuple[torch.Tensor, Any]:
    g = tasks.measurement_generator(SR.name, "img", 0, dataset="synthetic")
    physics = SR.physics((x.shape[1], x.shape[2], x.shape[3]), torch.device("cpu"), g)
    return SR.measure(x, physics, g), physics


def test_low_resolution_image_is_8_bit_and_a_quarter_of_each_side() -> None:
    y, _ = _measure(_image())
    assert y.shape == (1, 3, 8, 10)
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(y, torch.round(y * 255) / 255)


def test_downsampling_is_matlabs_antialiased_bicubic() -> None:
    # MATLAB's imresize(x, 1/4) of a constant image is that constant; of a step, antialiased
    # bicubic spreads the edge over 4 low-resolution pixels (a plain decimation would not).
    x = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    x[..., 16:] = 1.0
    y, physics = _measure(x)
    row = y[0, 0, 0]
    assert torch.equal(row[:2], torch.zeros(2)) and torch.equal(row[-2:], torch.ones(2))
    assert 0 < float(row[3]) < 0.5 < float(row[4]) < 1
    assert float(physics.A(torch.full((1, 1, 16, 16), 0.3)).sub(0.3).abs().max()) < 1e-6


def test_luma_is_matlabs_rgb2ycbcr() -> None:
    x = _image(1)
    expected = rgb2ycbcr(x[0].permute(1, 2, 0).numpy())[..., 0] / 255.0
    assert np.allclose(metrics.luma(x)[0, 0].numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_y_metrics_shave_the_border_and_match_skimage(channels: int) -> None:
    x, ctx = _image(2, channels), metrics.MetricContext(task=SR)
    x_hat = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype)).clamp(0, 1)
    a, b = (metrics.luma(t)[0, 0, 4:-4, 4:-4].numpy() for t in (x_hat, x))
    assert metrics.psnr_y(x_hat, x, ctx) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-9)
    expected_ssim = structural_similarity(b, a, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False)
    assert metrics.ssim_y(x_hat, x, ctx) == pytest.approx(expected_ssim, abs=1e-6)
    # errors inside the border only: the shaved metrics do not see them
    ruined = x.clone()
    ruined[..., :4, :] = 1 - ruined[..., :4, :]
    assert metrics.psnr_y(ruined, x, ctx) == float("inf")
    assert metrics.psnr(ruined, x) < 20


def test_y_metrics_apply_to_super_resolution_only() -> None:
    x = _image(4)
    def names(task: tasks.Task) -> set[str]:
        return {m.name for m in metrics.applicable(task)}

    assert {"psnr_y", "ssim_y"} <= names(SR) and {"psnr_y", "ssim_y"} <= names(tasks.get("sr_x4"))
    assert not {"psnr_y", "ssim_y"} & names(tasks.get("denoising_s25"))
    with pytest.raises(ValueError, match="border"):
        metrics.psnr_y(x[..., :8, :8], x[..., :8, :8], metrics.MetricContext(task=SR))


@requires_shared
@pytest.mark.parametrize("dataset", sorted(BICUBIC_PSNR_Y))
def test_bicubic_reproduces_the_literatures_floor(dataset: str, tmp_path: Path) -> None:
    images = data.load(dataset, multiple=SR.size_multiple)
    cells = [Cell("bicubic", "{}", SR.name, dataset, img.id, "full", 0) for img in images]
    pool = MethodPool(list, "none", tmp_path, torch.device("cpu"), progress=False)
    records = [run_cells([cell], [img.tensor], pool, skip_metrics=("lpips",), save_reconstruction=False)[0].record
               for cell, img in zip(cells, images, strict=True)]
    assert all(r.status == "ok" for r in records), [r.error for r in records]
    mean_psnr_y = float(np.mean([r.metrics["psnr_y"] for r in records]))
    assert mean_psnr_y == pytest.approx(BICUBIC_PSNR_Y[dataset], abs=0.05)
    # the RGB PSNR is lower than the luma one (chroma is harder), and SSIM-Y is reported too
    assert all(r.metrics["psnr"] < r.metrics["psnr_y"] and 0 < r.metrics["ssim_y"] < 1 for r in records)


def test_bicubic_skips_other_tasks_and_beats_nothing() -> None:
    from methods.bicubic import Bicubic

    assert Bicubic().skip_reason(tasks.get("denoising_s25"))
    assert Bicubic().skip_reason(SR) is None
    x = _image(5, size=(64, 64))
    y, physics = _measure(x)
    x_hat = Bicubic().reconstruct(y, physics, seed=0)
    assert x_hat.shape == x.shape
    assert metrics.psnr(x_hat.clamp(0, 1), x) > metrics.psnr(torch.zeros_like(x), x)
