"""The trivial reconstruction: the pseudo-inverse of the physics applied to the measurement.

It is the floor every method must beat: the noisy image for denoising, the masked image for
inpainting, the least-squares up-sampling for super-resolution and the (unregularised, so
noise-amplifying) inverse filter for deblurring; the zero-filled inverse FFT for MRI and the filtered
back-projection for CT.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark.api import Callback, Method
from benchmark.problems import spaces
from benchmark.registry import register


@register
class Trivial(Method):
    name = "trivial"
    family = "baseline"
    summary = "Pseudo-inverse A⁺y of the physics (no prior): zero-filled IFFT for MRI, FBP for CT."
    citation = 'the pseudo-inverse A⁺y of the physics, no prior (zero-filled MRI, filtered back-projection CT)'
    budgets = {"test": {}, "quick": {}}
    defaults = {}

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> torch.Tensor:
        return spaces.of(physics).project(physics.A_dagger(y))
