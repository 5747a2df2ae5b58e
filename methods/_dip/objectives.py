"""Objectives the DIP loop minimises, and the pixel split of the hold-out rule.

Losses are means over entries per problem (shape (B,)), so a weight such as DIP-TV's does not
depend on the image size, and the plain DIP loss equals the paper's ``MSE(A f(z), y)``.
"""

from __future__ import annotations

from typing import Any

import torch

from methods._dip.loop import Objective, Regulariser


def _per_problem_mean(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).mean(dim=1)


def measurement_loss(physics: Any, y: torch.Tensor, weights: torch.Tensor | None = None) -> Objective:
    """``x ↦ mean((A x − y)²)``, over the entries where ``weights`` is 1 when given (the mean
    still divides by every entry, as the paper's masked MSE does)."""

    def loss(x: torch.Tensor) -> torch.Tensor:
        residual = physics.A(x) - y
        if weights is not None:
            residual = residual * weights
        return _per_problem_mean(residual.square())

    return loss


def total_variation(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Isotropic total variation per problem, the mean of ``|∇x|`` over pixels and channels
    (forward differences, zero across the last row and column; ``eps`` keeps the gradient
    finite on flat regions)."""
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    return _per_problem_mean(torch.sqrt(dx.square() + dy.square() + eps))


def weighted_tv(weight: float) -> Regulariser:
    def regulariser(x: torch.Tensor, _input: torch.Tensor) -> torch.Tensor:
        return weight * total_variation(x)

    return regulariser


def measured_entries(physics: Any, y: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the entries of ``y`` that carry information: those where ``A`` of a
    (seeded) random image is non-zero (for inpainting, the observed pixels; for MRI, the sampled
    k-space lines; otherwise all of them). A constant image would not do: its Fourier transform
    is one DC entry."""
    with torch.no_grad():
        like = physics.A_adjoint(y)
        probe = torch.rand(like.shape, generator=torch.Generator().manual_seed(0)) + 0.5
        response = physics.A(probe.to(device=like.device, dtype=like.dtype))
    return response.abs() > 1e-6


def split_pixels(
    measured: torch.Tensor, fraction: float, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold out a random ``fraction`` of the measured locations of ``measured`` (1×…×H×W), every
    entry of a location together: the C channels of a pixel, or the real and imaginary parts of a
    k-space location in every coil (1×2×N×H×W), which share that location's signal (at least one
    location held out, and at least one kept); a location counts as measured when all its entries
    are. Returns masks ``(fit, held_out)`` of ``dtype`` over the entries, disjoint; their union is
    the measured locations' entries."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    locations = measured.flatten(1, -3).all(dim=1)  # 1×H×W
    flat = locations.flatten().cpu()
    index = flat.nonzero().squeeze(1)
    if index.numel() < 2:
        raise ValueError("a hold-out needs at least two measured locations")
    count = min(max(1, round(fraction * index.numel())), index.numel() - 1)
    order = torch.randperm(index.numel(), generator=generator)
    held = torch.zeros_like(flat)
    held[index[order[:count]]] = True
    shape = (1,) * (measured.dim() - 2) + tuple(measured.shape[-2:])
    held = held.view(shape).to(measured.device).expand_as(measured)
    fit = locations.view(shape).to(measured.device).expand_as(measured) & ~held
    return fit.to(dtype), held.to(dtype)


def held_out_error(physics: Any, y: torch.Tensor, held_out: torch.Tensor) -> Objective:
    """``x ↦ mean((A x − y)²)`` over the held-out entries only (per problem)."""
    count = held_out.flatten(1).sum(dim=1).clamp_min(1.0)

    def error(x: torch.Tensor) -> torch.Tensor:
        residual = (physics.A(x) - y) * held_out
        return residual.square().flatten(1).sum(dim=1) / count

    return error
