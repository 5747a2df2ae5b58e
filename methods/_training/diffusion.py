"""DDPM pieces for diffusion posterior sampling: the noise schedule, training of the small
suite-trained prior, loading deepinv ``DiffUNet`` weights, and the DPS sampler itself.

Conventions follow DDPM / guided-diffusion (the code DPS builds on): the model's images live in
[-1, 1], the network predicts the noise ε, the schedule is linear with β from 1e-4 to 0.02 over
1000 steps, and sampling with fewer steps re-spaces the schedule evenly (``timestep_respacing``).
An image space's values reach that range through the space's declared affine map
(``ImageSpace.to_signed``: [0, 1] → [-1, 1] for gray, colour and CT; the identity for the real
and imaginary parts of an MR image of largest magnitude 1), never by branching on a task.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.errors import UserError
from benchmark.problems import spaces
from methods._training.checkpoint import read_weights
from methods._training.loop import PatchSampler, train_network

TRAIN_STEPS = 1000


@dataclass(frozen=True)
class Schedule:
    """ᾱ_t of the linear DDPM schedule at the (re-spaced) timesteps used for sampling."""

    timesteps: torch.Tensor  # original timestep indices, increasing, long
    alphas_cumprod: torch.Tensor  # ᾱ at those timesteps, float64

    @staticmethod
    def full_alphas_cumprod() -> torch.Tensor:
        betas = torch.linspace(1e-4, 0.02, TRAIN_STEPS, dtype=torch.float64)
        return torch.cumprod(1.0 - betas, dim=0)

    @classmethod
    def respaced(cls, steps: int) -> Schedule:
        if not 1 <= steps <= TRAIN_STEPS:
            raise UserError(f"dps: steps must be between 1 and {TRAIN_STEPS}, got {steps}")
        timesteps = torch.linspace(0, TRAIN_STEPS - 1, steps, dtype=torch.float64).round().long().unique()
        return cls(timesteps=timesteps, alphas_cumprod=cls.full_alphas_cumprod()[timesteps])

    def posterior(self, i: int) -> tuple[float, float, float]:
        """(coefficient of x̂0, coefficient of x_t, variance) of q(x_{t_{i-1}} | x_{t_i}, x̂0)."""
        a_t = float(self.alphas_cumprod[i])
        a_prev = float(self.alphas_cumprod[i - 1]) if i > 0 else 1.0
        beta = 1.0 - a_t / a_prev
        coef_x0 = beta * a_prev**0.5 / (1.0 - a_t)
        coef_xt = (1.0 - a_prev) * (1.0 - beta) ** 0.5 / (1.0 - a_t)
        variance = beta * (1.0 - a_prev) / (1.0 - a_t)
        return coef_x0, coef_xt, variance


class EMA:
    """Exponential moving average of the weights (with warm-up), the weights diffusion samples with."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.net, self.decay, self.updates = net, decay, 0
        self.shadow = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for shadow, live in zip(self.shadow.state_dict().values(), self.net.state_dict().values(), strict=True):
            if shadow.dtype.is_floating_point:
                shadow.mul_(decay).add_(live.detach(), alpha=1 - decay)
            else:
                shadow.copy_(live)


def train_prior(
    net: nn.Module,
    images: list[torch.Tensor],
    *,
    patch: int,
    batch: int,
    steps: int,
    lr: float,
    ema_decay: float,
    seed: int,
    device: torch.device,
    progress: bool,
    space: spaces.ImageSpace = spaces.UNIT,
) -> tuple[list[float], dict[str, torch.Tensor]]:
    """ε-prediction training on random patches of images of ``space`` (mapped to [-1, 1] by its
    ``to_signed``); returns the loss curve and the EMA weights."""
    generator = torch.Generator().manual_seed(seed)
    sampler = PatchSampler(images, patch, generator)
    sqrt_ab = Schedule.full_alphas_cumprod().sqrt().float().to(device)
    sqrt_1m_ab = (1 - Schedule.full_alphas_cumprod()).sqrt().float().to(device)
    ema = EMA(net, ema_decay)

    def loss_fn() -> torch.Tensor:
        x0 = space.to_signed(sampler.sample(batch).to(device))
        t = torch.randint(TRAIN_STEPS, (batch,), generator=generator).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        x_t = sqrt_ab[t].view(-1, 1, 1, 1) * x0 + sqrt_1m_ab[t].view(-1, 1, 1, 1) * noise
        return torch.mean((net(x_t, t) - noise) ** 2)

    losses = train_network(net, loss_fn, steps=steps, lr=lr, progress=progress, desc="dps prior", after_step=ema.update)
    return losses, ema.shadow.state_dict()


class PretrainedEps(nn.Module):
    """deepinv ``DiffUNet`` (RGB, learned variance) as an ε-predictor for gray or RGB images.

    Gray images are repeated to RGB and the predicted noise averaged back; only the ε half of
    the output is used (the sampler uses the fixed posterior variance, as for the small prior).
    DiffUNet halves its input five times, so an image whose sides are not multiples of 32 (most
    test images: BSD68's 481×321, Set14's) is reflect-padded to the next multiples and the
    prediction cropped back (the authors sample 256² crops; the padded border is a departure).
    """

    #: DiffUNet's six resolution levels (``channel_mult``): sides must be multiples of 2⁵
    MULTIPLE = 32

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels not in (1, 3):
            raise UserError(f"dps: pretrained DiffUNet weights need 1- or 3-channel images, got {channels}")
        rgb = x.expand(-1, 3, -1, -1) if channels == 1 else x
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.MULTIPLE, -width % self.MULTIPLE
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            rgb = F.pad(rgb, (0, pad_w, 0, pad_h), mode=mode)
        eps = self.model(rgb, t.expand(x.shape[0]), type_t="timestep")[:, :3, :height, :width]
        return eps.mean(dim=1, keepdim=True) if channels == 1 else eps


#: DiffUNet buffers computed from its noise schedule, absent from the released files (deepinv
#: loads the weights before it registers them), so a file may lack them
DIFFUNET_DERIVED = frozenset({"sqrt_1m_alphas_cumprod", "sqrt_alphas_cumprod"})


def load_diffunet(path: Path) -> PretrainedEps:
    """deepinv ``DiffUNet`` weights from a local file, read with ``weights_only=True``; every
    weight must fit (only the schedule buffers the released files lack may be missing)."""
    from deepinv.models import DiffUNet

    if not path.is_file():
        raise UserError(f"dps: pretrained_path {path} is not a file")
    state = read_weights(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    first = state.get("input_blocks.0.0.weight") if isinstance(state, dict) else None
    if not isinstance(first, torch.Tensor):
        raise UserError(f"dps: {path} is not a DiffUNet state dict (no input_blocks.0.0.weight)")
    model = DiffUNet(in_channels=3, out_channels=6, large_model=first.shape[0] == 256, pretrained=None)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise UserError(f"dps: {path} does not fit deepinv's DiffUNet: {str(exc).splitlines()[0]}") from exc
    missing = [key for key in missing if key not in DIFFUNET_DERIVED]
    if missing or unexpected:
        raise UserError(f"dps: {path} does not fit deepinv's DiffUNet: missing {_few(missing)}, "
                        f"unexpected {_few(unexpected)}")
    return PretrainedEps(model.eval().requires_grad_(False))


def _few(keys: list[str]) -> str:
    """At most three keys and how many more, for an error message."""
    shown = ", ".join(keys[:3]) or "none"
    return f"{shown} (+{len(keys) - 3} more)" if len(keys) > 3 else shown


@dataclass
class SampleResult:
    x: torch.Tensor  # in the physics' image space (its value range): the mean of the samples
    steps_run: int
    budget: int
    final_residual: float  # ‖y − A x̂0‖ at the last step, in the model's units (mean over the samples)
    #: per-pixel standard deviation across the samples (unbiased, K − 1); None for one sample
    std: torch.Tensor | None = None
    samples: int = 1


def _residual_norms(residual: torch.Tensor) -> torch.Tensor:
    """‖y − A x̂0‖ of each sample (the batch's first dimension)."""
    return torch.linalg.vector_norm(residual.reshape(residual.shape[0], -1), dim=1)


def dps_sample(
    eps_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    physics: Any,
    *,
    shape: tuple[int, ...],
    steps: int,
    zeta: float,
    generator: torch.Generator,
    callback: Callable[[int, torch.Tensor], bool] | None = None,
    step_sizes: Sequence[float] | None = None,
    samples: int = 1,
) -> SampleResult:
    """Diffusion posterior sampling (Chung et al., ICLR 2023, Algorithm 1, Gaussian noise).

    Each reverse step predicts x̂0 from x_t, takes the ancestral DDPM step, then moves the result
    along -ζ ∇_{x_t} ‖y − A x̂0‖ (the norm, not its square: with the paper's ζ_i = ζ/‖y − A x̂0‖
    on the squared norm this is the same step up to a factor 2, and it is what the authors' code
    does). The model works on [-1, 1]; the physics' image space (``spaces.of(physics)``) says how
    its values map there, and the residual is measured in the model's units (scaled by the map's
    stretch), so ζ means the same as in the paper. ``zeta`` is given for the paper's 1000 steps: a
    re-spaced chain of S steps covers 1000/S diffusion steps per step, so it takes ζ·1000/S per step
    and the guidance summed over the chain stays the same. ``callback(step, x̂0)`` (x̂0 in the
    image space, clipped to its value range) may stop the chain.

    ``samples`` = K > 1 runs K independent chains as one batch (each its own x_T and noise, drawn
    from ``generator``; each guided by its own residual): the result is their mean, an estimate of
    the posterior mean, with the per-pixel standard deviation across them; the callback gets the
    mean of the K x̂0. K = 1 draws exactly what a single chain draws.

    ``step_sizes`` (first step first) replaces that constant: deepinv's ``DPS`` discretises a
    reverse SDE whose guidance step is the score step s_t s_t' (σ_t² − σ_t'²) times its
    ``weight``; given those sizes this sampler computes deepinv's chain (``tests/test_dps.py``).
    """
    if samples < 1:
        raise UserError(f"dps: samples must be >= 1, got {samples}")
    schedule = Schedule.respaced(steps)
    space = spaces.of(physics)
    device = y.device
    batch = (samples, *shape[1:])
    x_t = torch.randn(batch, generator=generator).to(device)
    total = len(schedule.timesteps)
    sizes = list(step_sizes) if step_sizes is not None else [zeta * TRAIN_STEPS / total] * total
    if len(sizes) != total:
        raise ValueError(f"dps: {len(sizes)} step sizes for a chain of {total} steps")
    x0_image = x_t
    residual = float("nan")
    for step, i in enumerate(reversed(range(total)), start=1):
        a_t = float(schedule.alphas_cumprod[i])
        t = schedule.timesteps[i].view(1).to(device)
        x_t = x_t.detach().requires_grad_(True)
        with torch.enable_grad():
            eps = eps_model(x_t, t)
            x0 = ((x_t - (1 - a_t) ** 0.5 * eps) / a_t**0.5).clamp(-1, 1)
            norms = _residual_norms(space.signed_scale * (y - physics.A(space.from_signed(x0))))
            (grad,) = torch.autograd.grad(norms.sum(), x_t)  # each sample's gradient of its own norm
        coef_x0, coef_xt, variance = schedule.posterior(i)
        x_prev = coef_x0 * x0.detach() + coef_xt * x_t.detach()
        if i > 0:
            x_prev = x_prev + variance**0.5 * torch.randn(batch, generator=generator).to(device)
        x_t = x_prev - sizes[step - 1] * grad
        residual = float(norms.detach().mean())
        # The iterates returned if stopped now: x̂0 of this step, or the final samples at the end.
        x0_image = space.from_signed((x_t if i == 0 else x0).detach().clamp(-1, 1))
        if callback is not None and not callback(step, x0_image.mean(dim=0, keepdim=True)):
            return _result(x0_image, step, total, residual)
    return _result(x0_image, total, total, residual)


def _result(samples: torch.Tensor, steps_run: int, budget: int, residual: float) -> SampleResult:
    """The samples' mean and, for more than one, their per-pixel standard deviation."""
    count = samples.shape[0]
    std = samples.std(dim=0, keepdim=True, correction=1) if count > 1 else None
    return SampleResult(samples.mean(dim=0, keepdim=True), steps_run, budget, residual, std, count)
