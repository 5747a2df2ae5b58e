"""Per-image quality metrics on images in [0, 1]: name → function (x_hat, x) → float.

PSNR and SSIM follow scikit-image's definitions (SSIM: Gaussian window σ = 1.5, 11 taps,
population covariance, the default K1/K2), so they can be checked against it; LPIPS is the
original AlexNet v0.1 model of the ``lpips`` package, with weights that work offline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], float]
    higher_is_better: bool
    unit: str = ""


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    return x if x.dim() == 4 else x.unsqueeze(0)


@torch.inference_mode()
def psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """PSNR in dB with data range 1 (inputs are clipped to [0, 1] by the harness)."""
    mse = torch.mean((x_hat.double() - x.double()) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _gaussian_window(sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


@torch.inference_mode()
def ssim(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """Mean SSIM over channels, as ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=1)`` (valid region only)."""
    a, b = _as_batch(x_hat).double(), _as_batch(x).double()
    channels = a.shape[1]
    g = _gaussian_window().to(a.device)
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, -1, -1).contiguous()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean().item())


@torch.inference_mode()
def lpips_distance(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    """LPIPS (AlexNet, v0.1); grayscale images are repeated to three channels."""
    from benchmark.lpips_offline import lpips_model

    a, b = _as_batch(x_hat).float(), _as_batch(x).float()
    if a.shape[1] == 1:
        a, b = a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1)
    model = lpips_model(a.device)
    return float(model(a * 2 - 1, b * 2 - 1).mean().item())


METRICS: dict[str, Metric] = {
    "psnr": Metric("psnr", psnr, higher_is_better=True, unit="dB"),
    "ssim": Metric("ssim", ssim, higher_is_better=True),
    "lpips": Metric("lpips", lpips_distance, higher_is_better=False),
}

#: Metrics that are not image comparisons but are in every record, with their direction.
HIGHER_IS_BETTER: dict[str, bool] = {
    **{m.name: m.higher_is_better for m in METRICS.values()},
    "runtime_s": False,
    "peak_mem_mb": False,
    "throughput": True,
    "train_s": False,
}
