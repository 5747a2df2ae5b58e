"""DPS on complex MR images (the ``mri`` space): a 2-channel prior trained on the MRI training
slices (real and imaginary parts jointly), sampled with the space's value range, against the
zero-filled inverse FFT on 4× single-coil slices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.api import TrainingContext
from benchmark.problems import data, metrics, spaces, tasks
from methods._training import diffusion
from methods.dps import DPS
from tests.conftest import requires_shared

pytestmark = [requires_shared, pytest.mark.usefixtures("one_thread")]

#: a prior a CPU trains in ~1 min on one thread: 16 channels, 2 levels, 600 steps of 8 patches of 32²
#: from the 40 training slices at 64²; chains of 100 steps
BUDGET = {"prior_channels": 16, "prior_depth": 2, "prior_patch": 32, "prior_batch": 8, "prior_steps": 600,
          "prior_lr": 3e-3, "sampling_steps": 100}
SIZE, SLICES = 64, 3
MRI_X4 = tasks.get("mri_x4")


def _context(task: tasks.Task, cache: Path, images: list[torch.Tensor]) -> TrainingContext:
    return TrainingContext(images=images, dataset="mri_brain_train", task=task, cache_dir=cache, seed=0,
                           device=torch.device("cpu"), progress=False, channels=2)


@pytest.fixture(scope="module")
def slices() -> list[torch.Tensor]:
    return [img.tensor for img in data.load("mri_brain_train", split="train", resize=SIZE)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dps-mri")


@pytest.fixture(scope="module")
def prior(slices: list[torch.Tensor], cache: Path) -> DPS:
    method = DPS(**DPS.resolve_params(MRI_X4, BUDGET))
    report = method.prepare(_context(MRI_X4, cache, slices))
    assert not report.cached and report.images == 40
    assert report.losses[-1] < 0.5 * report.losses[0], f"prior loss {report.losses[0]:.3g} → {report.losses[-1]:.3g}"
    return method


def test_the_mri_prior_is_two_channel_and_its_own_checkpoint(prior: DPS, slices: list[torch.Tensor],
                                                              cache: Path) -> None:
    """One network models real and imaginary parts jointly; its cache key names the space, so
    the same tensors read as another space's images train another prior."""
    assert prior._eps is not None and prior._eps.head.in_channels == 2 and prior._eps.tail.out_channels == 2
    small = {**BUDGET, "prior_steps": 2}
    assert not DPS(**small).prepare(_context(MRI_X4, cache, slices)).cached
    assert DPS(**small).prepare(_context(tasks.get("mri_multicoil_x4"), cache, slices)).cached  # same space
    assert not DPS(**small).prepare(_context(tasks.get("denoising_s25"), cache, slices)).cached, "unit prior reused"


def test_the_sampler_works_in_the_space_of_the_physics(prior: DPS) -> None:
    """x̂0 and the result are complex images: signed parts, within the space's value range [-1, 1]."""
    image = data.load("mri_brain", resize=32, limit=1)[0].tensor[None]
    generator = tasks.measurement_generator("mri_x4", "sampler", 0, dataset="mri_brain")
    physics = MRI_X4.physics(tuple(image.shape[1:]), torch.device("cpu"), generator)
    seen: list[torch.Tensor] = []
    result = prior.reconstruct(MRI_X4.measure(image, physics, generator), physics, seed=0,
                               callback=lambda step, x: seen.append(x) is None)
    assert len(seen) == 100 and result.x.shape == image.shape
    assert float(result.x.min()) < -0.05 and float(result.x.abs().max()) <= 1.0
    assert spaces.MRI.value_range == (-1.0, 1.0) and torch.equal(spaces.MRI.to_signed(image), image)


def test_dps_on_4x_mri_slices_against_zero_filled(prior: DPS, record_property: pytest.RecordProperty) -> None:
    """On 3 test slices at 64² (mri_x4, seeded): DPS with the CPU prior against the zero-filled
    inverse FFT and against the same chain without guidance (ζ = 0, a sample of the prior)."""
    psnr: dict[str, list[float]] = {"zero-filled": [], "dps": [], "prior sample": []}
    ssim: dict[str, list[float]] = {"zero-filled": [], "dps": []}
    space = MRI_X4.space
    for image in data.load("mri_brain", resize=SIZE, limit=SLICES):
        x = image.tensor[None]
        generator = tasks.measurement_generator("mri_x4", image.id, 0, dataset="mri_brain")
        physics = MRI_X4.physics(tuple(image.tensor.shape), torch.device("cpu"), generator)
        y = MRI_X4.measure(x, physics, generator)
        ctx = metrics.MetricContext(MRI_X4, space.data_range(x))
        outputs = {
            "zero-filled": physics.A_dagger(y),
            "dps": prior.reconstruct(y, physics, seed=0).x,
            "prior sample": diffusion.dps_sample(prior._eps, y, physics, shape=tuple(x.shape), steps=100, zeta=0.0,
                                                 generator=torch.Generator().manual_seed(0)).x,
        }
        for name, out in outputs.items():
            psnr[name].append(metrics.psnr(space.view(out), space.view(x), ctx))
            if name in ssim:
                ssim[name].append(metrics.ssim(space.view(out), space.view(x), ctx))
    mean = {name: sum(v) / len(v) for name, v in psnr.items()}
    mean_ssim = {name: sum(v) / len(v) for name, v in ssim.items()}
    figures = ("dps on mri_x4 (3 slices, 64², CPU prior): PSNR " +
               ", ".join(f"{k} {v:.2f}" for k, v in mean.items()) + " dB; SSIM " +
               ", ".join(f"{k} {v:.3f}" for k, v in mean_ssim.items()))
    record_property("figures", figures)
    print(figures)
    assert mean["dps"] > mean["prior sample"] + 4, figures
    assert mean["dps"] > mean["zero-filled"] - 1.5, figures
