"""Training the unrolled networks (``modl``, ``lpd``): networks that take the measurement and its
operator, and run the operator inside, so they learn from whole measured training images.

Each step draws training images, flips and rotates them, measures each whole with the task's own
physics and noise (a fresh random mask per image for MRI, as fastMRI's E2E-VarNet is trained,
Sriram et al. 2020; ``loop.MeasuredImages``) and takes the mean squared error of the network's
output against the clean image. Training may run in stages (MoDL first trains one unrolled
iteration, then all of them, as its authors do); the weights are cached by ``loop.load_or_train``
under a key that names the task, the training images and every parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchmark.api import Method, TrainingContext, TrainingReport
from methods._training import loop

#: ``forward(y, physics) -> x``: the network as one training stage runs it
Forward = Callable[[torch.Tensor, Any], torch.Tensor]


@dataclass(frozen=True)
class Stage:
    """One training run: ``steps`` optimiser steps of ``forward`` (stages of 0 steps are skipped)."""

    steps: int
    forward: Forward
    label: str


@dataclass(frozen=True)
class Optimiser:
    """Adam's settings for every stage (``loop.train_network``: warm-up, then cosine decay)."""

    lr: float
    batch: int
    betas: tuple[float, float] = (0.9, 0.999)
    clip_value: float | None = None
    clip_norm: float | None = None


def supervised_loss(forward: Forward, sampler: loop.MeasuredImages, batch: int) -> Callable[[], torch.Tensor]:
    """Mean over ``batch`` drawn images of the squared error of ``forward(y, physics)`` (each image
    has its own operator, so they run one by one)."""

    def loss_fn() -> torch.Tensor:
        errors = []
        for _ in range(batch):
            x, y, physics = sampler.sample()
            errors.append(torch.mean((forward(y, physics) - x) ** 2))
        return torch.stack(errors).mean()

    return loss_fn


def prepare(method: Method, ctx: TrainingContext, net: nn.Module, stages: Sequence[Stage],
            optimiser: Optimiser) -> TrainingReport:
    """Train ``net`` (already built, seeded) through ``stages`` on the whole measured training
    images of ``ctx``, or load the cached weights of the same configuration."""
    p = method.params
    images = loop.training_images(ctx, p["train_images"], method.name)
    description = {
        "task": loop.task_description(ctx.task),
        "dataset": ctx.dataset,
        "n_images": len(images),
        "images_sha256": loop.images_fingerprint(images),
        "channels_in": int(images[0].shape[0]),
        "trained_on": "whole measured images",
        # the condition (train_task, train_set) is ctx.task and ctx.dataset above: an instance
        # trained away from its test task reuses the weights trained on that task
        "params": {k: p[k] for k in sorted(method.defaults) if k not in method.condition_parameters()},
        "seed": ctx.seed,
    }

    def train() -> tuple[list[float], dict[str, torch.Tensor]]:
        sampler = loop.MeasuredImages(images, ctx.task, ctx.device, torch.Generator().manual_seed(ctx.seed))
        losses: list[float] = []
        for stage in stages:
            if stage.steps < 1:
                continue
            losses += loop.train_network(
                net, supervised_loss(stage.forward, sampler, optimiser.batch), steps=stage.steps, lr=optimiser.lr,
                progress=ctx.progress, desc=f"{method.name} {ctx.task.name} {stage.label}", betas=optimiser.betas,
                clip_value=optimiser.clip_value, clip_norm=optimiser.clip_norm)
        return losses, net.state_dict()

    report = loop.load_or_train(cache_dir=ctx.cache_dir, method=method.name, description=description, net=net,
                                train=train)
    report.images = len(images)
    steps = " + ".join(f"{s.steps} steps {s.label}" for s in stages if s.steps >= 1)
    report.description = f"suite {method.name}, {loop.count(len(images), 'image')} of {ctx.dataset}, {steps}"
    return report
