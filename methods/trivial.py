"""The trivial reconstruction: the pseudo-inverse of the physics applied to the measurement.

It is the floor every method must beat: the noisy image for denoising, the masked image for
inpainting, the least-squares up-sampling for super-resolution and the (unregularised, so
noise-amplifying) inverse filter for deblurring.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark.api import Callback, Method
from benchmark.registry import register


@register
class Trivial(Method):
    name = "trivial"
    family = "baseline"
    summary = "Pseudo-inverse A⁺y of the physics (no prior)."
    defaults = {}

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> torch.Tensor:
        return physics.A_dagger(y).clamp(0, 1)
