"""The educated warm start of DIP (Barbano, Leuschner, Antorán, Jin, Schönlieb, "An Educated Warm
Start for Deep Image Prior-Based Micro CT Reconstruction", IEEE TCI 2022; github educating-dip,
"EWS" below): pretrain the DIP network as a map A†y → x on simulated pairs, then fit each
measurement as DIP does, starting from those weights, with A†y as the network's input.

It is the bridge between the untrained and the trained worlds: a DIP fit whose starting point
is learnt from ``train_images`` training images, so it is a trained method (``needs_training``,
a training-set size in its records: the data-efficiency figure draws it as a line) of the DIP
family (its reconstruction is a DIP fit, read from the shared loop, with its trajectory).

Pretraining (EWS ``src/pre_training/trainer.py``, ``src/cfgs/trn/trainer.yaml``): MSE between
``net(A†y)`` and ``x``, Adam under a one-cycle schedule of peak lr 5e-4, batch 32. The authors
pretrain on synthetic ellipses measured with the target geometry; the suite, as for its U-Net,
measures patches of the task's training split with the task's own physics and noise (a fresh
random operator per patch where the task draws one, windows of whole-image measurements for MRI
and CT: ``methods._training``), and runs its warm-up + cosine schedule (``loop.train_network``).
The network sees each image's own BatchNorm statistics, as the DIP loop normalises each problem
alone (:func:`per_image_statistics`), so the fit starts from the function that was learnt.

Fine-tuning (EWS ``src/deep_image_prior/deep_image_prior.py`` ``reconstruct``, lines 225–387;
``src/cfgs/mdl/model_white.yaml``; ``src/cfgs/experiment/pretrain_only_fbp.yaml``): the input is
the fixed A†y (here ``loop.first_estimate``, the estimate the suite's trained methods refine: the
bicubic up-sampling for super-resolution, the pseudo-inverse otherwise), no perturbation, Adam at
lr 1e-4 for 10000 iterations on ``MSE(A f, y) + γ·TV(f)``, and the returned image is the output
at the iteration of the lowest total loss (data + γ·TV) seen so far: this rule watches the total,
as the authors do (no EMA, no early stop).

Where the suite departs: the network is the suite's skip network taking the image's channels as
input, not the Baguer, Leuschner & Schmidt (2020) U-Net the authors use (6 scales of 128 channels,
GroupNorm, skips at the two finest scales only, no sigmoid); the output layer is the image space's
(a sigmoid on [0, 1] images). Its BatchNorm after every convolution, with each image's own
statistics, makes its output blind to the brightness and contrast of its input, so the pretrained
start carries the training images' intensities and the fit corrects them. Neither the pretraining
nor the fit clips the gradient norm at 1 (the shared loop has no clipping; Adam's step does not
depend on a constant gradient scale).

γ: the authors' TV is an anisotropic sum over pixels against a mean over sinogram entries of an
unnormalised ray transform (γ = 1e-4 at 128², 20 angles); the suite's is the mean isotropic |∇x|
against the mean over ``y`` of ‖A‖ = 1 operators, so their value does not transfer. The default
γ = 0.1 was the best common value of {0.001, 0.01, 0.03, 0.1, 0.3} for σ = 25 denoising and 50%
inpainting at the quick budget (pretrained on 4 embedded training images, scored after 400 steps
on two 64² crops of other training images): with less TV the fit runs from the warm start into
the noise within tens of steps, and the total loss, which keeps falling, then selects a late,
noisy iterate. ``benchmark tune --profile quick`` (the tuned file's records, 4 embedded training
crops held out of the pretraining) keeps 0.1 for denoising and chooses 0.01 for inpainting, where
half the pixels carry no data and TV at 0.1 smooths what the warm start got right. It is untuned
at the paper budget and on MRI and CT: ``benchmark tune`` chooses it per task family on training
images.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.api import Reconstruction, TrainingContext, TrainingReport
from benchmark.core import seeding
from benchmark.core.errors import UserError
from benchmark.problems import spaces
from benchmark.registry import register
from methods._dip import common, streams
from methods._dip.networks import UPSAMPLE_MODES, SkipNet, crop_output, padded_shape
from methods._dip.objectives import measurement_loss, total_variation, weighted_tv
from methods._dip.stopping import PatientMinimum, Verdict
from methods._training import loop

#: the parameters that decide the pretrained weights (the cache key); the fit's own (lr, budget,
#: γ, perturbation) do not, so a tuned γ or another budget reuses the pretraining
PRETRAINING_PARAMS = ("channels", "scales", "skip_channels", "upsample", "train_patch", "train_batch",
                     "train_steps", "train_lr", "train_images")


@dataclass(frozen=True)
class Pretrained:
    """The pretrained weights and what they were trained for."""

    state: dict[str, torch.Tensor]
    channels: int
    space: str


@register
class DipWarmStart(common.DipMethod):
    name = "dip_warmstart"
    summary = "Educated warm start (Barbano et al. 2022): DIP from a network pretrained on A†y → x pairs, input A†y."
    citation = (
        'Barbano, Leuschner, Schmidt, Denker, Hauptmann, Maass, Jin, "An Educated Warm Start for Deep '
        'Image Prior-Based Micro CT Reconstruction", IEEE TCI 2022'
    )
    needs_training = True
    defaults = {
        "iterations": 10000,  # EWS model_white.yaml line 21
        "lr": 1e-4,  # EWS model_white.yaml lines 10-20 (both parameter groups)
        "tv_weight": 0.1,  # chosen on training images (see the module docstring); EWS γ = 1e-4 in its scale
        "reg_noise_std": 0.0,  # pretrain_only_fbp.yaml: recon_from_randn False, no input noise
        "channels": 128,
        "scales": 5,
        "skip_channels": 4,
        "upsample": "bilinear",
        "precision": "fp32",  # the forward pass's precision (common.SKIP_DEFAULTS)
        # pretraining: the suite U-Net's paper budget (20000 steps of 32 patches of 64²); EWS runs
        # 100 epochs of 32000 ellipse pairs at batch 32, one-cycle peak lr 5e-4 (trainer.yaml)
        "train_patch": 64,
        "train_batch": 32,
        "train_steps": 20000,
        "train_lr": 5e-4,
        "train_images": None,
    }
    counts = ("iterations", "channels", "scales", "train_patch", "train_batch", "train_steps")
    stopping_rule = "lowest total loss (data + γ·TV) within the budget, the authors' rule"
    #: the fit has its own start (the pretrained weights): never shared with another method's
    fit_kind = ""
    training_steps_parameter = "train_steps"
    #: test: seconds per cell, a tiny network pretrained for a few dozen steps. quick: the quick
    #: profile pretrains it three times per task (1, 4 and 13 images) on the quick DIP network: 200
    #: steps of 4 patches of 64² (the quick images' size, which the network sees unpadded), and
    #: fits under the DIP family's cap
    budgets = {
        "test": {"iterations": 60, "channels": 16, "scales": 3, "train_steps": 40, "train_batch": 4,
                 "train_patch": 32, "train_lr": 3e-3},
        "quick": {"iterations": common.QUICK_CAP, "channels": 32, "train_steps": 200, "train_batch": 4,
                  "train_patch": 64, "train_lr": 1e-3},
    }
    tunable = {"tv_weight": [0.0, 0.01, 0.03, 0.1, 0.3, 1.0]}
    tune_by = "family"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._pretrained: Pretrained | None = None

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "tv_weight", params["tv_weight"] >= 0, "a number >= 0")
        cls.require(params, "train_lr", params["train_lr"] > 0, "a number > 0")
        cls.require(params, "upsample", params["upsample"] in UPSAMPLE_MODES, f"one of {', '.join(UPSAMPLE_MODES)}")

    # ------------------------------------------------------------------ the network and its input

    def network(self, channels: int, output_layer: str) -> SkipNet:
        """The skip network mapping a ``channels``-channel A†y to the image (pretrained and fitted alike)."""
        p = self.params
        return SkipNet(channels, channels, int(p["channels"]), int(p["skip_channels"]), int(p["scales"]),
                       str(p["upsample"]), output_layer=output_layer)

    def padded(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` edge-padded to the network's size (the DIP loop's padding of an A†y input)."""
        height, width = padded_shape(x.shape[-2], x.shape[-1], int(self.params["scales"]))
        top, left = (height - x.shape[-2]) // 2, (width - x.shape[-1]) // 2
        pad = (left, width - x.shape[-1] - left, top, height - x.shape[-2] - top)
        return F.pad(x, pad, mode="replicate") if any(pad) else x

    # ---------------------------------------------------------------------------- pretraining

    def prepare(self, ctx: TrainingContext) -> TrainingReport:
        p = self.params
        images = loop.training_images(ctx, p["train_images"], self.name)
        channels = int(images[0].shape[0])
        space = ctx.task.space
        description = {
            "task": loop.task_description(ctx.task),
            "dataset": ctx.dataset,
            "n_images": len(images),
            "images_sha256": loop.images_fingerprint(images),
            "channels_in": channels,
            "space": space.name,
            **({"windows_of": "whole-image measurements"} if ctx.task.whole_image_operator else {}),
            "params": {k: p[k] for k in PRETRAINING_PARAMS},
            "seed": ctx.seed,
        }
        net = seeding.seeded_build(lambda: self.network(channels, space.output_layer), ctx.seed, "pretraining")
        net = net.to(ctx.device)
        steps, batch = int(p["train_steps"]), int(p["train_batch"])

        def train() -> tuple[list[float], dict[str, torch.Tensor]]:
            pairs = pretraining_pairs(images, int(p["train_patch"]), ctx, torch.Generator().manual_seed(ctx.seed))

            def loss_fn() -> torch.Tensor:
                inputs, x = pairs(batch)
                out = crop_output(net(self.padded(space.project(inputs))), x.shape[-2], x.shape[-1])
                return torch.mean((out - x) ** 2)

            with per_image_statistics(net):
                losses = loop.train_network(net, loss_fn, steps=steps, lr=float(p["train_lr"]),
                                            progress=ctx.progress, desc=f"{self.name} {ctx.task.name}")
            return losses, net.state_dict()

        report = loop.load_or_train(cache_dir=ctx.cache_dir, method=self.name, description=description,
                                    net=net, train=train)
        state = {k: v.detach().to("cpu").clone() for k, v in net.state_dict().items()}
        self._pretrained = Pretrained(state, channels, space.name)
        report.images = len(images)
        report.description = (f"skip net pretrained on {loop.count(len(images), 'image')} of {ctx.dataset}, "
                              f"{steps} steps")
        return report

    # ------------------------------------------------------------------------------ the fit

    def setup(self, y: torch.Tensor, physics: Any, seed: int) -> common.Setup:
        """The network (untrained) and its input, the padded A†y of ``y``."""
        c, h, w = common.image_shape(y, physics)
        space = spaces.of(physics)
        with torch.no_grad():
            z = self.padded(space.project(loop.first_estimate(physics, y))).clone()
        net = seeding.seeded_build(lambda: self.network(c, space.output_layer), seed, "network")
        noise = (seeding.generator(seed, "perturbation", device=y.device)
                 if float(self.params["reg_noise_std"]) > 0 else None)
        return common.Setup(net.to(device=y.device, dtype=y.dtype), z, (h, w), noise)

    def fit(self, y: torch.Tensor, physics: Any, seed: int) -> common.Fit:
        """DIP + γ·TV from the pretrained weights (``prepare`` must have run)."""
        setup = self.setup(y, physics, seed)
        c, space = int(setup.z.shape[1]), spaces.of(physics).name
        pretrained = self._pretrained
        if pretrained is None:
            raise UserError(f"{self.name}: call prepare() (pretrain or load the checkpoint) before reconstructing")
        if (pretrained.channels, pretrained.space) != (c, space):
            raise UserError(f"{self.name} was pretrained on {pretrained.channels}-channel {pretrained.space} images "
                            f"but the measurement is of {c}-channel {space} images")
        setup.network.load_state_dict(pretrained.state)
        weight = float(self.params["tv_weight"])
        regulariser = weighted_tv(weight) if weight > 0 else None
        return common.Fit(setup, measurement_loss(physics, y), regulariser=regulariser, info={"tv_weight": weight})

    def read(self, y: torch.Tensor, physics: Any, seed: int) -> common.Reading:
        """The raw outputs, the one of the lowest total loss returned."""
        rule = LowestTotalLoss(float(self.params["tv_weight"]))

        def finish(result: Reconstruction) -> None:
            result.info["best_total_loss"] = common.finite_or_none(rule.tracker.best_value)

        return common.Reading(streams.Raw(), rule=rule, finish=finish)

    def memory_estimate(self, shape: tuple[int, int, int]) -> int | None:
        """DIP's estimate for this network, measured on an unprepared twin (sizes do not depend on
        the weights, and the plan asks before any pretraining)."""
        return common.DipMethod.memory_estimate(_SizeProbe(self), shape)


class _SizeProbe(DipWarmStart):
    """The method's network and input without its pretrained weights: what the memory probe sizes."""

    def __init__(self, method: DipWarmStart) -> None:  # noqa: D107 - shares the method's parameters
        self.params = copy.deepcopy(method.params)
        self._pretrained = None

    def fit(self, y: torch.Tensor, physics: Any, seed: int) -> common.Fit:
        return common.Fit(self.setup(y, physics, seed), measurement_loss(physics, y))


class LowestTotalLoss:
    """The authors' selection: the iterate whose total loss ``data + γ·TV`` is the lowest so far
    (a strict improvement), over the whole budget (EWS ``deep_image_prior.py`` lines 281–282,
    332–336). The iterate it sees is the raw output the step's loss was computed on."""

    def __init__(self, tv_weight: float) -> None:
        self.tv_weight = tv_weight
        self.tracker = PatientMinimum(patience=None)

    def __call__(self, step: int, x: torch.Tensor, fit_loss: torch.Tensor) -> Verdict:
        total = fit_loss.sum()
        if self.tv_weight > 0:
            total = total + self.tv_weight * total_variation(x).sum()
        return self.tracker.update(step, float(total))


Pairs = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


def pretraining_pairs(images: list[torch.Tensor], patch: int, ctx: TrainingContext,
                      generator: torch.Generator) -> Pairs:
    """batch → (A†y, x) for the pretraining: patches measured on their own where the operator is
    local, windows of measured whole images where it mixes the whole image (the U-Net's pairs,
    ``methods.unet``, without the coverage channel)."""
    channels = int(images[0].shape[0])
    if ctx.task.whole_image_operator:
        windows = loop.WholeImagePatches(images, patch, ctx.task, ctx.device, generator)

        def whole(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
            inputs, x = windows.sample(batch)
            return inputs[:, :channels], x

        return whole
    sampler = loop.PatchSampler(images, patch, generator)
    simulator = loop.MeasurementSimulator(ctx.task, (channels, patch, patch), ctx.device, generator)

    def local(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = sampler.sample(batch).to(ctx.device)
        with torch.no_grad():
            return simulator.inputs(x)[:, :channels], x

    return local


def _per_image_norm(norm: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    return F.instance_norm(x, weight=norm.weight, bias=norm.bias, eps=norm.eps)


@contextlib.contextmanager
def per_image_statistics(net: nn.Module) -> Iterator[None]:
    """Each BatchNorm of ``net`` normalises every image of a batch by its own statistics (with
    its own affine weights): a batch of B images computes what B fits of one image each compute
    in the DIP loop, which normalises by the batch statistics of its single image."""
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        setattr(norm, "forward", functools.partial(_per_image_norm, norm))  # noqa: B010 - an instance override
    try:
        yield
    finally:
        for norm in norms:
            delattr(norm, "forward")
