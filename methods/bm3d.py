"""BM3D and CBM3D (Dabov et al., IEEE TIP 2007; Mäkinen, Azzari, Foi, IEEE TIP 2020), the
classical reference every DIP paper compares against, through the authors' PyPI package
``bm3d`` 4.0.3 (free for non-commercial use only: see its licence).

Gray images are denoised by BM3D, colour images by CBM3D (``bm3d_rgb``: grouping in the
luminance of the opponent colour space), at the noise level of the physics
(``physics.noise_model.sigma``, images in [0, 1]). Deblurring uses the package's
regularised-inverse + regularised-Wiener BM3D (``bm3d_deblurring``), which models a circular
convolution: it applies to deepinv's ``BlurFFT``, whose point-spread function is read off the
operator itself (its impulse response), so any kernel the task declares is the one inverted.
BM3D deblurring (Dabov et al., SPIE 2008) is a gray-image method, and the package's multichannel
path fails in its Wiener stage (bm4d 4.x refuses the first stage's estimate as ``stage_arg``):
colour images are deblurred channel by channel, as the method defines it for one channel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import bm3d as bm3d_package
import bm3d.profiles as bm3d_profiles
import deepinv as dinv
import numpy as np
import torch

from benchmark.api import Callback, Method, Reconstruction
from benchmark.core.errors import UserError
from benchmark.registry import register
from methods._noise import noise_sigma

#: the package's parameter sets by name ("np" is the paper's "normal profile")
PROFILES = {
    "np": bm3d_profiles.BM3DProfile, "refilter": bm3d_profiles.BM3DProfileRefilter,
    "vn": bm3d_profiles.BM3DProfileVN, "vn_old": bm3d_profiles.BM3DProfileVNOld,
    "high": bm3d_profiles.BM3DProfileHigh, "deb": bm3d_profiles.BM3DProfileDeb,
}


def package_profile(name: str) -> bm3d_profiles.BM3DProfile:
    """The named parameter set, on one thread: the package's threads aggregate in a varying
    order (its own note), and a benchmark must give the same output for the same input."""
    profile = PROFILES[name]()
    profile.num_threads = 1
    return profile


def point_spread_function(physics: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """The blur kernel of a circular-convolution physics, as ``bm3d_deblurring`` expects it.

    The operator's response to an impulse at pixel (0, 0) is its circular kernel; the package
    centres a ``psf`` by rolling it by round((size − 1) / 2), so the kernel is handed over
    rolled by the same amount (a full-image ``psf``), which makes its FFT exactly the operator's.
    """
    channels, h, w = shape
    impulse = torch.zeros((1, channels, h, w))
    impulse[..., 0, 0] = 1.0
    response = physics.A(impulse).to(torch.float64)
    kernel = response[0, 0].cpu().numpy()
    shift = np.array(np.round([(h - 1) / 2, (w - 1) / 2]), dtype=int)
    return np.roll(kernel, shift, axis=(0, 1))


@contextmanager
def _numpy_trapz() -> Iterator[None]:
    """The PSD analysis of ``bm4d`` (used by ``bm3d_deblurring``) calls ``np.trapz``, which NumPy 2
    renamed ``np.trapezoid``; lend the old name for the call only."""
    missing = not hasattr(np, "trapz")
    if missing:
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if missing:
            del np.trapz  # type: ignore[attr-defined]


@register
class BM3D(Method):
    name = "bm3d"
    family = "baseline"
    summary = "BM3D / CBM3D (Dabov et al. 2007), bm3d package (non-commercial licence): denoising, FFT deblurring."
    citation = (
        'Dabov, Foi, Katkovnik, Egiazarian, "Image denoising by sparse 3-D transform-domain collaborative '
        'filtering", IEEE TIP 2007; Mäkinen, Azzari, Foi, IEEE TIP 2020'
    )
    budgets = {"test": {}, "quick": {}}
    #: profile: the package's parameter set ("np" is the paper's "normal profile")
    defaults = {"profile": "np"}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["profile"] not in PROFILES:
            raise UserError(f"bm3d: profile must be one of {', '.join(PROFILES)}, got {self.params['profile']!r}")

    def skip_reason(self, task: Any, channels: int | None = None) -> str | None:
        if task.family == "denoising":
            return None
        if task.family == "deblurring":
            return None if task.noise_sigma > 0 else "BM3D deblurring needs a noise level above 0"
        return f"the bm3d package denoises and deblurs; task {task.name!r} is {task.family}"

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> Reconstruction:
        if y.dim() != 4 or y.shape[0] != 1:
            raise UserError(f"bm3d reconstructs one image at a time (1×C×H×W), got {tuple(y.shape)}")
        sigma = noise_sigma(physics, "bm3d", noiseless_ok=True)
        channels = int(y.shape[1])
        z = y[0].detach().to(torch.float64).cpu().permute(1, 2, 0).numpy()
        profile = package_profile(self.params["profile"])
        if isinstance(physics, dinv.physics.Denoising):
            if sigma <= 0:
                raise UserError("bm3d: denoising needs a noise level above 0")
            if channels == 3:
                out = bm3d_package.bm3d_rgb(z, sigma, profile=profile)
            else:
                out = np.stack([bm3d_package.bm3d(z[..., c], sigma, profile=profile) for c in range(channels)], -1)
            kind = "cbm3d" if channels == 3 else "bm3d"
        elif isinstance(physics, dinv.physics.BlurFFT):
            psf = point_spread_function(physics, (channels, z.shape[0], z.shape[1]))
            with _numpy_trapz():
                out = np.concatenate([np.atleast_3d(bm3d_package.bm3d_deblurring(z[..., c : c + 1], sigma, psf,
                                                                                  profile=profile))
                                      for c in range(channels)], -1)
            kind = "bm3d-deblurring" if channels == 1 else "bm3d-deblurring per channel"
        else:
            raise UserError(f"bm3d denoises (Denoising) and deblurs (BlurFFT); got {type(physics).__name__} physics")
        x = torch.from_numpy(np.ascontiguousarray(np.atleast_3d(out).transpose(2, 0, 1)))[None]
        return Reconstruction(x=x.to(y.dtype).to(y.device), info={"variant": kind})
