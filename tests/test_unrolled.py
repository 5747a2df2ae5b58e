"""The unrolled networks (MoDL for MRI, learned primal-dual for CT) and ℓ1-wavelet compressed
sensing: what they compute, where they apply, and how they train (tiny budgets at 32²)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import deepinv as dinv
import numpy as np
import pytest
import pywt
import torch

from benchmark import registry
from benchmark.api import TrainingContext
from benchmark.problems import tasks
from benchmark.run import profiles, tuned_values, tuning
from methods._training import loop
from methods.cs_wavelet import CSWavelet, objective, solver
from methods.lpd import LearnedPrimalDual, PrimalDualNet
from methods.modl import MoDL, MoDLNet

pytestmark = pytest.mark.usefixtures("one_thread")


def _slice(channels: int, size: int = 32, shift: float = 0.0) -> torch.Tensor:
    """A smooth complex (2-channel) or real (1-channel) test image with edges, C×H×W."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blob = 0.8 * torch.exp(-((xx - shift) ** 2 + yy**2) / 0.3) * ((xx.abs() < 0.6) & (yy.abs() < 0.7)).float()
    if channels == 2:
        return torch.stack([blob * torch.cos(xx), blob * torch.sin(yy)])
    return blob[None]


def _problem(name: str, seed: int = 0, size: int = 32) -> tuple[torch.Tensor, Any, torch.Tensor]:
    task = tasks.get(name)
    x = _slice(task.space.channels[0], size)[None]
    g = tasks.measurement_generator(name, "unrolled", seed, dataset="synthetic")
    physics = task.physics((int(x.shape[1]), size, size), torch.device("cpu"), g)
    return x, physics, task.measure(x, physics, g)


def _training_set(channels: int, n: int = 5) -> list[torch.Tensor]:
    return [_slice(channels, shift=0.1 * i) for i in range(n)]


def _context(name: str, images: list[torch.Tensor], cache: Path) -> TrainingContext:
    return TrainingContext(images, "synthetic_train", tasks.get(name), cache, seed=0, device=torch.device("cpu"),
                           progress=False)


# --- MoDL -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mri_x4", "mri_multicoil_x4"])
def test_modl_denoises_then_enforces_data_consistency_with_step_one_over_lambda(name: str) -> None:
    """MoDL's order (Aggarwal et al. 2019, eq. 10): x_{k+1} = (AᴴA + λI)⁻¹(Aᴴy + λD(x_k)) from
    x₀ = Aᴴy, the output a data-consistency step; deepinv's prox with γ = 1/λ is that solve.
    Multi-coil solves it by CG and leaves the caller's physics settings as they were."""
    x, physics, y = _problem(name)
    torch.manual_seed(1)
    net = MoDLNet(iterations=3, depth=3, channels=8, lam=0.05, cg_iterations=30)
    denoiser = net.unrolled.prior[0].denoiser
    torch.nn.init.normal_(denoiser.out_conv.weight, std=0.05)  # a denoiser that does something
    before = {k: getattr(physics, k) for k in ("max_iter", "tol")}
    with torch.no_grad():
        out = net(y, physics)
        assert {k: getattr(physics, k) for k in ("max_iter", "tol")} == before
        expected = physics.A_adjoint(y)
        for _ in range(3):
            expected = physics.prox_l2(denoiser(expected), y, 1 / 0.05, max_iter=30, tol=1e-6)
    assert out.shape == x.shape and torch.isfinite(out).all()
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)
    assert net.step == pytest.approx(20.0)


def test_an_untrained_modl_returns_the_zero_filled_image_on_single_coil() -> None:
    """The CNN's last layer starts at zero: D = identity, and the data consistency of Aᴴy is Aᴴy
    itself (single coil: the sampled lines are kept, the others stay empty)."""
    _, physics, y = _problem("mri_x4")
    net = MoDLNet(iterations=4, depth=3, channels=8, lam=0.05, cg_iterations=5)
    with torch.no_grad():
        torch.testing.assert_close(net(y, physics), physics.A_adjoint(y), atol=1e-5, rtol=0)


def test_modl_trains_once_and_reuses_its_checkpoint(tmp_path: Path) -> None:
    """A second prepare of the same configuration loads the weights (cached, same loss curve,
    same reconstruction); ``train_images`` limits the slices it learns from and is in the key."""
    cls = MoDL
    params = cls.resolve_params(tasks.get("mri_x4"), {"train_images": 3}, budget="test")
    images = _training_set(2)
    first, second = cls(**params), cls(**params)
    report = first.prepare(_context("mri_x4", images, tmp_path))
    again = second.prepare(_context("mri_x4", images, tmp_path))
    assert not report.cached and again.cached and again.checkpoint == report.checkpoint
    assert again.losses == report.losses and len(report.losses) == params["pretrain_steps"] + params["train_steps"]
    assert report.images == 3 and "3 images of synthetic_train" in report.description
    _, physics, y = _problem("mri_x4")
    assert torch.equal(first.reconstruct(y, physics, seed=0).x, second.reconstruct(y, physics, seed=0).x)
    other = cls(**{**params, "train_images": 4}).prepare(_context("mri_x4", images, tmp_path))
    assert not other.cached and other.checkpoint != report.checkpoint and other.images == 4


def test_modl_training_lowers_the_loss_on_whole_measured_slices(tmp_path: Path) -> None:
    cls = MoDL
    method = cls(**cls.resolve_params(tasks.get("mri_x4"), {"pretrain_steps": 0, "train_steps": 40, "lr": 3e-3},
                                      budget="test"))
    report = method.prepare(_context("mri_x4", _training_set(2), tmp_path))
    assert np.mean(report.losses[-10:]) < 0.9 * np.mean(report.losses[:10])


# --- learned primal-dual ------------------------------------------------------------------------


class _CountingCT:
    """A CT physics that records the channels of every A and Aᵀ call."""

    def __init__(self, physics: Any) -> None:
        self.physics = physics
        self.calls: list[tuple[str, int]] = []

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 - deepinv's name
        self.calls.append(("A", int(x.shape[1])))
        return self.physics.A(x)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        self.calls.append(("At", int(y.shape[1])))
        return self.physics.A_adjoint(y)


def test_learned_primal_dual_runs_the_authors_iteration_on_one_channel_each() -> None:
    """Unshared blocks per iteration, primal output of one channel, and each iteration applies A
    to one primal channel and Aᵀ to one dual channel (not to all memory channels)."""
    x, physics, y = _problem("ct_views60")
    net = PrimalDualNet(iterations=3, n_primal=5, n_dual=5, channels=8)
    counting = _CountingCT(physics)
    with torch.no_grad():
        out = net(y, counting)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert counting.calls == [("At", 1)] + [("A", 1), ("At", 1)] * 3
    assert len({id(b) for b in net.primal}) == 3 and len({id(b) for b in net.dual}) == 3
    first_primal, first_dual = net.primal[0], net.dual[0]
    assert isinstance(first_primal, dinv.models.PDNet_PrimalBlock)
    assert isinstance(first_dual, dinv.models.PDNet_DualBlock)
    assert first_primal.in_conv.weight.shape[1] == 6 and first_dual.in_conv.weight.shape[1] == 7


def test_learned_primal_dual_started_from_the_fbp_returns_it_untrained() -> None:
    """The quick budget's start (``fbp_start``): primal memory A⁺y, primal updates at zero."""
    _, physics, y = _problem("ct_views60")
    net = PrimalDualNet(iterations=2, n_primal=3, n_dual=3, channels=8, fbp_start=True)
    with torch.no_grad():
        torch.testing.assert_close(net(y, physics), physics.A_dagger(y), atol=1e-6, rtol=0)


def test_learned_primal_dual_trains_and_reconstructs_ct(tmp_path: Path) -> None:
    cls = LearnedPrimalDual
    method = cls(**cls.resolve_params(tasks.get("ct_views60"), {"train_images": 2}, budget="test"))
    report = method.prepare(_context("ct_views60", _training_set(1), tmp_path))
    assert report.images == 2 and len(report.losses) == method.params["train_steps"]
    x, physics, y = _problem("ct_views60")
    out = method.reconstruct(y, physics, seed=0).x
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1


# --- where each method applies ------------------------------------------------------------------


@pytest.mark.parametrize(("method", "applies"), [
    ("modl", {"mri_x4", "mri_x8", "mri_x4_equispaced", "mri_multicoil_x4"}),
    ("lpd", {"ct_views60", "ct_views30"}),
    ("cs_wavelet", {"mri_x4", "mri_x8", "mri_x4_equispaced", "mri_multicoil_x4"}),
])
def test_each_method_applies_to_its_modality_and_says_why_not_elsewhere(method: str, applies: set[str]) -> None:
    instance = registry.get(method)()
    for task in tasks.TASKS.values():
        reason = instance.skip_reason(task, channels=task.space.channels[0])
        if task.name in applies:
            assert reason is None
        else:
            assert reason and task.name in reason


def test_measured_images_draw_a_fresh_mask_per_image_and_keep_a_fixed_operator() -> None:
    generator = torch.Generator().manual_seed(0)
    mri = loop.MeasuredImages(_training_set(2), tasks.get("mri_x4"), torch.device("cpu"), generator)
    (x1, y1, p1), (_, y2, p2) = mri.sample(), mri.sample()
    assert x1.shape == (1, 2, 32, 32) and y1.shape == y2.shape
    assert not torch.equal(p1.mask, p2.mask)
    ct = loop.MeasuredImages(_training_set(1), tasks.get("ct_views60"), torch.device("cpu"), generator)
    assert ct.sample()[2] is ct.sample()[2]


# --- compressed sensing -------------------------------------------------------------------------


def test_cs_is_deepinvs_fista_step_by_step() -> None:
    """The method steps deepinv's FISTA one iteration at a time (for the callback): the same
    result as deepinv's own loop, and a callback stops it."""
    _, physics, y = _problem("mri_multicoil_x4")
    method = CSWavelet(weight=0.002, iterations=25, levels=2)
    with torch.no_grad():
        reference = solver(0.002, 25, "db4", 2)(y, physics)
    torch.testing.assert_close(method.reconstruct(y, physics, seed=0).x, reference, atol=1e-6, rtol=0)
    steps: list[int] = []
    def stop_at_three(step: int, x_k: torch.Tensor) -> bool:
        steps.append(step)
        return step < 3

    stopped = method.reconstruct(y, physics, seed=0, callback=stop_at_three)
    assert steps == [1, 2, 3] and stopped.iterations == 3 and stopped.budget == 25


def test_cs_weight_is_the_l1_weight_of_the_objective() -> None:
    """With every k-space line measured (A unitary) the minimiser is the soft-thresholding of the
    Haar detail coefficients of Aᴴy at λ itself (not deepinv's 0.1·λ), checked against PyWavelets."""
    x = _slice(2)[None].double()
    physics = dinv.physics.MRI(mask=torch.ones(32, 32), img_size=(32, 32)).to(torch.float64)
    y = physics.A(x) + 0.01 * torch.randn(physics.A(x).shape, generator=torch.Generator().manual_seed(0),
                                          dtype=torch.float64)
    weight = 0.05
    out = CSWavelet(weight=weight, iterations=5, wavelet="haar", levels=2).reconstruct(
        y, physics, seed=0).x
    expected = []
    for part in physics.A_adjoint(y)[0].numpy():
        coeffs = pywt.wavedec2(part, "haar", level=2)
        shrunk = [coeffs[0]] + [tuple(pywt.threshold(d, weight, mode="soft") for d in level) for level in coeffs[1:]]
        expected.append(pywt.waverec2(shrunk, "haar"))
    torch.testing.assert_close(out[0], torch.from_numpy(np.stack(expected)), atol=1e-9, rtol=0)


def test_cs_lowers_its_objective_below_the_zero_filled_start() -> None:
    _, physics, y = _problem("mri_x4")
    weight = 0.002
    reference = solver(weight, 1, "db4", 2)
    values: list[float] = []

    def record(step: int, x_k: torch.Tensor) -> bool:
        values.append(objective(reference, x_k, y, physics, weight))
        return True

    CSWavelet(weight=weight, iterations=60, levels=2).reconstruct(y, physics, seed=0,
                                                                                 callback=record)
    start = objective(reference, physics.A_adjoint(y), y, physics, weight)
    assert values[-1] < 0.95 * start and values[-1] <= min(values[:10])


def test_the_cs_weight_of_the_quick_profile_is_tuned_on_training_slices_only_where_it_runs() -> None:
    """The tuned record of cs_wavelet on mri_x4 (training slices; its trace is checked with every
    record by test_tuning's shipped-values test); no record or untuned row where CS skips."""
    profile = profiles.load("quick")
    values = tuned_values.load(profile)
    assert "weight" in values.params_for("cs_wavelet", tasks.get("mri_x4"))
    (record,) = [r for r in values.records if r["method"] == "cs_wavelet"]
    assert record["tasks"] == ["mri_x4"] and record["validation"]["dataset"] == "mri_brain_train"
    rows = tuning.report_rows(profile)
    assert not [r for r in rows if r["method"] == "cs_wavelet" and r["applies_to"] != "mri_x4"]
    assert not tuning.applies(profile, "cs_wavelet", tasks.get("denoising_s25"))
