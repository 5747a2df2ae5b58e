"""Bicubic interpolation, the floor of the super-resolution literature.

MATLAB's ``imresize(y, factor)`` (bicubic, antialiasing has no effect when up-sampling), through
deepinv's reimplementation; every SR paper since Yang et al. (2010) reports it as the baseline
(e.g. Set5 ×4: 28.42 dB PSNR-Y in Kim et al., CVPR 2016). ``trivial`` is the least-squares A⁺y
instead, which is not what the literature calls bicubic.
"""

from __future__ import annotations

from typing import Any

import torch
from deepinv.physics.functional import imresize_matlab

from benchmark.api import Callback, Method
from benchmark.registry import register


@register
class Bicubic(Method):
    name = "bicubic"
    family = "baseline"
    summary = "MATLAB bicubic up-sampling of y (the SR literature's baseline); super-resolution only."
    citation = (
        'Keys, "Cubic convolution interpolation for digital image processing", IEEE TASSP 1981; MATLAB '
        "imresize, the SR literature's protocol (Timofte et al. 2014)"
    )
    budgets = {"test": {}, "quick": {}, "cpu": {}}
    defaults = {}

    def skip_reason(self, task: Any, channels: int | None = None) -> str | None:
        if task.family != "super-resolution":
            return "bicubic interpolation up-samples; it applies to super-resolution only"
        return None

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> torch.Tensor:
        factor = getattr(physics, "factor", None)
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"bicubic needs a down-sampling physics with an integer factor, got {factor!r}")
        return upsample(y, factor)


def upsample(y: torch.Tensor, factor: int) -> torch.Tensor:
    """MATLAB's ``imresize(y, factor)``: bicubic, reflect padding (the SR papers' bicubic)."""
    return imresize_matlab(y, scale=factor, kernel="cubic", padding_type="reflect", antialiasing=True)
