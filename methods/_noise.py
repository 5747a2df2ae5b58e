"""The measurement's noise level, as methods that take it as an input (DnCNN picks a model by it,
FFDNet feeds it as a map, BM3D needs its σ) read it off the physics: one place for all of them."""

from __future__ import annotations

from typing import Any

import deepinv as dinv
import torch

from benchmark.errors import UserError


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
