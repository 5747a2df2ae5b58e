"""Diffusion posterior sampling: the prior trains once per training set, sampling is seeded,
the callback can stop it, it beats the pseudo-inverse, and foreign weight files are refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from deepinv.models import Denoiser

from benchmark.api import TrainingContext
from benchmark.core.errors import NotApplicable, UserError
from benchmark.problems import data, tasks
from methods._training import checkpoint as ckpt
from methods._training import diffusion
from methods._training.nets import UNet
from methods.dps import DPS
from tests.conftest import colour_training_context, requires_shared

#: a prior small enough for a unit test; sampling with few steps
TINY = {"prior_channels": 8, "prior_depth": 2, "prior_patch": 32, "prior_batch": 8, "prior_steps": 150,
        "prior_lr": 3e-3, "sampling_steps": 25}


pytestmark = pytest.mark.usefixtures("one_thread")


def _context(task_name: str, cache: Path) -> TrainingContext:
    train = [img.tensor for img in data.load("embedded", split="train", crop=128)]
    return TrainingContext(images=train, dataset="embedded", task=tasks.get(task_name), cache_dir=cache,
                           seed=0, device=torch.device("cpu"), progress=False)


def _measure(task_name: str, image: data.Image) -> tuple[torch.Tensor, object, torch.Tensor]:
    task = tasks.get(task_name)
    x = image.tensor[None]
    generator = tasks.measurement_generator(task_name, image.id, 0, dataset="embedded")
    physics = task.physics(tuple(image.tensor.shape), torch.device("cpu"), generator)
    return task.measure(x, physics, generator), physics, x


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(-10 * torch.log10(torch.mean((x - ref) ** 2)))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dps-cache")


@pytest.fixture(scope="module")
def inpainter(cache: Path) -> DPS:
    method = DPS(**DPS.resolve_params(tasks.get("inpainting_random50"), TINY))
    report = method.prepare(_context("inpainting_random50", cache))
    assert not report.cached
    assert report.losses[-1] < 0.6 * report.losses[0], f"prior loss {report.losses[0]:.3g} → {report.losses[-1]:.3g}"
    return method


def test_prior_is_trained_once_per_training_set_not_per_task(inpainter: DPS, cache: Path) -> None:
    for task_name in ("denoising_s25", "sr_x4"):
        report = DPS(**TINY).prepare(_context(task_name, cache))
        assert report.cached, f"{task_name} retrained the prior"
    # Sampling parameters are not training parameters: they reuse the prior too.
    assert DPS(**{**TINY, "sampling_steps": 7, "zeta": 0.1}).prepare(_context("sr_x4", cache)).cached
    fresh = DPS(**{**TINY, "prior_steps": 3, "train_images": 1}).prepare(_context("sr_x4", cache))
    assert not fresh.cached and fresh.description == "suite prior, 1 image of embedded, 3 steps; one posterior sample"


def test_sampling_is_deterministic_for_a_seed(inpainter: DPS) -> None:
    image = data.load("embedded", crop=32)[0]
    y, physics, _ = _measure("inpainting_random50", image)
    first = inpainter.reconstruct(y, physics, seed=3).x
    assert torch.equal(first, inpainter.reconstruct(y, physics, seed=3).x)
    assert not torch.equal(first, inpainter.reconstruct(y, physics, seed=4).x)


def test_callback_sees_every_step_and_can_stop_the_chain(inpainter: DPS) -> None:
    image = data.load("embedded", crop=32)[0]
    y, physics, x = _measure("inpainting_random50", image)
    seen: list[int] = []

    def stop_after_four(step: int, x_k: torch.Tensor) -> bool:
        assert x_k.shape == x.shape and 0 <= float(x_k.min()) and float(x_k.max()) <= 1
        seen.append(step)
        return step < 4

    result = inpainter.reconstruct(y, physics, seed=0, callback=stop_after_four)
    assert seen == [1, 2, 3, 4]
    assert result.iterations == 4 and result.budget == TINY["sampling_steps"]
    full = inpainter.reconstruct(y, physics, seed=0, callback=lambda step, x_k: seen.append(step) is None)
    assert full.iterations == TINY["sampling_steps"] and seen[-1] == TINY["sampling_steps"]


def test_several_samples_give_their_mean_and_their_spread(inpainter: DPS) -> None:
    """samples = K: K independent chains in one call (each its own start and noise), their mean
    returned with the per-pixel std across them; the callback sees the mean of the K estimates;
    one sample has no uncertainty; the info says which estimate it is."""
    image = data.load("embedded", crop=32)[0]
    y, physics, x = _measure("inpainting_random50", image)
    single = inpainter.reconstruct(y, physics, seed=5)
    assert single.uncertainty is None and single.info["samples"] == 1
    assert single.info["estimate"] == "one posterior sample"
    eps = inpainter._eps
    assert eps is not None
    chains = diffusion.dps_sample(eps, y, physics, shape=tuple(x.shape), steps=TINY["sampling_steps"], zeta=0.5,
                                  generator=torch.Generator().manual_seed(5), samples=3)
    assert chains.samples == 3 and chains.std is not None and chains.std.shape == x.shape
    assert float(chains.std.min()) >= 0 and float(chains.std.mean()) > 0.01  # independent chains differ
    mean_of_four = DPS(**{**inpainter.params, "samples": 4})
    mean_of_four._eps, mean_of_four._channels, mean_of_four._space = eps, inpainter._channels, inpainter._space
    seen: list[torch.Tensor] = []
    result = mean_of_four.reconstruct(y, physics, seed=5, callback=lambda step, x_k: seen.append(x_k) is None)
    assert result.x.shape == x.shape and result.uncertainty is not None and result.uncertainty.shape == x.shape
    assert result.info == {**result.info, "samples": 4, "estimate": "mean of 4 posterior samples"}
    assert result.iterations == TINY["sampling_steps"] and seen[-1].shape == x.shape
    torch.testing.assert_close(seen[-1], result.x)  # the last iterate the callback saw is the mean returned
    with pytest.raises(UserError, match="'samples' must be an integer >= 1"):
        DPS(samples=0)


def test_beats_the_pseudo_inverse_on_random_inpainting(inpainter: DPS) -> None:
    for image in data.load("embedded", crop=48)[1:3]:
        y, physics, x = _measure("inpainting_random50", image)
        x_hat = inpainter.reconstruct(y, physics, seed=0).x
        assert x_hat.shape == x.shape
        trivial = _psnr(physics.A_dagger(y).clamp(0, 1), x)
        assert _psnr(x_hat, x) > trivial + 5, f"{image.id}: DPS {_psnr(x_hat, x):.2f} dB vs A⁺y {trivial:.2f} dB"


def test_super_resolution_output_has_the_high_resolution_shape(inpainter: DPS) -> None:
    image = data.load("embedded", crop=32)[1]
    y, physics, x = _measure("sr_x4", image)
    assert y.shape[-1] == 8
    assert inpainter.reconstruct(y, physics, seed=0).x.shape == x.shape


def test_respaced_schedule_ends_on_the_clean_image() -> None:
    schedule = diffusion.Schedule.respaced(100)
    assert len(schedule.timesteps) == 100 and int(schedule.timesteps[-1]) == diffusion.TRAIN_STEPS - 1
    coef_x0, coef_xt, variance = schedule.posterior(0)
    assert coef_x0 == pytest.approx(1.0) and coef_xt == pytest.approx(0.0) and variance == pytest.approx(0.0)
    with pytest.raises(UserError, match="steps"):
        diffusion.Schedule.respaced(0)


def test_pretrained_weights_must_exist_and_be_plain_tensors(tmp_path: Path) -> None:
    ctx = _context("sr_x4", tmp_path)
    with pytest.raises(UserError, match="not a file"):
        DPS(pretrained_path=str(tmp_path / "missing.pt")).prepare(ctx)
    pickled = tmp_path / "pickled.pt"
    torch.save({"input_blocks.0.0.weight": torch.zeros(1), "hook": Path("/")}, pickled)
    with pytest.raises(ckpt.CheckpointError, match="Python objects"):
        DPS(pretrained_path=str(pickled)).prepare(ctx)
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(UserError, match="not a DiffUNet state dict"):
        DPS(pretrained_path=str(other)).prepare(ctx)


def test_unknown_released_weights_are_refused_with_the_choices() -> None:
    with pytest.raises(UserError, match="parameter 'pretrained' must be one of ffhq, imagenet .*got 'celeba'"):
        DPS(pretrained="celeba")
    with pytest.raises(UserError, match="either pretrained or pretrained_path"):
        DPS(pretrained="ffhq", pretrained_path="/some/file.pt")


def test_weights_that_do_not_fit_diffunet_are_refused(tmp_path: Path) -> None:
    partial = tmp_path / "partial.pt"
    torch.save({"input_blocks.0.0.weight": torch.zeros(128, 3, 3, 3), "extra.weight": torch.zeros(1)}, partial)
    with pytest.raises(UserError, match=r"does not fit deepinv's DiffUNet: missing .*\(\+\d+ more\), unexpected extra"):
        DPS(pretrained_path=str(partial)).prepare(_context("sr_x4", tmp_path))


def test_a_gray_prior_is_not_applied_to_colour_images(tmp_path: Path) -> None:
    """No per-channel application: a gray training set for colour test images is a skip, with the fix."""
    ctx = dataclasses.replace(_context("inpainting_random50", tmp_path), channels=3)
    with pytest.raises(NotApplicable, match=r"training: \{rgb: cbsd432\}"):
        DPS(**{**TINY, "prior_steps": 1}).prepare(ctx)


@requires_shared
def test_colour_images_get_a_colour_prior(tmp_path: Path) -> None:
    """A prior trained on cbsd432 crops models three channels jointly and samples colour images."""
    ctx = colour_training_context("inpainting_random50", tmp_path)
    method = DPS(**DPS.resolve_params("inpainting", TINY))
    method.prepare(ctx)
    assert method._eps is not None and method._eps.head.in_channels == 3
    image = data.load("cbsd68", crop=32, limit=1)[0]
    y, physics, x = _measure("inpainting_random50", image)
    result = method.reconstruct(y, physics, seed=0)
    assert result.x.shape == x.shape and _psnr(result.x, x) > _psnr(physics.A_dagger(y), x) + 3


class _EpsAsDenoiser(Denoiser):
    """The suite's ε-predictor as the denoiser deepinv's DPS calls, on [-1, 1] images (its
    ``minus_one_one=False``): x̂0 = z − σ ε(√ᾱ z, t), clipped as DPS clips it, with t the step of
    the suite's schedule whose noise level is σ."""

    def __init__(self, eps: torch.nn.Module, schedule: diffusion.Schedule) -> None:
        super().__init__()
        self.eps, self.schedule = eps, schedule
        self.sigmas = ((1 - schedule.alphas_cumprod) / schedule.alphas_cumprod).sqrt()

    def forward(self, z: torch.Tensor, sigma: torch.Tensor | float, *args: object, **kwargs: object) -> torch.Tensor:
        level = float(torch.as_tensor(sigma).flatten()[0])
        j = int(torch.argmin((self.sigmas - level).abs()))
        a = float(self.schedule.alphas_cumprod[j])
        x_t = a**0.5 * z.float()
        x0 = (x_t - (1 - a) ** 0.5 * self.eps(x_t, self.schedule.timesteps[j].view(1))) / a**0.5
        return x0.clamp(-1, 1)


def test_the_sampler_is_deepinvs_dps_on_the_same_denoiser_start_and_noise() -> None:
    """The suite's DPS chain against deepinv 0.5's ``DPS`` (DDPM solver, VP schedule, norm
    guidance) on one untrained ε-net, one x_T and one noise sequence: deepinv's time steps are
    placed where its VP noise level equals the suite's schedule, its guidance step
    s_t s_t' (σ_t² − σ_t'²) is given to the suite's sampler as ``step_sizes``, and its
    measurement is the suite's residual in [-1, 1] units (2y − A1). Guided and unguided, the
    two samples agree to 1e-5 (float32 nets, float64 deepinv state); 10% more guidance moves them by 0.05."""
    from deepinv.physics import Inpainting
    from deepinv.sampling import DPS as DeepinvDPS
    from deepinv.sampling import DDPMSolver

    torch.manual_seed(0)
    eps = UNet(1, 1, channels=8, depth=1, time_conditioned=True).eval().requires_grad_(False)
    torch.nn.init.normal_(eps.tail.weight, std=0.02)  # a non-trivial prediction (the tail starts at zero)
    steps, shape = 12, (1, 1, 16, 16)
    schedule = diffusion.Schedule.respaced(steps)
    physics = Inpainting(img_size=shape[1:], mask=0.5, rng=torch.Generator().manual_seed(1))
    y = physics.A(torch.rand(shape, generator=torch.Generator().manual_seed(2)))
    generator = torch.Generator().manual_seed(3)
    x_T = torch.randn(shape, generator=generator)
    noises = [torch.randn(shape, generator=generator) for _ in range(steps - 1)]  # what the sampler draws next

    for weight in (0.0, 0.7):
        sampler = DeepinvDPS(_EpsAsDenoiser(eps, schedule), weight=weight, minus_one_one=False, num_steps=steps)
        sde = sampler.sde
        sigmas = ((1 - schedule.alphas_cumprod) / schedule.alphas_cumprod).sqrt().flip(0)  # first step first
        times = []
        for target in sigmas:  # deepinv's VP noise level is increasing in t: bisect for each of ours
            low, high = 0.0, 1.1  # the discrete chain starts a little above the VP SDE at t = 1
            for _ in range(60):
                mid = (low + high) / 2
                level = float(sde.sigma_t(torch.tensor([mid], dtype=torch.float64))[0])
                low, high = (mid, high) if level < float(target) else (low, mid)
            times.append((low + high) / 2)
        timesteps = torch.tensor([*times, 0.0], dtype=torch.float64)
        assert torch.allclose(sde.sigma_t(timesteps[:-1]), sigmas, rtol=1e-9)
        solver = DDPMSolver(timesteps=timesteps)
        queue = list(noises)
        solver.randn_like = lambda x, queue=queue: queue.pop(0).to(x.dtype)  # type: ignore[method-assign]
        sampler.solver = solver
        theirs = sampler(2 * y - physics.A(torch.ones(shape)), physics, x_init=x_T.double(), denoise_output=False)
        assert not queue  # every noise was used, in order
        scale, sigma = sde.scale_t(timesteps), sde.sigma_t(timesteps)
        sizes = [float(weight * scale[k] * scale[k + 1] * (sigma[k] ** 2 - sigma[k + 1] ** 2)) for k in range(steps)]
        ours = diffusion.dps_sample(eps, y, physics, shape=shape, steps=steps, zeta=0.0,
                                    generator=torch.Generator().manual_seed(3), step_sizes=sizes)
        assert (ours.x - theirs.float().clamp(-1, 1).add(1).div(2)).abs().max() < 1e-5, weight  # measured: 2.4e-7


class _SizeChecked(torch.nn.Module):
    """A stand-in for DiffUNet: refuses sides that are not multiples of 32, predicts ε = x."""

    def forward(self, x: torch.Tensor, t: torch.Tensor, type_t: str = "") -> torch.Tensor:
        assert x.shape[-2] % 32 == 0 and x.shape[-1] % 32 == 0 and x.shape[1] == 3, x.shape
        return torch.cat([x, torch.zeros_like(x)], dim=1)


def test_released_weights_sample_images_of_any_size() -> None:
    """DiffUNet halves its input five times: a 45×70 gray image is padded to 64×96 for it and
    its prediction cropped back to 45×70 (where it is the image itself)."""
    eps = diffusion.PretrainedEps(_SizeChecked())
    x = torch.rand(2, 1, 45, 70, generator=torch.Generator().manual_seed(0))
    out = eps(x, torch.tensor([10]))
    assert out.shape == x.shape
    torch.testing.assert_close(out, x)


def test_absent_released_weights_skip_the_cells_with_the_reason(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline and without the file: ``locate`` raises WeightsUnavailable, the run records the
    DPS cells as skipped (not failed) with the fix, and the other methods run."""
    from benchmark.core.errors import WeightsUnavailable
    from benchmark.results.store import ResultsStore
    from benchmark.run import profiles, runner
    from methods import _weights, dps

    monkeypatch.setenv("DIPBENCH_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    unreachable = dataclasses.replace(dps.PRETRAINED["imagenet"], url="http://127.0.0.1:9/diffusion_openai.pt")
    monkeypatch.setitem(dps.PRETRAINED, "imagenet", unreachable)
    with pytest.raises(WeightsUnavailable, match=r"\$DIPBENCH_WEIGHTS"):
        _weights.locate(unreachable)
    smoke = profiles.load("smoke")
    profile = dataclasses.replace(smoke, methods=["dps[pretrained=imagenet]", "trivial"], tasks=["inpainting_random50"],
                                  datasets=[dataclasses.replace(smoke.datasets[0], limit=1)], metrics_off=["lpips"])
    summary = runner.run_benchmark(profile, results_dir=tmp_path / "r", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                                   progress=False)
    assert not summary.failed and summary.skipped == 1 and "dps" in summary.no_weights
    frame = ResultsStore(tmp_path / "r" / "results.sqlite").frame(summary.keys)
    skipped = frame[frame.status == "skipped"].iloc[0]
    assert skipped.label == "dps[pretrained=imagenet]" and "diffunet/diffusion_openai.pt" in skipped.error
    assert set(frame[frame.status == "ok"].method) == {"trivial"}
