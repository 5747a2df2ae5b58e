"""Training utilities shared by the suite-trained methods: seeded patches, simulated
measurements, the optimisation loop with a progress bar, and the load-or-train cache wrapper.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import deepinv as dinv
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from benchmark.api import TrainingContext, TrainingReport
from benchmark.core.errors import NotApplicable, UserError
from methods._training import checkpoint as ckpt
from methods.bicubic import upsample

#: the loss curve kept in a checkpoint has at most this many points (means over equal chunks)
MAX_LOSS_POINTS = 500


def training_images(ctx: TrainingContext, limit: int | None, method: str = "") -> list[torch.Tensor]:
    """The first ``limit`` training images (all when ``limit`` is None or 0); ``NotApplicable``
    when their channels are not the test images' (``ctx.channels``): a net learns the colour
    statistics of what it is trained on, so a gray net never restores colour channel by channel."""
    if not ctx.images:
        raise UserError(f"training set {ctx.dataset!r} holds no images")
    if limit is not None and not 1 <= limit <= len(ctx.images):
        raise UserError(f"train_images must be between 1 and the {len(ctx.images)} images of training set "
                        f"{ctx.dataset!r} (or None for all), got {limit}")
    images = list(ctx.images[:limit])
    channels = int(images[0].shape[0])
    if ctx.channels is not None and ctx.channels != channels:
        kind = "colour" if ctx.channels == 3 else f"{ctx.channels}-channel"
        raise NotApplicable(
            f"{method or 'this method'} learns from {ctx.dataset!r}, whose images have {channels} channel(s), and the "
            f"test images are {kind}: give the profile a {kind} training set (training: {{rgb: cbsd432}} for colour)")
    return images


class PatchSampler:
    """Random training patches with random flips and 90° rotations, from a seeded generator.

    Images smaller than a patch are reflect-padded once, so any training set works.
    """

    def __init__(self, images: list[torch.Tensor], patch: int, generator: torch.Generator) -> None:
        channels = {img.shape[0] for img in images}
        if len(channels) != 1:
            raise UserError(f"training images mix channel counts {sorted(channels)}")
        self.channels = channels.pop()
        self.patch = patch
        self.generator = generator
        self.images = [self._fit(img.float()) for img in images]

    def _fit(self, img: torch.Tensor) -> torch.Tensor:
        _, h, w = img.shape
        pad_h, pad_w = max(0, self.patch - h), max(0, self.patch - w)
        if pad_h or pad_w:
            img = F.pad(img[None], (0, pad_w, 0, pad_h), mode="replicate")[0]
        return img

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator).item())

    def sample(self, batch: int) -> torch.Tensor:
        out = torch.empty(batch, self.channels, self.patch, self.patch)
        for i in range(batch):
            img = self.images[self._randint(len(self.images))]
            top = self._randint(img.shape[1] - self.patch + 1)
            left = self._randint(img.shape[2] - self.patch + 1)
            crop = img[:, top : top + self.patch, left : left + self.patch]
            crop = torch.rot90(crop, self._randint(4), dims=(1, 2))
            out[i] = crop.flip(2) if self._randint(2) else crop
        return out


class MeasurementSimulator:
    """Applies a task's physics to patch batches, the way the harness measures test images.

    A task whose physics draws from the generator (a random inpainting mask) gets a fresh
    operator per patch, so the net sees many masks; a deterministic one (denoising, blur,
    down-sampling) is built once and applied to the whole batch, which is much faster.
    """

    def __init__(
        self, task: Any, shape: tuple[int, int, int], device: torch.device, generator: torch.Generator
    ) -> None:
        self.task = task
        self.shape = shape
        self.device = device
        self.generator = generator
        before = generator.get_state()
        physics = task.physics(shape, device, generator)
        self.random_operator = not torch.equal(before, generator.get_state())
        self.fixed = None if self.random_operator else physics

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Network inputs ``[A⁺y, A*A 1]`` for a batch of clean patches ``x``."""
        if self.fixed is not None:
            return net_input(self.fixed, self.task.measure(x, self.fixed, self.generator))
        rows = []
        for i in range(x.shape[0]):
            physics = self.task.physics(self.shape, self.device, self.generator)
            rows.append(net_input(physics, self.task.measure(x[i : i + 1], physics, self.generator)))
        return torch.cat(rows)


class WholeImagePatches:
    """Training pairs for an operator that mixes the whole image (``Task.whole_image_operator``:
    MRI, CT): each drawn image is flipped and rotated (by 90° only when square), measured whole
    at its own size, as the test images are (a fresh random operator per image where the task
    draws one), and one ``patch``² window is cut at the same place from the network's inputs
    ``[A⁺y, A*A 1]`` and from the clean image; ``patch`` is at most the smallest image side
    (whole images then, as fastMRI's U-Net, Zbontar et al. 2018, and FBPConvNet, Jin et al.
    2017, learn)."""

    def __init__(self, images: list[torch.Tensor], patch: int, task: Any, device: torch.device,
                 generator: torch.Generator) -> None:
        self.images = [img.float() for img in images]
        self.patch = min(patch, *(min(img.shape[-2:]) for img in self.images))
        self.task, self.device, self.generator = task, device, generator
        self._simulators: dict[tuple[int, int, int], MeasurementSimulator] = {}

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator).item())

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs B×2C×p×p, clean images B×C×p×p)."""
        inputs, targets = [], []
        for _ in range(batch):
            img = flip_rotate(self.images[self._randint(len(self.images))], self._randint)
            shape = (int(img.shape[0]), int(img.shape[1]), int(img.shape[2]))
            if shape not in self._simulators:
                self._simulators[shape] = MeasurementSimulator(self.task, shape, self.device, self.generator)
            x = img[None].to(self.device)
            with torch.no_grad():
                measured = self._simulators[shape].inputs(x)
            top = self._randint(shape[1] - self.patch + 1)
            left = self._randint(shape[2] - self.patch + 1)
            window = (..., slice(top, top + self.patch), slice(left, left + self.patch))
            inputs.append(measured[window])
            targets.append(x[window])
        return torch.cat(inputs), torch.cat(targets)


def flip_rotate(img: torch.Tensor, randint: Callable[[int], int]) -> torch.Tensor:
    """``img`` (C×H×W) rotated by a random multiple of 90° (only when square: a rotation would
    change a rectangular image's shape) and flipped left-right at random."""
    turns = randint(4)
    img = torch.rot90(img, turns, dims=(1, 2)) if img.shape[1] == img.shape[2] else img
    return img.flip(2) if randint(2) else img


class MeasuredImages:
    """Training triples (clean image, measurement, operator) for a network that takes the
    measurement and its operator, as an unrolled network does: each drawn image is flipped and
    rotated (``flip_rotate``) and measured whole by the task's own physics and noise, a fresh
    random operator per draw where the task draws one (an MRI line mask), as the test images
    are; a fixed operator (CT) is built once per image size."""

    def __init__(self, images: list[torch.Tensor], task: Any, device: torch.device,
                 generator: torch.Generator) -> None:
        self.images = [img.float() for img in images]
        self.task, self.device, self.generator = task, device, generator
        self._simulators: dict[tuple[int, int, int], MeasurementSimulator] = {}

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator).item())

    def sample(self) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """(x 1×C×H×W, y, physics) of one drawn training image."""
        img = flip_rotate(self.images[self._randint(len(self.images))], self._randint)
        shape = (int(img.shape[0]), int(img.shape[1]), int(img.shape[2]))
        if shape not in self._simulators:
            self._simulators[shape] = MeasurementSimulator(self.task, shape, self.device, self.generator)
        simulator = self._simulators[shape]
        fixed = simulator.fixed
        physics = fixed if fixed is not None else self.task.physics(shape, self.device, self.generator)
        x = img[None].to(self.device)
        with torch.no_grad():
            y = self.task.measure(x, physics, self.generator)
        return x, y, physics


def first_estimate(physics: Any, y: torch.Tensor) -> torch.Tensor:
    """The estimate a restoration net refines: for super-resolution the bicubic up-sampling of
    y (MATLAB's ``imresize``, the convention of SRCNN, Dong et al. 2014, and VDSR, Kim et al.
    2016); otherwise the pseudo-inverse ``A⁺y``."""
    factor = getattr(physics, "factor", None)
    if isinstance(physics, dinv.physics.Downsampling) and isinstance(factor, int):
        return upsample(y, factor)
    return physics.A_dagger(y)


def net_input(physics: Any, y: torch.Tensor) -> torch.Tensor:
    """The fixed physics-aware estimate the restoration net refines (``first_estimate``) plus
    the map ``A*A 1`` that says where the operator sees the image (the mask, for inpainting)."""
    estimate = first_estimate(physics, y)
    coverage = physics.A_adjoint(physics.A(torch.ones_like(estimate)))
    return torch.cat([estimate, coverage], dim=1)


def train_network(
    net: nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    *,
    steps: int,
    lr: float,
    progress: bool,
    desc: str,
    after_step: Callable[[], None] | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    clip_value: float | None = None,
    clip_norm: float | None = None,
) -> list[float]:
    """Adam with a short warm-up then cosine decay; returns the chunk-averaged loss curve.
    ``clip_value`` clips each gradient entry to [−c, c] (MoDL's training), ``clip_norm`` the
    global gradient norm (learned primal-dual's)."""
    if steps < 1:
        raise UserError(f"training needs steps >= 1, got {steps}")
    optimiser = torch.optim.Adam(net.parameters(), lr=lr, betas=betas)
    warmup = max(1, steps // 50)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    chunk = max(1, math.ceil(steps / MAX_LOSS_POINTS))
    curve: list[float] = []
    running, count = 0.0, 0
    net.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    for _ in bar:
        loss = loss_fn()
        if not torch.isfinite(loss):
            raise RuntimeError(f"{desc}: the training loss became {loss.item()} (lower the learning rate)")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if clip_value is not None:
            nn.utils.clip_grad_value_(net.parameters(), clip_value)
        if clip_norm is not None:
            nn.utils.clip_grad_norm_(net.parameters(), clip_norm)
        optimiser.step()
        scheduler.step()
        if after_step is not None:
            after_step()
        running += loss.item()
        count += 1
        if count == chunk:
            curve.append(running / count)
            bar.set_postfix(loss=f"{curve[-1]:.3g}", refresh=False)
            running, count = 0.0, 0
    if count:
        curve.append(running / count)
    net.eval()
    return curve


def load_or_train(
    *,
    cache_dir: Path,
    method: str,
    description: dict[str, Any],
    net: nn.Module,
    train: Callable[[], tuple[list[float], dict[str, torch.Tensor]]],
) -> TrainingReport:
    """Load the checkpoint for ``description`` into ``net``, or train, save and load it.

    ``train`` returns the loss curve and the state dict to store (e.g. EMA weights). The report
    says what the weights cost to train: a cached load reports the training seconds recorded in
    the checkpoint (with ``cached=True``), not the fraction of a second the load took, so
    ``train_s`` means the same whether or not a run reused the weights. A checkpoint without that
    record falls back to the load time.
    """
    key = ckpt.cache_key({"method": method, **description})
    path = ckpt.checkpoint_path(cache_dir, method, key)
    start = time.perf_counter()
    if path.exists():
        stored = ckpt.load(path, key)
        net.load_state_dict(stored.state)
        net.eval()
        return TrainingReport(seconds=_training_seconds(stored.meta, time.perf_counter() - start), cached=True,
                              checkpoint=str(path), losses=stored.losses)
    losses, state = train()
    seconds = time.perf_counter() - start
    meta = {"description": description, "seconds": seconds}
    ckpt.save(path, ckpt.Checkpoint(key=key, state=state, losses=losses, meta=meta))
    net.load_state_dict(state)
    net.eval()
    return TrainingReport(seconds=seconds, cached=False, checkpoint=str(path), losses=losses)


def _training_seconds(meta: dict[str, Any], fallback: float) -> float:
    """The training time a checkpoint recorded (``meta["seconds"]``), else ``fallback``."""
    seconds = meta.get("seconds")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds) and seconds >= 0:
        return float(seconds)
    return fallback


def images_fingerprint(images: list[torch.Tensor]) -> str:
    """sha256 of the training images themselves, so a changed training set never reuses weights."""
    return ckpt.state_digest({f"{i:06d}": img for i, img in enumerate(images)})


def count(n: int, noun: str) -> str:
    """"1 image", "13 images": for the labels tables show."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def task_description(task: Any) -> dict[str, Any]:
    """What identifies a task in a cache key (its name, parameters and noise level)."""
    return {"name": task.name, "params": dict(task.params), "noise_sigma": float(task.noise_sigma)}
