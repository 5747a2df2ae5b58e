"""The measurement's noise level, as methods that take it as an input (DnCNN picks a model by it,
FFDNet feeds it as a map, BM3D needs its σ) read it off the physics, and the checks the
pretrained Gaussian denoisers (DnCNN-S, FFDNet) share: one place for all of them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import deepinv as dinv
import torch

from benchmark.core.errors import UserError

if TYPE_CHECKING:
    from benchmark.api import Method


def noise_sigma(physics: Any, method: str, *, noiseless_ok: bool = False) -> float:
    """The one Gaussian noise level of ``physics`` on the [0, 1] scale; 0 for noiseless physics
    where ``noiseless_ok``, else a ``UserError`` naming ``method``."""
    model = getattr(physics, "noise_model", None)
    sigma = getattr(model, "sigma", None)
    if sigma is None:
        if noiseless_ok and isinstance(model, dinv.physics.ZeroNoise):
            return 0.0
        raise UserError(f"{method} needs physics with Gaussian noise (physics.noise_model.sigma)")
    values = torch.as_tensor(sigma, dtype=torch.float64).ravel()
    if values.numel() == 0 or not torch.all(values == values[0]):
        raise UserError(f"{method} needs one noise level per measurement, got σ = {values.tolist()}")
    return float(values[0])


def validate_model_sigma(method: type[Method], params: Mapping[str, Any], accepted: Callable[[Any], bool],
                         expected: str) -> None:
    """A pretrained denoiser's ``model_sigma``: "auto" (the task's noise level) or a level that
    ``accepted`` takes (``expected`` says which, in the error)."""
    method.check_names(params)  # model_sigma is a string or a number: no type check
    fixed = params["model_sigma"]
    method.require(params, "model_sigma", fixed == "auto" or accepted(fixed), f"'auto' or {expected}")


def denoising_skip_reason(task: Any, method: str, hint: str = "") -> str | None:
    """Why a Gaussian denoiser skips ``task`` (None for a denoising task); ``hint`` names an
    alternative."""
    if task.family != "denoising":
        return f"{method} is a Gaussian denoiser; task {task.name!r} is {task.family}{hint}"
    return None


def require_denoising(physics: Any, method: str) -> None:
    """A ``UserError`` unless ``physics`` is denoising (the identity operator)."""
    if not isinstance(physics, dinv.physics.Denoising):
        raise UserError(f"{method} only denoises; got {type(physics).__name__} physics")
