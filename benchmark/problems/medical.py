"""The physics of the MRI and CT tasks (declared in ``benchmark.problems.tasks``).

MRI: Cartesian undersampling of the centred, orthonormal 2-D k-space of deepinv's ``MRI``, with
fastMRI's random line masks (Zbontar et al. 2018, ``RandomMaskFunc``): a fully sampled band of
``center_fraction`` of the phase-encoding lines (columns) around the centre, the other lines
kept at random with the probability that makes the expected count W / acceleration; one mask per
measurement, drawn from the measurement's seeded generator. Multi-coil: deepinv's
``MultiCoilMRI`` with simulated sensitivities (:func:`coil_maps`).

CT: deepinv's parallel-beam ``Tomography`` (angles uniform over 180°), normalised to ‖A‖ = 1 so
that every gradient step size that assumes it holds, and ``A_dagger`` the filtered back-projection
with a Hann-windowed ramp filter, the usual clinical choice and the classic sparse-view baseline
(Ram-Lak, the bare ramp, is the named option ``fbp_filter="ram-lak"``; deepinv's default
A_dagger is a slow CG solve). The noise is that of counted photons (:class:`PhotonCounts`).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import deepinv as dinv
import torch
from deepinv.physics.functional.radon import RampFilter

from benchmark.problems.imagefiles import CT_WINDOW_HU

PhysicsFactory = Callable[[tuple[int, int, int], torch.device, torch.Generator], Any]


def fastmri_mask(width: int, acceleration: int, center_fraction: float, g: torch.Generator) -> torch.Tensor:
    """A 1-D line mask (W,) as fastMRI's ``RandomMaskFunc``: ``round(W · center_fraction)``
    central lines always, each other line with probability (W/acc − centre)/(W − centre)."""
    low = int(round(width * center_fraction))
    prob = (width / acceleration - low) / (width - low)
    mask = torch.rand(width, generator=g) < prob
    pad = (width - low + 1) // 2
    mask[pad : pad + low] = True
    return mask.float()


def coil_maps(coils: int, height: int, width: int) -> torch.Tensor:
    """Simulated receive sensitivities (1×coils×H×W, complex64), deterministic: coil k sits at
    angle 2πk/coils on a circle of radius 0.8 (the image spans [−1, 1]²) with a Gaussian magnitude
    of width 0.8 and a linear phase towards its centre, as a birdcage-like array; normalised so
    that Σ_k |S_k|² = 1 at every pixel (so A*A is the zero-filled operator and ‖A‖ ≤ 1)."""
    ys = torch.linspace(-1, 1, height, dtype=torch.float64).view(-1, 1)
    xs = torch.linspace(-1, 1, width, dtype=torch.float64).view(1, -1)
    maps = []
    for k in range(coils):
        angle = 2 * math.pi * k / coils
        cy, cx = 0.8 * math.sin(angle), 0.8 * math.cos(angle)
        magnitude = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * 0.8**2))
        phase = math.pi / 2 * (ys * math.sin(angle) + xs * math.cos(angle)) + angle
        maps.append(magnitude * torch.exp(1j * phase))
    stack = torch.stack(maps)
    stack = stack / stack.abs().square().sum(dim=0, keepdim=True).sqrt()
    return stack[None].to(torch.complex64)


class ZeroFilledMultiCoilMRI(dinv.physics.MultiCoilMRI):
    """``MultiCoilMRI`` whose A_dagger is the zero-filled coil combination A*y (exact inverse on
    fully sampled data since Σ|S_k|² = 1), not deepinv's iterative least-squares solve."""

    def A_dagger(self, y: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.A_adjoint(y)

    def to(self, *args: Any, **kwargs: Any) -> Any:
        """Module.to(float64) would cast the complex sensitivities to real (dropping their phase):
        they follow the real dtype's precision instead."""
        maps = self._buffers.pop("coil_maps", None)  # None: deepinv's __init__ moves it before making them
        moved = super().to(*args, **kwargs)
        if maps is not None:
            precision = torch.complex128 if self.mask.dtype == torch.float64 else torch.complex64
            self.register_buffer("coil_maps", maps.to(device=self.mask.device, dtype=precision))
        return moved


def mri(acceleration: int, center_fraction: float, coils: int = 0) -> PhysicsFactory:
    def build(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
        _, h, w = shape
        mask = fastmri_mask(w, acceleration, center_fraction, g).view(1, w).expand(h, w).clone()
        if coils:
            return ZeroFilledMultiCoilMRI(mask=mask, coil_maps=coil_maps(coils, h, w), img_size=(h, w), device=device)
        return dinv.physics.MRI(mask=mask, img_size=(h, w), device=device)

    return build


class HannFilter(RampFilter):
    """The ramp filter times a Hann window that falls from 1 at zero frequency to 0 at the Nyquist
    frequency, 0.5 (1 + cos(π f / f_N)) (Kak & Slaney, "Principles of Computerized Tomographic
    Imaging", 1988, ch. 3; scikit-image's ``iradon(filter_name="hann")``): it keeps the ramp's low
    frequencies and damps the high ones, where sinogram noise and sparse-view streaks live."""

    def create_filter(self, f: torch.Tensor) -> torch.Tensor:
        bins = torch.arange(f.shape[-1], dtype=torch.float64, device=f.device)
        window = 0.5 * (1 + torch.cos(math.pi * bins / (f.shape[-1] - 1)))  # rfft bins: 0 … Nyquist
        return f * window.to(f.real.dtype)


#: the FBP filters a CT task may name (``tasks.Task.params["fbp_filter"]``)
FBP_FILTERS: dict[str, type[RampFilter]] = {"hann": HannFilter, "ram-lak": RampFilter}


class SparseViewCT(dinv.physics.Tomography):
    """Parallel-beam tomography with ‖A‖ = 1 and the filtered back-projection as A_dagger."""

    #: the FBP's filter, a key of :data:`FBP_FILTERS` (set by :func:`sparse_view_ct`)
    fbp_filter = "hann"

    def A_dagger(self, y: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.fbp(y)

    def A_adjoint(self, y: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if y.dtype != getattr(self, "dtype", None):  # deepinv builds the autograd adjoint in one dtype
            self.dtype, self._auto_grad_adjoint_fn = y.dtype, None
        return super().A_adjoint(y, *args, **kwargs)


@functools.lru_cache(maxsize=8)
def _tomography(width: int, views: int, device: str, fbp_filter: str = "hann") -> SparseViewCT:
    """Building the operator takes seconds (and its norm, a power iteration, more): once per size."""
    angles = torch.linspace(0, 180, views + 1)[:-1]
    physics = SparseViewCT(angles=angles, img_width=width, normalize=False, device=device)
    probe = torch.randn((1, 1, width, width), generator=torch.Generator().manual_seed(0)).to(device)
    norm = physics.compute_norm(probe, squared=False, verbose=False, max_iter=100, tol=1e-5)
    physics._auto_grad_adjoint_fn = None  # deepinv caches the adjoint of A; A now divides by the norm
    physics.register_buffer("operator_norm", torch.as_tensor(float(norm) * 1.0001, device=device))
    physics.normalize = True
    physics.iradon.filter = FBP_FILTERS[fbp_filter]()  # deepinv's fbp filters with iradon's filter
    physics.fbp_filter = fbp_filter
    return physics


def sparse_view_ct(views: int, fbp_filter: str = "hann") -> PhysicsFactory:
    if fbp_filter not in FBP_FILTERS:
        raise ValueError(f"unknown FBP filter {fbp_filter!r}; valid: {', '.join(FBP_FILTERS)}")

    def build(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
        _, h, w = shape
        if h != w:
            raise ValueError(f"the CT tasks need square images, got {h}×{w}")
        return copy.deepcopy(_tomography(w, views, str(device), fbp_filter))

    return build


@dataclass(frozen=True)
class PhotonCounts:
    """CT noise as counted photons, the model of low-dose CT benchmarks (LoDoPaB-CT, Leuschner et
    al., Scientific Data 2021: Poisson counts of 4096 photons per detector pixel before the log).

    Attenuation: an image value x (the HU window [-1024, 1024] in [0, 1]) is the attenuation
    μ = μ_water (HU + 1024) / 1000 = μ_water · 2.048 x, with μ_water = 0.02 mm⁻¹ (water at about
    70 keV; LoDoPaB-CT's 20 m⁻¹): linear in x, zero at the window's lower end, so air (-1000 HU)
    gets 2.4% of water's attenuation, a stated simplification that keeps the line integrals
    linear in the image. The image spans a field of view of ``field_of_view`` mm whatever its
    pixel count (the test slices' 512 pixels of ~0.78 mm), so a ray's line integral
    p = Σ μ Δ (Δ = field_of_view / width) does not depend on the resolution.

    Counts: each ray (one detector bin of one view) gets ``photons`` = I0 photons unattenuated,
    N ~ Poisson(I0 e^{-p}); zero counts are set to ``min_count`` (as LoDoPaB-CT does) and the
    post-log value p̂ = −log(N / I0) is divided by the scale s = μ_max Δ ‖R‖ that makes it the
    normalised operator's measurement: y = p̂ / s ≈ A x + noise of variance e^{p} / (I0 s²) (the
    post-log Gaussian approximation). The dose is I0 per ray: a 30-view scan gets half the
    photons of a 60-view one (half the dose).
    """

    photons: float
    mu_water_per_mm: float = 0.02
    field_of_view_mm: float = 400.0
    min_count: float = 0.1

    @property
    def mu_max_per_mm(self) -> float:
        """The attenuation of image value 1 (the window's upper end, +1024 HU)."""
        low, high = CT_WINDOW_HU
        return self.mu_water_per_mm * (high - low) / 1000.0

    def scale(self, physics: Any, width: int) -> float:
        """s: the line integral p of a ray per unit of the normalised operator's measurement A x."""
        return self.mu_max_per_mm * self.field_of_view_mm / width * float(physics.operator_norm)

    def measure(self, clean: torch.Tensor, physics: Any, width: int, generator: torch.Generator) -> torch.Tensor:
        """The post-log measurement of the clean sinogram ``clean`` = A x, counts drawn from
        ``generator`` (CPU) from rates in float32 whatever the dtype of x."""
        s = self.scale(physics, width)
        rates = self.photons * torch.exp(-(clean.detach().float() * s).clamp_min(0)).cpu()
        counts = torch.poisson(rates, generator=generator).clamp_min(self.min_count)
        y = -torch.log(counts / self.photons) / s
        return y.to(device=clean.device, dtype=clean.dtype)

    def sigma(self, y: torch.Tensor, physics: Any, width: int) -> float:
        """The post-log noise's root-mean-square standard deviation over the rays, as a scanner
        knows it from its counts (from y itself: √(e^{s y} / I0) / s per ray), in y's units."""
        s = self.scale(physics, width)
        variance = torch.exp(y.detach().double() * s) / self.photons / s**2
        return float(variance.mean().sqrt())


def equispaced_mask(width: int, acceleration: int, center_fraction: float, g: torch.Generator) -> torch.Tensor:
    """A 1-D line mask (W,) as fastMRI's ``EquispacedMaskFractionFunc`` (deepinv's
    ``EquispacedMaskGenerator``): the ``round(W · center_fraction)`` central lines of
    :func:`fastmri_mask`, and lines at a spacing adjusted for them, acc·(c − W)/(c·acc − W), from a
    random offset, so that the total is W / acceleration lines, as the random mask's expected count.
    fastMRI's ``EquispacedMaskFunc`` spaces the lines by the acceleration itself and so samples more
    lines than W / acceleration: it would change the sampling rate along with the pattern."""
    low = int(round(width * center_fraction))
    spacing = acceleration * (low - width) / (low * acceleration - width)
    offset = int(torch.randint(0, max(1, round(spacing)), (1,), generator=g).item())
    mask = torch.zeros(width, dtype=torch.bool)
    mask[torch.arange(offset, width - 1, spacing, dtype=torch.float64).round().long()] = True
    pad = (width - low + 1) // 2
    mask[pad : pad + low] = True
    return mask.float()


def mri_equispaced(acceleration: int, center_fraction: float) -> PhysicsFactory:
    """Single-coil MRI with :func:`equispaced_mask` lines (the offset drawn per measurement)."""
    def build(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
        _, h, w = shape
        mask = equispaced_mask(w, acceleration, center_fraction, g).view(1, w).expand(h, w).clone()
        return dinv.physics.MRI(mask=mask, img_size=(h, w), device=device)

    return build
