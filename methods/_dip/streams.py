"""Streams of iterates: how a DIP-family method reads its network's outputs.

A fit produces one raw output per step; a method reports a stream made from them: the raw
outputs (inpainting, super-resolution, ES-WMV), an exponential moving average (the denoising
notebook's EMA 0.99, ES-EMV's EMA), or a posterior mean over samples thinned after a burn-in
(Bayesian DIP by Langevin dynamics, Cheng et al. CVPR 2019), which also has a per-pixel spread,
or an image a method's between-steps hook keeps (DeepRED's ADMM variable x − u, Mataev et al. 2019).
Each watcher of a fit keeps its own stream, so that two methods on one fit never share state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch


class Stream(Protocol):
    #: what the iterates are, as the tables state it ("EMA 0.99 of outputs")
    name: str

    def update(self, out: torch.Tensor) -> torch.Tensor:
        """Take this step's raw output (1×C×H×W); return this step's iterate (a fresh tensor: the
        caller may keep it)."""

    def spread(self) -> torch.Tensor | None:
        """The per-pixel spread behind the current iterate (a posterior std), or None."""


class Raw:
    name = "raw outputs"

    def update(self, out: torch.Tensor) -> torch.Tensor:
        return out

    def spread(self) -> torch.Tensor | None:
        return None


class Ema:
    """``x_k = w·x_{k−1} + (1 − w)·out_k``, starting at the first output."""

    def __init__(self, weight: float) -> None:
        if not 0.0 < weight < 1.0:
            raise ValueError(f"an EMA weight must be in (0, 1), got {weight}")
        self.weight = weight
        self.name = f"EMA {weight:g} of outputs"
        self._x: torch.Tensor | None = None

    def update(self, out: torch.Tensor) -> torch.Tensor:
        # a fresh tensor every step: the caller may keep the previous one
        self._x = out if self._x is None else self._x * self.weight + out * (1.0 - self.weight)
        return self._x

    def spread(self) -> torch.Tensor | None:
        return None


def averaged(ema: float) -> Stream:
    """The stream of a DIP method's ``ema`` parameter: its EMA, or the raw outputs at 0."""
    return Ema(ema) if ema > 0 else Raw()


class PosteriorMean:
    """The mean of the outputs sampled every ``thin`` steps after ``burn_in`` steps, with their
    per-pixel standard deviation (Welford's running moments; population std over the samples, as
    ``np.std`` in Cheng et al.'s code). Before the first sample the iterate is the raw output."""

    def __init__(self, burn_in: int, thin: int) -> None:
        if burn_in < 0 or thin < 1:
            raise ValueError(f"burn_in must be >= 0 and thin >= 1, got {burn_in} and {thin}")
        self.burn_in, self.thin = burn_in, thin
        self.name = f"posterior mean of outputs every {thin} steps after {burn_in}"
        self.samples = 0
        self._step = 0
        self._mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None

    def update(self, out: torch.Tensor) -> torch.Tensor:
        self._step += 1
        if self._step <= self.burn_in or (self._step - self.burn_in) % self.thin:
            return out if self._mean is None else self._mean
        self.samples += 1
        if self._mean is None or self._m2 is None:
            self._mean, self._m2 = out.clone(), torch.zeros_like(out)
            return self._mean
        delta = out - self._mean
        self._mean = self._mean + delta / self.samples
        self._m2 = self._m2 + delta * (out - self._mean)
        return self._mean

    def spread(self) -> torch.Tensor | None:
        if self._m2 is None or self.samples < 2:
            return None
        return (self._m2 / self.samples).sqrt()


class FromState:
    """The iterate a method's hook computes from its own state, read after the hook of each step
    (DeepRED's ``x − u``: Mataev, Elad, Milanfar 2019 return it for deblurring and
    super-resolution); ``read`` must return a fresh tensor."""

    def __init__(self, name: str, read: Callable[[], torch.Tensor]) -> None:
        self.name = name
        self._read = read

    def update(self, out: torch.Tensor) -> torch.Tensor:
        return self._read()

    def spread(self) -> torch.Tensor | None:
        return None
