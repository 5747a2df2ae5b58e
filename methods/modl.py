"""MoDL, model-based deep learning (Aggarwal, Mani & Jacob, IEEE TMI 2019), trained by the suite.

An unrolled network for MRI: starting from x₀ = Aᴴy, each of K iterations denoises with a residual
CNN D_w *shared across iterations*, then enforces data consistency,

    x_{k+1} = argmin_x ‖Ax − y‖² + λ‖x − D_w(x_k)‖² = (AᴴA + λI)⁻¹(Aᴴy + λ D_w(x_k)),

and the output is the last data-consistency step. It is deepinv's half-quadratic splitting
unrolled (``dinv.optim.HQS(g_first=True, unfold=True)``: the paper's order, "denoise then data
consistency"; deepinv's own ``MoDL`` runs the other order and returns the denoiser's output) with a
plug-and-play prior on deepinv's ``DnCNN``; deepinv's proximal step solves (AᴴA + I/γ)x = Aᴴy + x_k/γ,
so its step γ = 1/λ, trainable, one value shared by all iterations as the paper's λ. Single-coil
MRI has that solve in closed form (a diagonal in k-space); multi-coil runs conjugate gradients
(``cg_iterations`` steps, as the paper's 10; gradients by implicit differentiation, another CG
solve), which makes a multi-coil step ~2× a single-coil one at 128² on a CPU.

The authors' settings are the defaults: K = 10, a 5-layer CNN of 64 3×3 filters, λ initialised at
0.05, Adam at 10⁻³ (TensorFlow's default) with gradients clipped to [−1, 1], batch 1, first 100
epochs with K = 1 then 50 epochs with K = 10 from those weights, over their 360 training slices
(hkaggarwal/modl ``trn.py``; here as 36 000 and 18 000 steps). Departures: the CNN has no batch
normalisation (deepinv's DnCNN has none) and its last layer starts at zero, so an untrained MoDL
is the iterated data consistency of Aᴴy; the learning rate warms up and decays (the suite's
training loop); the training set is the suite's 40 slices, each measured afresh per draw with the
task's own random mask and noise. The quick budget (``quick_params``: K = 5, 32 filters, 400
steps, a few minutes of one CPU core for the 40 slices at 128²) skips the K = 1 stage: a network
trained with K = 1 first diverges when unrolled K = 5 times and takes far more steps than a CPU
affords to recover, while with the last layer at zero training all K iterations from the start is
stable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import deepinv as dinv
import torch
from torch import nn

from benchmark.api import Callback, Method, Reconstruction, TrainingContext, TrainingReport
from benchmark.core import seeding
from benchmark.core.errors import UserError
from benchmark.problems import spaces
from benchmark.registry import register
from methods._training import unrolled

#: conjugate gradients stop earlier once ‖r‖ ≤ this × ‖b‖ (the authors' code stops at rᴴr < 1e-10)
CG_TOLERANCE = 1e-6


@contextmanager
def conjugate_gradients(physics: Any, iterations: int) -> Iterator[None]:
    """deepinv's least-squares solve of an operator without a closed-form prox (multi-coil MRI)
    reads its CG settings off the physics (and sets them there): ``iterations`` steps inside, and
    the physics' own settings restored after, so the caller's operator is left as it was."""
    names = ("max_iter", "tol", "solver")
    saved = {name: getattr(physics, name) for name in names if hasattr(physics, name)}
    physics.max_iter, physics.tol, physics.solver = iterations, CG_TOLERANCE, "CG"
    try:
        yield
    finally:
        for name in names:
            if name in saved:
                setattr(physics, name, saved[name])
            else:
                delattr(physics, name)


class MoDLNet(nn.Module):
    """K unrolled iterations of denoise (shared DnCNN) then data consistency, on 2-channel
    (real, imaginary) MR images."""

    def __init__(self, *, iterations: int, depth: int, channels: int, lam: float, cg_iterations: int) -> None:
        super().__init__()
        denoiser = dinv.models.DnCNN(2, 2, depth=depth, nf=channels, pretrained=None)
        nn.init.zeros_(denoiser.out_conv.weight)
        nn.init.zeros_(denoiser.out_conv.bias)
        self.unrolled = dinv.optim.HQS(
            data_fidelity=dinv.optim.L2(), prior=dinv.optim.PnP(denoiser), stepsize=1.0 / lam, max_iter=iterations,
            g_first=True, unfold=True, trainable_params=["stepsize"])
        self.iterations, self.cg_iterations = iterations, cg_iterations

    def forward(self, y: torch.Tensor, physics: Any, iterations: int | None = None) -> torch.Tensor:
        """The reconstruction after ``iterations`` unrolled steps (default: all K)."""
        steps = self.iterations if iterations is None else iterations
        self.unrolled.max_iter = self.unrolled.fixed_point.max_iter = steps
        with conjugate_gradients(physics, self.cg_iterations):
            return self.unrolled(y, physics)

    @property
    def step(self) -> float:
        """γ = 1/λ, as trained."""
        return float(self.unrolled.params_algo["stepsize"][0].detach())


@register
class MoDL(Method):
    name = "modl"
    family = "data-driven"
    summary = "MoDL: unrolled denoise-then-data-consistency, one CNN shared across iterations, trained on MRI slices."
    citation = (
        'Aggarwal, Mani, Jacob, "MoDL: Model-Based Deep Learning Architecture for Inverse Problems", IEEE TMI'
        ' 2019'
    )
    needs_training = True
    defaults = {
        "iterations": 10,  # K, unrolled iterations
        "cg_iterations": 10,  # CG steps per data consistency where it has no closed form (multi-coil)
        "depth": 5,  # convolution layers of the shared CNN
        "channels": 64,  # filters per layer
        "lam": 0.05,  # initial λ of the data-consistency step (trained)
        "pretrain_steps": 36000,  # first stage: K = 1 (100 epochs of the authors' 360 slices)
        "train_steps": 18000,  # second stage: all K iterations from those weights (50 epochs)
        "train_batch": 1,
        "lr": 1e-3,  # Adam, warm-up then cosine decay to 1% of it
        "train_images": None,  # learn from the first N training slices (None: all)
        "train_task": None,  # the task whose physics and noise it trains on (None: the test task)
        "train_set": None,  # the training set (None: the profile's for the task's image space)
    }
    budgets = {
        "test": {"iterations": 2, "cg_iterations": 3, "depth": 3, "channels": 8, "pretrain_steps": 2, "train_steps": 3},
        "quick": {"iterations": 5, "channels": 32, "pretrain_steps": 0, "train_steps": 400},
    }
    #: a few minutes on one core for the 40 training slices at 128²

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        for key in ("iterations", "cg_iterations", "depth", "channels", "train_batch"):
            cls.require(params, key, params[key] >= 1, "an integer >= 1")
        cls.require(params, "depth", params["depth"] >= 2, "an integer >= 2")
        for key in ("pretrain_steps", "train_steps"):
            cls.require(params, key, params[key] >= 0, "an integer >= 0")
        cls.require(params, "train_steps", params["pretrain_steps"] + params["train_steps"] >= 1,
                    "an integer >= 1 when pretrain_steps is 0")
        cls.require(params, "lam", params["lam"] > 0, "a number > 0")
        cls.require(params, "lr", params["lr"] > 0, "a number > 0")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._net: MoDLNet | None = None

    def skip_reason(self, task: Any, channels: int | None = None) -> str | None:
        if task.family != "mri":
            return (f"MoDL reconstructs MRI (its data consistency solves the MRI normal equations), not the "
                    f"{task.family} task {task.name!r}; the suite's unrolled CT network is lpd")
        return None

    def prepare(self, ctx: TrainingContext) -> TrainingReport:
        p = self.params
        with seeding.seeded(ctx.seed):
            net = MoDLNet(iterations=int(p["iterations"]), depth=int(p["depth"]), channels=int(p["channels"]),
                          lam=float(p["lam"]), cg_iterations=int(p["cg_iterations"])).to(ctx.device)

        def one_iteration(y: torch.Tensor, physics: Any) -> torch.Tensor:
            return net(y, physics, iterations=1)

        stages = [unrolled.Stage(int(p["pretrain_steps"]), one_iteration, "K=1"),
                  unrolled.Stage(int(p["train_steps"]), net, f"K={int(p['iterations'])}")]
        optimiser = unrolled.Optimiser(lr=float(p["lr"]), batch=int(p["train_batch"]), clip_value=1.0)
        report = unrolled.prepare(self, ctx, net, stages, optimiser)
        self._net = net.requires_grad_(False)
        return report

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> Reconstruction:
        if self._net is None:
            raise UserError("modl: call prepare() (train or load the checkpoint) before reconstruct()")
        net = self._net.to(y.device)
        with torch.no_grad():
            x = spaces.of(physics).project(net(y, physics))
        return Reconstruction(x=x, info={"parameters": sum(q.numel() for q in net.parameters()),
                                         "step_gamma": round(net.step, 4)})
