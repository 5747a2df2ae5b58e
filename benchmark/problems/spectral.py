"""The error of an image per radial frequency band: the dynamics view of why DIP works.

A convolutional network fitted by gradient descent fits the low spatial frequencies of its target
long before the high ones (spectral bias: Rahaman et al., ICML 2019; for DIP, Chakrabarty & Maji,
arXiv:1912.08905, and Shi et al., IJCV 2022; the neural-tangent-kernel analysis of Heckel &
Soltanolkotabi, ICLR 2020; reviewed by Alkhouri et al. 2025). White noise spreads its energy
evenly over the frequencies, so most of it lies in the high band below, where a natural image has
little (its power falls roughly as 1/|ω|², Field, JOSA A 1987): DIP fits the noise late, and an
early stop keeps the image without it. PSNR per band along the iterations shows this.

Bands of the radial frequency |ω| = √(ωx² + ωy²) in cycles per pixel (each axis reaches 1/2, the
Nyquist frequency), split at octaves: a natural image holds about the same energy per octave, so
each band is about one kind of structure.

- ``low`` [0, 1/8): the coarse layout (up to a quarter of Nyquist), 4.9 % of the frequencies;
- ``mid`` [1/8, 1/4): edges and textures (one octave), 14.7 %;
- ``high`` [1/4, √2/2]: the finest detail (the top octave and the corners), 80.4 %, and so 80 %
  of a white noise's energy.

PSNR of band b: 10 log10(R² · s_b / mean(e_b²)), with e_b the band-passed error, s_b the band's
share of the frequencies and R the data range. A white error has the image's PSNR in every band,
the bands' mean squared errors weighted by their shares add up to the image's, and an error with
no energy in a band has an infinite PSNR there. By Parseval, mean(e_b²) / s_b is the error's mean
power over the band's frequencies (one FFT per image, on the image's device). The band's relative
error ‖e_b‖ / ‖x_b‖ would differ from this by a constant per image: the same curves along the
iterations, only their levels move; the PSNR keeps the suite's one unit and data range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class Band:
    """A ring of radial frequencies [low, high) in cycles per pixel, and its metric's name."""

    metric: str
    label: str
    low: float
    high: float

    def describe(self) -> str:
        """The ring as text, e.g. ``[1/8, 1/4) cycles/pixel`` or ``≥ 1/4 cycles/pixel``."""
        def frac(f: float) -> str:
            return "0" if f == 0 else f"1/{round(1 / f)}"
        ring = f"≥ {frac(self.low)}" if math.isinf(self.high) else f"[{frac(self.low)}, {frac(self.high)})"
        return f"{ring} cycles/pixel"


#: low to high; together they cover every frequency of an image once
BANDS = (
    Band("psnr_low", "low", 0.0, 1 / 8),
    Band("psnr_mid", "mid", 1 / 8, 1 / 4),
    Band("psnr_high", "high", 1 / 4, math.inf),
)


def radial_frequency(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """|ω| in cycles per pixel of each coefficient of an ``height``×``width`` FFT (float64)."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64, device=device)
    fx = torch.fft.fftfreq(width, dtype=torch.float64, device=device)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


@lru_cache(maxsize=32)
def _ring(height: int, width: int, band: Band, device: torch.device) -> tuple[torch.Tensor, int]:
    """The band's FFT coefficients (a boolean mask) and their number, cached per size and device."""
    radius = radial_frequency(height, width, device)
    mask = (radius >= band.low) & (radius < band.high)
    return mask, int(mask.sum())


def share(band: Band, size: int = 512) -> float:
    """The band's share s_b of the frequencies (of a ``size``² image), e.g. 0.80 for ``high``."""
    return _ring(size, size, band, torch.device("cpu"))[1] / size**2


@torch.inference_mode()
def band_mse(x_hat: torch.Tensor, x: torch.Tensor, band: Band) -> float:
    """Mean power of the error ``x_hat − x`` over the band's frequencies, averaged over channels:
    mean(e_b²) / s_b. Raises ValueError when the image is too small to have such a frequency."""
    error = x_hat.double() - x.double()
    height, width = error.shape[-2:]
    mask, count = _ring(int(height), int(width), band, error.device)
    if count == 0:
        raise ValueError(f"an image of {height}×{width} pixels has no frequency in the {band.label} band "
                         f"{band.describe()}")
    power = torch.fft.fft2(error, norm="ortho").abs().square()
    channels = power[..., 0, 0].numel()
    return float(power[..., mask].sum().item()) / (count * channels)


def band_psnr(x_hat: torch.Tensor, x: torch.Tensor, band: Band, data_range: float = 1.0) -> float:
    """PSNR of the error in one band (dB): 10 log10(R² / band_mse); infinite without error there."""
    mse = band_mse(x_hat, x, band)
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)
