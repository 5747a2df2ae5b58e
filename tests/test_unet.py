"""The supervised U-Net: it learns, it beats the pseudo-inverse, it caches, it limits its data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from benchmark.api import TrainingContext, TrainingReport
from benchmark.core.errors import NotApplicable, UserError
from benchmark.problems import data, tasks
from methods._training import loop
from methods.bicubic import Bicubic
from methods.unet import SupervisedUNet
from tests.conftest import colour_training_context, requires_shared

#: a budget small enough for a unit test (a few seconds on a CPU)
TINY = {"train_patch": 32, "train_batch": 8, "train_steps": 80, "channels": 8, "depth": 1, "lr": 3e-3}


pytestmark = pytest.mark.usefixtures("one_thread")


def _context(task_name: str, cache: Path, images: list[torch.Tensor] | None = None) -> TrainingContext:
    train = images if images is not None else [img.tensor for img in data.load("embedded", split="train", crop=96)]
    return TrainingContext(images=train, dataset="embedded", task=tasks.get(task_name), cache_dir=cache,
                           seed=0, device=torch.device("cpu"), progress=False)


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(-10 * torch.log10(torch.mean((x - ref) ** 2)))


Trained = tuple[SupervisedUNet, TrainingContext, TrainingReport]


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    ctx = _context("denoising_s25", tmp_path_factory.mktemp("unet-cache"))
    method = SupervisedUNet(**TINY)
    report = method.prepare(ctx)
    assert not report.cached
    return method, ctx, report


def test_training_reduces_the_loss(denoiser: Trained) -> None:
    method, ctx, _ = denoiser
    report = SupervisedUNet(**TINY).prepare(ctx)  # loads the curve stored with the checkpoint
    first, last = report.losses[0], report.losses[-1]
    assert last < 0.5 * first, f"loss went from {first:.4g} to {last:.4g}"


def test_beats_the_pseudo_inverse_on_denoising(denoiser: Trained) -> None:
    method, ctx, _ = denoiser
    task = ctx.task
    gains = []
    for image in data.load("embedded", crop=64)[:2]:
        x = image.tensor[None]
        generator = tasks.measurement_generator(task.name, image.id, 0, dataset="embedded")
        physics = task.physics(tuple(image.tensor.shape), torch.device("cpu"), generator)
        y = task.measure(x, physics, generator)
        x_hat = method.reconstruct(y, physics, seed=0).x
        assert x_hat.shape == x.shape
        gains.append(_psnr(x_hat, x) - _psnr(physics.A_dagger(y).clamp(0, 1), x))
    assert min(gains) > 2.0, f"PSNR gains over A⁺y: {gains}"


def test_second_prepare_loads_the_checkpoint_and_trains_nothing(
    denoiser: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    method, ctx, trained = denoiser

    def no_training(*args: object, **kwargs: object) -> list[float]:
        raise AssertionError("a cached configuration must not train")

    monkeypatch.setattr(loop, "train_network", no_training)
    again = SupervisedUNet(**TINY)
    report = again.prepare(ctx)
    assert report.cached and Path(report.checkpoint).is_file()
    assert report.seconds == trained.seconds > 0  # what the weights cost to train, not the load time
    y = torch.rand(1, 1, 40, 40)
    physics = ctx.task.physics((1, 40, 40), torch.device("cpu"), torch.Generator().manual_seed(1))
    assert torch.equal(again.reconstruct(y, physics, seed=0).x, method.reconstruct(y, physics, seed=0).x)


def test_fewer_training_images_is_a_different_checkpoint(tmp_path: Path) -> None:
    images = [img.tensor for img in data.load("embedded", split="train", crop=48)]
    ctx = _context("denoising_s25", tmp_path, images)
    budget = {**TINY, "train_steps": 2}
    all_images = SupervisedUNet(**budget).prepare(ctx)
    three = SupervisedUNet(**budget, train_images=3).prepare(ctx)
    assert not three.cached and three.checkpoint != all_images.checkpoint
    assert three.description == "suite U-Net, 3 images of embedded, 2 steps"  # what tables label it
    assert SupervisedUNet(**budget, train_images=3).prepare(ctx).cached


def test_random_inpainting_draws_a_new_mask_for_every_patch() -> None:
    generator = torch.Generator().manual_seed(0)
    shape = (1, 16, 16)
    x = torch.rand(4, *shape)
    inpainting = loop.MeasurementSimulator(tasks.get("inpainting_random50"), shape, torch.device("cpu"), generator)
    masks = inpainting.inputs(x)[:, 1]
    assert inpainting.random_operator
    assert all(not torch.equal(masks[0], masks[i]) for i in range(1, 4))
    denoising = loop.MeasurementSimulator(tasks.get("denoising_s25"), shape, torch.device("cpu"), generator)
    assert not denoising.random_operator and denoising.inputs(x).shape == (4, 2, 16, 16)


@pytest.mark.parametrize("task_name", ["mri_x4", "ct_views60"])
def test_mri_and_ct_nets_learn_from_windows_of_whole_measured_images(task_name: str) -> None:
    """A fastMRI mask drawn at a patch's width, or the sinogram of a patch, has other artefacts
    than the test images': the operator is built at the whole image's size, the window cut after."""
    task = tasks.get(task_name)
    assert task.whole_image_operator and not tasks.get("inpainting_random50").whole_image_operator
    channels = task.space.channels[0]
    images = [torch.rand(channels, 48, 48, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    built: list[tuple[int, ...]] = []
    real = task.build

    def recording(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> object:
        built.append(shape)
        return real(shape, device, g)

    task = dataclasses.replace(task, build=recording)
    ctx = TrainingContext(images=images, dataset="toy", task=task, cache_dir=Path("."), seed=0,
                          device=torch.device("cpu"), progress=False)
    inputs, clean = SupervisedUNet._pairs(images, 32, ctx, torch.Generator().manual_seed(0))(3)
    assert inputs.shape == (3, 2 * channels, 32, 32) and clean.shape == (3, channels, 32, 32)
    assert built and set(built) == {(channels, 48, 48)}
    views = [v for img in images for k in range(4) for v in (torch.rot90(img, k, dims=(1, 2)),
                                                            torch.rot90(img, k, dims=(1, 2)).flip(2))]
    windows = [any(torch.equal(c, v[..., t:t + 32, s:s + 32]) for v in views for t in range(17) for s in range(17))
               for c in clean]
    assert all(windows), "each clean patch is a window of a (flipped, rotated) training image"
    whole_inputs, whole = SupervisedUNet._pairs(images, 64, ctx, torch.Generator().manual_seed(0))(1)
    assert whole.shape[-2:] == (48, 48)  # a patch larger than the images: whole images


def test_reconstruct_before_training_is_a_clear_error() -> None:
    physics = tasks.get("denoising_s25").physics((1, 8, 8), torch.device("cpu"), torch.Generator())
    with pytest.raises(UserError, match="prepare"):
        SupervisedUNet().reconstruct(torch.rand(1, 1, 8, 8), physics, seed=0)


def test_a_gray_trained_net_is_not_applied_to_colour_images(tmp_path: Path) -> None:
    """No per-channel application: a gray training set for colour test images is a skip, with the fix."""
    ctx = dataclasses.replace(_context("denoising_s25", tmp_path), channels=3)
    with pytest.raises(NotApplicable, match=r"training: \{rgb: cbsd432\}"):
        SupervisedUNet(**{**TINY, "train_steps": 1}).prepare(ctx)


@requires_shared
def test_colour_images_get_a_net_trained_on_colour_images(tmp_path: Path) -> None:
    """Trained on four cbsd432 crops for 80 steps, the net takes RGB in (6 input channels) and beats the noisy input."""
    ctx = colour_training_context("denoising_s25", tmp_path)
    method = SupervisedUNet(**TINY)
    method.prepare(ctx)
    assert method._net is not None and method._net.head.in_channels == 6
    x = data.load("cbsd68", crop=48, limit=1)[0].tensor[None]
    generator = torch.Generator().manual_seed(0)
    physics = ctx.task.physics((3, 48, 48), torch.device("cpu"), generator)
    y = ctx.task.measure(x, physics, generator)
    x_hat = method.reconstruct(y, physics, seed=0).x
    assert x_hat.shape == x.shape and _psnr(x_hat, x) > _psnr(y.clamp(0, 1), x) + 1  # 80 steps: +1.6 dB measured
    with pytest.raises(UserError, match="3-channel"):
        method.reconstruct(y[:, :1], tasks.get("denoising_s25").physics((1, 48, 48), torch.device("cpu"), generator),
                           seed=0)


@pytest.mark.parametrize("task_name", ["sr_x4", "sr_x4_bicubic"])
def test_super_resolution_nets_refine_the_bicubic_upsampling(task_name: str) -> None:
    """The SR convention (SRCNN, VDSR): the net's input is MATLAB-bicubic up-sampled y, not A⁺y."""
    x = data.load("embedded", crop=48)[0].tensor[None]
    task = tasks.get(task_name)
    physics = task.physics((1, 48, 48), torch.device("cpu"), torch.Generator().manual_seed(0))
    y = task.measure(x, physics, torch.Generator().manual_seed(0))
    estimate = loop.net_input(physics, y)[:, :1]
    assert torch.equal(estimate, Bicubic().reconstruct(y, physics, seed=0))
    assert not torch.allclose(estimate, physics.A_dagger(y), atol=1e-3)
