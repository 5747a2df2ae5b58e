"""Plug-and-play half-quadratic splitting with FFDNet as the prior, DPIR-style (Zhang, Li, Zuo,
Zhang, Van Gool, Timofte, "Plug-and-Play Image Restoration with Deep Denoiser Prior", TPAMI 2021).

HQS alternates a data step and a denoising step over N iterations, with the denoiser's noise
level σ_k decreasing log-spaced from 49/255 to σ_end = max(σ, σ_min), and the data weight
α_k = μ σ̃² / σ_k² (σ̃ = max(σ, 0.255/255), μ = 0.23, the paper's values):

    x_k = argmin_x ‖A x − y‖² + α_k ‖x − z_{k−1}‖²     (deepinv's L2 proximal operator: closed
                                                      form for masks and FFT blur, CG otherwise)
    z_k = FFDNet(x_k, σ_k)

The data step needs only the physics, so the method runs on every linear task (inpainting,
super-resolution, deblurring, MRI on its real and imaginary parts, CT); the per-family iteration
counts and σ_min follow the authors' scripts (cszn/DPIR: SR 24 iterations and σ_min = factor/255,
``main_dpir_sisr.py``; deblurring 8, ``main_dpir_deblur.py``; inpainting, which DPIR does not
script, takes its nearest masked-pixel problem, demosaicking: 40 iterations and σ_min =
max(0.6, σ·255)/255, ``main_dpir_demosaick.py``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import deepinv as dinv
import torch
import torch.nn.functional as F

from benchmark.api import Callback, Method, Reconstruction, TrainingContext, TrainingReport
from benchmark.core.errors import UserError
from benchmark.problems import spaces
from benchmark.registry import register
from methods.ffdnet import RELEASED_TRAINING, SDIST, FFDNetDenoiser, released_for, restored_channels


def noise_level(physics: Any) -> float:
    """The Gaussian noise level of ``physics`` on the [0, 1] scale (0 when noiseless)."""
    sigma = getattr(getattr(physics, "noise_model", None), "sigma", None)
    if sigma is None:
        return 0.0
    values = torch.as_tensor(sigma, dtype=torch.float64).ravel()
    if values.numel() == 0 or not torch.all(values == values[0]):
        raise UserError(f"pnp_ffdnet needs one noise level per measurement, got σ = {values.tolist()}")
    return float(values[0])


def schedule(sigma: float, iterations: int, sigma_max255: float, sigma_min255: float,
             mu: float) -> tuple[list[float], list[float]]:
    """(denoiser levels σ_k, data weights α_k), DPIR's ``get_rho_sigma`` with w = 1."""
    start, end = sigma_max255 / 255.0, max(sigma, sigma_min255 / 255.0)
    if iterations == 1:
        levels = [end]
    else:
        step = (math.log10(end) - math.log10(start)) / (iterations - 1)
        levels = [10 ** (math.log10(start) + k * step) for k in range(iterations)]
    floor = max(sigma, 0.255 / 255.0)
    return levels, [mu * floor**2 / s**2 for s in levels]


def masked_fill(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The observed pixels, and the missing ones filled by normalised averaging over a pyramid
    (each pixel from the finest scale that saw any observed pixel): a smooth start for HQS,
    as DPIR starts demosaicking from an interpolation rather than from zeros."""
    mask = mask.expand_as(y).to(y.dtype)
    size = y.shape[-2:]
    estimate = (y * mask).sum((-2, -1), keepdim=True) / mask.sum((-2, -1), keepdim=True).clamp_min(1.0)
    estimate = estimate.expand_as(y)
    factor = 1 << max(int(max(size)).bit_length() - 1, 0)
    while factor >= 1:
        num = F.interpolate(F.avg_pool2d(y * mask, factor, ceil_mode=True), size=size, mode="bilinear")
        den = F.interpolate(F.avg_pool2d(mask, factor, ceil_mode=True), size=size, mode="bilinear")
        estimate = torch.where(den > 1e-3, num / den.clamp_min(1e-3), estimate)
        factor //= 2
    return mask * y + (1 - mask) * estimate


def initial_estimate(y: torch.Tensor, physics: Any) -> torch.Tensor:
    """z_0: the measurement itself where it is an image of the right size (blur), as in DPIR;
    masked pixels filled in (inpainting); the bicubic upsampling for super-resolution (DPIR);
    otherwise the pseudo-inverse (MRI, CT: k-space and sinograms are not images of the space,
    even where their shape is). A pseudo-inverse of a blur would amplify the noise that the
    schedule's first steps trust."""
    back = physics.A_adjoint(y)
    space = spaces.of(physics)
    if space is not spaces.UNIT:
        return space.project(physics.A_dagger(y))
    if isinstance(physics, dinv.physics.Downsampling):  # DPIR starts super-resolution from bicubic
        return F.interpolate(y, size=back.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
    if y.shape != back.shape:
        return physics.A_dagger(y).clamp(0, 1)
    mask = getattr(physics, "mask", None)
    if isinstance(physics, dinv.physics.Inpainting) and isinstance(mask, torch.Tensor):
        return masked_fill(y, mask).clamp(0, 1)
    return y.clamp(0, 1)


@register
class PnPFFDNet(Method):
    name = "pnp_ffdnet"
    family = "data-driven"
    summary = "Plug-and-play HQS with FFDNet (DPIR, Zhang et al. 2021): σ schedule 49/255 → σ, closed-form data step."
    citation = (
        'Zhang, Li, Zuo, Zhang, Van Gool, Timofte, "Plug-and-Play Image Restoration with Deep Denoiser '
        'Prior", IEEE TPAMI 2021 (DPIR)'
    )
    budgets = {"test": {}, "quick": {}, "cpu": {}}
    released_training = RELEASED_TRAINING  # FFDNet's released weights are its denoiser
    uses_y = "as measured in the data steps; the starting estimate made from it is clipped to [0, 1], as DPIR's"
    #: 2: inpainting's σ_min is DPIR's demosaicking value (0.6/255, was 2.55/255)
    revision = 2
    #: iterations: HQS steps; sigma_max/sigma_min: the schedule's ends (0–255 scale); mu: DPIR's 0.23
    defaults = {"iterations": 24, "sigma_max": 49.0, "sigma_min": 2.55, "mu": 0.23}
    task_defaults = {
        "super-resolution": {"iterations": 24, "sigma_min": 4.0},
        "deblurring": {"iterations": 8},
        "inpainting": {"iterations": 40, "sigma_min": 0.6},  # DPIR's demosaicking script
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        if not isinstance(p["iterations"], int) or isinstance(p["iterations"], bool) or p["iterations"] < 1:
            raise UserError(f"pnp_ffdnet: iterations must be a positive integer, got {p['iterations']!r}")
        for key in ("sigma_max", "sigma_min", "mu"):
            if isinstance(p[key], bool) or not isinstance(p[key], (int, float)) or not p[key] > 0:
                raise UserError(f"pnp_ffdnet: {key} must be a positive number, got {p[key]!r}")
        if p["sigma_min"] > p["sigma_max"]:
            raise UserError(f"pnp_ffdnet: sigma_min ({p['sigma_min']}) must not exceed sigma_max ({p['sigma_max']})")
        self.denoiser = FFDNetDenoiser()
        self.fidelity = dinv.optim.data_fidelity.L2()

    def skip_reason(self, task: Any, channels: int | None = None) -> str | None:
        if task.family == "denoising":
            return "on denoising, plug-and-play with FFDNet is FFDNet itself (see ffdnet)"
        return FFDNetDenoiser.skip_reason(task.space, channels)

    def prepare(self, ctx: TrainingContext) -> TrainingReport:
        """Nothing to train: load the released FFDNet weights before any timing; the report says
        what they learnt from."""
        start = time.perf_counter()
        for channels in (1, 3):
            self.denoiser.network(channels, ctx.device)
        return released_for(restored_channels(ctx)).report(time.perf_counter() - start, SDIST.requirement)

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> Reconstruction:
        if not isinstance(physics, dinv.physics.LinearPhysics):
            raise UserError(f"pnp_ffdnet needs a linear forward operator, got {type(physics).__name__}")
        p = self.params
        budget = int(p["iterations"])
        levels, weights = schedule(noise_level(physics), budget, float(p["sigma_max"]), float(p["sigma_min"]),
                                   float(p["mu"]))
        step = 0
        space = spaces.of(physics)
        with torch.no_grad():
            z = initial_estimate(y, physics)
            for step, (sigma_k, alpha_k) in enumerate(zip(levels, weights, strict=True), start=1):
                x = self.fidelity.prox(z, y, physics, gamma=1.0 / alpha_k)
                z = self.denoise(x, sigma_k, space)
                if callback is not None and not callback(step, z):
                    break
        return Reconstruction(x=space.project(z), iterations=step, budget=budget)

    def denoise(self, x: torch.Tensor, sigma: float, space: spaces.ImageSpace) -> torch.Tensor:
        """FFDNet on the image; on a complex MR image, on its real and imaginary parts."""
        return self.denoiser.in_space(x, sigma, space)
