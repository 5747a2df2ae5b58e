"""What the harness records along and after a run: the trajectory callback with its oracle, and
the PNGs of a reconstruction and of its uncertainty."""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

from benchmark.problems import metrics, spaces
from benchmark.run.clock import Stopwatch


@dataclass
class TrajectoryRecorder:
    """The harness's callback. Every ``every`` steps it measures x_k with the registry's trajectory
    metrics, the clock paused, and keeps the oracle: the best iterate in hindsight by the primary
    metric (``metrics.primary()``). Where the primary metric is a function of the mean squared
    error (PSNR), the oracle is over every iterate, not only the sampled ones: every step queues
    x_k's squared error on the device (no host sync) and the queue is read back at the sampled
    steps. That per-step error, a few element-wise kernels on one image, runs with the clock on:
    pausing it would sync the device every step."""

    truth: torch.Tensor
    clock: Stopwatch
    every: int
    context: metrics.MetricContext = field(default_factory=metrics.MetricContext)
    measured: list[metrics.Metric] = field(default_factory=list)
    #: the task's image space: errors and metrics compare its views (magnitudes for MRI)
    space: spaces.ImageSpace = spaces.UNIT
    points: list[dict[str, float]] = field(default_factory=list)
    last_step: int = 0
    seconds: float = 0.0  # spent measuring (the clock paused), for the harness's own share
    #: the oracle: the primary metric of the best iterate so far, and its step
    oracle_value: float | None = None
    oracle_step: int | None = None
    primary: metrics.Metric = field(default_factory=metrics.primary)
    _queued: list[tuple[int, torch.Tensor]] = field(default_factory=list, repr=False)
    _truth_cast: torch.Tensor | None = field(default=None, repr=False)

    def better(self, value: float, than: float | None) -> bool:
        """Whether ``value`` of the primary metric is at least as good as ``than`` (ties go to the
        later iterate)."""
        if than is None:
            return not math.isnan(value)
        return value >= than if self.primary.higher_is_better else value <= than

    def _consider(self, step: int, value: float) -> None:
        if self.better(value, self.oracle_value):
            self.oracle_value, self.oracle_step = value, step

    def __call__(self, step: int, x_k: torch.Tensor) -> bool:
        self.last_step = step
        if self.primary.from_mse is not None:
            with torch.no_grad():
                # in x_k's own dtype (float32: PSNR within ~1e-5 dB of float64, 5× cheaper; this runs
                # with the clock on, every step: ~30 µs at 96², next to TV's ~0.5 ms step); in the
                # task's image space (the magnitude of an MR image)
                if self._truth_cast is None or self._truth_cast.dtype != x_k.dtype:
                    self._truth_cast = self.space.view(self.truth.detach()).to(x_k.dtype)
                self._queued.append((step, (self.space.view(x_k.detach()) - self._truth_cast).square_().mean()))
        if step % self.every == 0:
            started = time.perf_counter()
            with self.clock.paused(), torch.inference_mode():
                self.flush()
                if self.measured:
                    x, truth = self.space.view(x_k.detach()), self.space.view(self.truth)
                    point: dict[str, float] = {"step": step}
                    point.update({m.name: m.fn(x, truth, self.context) for m in self.measured})
                    self.points.append(point)
                    # the sampled point's float64 value counts too: the oracle is never below it
                    if self.primary.name in point:
                        self._consider(step, point[self.primary.name])
            self.seconds += time.perf_counter() - started
        return True

    def flush(self) -> list[float]:
        """Read the queued errors back (one transfer), update the oracle; the primary metric of
        each queued iterate, in order."""
        if not self._queued or self.primary.from_mse is None:
            return []
        steps = [step for step, _ in self._queued]
        errors = torch.stack([error for _, error in self._queued]).double().cpu().tolist()
        self._queued.clear()
        values = [self.primary.from_mse(mse, self.context.data_range) for mse in errors]
        for step, value in zip(steps, values, strict=True):
            self._consider(step, value)
        return values


def to_png(x: torch.Tensor) -> bytes:
    """A 1×C×H×W or C×H×W tensor in [0, 1] as 8-bit PNG bytes."""
    array = x.detach().float().clamp(0, 1).squeeze(0).cpu().numpy()
    array = np.round(array * 255).astype(np.uint8)
    image = PILImage.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def uncertainty_png(std: torch.Tensor, data_range: float) -> tuple[bytes, float]:
    """A per-pixel standard deviation (1×C×H×W, the compared view) as a gray PNG scaled to its own
    largest value, and that value as a fraction of the data range: (PNG bytes, peak). Channels are
    pooled by their root mean square; the peak turns the PNG's [0, 1] back into data-range units."""
    shown = (std.detach().double() / (data_range or 1.0)).square().mean(dim=1, keepdim=True).sqrt()
    peak = float(shown.max())
    return to_png(shown / peak if peak > 0 else shown), peak


def reconstruction_uncertainty(result: Any, x: torch.Tensor, space: spaces.ImageSpace) -> torch.Tensor | None:
    """The reconstruction's per-pixel standard deviation in the compared view (``space.view_std``),
    checked: the shape of x, finite, never negative; None when the method gives none."""
    if result.uncertainty is None:
        return None
    std = result.uncertainty.detach()
    std = std.unsqueeze(0) if std.dim() == 3 else std
    if std.shape != x.shape:
        raise ValueError(f"uncertainty has shape {tuple(std.shape)}, expected the image's {tuple(x.shape)}")
    if not bool(torch.isfinite(std).all()) or bool((std < 0).any()):
        raise FloatingPointError("the uncertainty has NaN, Inf or negative values")
    return space.view_std(std.to(x.device))
