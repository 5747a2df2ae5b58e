"""Total-variation regularised reconstruction, the classic model-based baseline.

Solves min_{x ∈ [0,1]} ½‖Ax − y‖² + λ‖∇x‖_{2,1} with the Condat–Vũ primal-dual algorithm, which
needs only A and Aᵀ (no inner solver), so it runs unchanged on every task's physics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.api import Callback, Method, Reconstruction
from benchmark.problems import spaces
from benchmark.registry import register


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward differences with Neumann boundary: (B, C, H, W) → (B, C, 2, H, W)."""
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    return torch.stack((dx, dy), dim=2)


def divergence(u: torch.Tensor) -> torch.Tensor:
    """The negative adjoint of ``gradient``."""
    ux, uy = u[:, :, 0], u[:, :, 1]
    div = torch.zeros_like(ux)
    div[..., :, 0] = ux[..., :, 0]
    div[..., :, 1:-1] = ux[..., :, 1:-1] - ux[..., :, :-2]
    div[..., :, -1] = -ux[..., :, -2]
    div[..., 0, :] += uy[..., 0, :]
    div[..., 1:-1, :] += uy[..., 1:-1, :] - uy[..., :-2, :]
    div[..., -1, :] += -uy[..., -2, :]
    return div


def tv_norm(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV, Σ‖∇x‖₂ per pixel and channel (also used by DIP-TV)."""
    g = gradient(x)
    return torch.sqrt((g**2).sum(dim=2) + 1e-12).sum()


@register
class TotalVariation(Method):
    name = "tv"
    family = "baseline"
    summary = "TV-regularised least squares (Condat–Vũ primal-dual), box-constrained to [0, 1]."
    citation = (
        'Rudin, Osher, Fatemi, Physica D 1992; solved by the Condat–Vũ primal-dual algorithm (Condat, JOTA '
        '2013; Vũ, ACM 2013)'
    )
    defaults = {"weight": 0.02, "iterations": 300, "tau": 0.2}
    task_defaults = {
        "denoising": {"weight": 0.06},
        "inpainting": {"weight": 0.005, "iterations": 600},
        "super-resolution": {"weight": 0.003, "iterations": 600},
        "deblurring": {"weight": 0.008},
        # chosen by `benchmark tune` on 4 training slices at 128² (mri_brain_train 4×, ct_chest_train
        # 60 views; the tunable grid below; CT at the grid's lower edge), never on the test slices
        "mri": {"weight": 0.008},
        "ct": {"weight": 0.001},
    }
    budgets = {"test": {"iterations": 100}, "quick": {}, "cpu": {}}
    #: the weight trades noise for detail, so it is chosen per task (per noise level) by
    #: ``benchmark tune`` on validation images from the training split
    tunable = {"weight": [0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.05, 0.07, 0.1, 0.14, 0.2, 0.3]}
    tune_by = "task"

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "weight", params["weight"] >= 0, "a number >= 0")
        cls.require(params, "iterations", params["iterations"] >= 1, "an integer >= 1")
        # Condat–Vũ needs 1/τ > ‖A‖²/2 with ‖A‖ ≤ 1 (see reconstruct)
        cls.require(params, "tau", 0 < params["tau"] < 2, "a number in (0, 2)")

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> Reconstruction:
        weight, tau, budget = float(self.params["weight"]), float(self.params["tau"]), int(self.params["iterations"])
        # Condat–Vũ step condition: 1/τ − σ‖∇‖² ≥ ‖A‖²/2, with ‖∇‖² ≤ 8 and ‖A‖ ≤ 1 here.
        sigma = (1.0 / tau - 0.5) / 8.0
        with torch.no_grad():
            project = spaces.of(physics).project  # [0, 1]; complex MR images are not boxed
            x = project(physics.A_dagger(y))
            u = torch.zeros_like(gradient(x))
            step = 0
            for step in range(1, budget + 1):
                grad_data = physics.A_adjoint(physics.A(x) - y)
                x_new = project(x - tau * (grad_data - divergence(u)))
                u = u + sigma * gradient(2 * x_new - x)
                norms = torch.sqrt((u**2).sum(dim=2, keepdim=True)).clamp_min(weight)
                u = u * (weight / norms)
                x = x_new
                if callback is not None and not callback(step, x):
                    break
        return Reconstruction(x=x, iterations=step, budget=budget)
