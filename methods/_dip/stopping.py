"""Early-stopping rules for the DIP loop, as small state machines over a run's history.

Each rule is fed one observation per step (a scalar loss or an iterate) and answers with a
:class:`Verdict`: whether to stop now, and whether this step is the best so far (the loop then
keeps its iterate). They know nothing about networks or physics, so a synthetic trajectory is
enough to test them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Verdict:
    stop: bool = False
    #: this step is the rule's best so far: the iterate to return if the run ends before a better one
    best: bool = False


class PatientMinimum:
    """Tracks the minimum of a scalar sequence and asks to stop after ``patience`` observations
    without a new minimum (``None``: never). A new minimum must beat the old one by the relative
    margin ``min_delta``: ``value · (1 + min_delta) < best``."""

    def __init__(self, patience: int | None, min_delta: float = 0.0) -> None:
        if patience is not None and patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.patience = patience
        self.min_delta = min_delta
        self.best_value = math.inf
        self.best_step: int | None = None
        self.waited = 0

    def update(self, step: int, value: float) -> Verdict:
        if math.isnan(value):
            self.waited += 1
        elif value * (1.0 + self.min_delta) < self.best_value or self.best_step is None:
            self.best_value, self.best_step, self.waited = value, step, 0
            return Verdict(stop=False, best=True)
        else:
            self.waited += 1
        return Verdict(stop=self.patience is not None and self.waited >= self.patience, best=False)


#: relative margin by which a training loss must beat the best so far in the decoders' "lowest
#: training loss" rule (Heckel & Hand's and Darestani & Heckel's ``fit(find_best=True)``: 1.005)
DECODER_IMPROVEMENT = 0.005


class LowestTrainingLoss(PatientMinimum):
    """The decoders' rule: run the whole budget, return the iterate with the lowest training loss
    (a new best must beat the old by ``DECODER_IMPROVEMENT``); used as a DIP plan's ``rule``."""

    def __init__(self) -> None:
        super().__init__(patience=None, min_delta=DECODER_IMPROVEMENT)

    def __call__(self, step: int, x: torch.Tensor, fit_loss: torch.Tensor) -> Verdict:
        return self.update(step, float(fit_loss.sum()))


class HeldOutLoss:
    """Self-validation: the loss on held-out measurements, smoothed over the last ``window`` steps;
    stop when its minimum has not improved for ``patience`` steps, return the iterate at it."""

    def __init__(self, patience: int, window: int = 1, min_delta: float = 0.0) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.tracker = PatientMinimum(patience, min_delta)
        self._recent: list[float] = []
        self.history: list[float] = []

    def update(self, step: int, loss: float) -> Verdict:
        self.history.append(loss)
        self._recent.append(loss)
        if len(self._recent) > self.window:
            self._recent.pop(0)
        if len(self._recent) < self.window:
            return Verdict()
        return self.tracker.update(step, sum(self._recent) / self.window)

    @property
    def best_step(self) -> int | None:
        return self.tracker.best_step


class WindowedVariance:
    """ES-WMV (Wang et al.): the variance of the last ``window`` iterates around their mean,
    ``(1/W) Σ_w mean((x_w - x̄)²)``; stop when it has not reached a new minimum for ``patience``
    steps, return the iterate at which the minimum was reached.

    The window lives in one preallocated W×… ring buffer on the iterates' device, so the only
    host-device transfer per step is the variance scalar the rule has to compare.
    """

    def __init__(self, window: int, patience: int, min_delta: float = 0.0) -> None:
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        self.window = window
        self.tracker = PatientMinimum(patience, min_delta)
        self._buffer: torch.Tensor | None = None
        self._seen = 0
        self.history: list[float] = []

    def variance(self) -> torch.Tensor:
        """The current windowed variance (a 0-d tensor on the buffer's device)."""
        if self._buffer is None or self._seen < self.window:
            raise RuntimeError("the window is not full yet")
        return (self._buffer - self._buffer.mean(dim=0, keepdim=True)).square().mean()

    def update(self, step: int, x: torch.Tensor) -> Verdict:
        with torch.inference_mode():
            if self._buffer is None:
                self._buffer = torch.empty((self.window, *x.shape), dtype=x.dtype, device=x.device)
            self._buffer[self._seen % self.window].copy_(x)
            self._seen += 1
            if self._seen < self.window:
                return Verdict()
            value = float(self.variance())
        self.history.append(value)
        return self.tracker.update(step, value)

    @property
    def best_step(self) -> int | None:
        return self.tracker.best_step


class ExponentialVariance:
    """ES-EMV (Wang, Li, Zhuang, Chen, Liang, Sun, TMLR 2023): the exponential moving variance of
    the raw outputs around their exponential moving average, ``EMV_t = (1 − α)(EMV_{t−1} +
    α‖x_t − EMA_{t−1}‖²)`` (per entry here; the authors' sum differs by a constant factor, which
    moves no minimum), watched from step ``start`` on; stop when it has not reached a new minimum
    for ``patience`` steps and return the EMA at the minimum (the stream the authors evaluate).

    It is fed the EMA stream itself (the loop's ``Ema(1 − α)``): two consecutive EMA iterates give
    the raw deviation exactly, ``EMA_t − EMA_{t−1} = α (x_t − EMA_{t−1})``, so one stream serves
    the rule and the returned image.
    """

    def __init__(self, alpha: float, patience: int, start: int = 1, min_delta: float = 0.0) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if start < 1:
            raise ValueError(f"start must be >= 1, got {start}")
        self.alpha, self.start = alpha, start
        self.tracker = PatientMinimum(patience, min_delta)
        self._previous: torch.Tensor | None = None
        self._variance: torch.Tensor | None = None
        self.history: list[float] = []

    def update(self, step: int, ema: torch.Tensor) -> Verdict:
        with torch.inference_mode():
            if self._previous is None:
                self._previous, self._variance = ema.clone(), ema.new_zeros(())
                return Verdict()
            assert self._variance is not None
            moved = (ema - self._previous).square().mean() / self.alpha
            self._variance = (1.0 - self.alpha) * (self._variance + moved)
            self._previous = ema.clone()
            if step < self.start:
                return Verdict()
            value = float(self._variance)
        self.history.append(value)
        return self.tracker.update(step, value)

    @property
    def best_step(self) -> int | None:
        return self.tracker.best_step
