"""Tasks: the inverse problems, declared in one place on deepinv physics.

Each measurement is made once per (task, image, seed) from a generator seeded by those three,
so every method sees the same ``y`` and the same operator (random masks included).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import deepinv as dinv
import torch

from benchmark import seeding
from benchmark.errors import unknown

PhysicsFactory = Callable[[tuple[int, int, int], torch.device, torch.Generator], Any]


@dataclass(frozen=True)
class Task:
    name: str
    family: str  # denoising | inpainting | super-resolution | deblurring
    description: str
    noise_sigma: float  # std of the additive Gaussian noise, images in [0, 1]
    build: PhysicsFactory = field(compare=False, repr=False)
    params: dict[str, Any] = field(default_factory=dict, compare=False)
    #: image sides must be a multiple of this (the super-resolution factor)
    size_multiple: int = 1

    def physics(self, shape: tuple[int, int, int], device: torch.device, generator: torch.Generator) -> Any:
        physics = self.build(shape, device, generator)
        noise = dinv.physics.GaussianNoise(sigma=self.noise_sigma) if self.noise_sigma > 0 else dinv.physics.ZeroNoise()
        physics.noise_model = noise
        return physics.to(device)

    def measure(self, x: torch.Tensor, physics: Any, generator: torch.Generator) -> torch.Tensor:
        """y = A x + σ n, with n drawn from ``generator`` (x is 1×C×H×W)."""
        y = physics.A(x)
        if self.noise_sigma > 0:
            noise = torch.randn(y.shape, generator=generator, device=generator.device, dtype=y.dtype)
            y = y + self.noise_sigma * noise.to(y.device)
        return y


def measurement_generator(task: str, image_id: str, seed: int) -> torch.Generator:
    """A CPU generator seeded by (task, image, seed): the same y for every method and run."""
    return seeding.generator(task, image_id, seed)


def _denoising(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
    return dinv.physics.Denoising(device=device)


def _random_inpainting(ratio_missing: float) -> PhysicsFactory:
    def build(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
        _, h, w = shape
        keep = (torch.rand((1, h, w), generator=g) >= ratio_missing).float()
        return dinv.physics.Inpainting(img_size=shape, mask=keep.expand(shape[0], h, w).clone(), device=device)

    return build


def _box_inpainting(fraction: float) -> PhysicsFactory:
    def build(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
        c, h, w = shape
        bh, bw = int(round(h * fraction)), int(round(w * fraction))
        mask = torch.ones(shape)
        top, left = (h - bh) // 2, (w - bw) // 2
        mask[:, top : top + bh, left : left + bw] = 0
        return dinv.physics.Inpainting(img_size=shape, mask=mask, device=device)

    return build


def _super_resolution(factor: int) -> PhysicsFactory:
    def build(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
        return dinv.physics.Downsampling(img_size=shape, factor=factor, filter="bicubic", padding="reflect",
                                         device=device)

    return build


def _gaussian_deblurring(sigma_blur: float) -> PhysicsFactory:
    def build(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
        kernel = dinv.physics.functional.blur.gaussian_blur(sigma=(sigma_blur, sigma_blur))
        return dinv.physics.BlurFFT(img_size=shape, filter=kernel, device=device)

    return build


def _declare() -> dict[str, Task]:
    tasks = [
        *(
            Task(f"denoising_s{s}", "denoising", f"Gaussian denoising, σ = {s}/255", s / 255.0, _denoising,
                 {"sigma255": s})
            for s in (15, 25, 50)
        ),
        Task("inpainting_random50", "inpainting", "Inpainting, 50% of pixels missing at random", 0.0,
             _random_inpainting(0.5), {"missing": 0.5}),
        Task("inpainting_box", "inpainting",
             "Inpainting of a centred box covering half of each side (25% of the area)", 0.0,
             _box_inpainting(0.5), {"box_fraction": 0.5}),
        Task("sr_x4", "super-resolution", "4× super-resolution, bicubic down-sampling", 0.0,
             _super_resolution(4), {"factor": 4}, size_multiple=4),
        Task("deblurring_gaussian", "deblurring", "Gaussian deblurring (blur σ = 1.6 px) with noise σ = 2.55/255",
             2.55 / 255.0, _gaussian_deblurring(1.6), {"blur_sigma": 1.6}),
    ]
    return {t.name: t for t in tasks}


TASKS: dict[str, Task] = _declare()


def get(name: str) -> Task:
    if name not in TASKS:
        raise unknown("task", name, TASKS)
    return TASKS[name]
