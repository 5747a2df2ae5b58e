"""Supervised U-Net: the data-driven reference trained end to end by the suite, per task.

For every task the net learns to correct a fixed physics-aware estimate — the pseudo-inverse
``A⁺y``, with ``A*A 1`` as a second channel so it knows where the operator sees the image —
into the clean image (residual learning, MSE loss). Training pairs are made by applying the
task's own physics and noise to random patches of the training split, a fresh random operator
per patch where the task draws one (inpainting masks), so the net generalises to the test mask.
Where the operator mixes the whole image (MRI, CT: ``Task.whole_image_operator``) a patch's own
measurement would have other artefacts than the test images' (a mask drawn at the patch's width,
the sinogram of a patch), so the patches are windows cut out of measurements of whole training
images (whole images when ``train_patch`` is at least their side), declared by the task, not
chosen per profile.
``train_images`` limits the training set to its first N images, to chart quality against the
amount of training data. ``train_task`` and ``train_set`` train it away from the test condition
(another noise level, acceleration, mask, number of views; another kind of image): the robustness
profile's shift cells (``benchmark.problems.conditions``). Gray test sets get a net trained on
gray images (Train400), colour ones a net trained on colour images (the profile's ``training:
{rgb: cbsd432}``); a gray net is never applied channel by channel to colour images (the harness
skips such cells, saying why). For super-resolution the net refines the bicubic up-sampling of
y, as SRCNN and VDSR do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from benchmark.api import Callback, Method, Reconstruction, TrainingContext, TrainingReport
from benchmark.core import seeding
from benchmark.core.errors import UserError
from benchmark.problems import spaces
from benchmark.registry import register
from methods._training import loop
from methods._training.nets import UNet as UNetNet


@register
class SupervisedUNet(Method):
    name = "unet"
    family = "data-driven"
    summary = "U-Net trained by the suite per task on the training split (residual correction of A⁺y)."
    citation = (
        'Ronneberger, Fischer, Brox, "U-Net", MICCAI 2015; residual correction of a physics-aware estimate as'
        ' Jin et al. (FBPConvNet), IEEE TIP 2017'
    )
    needs_training = True
    training_steps_parameter = "train_steps"
    #: The paper budget is sized for a GPU: 20000 steps of 32 patches of 64² on a 64-channel,
    #: 3-level net (a few minutes per task on one recent GPU, by our estimate; not measured here).
    #: On a CPU, a 32-channel 2-level net trained 6000 steps of 16 × 48² on Train400 reached
    #: 30.19 dB on Set12 at σ=25 (DnCNN-S: 30.44) in about an hour of one shared core; on all of
    #: cbsd432 it reached 31.07 dB on CBSD68 at σ=25 (FFDNet: 31.19) in 49 minutes of one shared
    #: core (tests/perf/test_unet_cbsd68.py).
    defaults = {
        "train_patch": 64,  # side of the random training patches
        "train_batch": 32,  # patches per optimiser step
        "train_steps": 20000,  # optimiser steps
        "lr": 1e-3,  # Adam, warm-up then cosine decay to 1% of it
        "channels": 64,  # features at full resolution, doubled per level
        "depth": 3,  # number of down-samplings
        "train_images": None,  # learn from the first N training images (None: all)
        "train_task": None,  # the task whose physics and noise it trains on (None: the test task)
        "train_set": None,  # the training set (None: the profile's for the task's image space)
    }
    #: test: seconds per cell; quick: the quick profile trains it three times per task (1, 4 and
    #: 13 images): small patches and batches keep the three within the time one 48² × 16 training took
    budgets = {
        "test": {"train_steps": 10, "train_batch": 4, "train_patch": 32, "channels": 8, "depth": 2},
        "quick": {"train_steps": 400, "train_batch": 8, "train_patch": 32, "channels": 32, "depth": 2},
    }

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        for key in ("train_patch", "train_batch", "train_steps", "channels", "depth"):
            cls.require(params, key, params[key] >= 1, "an integer >= 1")
        cls.require(params, "lr", params["lr"] > 0, "a number > 0")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._net: UNetNet | None = None
        self._channels: int | None = None

    def _build(self, channels: int) -> UNetNet:
        return UNetNet(2 * channels, channels, channels=int(self.params["channels"]), depth=int(self.params["depth"]))

    def prepare(self, ctx: TrainingContext) -> TrainingReport:
        p = self.params
        images = loop.training_images(ctx, p["train_images"], self.name)
        channels = images[0].shape[0]
        patch, batch = int(p["train_patch"]), int(p["train_batch"])
        description = {
            "task": loop.task_description(ctx.task),
            "dataset": ctx.dataset,
            "n_images": len(images),
            "images_sha256": loop.images_fingerprint(images),
            "channels_in": channels,
            **({"windows_of": "whole-image measurements"} if ctx.task.whole_image_operator else {}),
            # the condition (train_task, train_set) is ctx.task and ctx.dataset above: an instance
            # trained away from its test task reuses the weights trained on that task
            "params": {k: p[k] for k in sorted(self.defaults) if k not in self.condition_parameters()},
            "seed": ctx.seed,
        }
        with seeding.seeded(ctx.seed):
            net = self._build(channels).to(ctx.device)

        def train() -> tuple[list[float], dict[str, torch.Tensor]]:
            generator = torch.Generator().manual_seed(ctx.seed)
            pairs = self._pairs(images, patch, ctx, generator)

            def loss_fn() -> torch.Tensor:
                inputs, x = pairs(batch)
                estimate = inputs[:, :channels] + net(inputs)
                return torch.mean((estimate - x) ** 2)

            losses = loop.train_network(net, loss_fn, steps=int(p["train_steps"]), lr=float(p["lr"]),
                                        progress=ctx.progress, desc=f"unet {ctx.task.name}")
            return losses, net.state_dict()

        report = loop.load_or_train(cache_dir=ctx.cache_dir, method=self.name, description=description,
                                    net=net, train=train)
        self._net, self._channels = net, channels
        report.images = len(images)
        used = loop.count(len(images), "image")
        report.description = f"suite U-Net, {used} of {ctx.dataset}, {int(p['train_steps'])} steps"
        return report

    @staticmethod
    def _pairs(images: list[torch.Tensor], patch: int, ctx: TrainingContext,
               generator: torch.Generator) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
        """batch → (network inputs, clean patches): patches measured on their own where the
        operator is local, windows of measured whole images where it mixes the whole image."""
        if ctx.task.whole_image_operator:
            return loop.WholeImagePatches(images, patch, ctx.task, ctx.device, generator).sample
        sampler = loop.PatchSampler(images, patch, generator)
        simulator = loop.MeasurementSimulator(ctx.task, (images[0].shape[0], patch, patch), ctx.device, generator)

        def sample(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
            x = sampler.sample(batch).to(ctx.device)
            with torch.no_grad():
                return simulator.inputs(x), x

        return sample

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> Reconstruction:
        if self._net is None:
            raise UserError("unet: call prepare() (train or load the checkpoint) before reconstruct()")
        net = self._net.to(y.device)
        with torch.no_grad():
            inputs = loop.net_input(physics, y)
            estimate = inputs[:, : inputs.shape[1] // 2]
            c = estimate.shape[1]
            if c != self._channels:
                raise UserError(
                    f"unet was trained on {self._channels}-channel images but the measurement has {c} channels"
                )
            x = spaces.of(physics).project(estimate + net(inputs))
        return Reconstruction(x=x, info={"parameters": sum(q.numel() for q in net.parameters())})
