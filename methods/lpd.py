"""Learned primal-dual reconstruction (Adler & Öktem, IEEE TMI 2018), trained by the suite for CT.

An unrolled primal-dual iteration whose proximal steps are small CNNs, unshared across iterations:
with primal memory f (``n_primal`` images) and dual memory h (``n_dual`` sinograms), both starting
at zero, each iteration k updates

    h ← h + Γ_k(h, A f⁽¹⁾, y)        (dual block: deepinv's ``PDNet_DualBlock``)
    f ← f + Λ_k(f, Aᵀ h⁽¹⁾)          (primal block: deepinv's ``PDNet_PrimalBlock``)

and the reconstruction is f⁽⁰⁾ (the authors' ``ellipses/learned_primal_dual.py``: zero
initialisation, A applied to the second primal channel, Aᵀ to the first dual channel, output the
first primal channel). deepinv's demo (``examples/unfolded/demo_learned_primal_dual.py``) assembles
the same blocks through ``CPIteration``, which applies A and Aᵀ to every memory channel and then
slices one; here each operator runs on the one channel used, 5× cheaper on a sinogram, and by
default the primal side starts from zero, as the authors', not from a pseudo-inverse.

The authors' settings are the defaults: 10 iterations, 5 primal and 5 dual channels, blocks of
three 3×3 convolutions of 32 filters with PReLUs, Xavier-initialised; Adam (β₂ = 0.99) at 10⁻³
with cosine decay over 100 001 steps, batches of 5, the global gradient norm clipped to 1, on an
operator of norm 1 (the suite's CT already is). Departures: the suite's training slices
(ct_chest_train) measured afresh per draw with the task's noise instead of fresh random ellipse
phantoms, and a short warm-up before the decay (the suite's training loop). The quick budget
(``quick_params``: 5 iterations, 200 steps of one slice, a few minutes of one core at 128²; at 256²
one sample of the 10-iteration network costs seconds of projections) also starts from the
filtered back-projection (``fbp_start``: the primal memory holds A⁺y, as deepinv's demo
initialises it, and the primal updates start at zero, so the untrained network returns the FBP):
from zero, a few hundred steps leave the network far below the FBP.
"""

from __future__ import annotations

from collections.abc import Mapping
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


class PrimalDualNet(nn.Module):
    """The unrolled learned primal-dual iteration on 1-channel images and their sinograms."""

    def __init__(self, *, iterations: int, n_primal: int, n_dual: int, channels: int, fbp_start: bool = False) -> None:
        super().__init__()
        if n_primal < 2:
            raise UserError(f"lpd: the primal memory needs at least 2 channels, got {n_primal}")
        self.n_primal, self.n_dual, self.fbp_start = n_primal, n_dual, fbp_start
        self.primal = nn.ModuleList(
            dinv.models.PDNet_PrimalBlock(in_channels=n_primal + 1, out_channels=n_primal, nf=channels)
            for _ in range(iterations))
        self.dual = nn.ModuleList(
            dinv.models.PDNet_DualBlock(in_channels=n_dual + 2, out_channels=n_dual, nf=channels)
            for _ in range(iterations))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # the authors' Xavier initialisation (deepinv keeps PyTorch's)
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if fbp_start:  # the primal updates start at zero: the untrained network returns A⁺y
            for block in self.primal:
                assert isinstance(block, dinv.models.PDNet_PrimalBlock)
                nn.init.zeros_(block.out_conv.weight)
                if block.out_conv.bias is not None:
                    nn.init.zeros_(block.out_conv.bias)

    def forward(self, y: torch.Tensor, physics: Any) -> torch.Tensor:
        if self.fbp_start:
            f = physics.A_dagger(y).repeat(1, self.n_primal, 1, 1)
        else:
            image = physics.A_adjoint(y)
            f = image.new_zeros((image.shape[0], self.n_primal, *image.shape[2:]))
        h = y.new_zeros((y.shape[0], self.n_dual, *y.shape[2:]))
        for dual, primal in zip(self.dual, self.primal, strict=True):
            h = dual(h, physics.A(f[:, 1:2]), y)
            f = primal(f, physics.A_adjoint(h[:, 0:1]))
        return f[:, 0:1]


@register
class LearnedPrimalDual(Method):
    name = "lpd"
    family = "data-driven"
    summary = "Learned primal-dual (unrolled primal-dual iteration with CNN proximal steps), trained on CT slices."
    citation = 'Adler & Öktem, "Learned Primal-Dual Reconstruction", IEEE TMI 2018'
    needs_training = True
    defaults = {
        "iterations": 10,  # unrolled primal-dual iterations, each with its own blocks
        "n_primal": 5,  # primal memory channels
        "n_dual": 5,  # dual memory channels
        "channels": 32,  # filters per convolution
        "fbp_start": False,  # primal memory from A⁺y (the FBP) instead of zero, primal updates from zero
        "train_steps": 100001,
        "train_batch": 5,
        "lr": 1e-3,  # Adam (β₂ = 0.99), warm-up then cosine decay to 1% of it
        "train_images": None,  # learn from the first N training slices (None: all)
        "train_task": None,  # the task whose physics and noise it trains on (None: the test task)
        "train_set": None,  # the training set (None: the profile's for the task's image space)
    }
    budgets = {
        "test": {"iterations": 2, "n_primal": 2, "n_dual": 2, "channels": 8, "train_steps": 3, "train_batch": 1},
        "quick": {"iterations": 5, "train_steps": 200, "train_batch": 1, "fbp_start": True},
    }
    #: a few minutes of one core for ct_chest_train at 128² (each step: 5 projections and
    #: back-projections); starting from the FBP, as zero-initialised it stays far below the FBP
    #: after a CPU's few hundred steps

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        for key in ("iterations", "n_dual", "channels", "train_steps", "train_batch"):
            cls.require(params, key, params[key] >= 1, "an integer >= 1")
        cls.require(params, "n_primal", params["n_primal"] >= 2, "an integer >= 2")
        cls.require(params, "lr", params["lr"] > 0, "a number > 0")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._net: PrimalDualNet | None = None

    def skip_reason(self, task: Any, channels: int | None = None) -> str | None:
        if task.family != "ct":
            return (f"learned primal-dual is trained and run on CT sinograms here, not on the {task.family} task "
                    f"{task.name!r}; the suite's unrolled MRI network is modl")
        return None

    def prepare(self, ctx: TrainingContext) -> TrainingReport:
        p = self.params
        with seeding.seeded(ctx.seed):
            net = PrimalDualNet(iterations=int(p["iterations"]), n_primal=int(p["n_primal"]),
                                n_dual=int(p["n_dual"]), channels=int(p["channels"]),
                                fbp_start=bool(p["fbp_start"])).to(ctx.device)
        stages = [unrolled.Stage(int(p["train_steps"]), net, f"{int(p['iterations'])} iterations")]
        optimiser = unrolled.Optimiser(lr=float(p["lr"]), batch=int(p["train_batch"]), betas=(0.9, 0.99),
                                       clip_norm=1.0)
        report = unrolled.prepare(self, ctx, net, stages, optimiser)
        self._net = net.requires_grad_(False)
        return report

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> Reconstruction:
        if self._net is None:
            raise UserError("lpd: call prepare() (train or load the checkpoint) before reconstruct()")
        net = self._net.to(y.device)
        with torch.no_grad():
            x = spaces.of(physics).project(net(y, physics))
        return Reconstruction(x=x, info={"parameters": sum(q.numel() for q in net.parameters())})
