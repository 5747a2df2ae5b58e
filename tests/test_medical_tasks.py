"""The MRI and CT tasks: operators, masks, noise and the image spaces the harness measures in."""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.problems import medical, metrics, spaces, tasks
from benchmark.run import harness
from benchmark.run.plan import Cell
from benchmark.run.pool import MethodPool
from tests.conftest import requires_shared

MEDICAL = sorted(name for name, task in tasks.TASKS.items() if task.space is not spaces.UNIT)


def _problem(name: str, size: int = 32, seed: int = 0, image_id: str = "slice", dtype: torch.dtype = torch.float64):  # type: ignore[no-untyped-def]
    task = tasks.get(name)
    channels = task.space.channels[0]
    g = tasks.measurement_generator(name, image_id, seed, dataset="synthetic")
    x = torch.rand((1, channels, size, size), generator=torch.Generator().manual_seed(seed), dtype=dtype)
    physics = task.physics((channels, size, size), torch.device("cpu"), g).to(dtype)
    return task, x, physics, task.measure(x, physics, g)


def test_every_medical_task_is_declared() -> None:
    assert MEDICAL == ["ct_views30", "ct_views60", "mri_multicoil_x4", "mri_x4", "mri_x4_equispaced", "mri_x8"]


@pytest.mark.parametrize("name", MEDICAL)
def test_adjoint_and_norm_at_most_one(name: str) -> None:
    """<Ax, u> = <x, A*u> (float64), and ‖A‖ ≤ 1 (TV's, PnP's and DIP's steps assume it)."""
    _, x, physics, y = _problem(name)
    u = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    left, right = float((physics.A(x) * u).sum()), float((x * physics.A_adjoint(u)).sum())
    assert left == pytest.approx(right, rel=1e-9)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    for _ in range(60):  # power iteration on A*A
        v = physics.A_adjoint(physics.A(v))
        v = v / v.norm()
    assert float(physics.A(v).norm()) <= 1.0 + 1e-6


@pytest.mark.parametrize("name", MEDICAL)
def test_measurement_is_seeded_per_image_and_seed(name: str) -> None:
    first, again = _problem(name)[3], _problem(name)[3]
    assert torch.equal(first, again)
    assert not torch.equal(first, _problem(name, seed=1)[3])
    assert not torch.equal(first, _problem(name, image_id="other")[3])


@pytest.mark.parametrize(("name", "acceleration", "centre"), [("mri_x4", 4, 0.08), ("mri_x8", 8, 0.04),
                                                               ("mri_multicoil_x4", 4, 0.08)])
def test_fastmri_masks(name: str, acceleration: int, centre: float) -> None:
    """Whole phase-encoding lines (columns), the centre band always, ~W/acc lines in all; another
    seed draws another mask."""
    lines = []
    for seed in range(20):
        mask = _problem(name, size=256, seed=seed)[2].mask.reshape(-1, 256, 256)[0]
        assert torch.equal(mask, mask[:1].expand(256, 256))
        low = round(256 * centre)
        start = (256 - low + 1) // 2
        assert bool(mask[0, start : start + low].all())
        lines.append(mask[0])
    kept = torch.stack(lines).sum(1).double()
    assert float(kept.mean()) == pytest.approx(256 / acceleration, rel=0.08)
    assert len({tuple(line.tolist()) for line in lines}) == 20


def test_mri_noise_is_complex_gaussian_at_the_stated_level() -> None:
    task, x, physics, y = _problem("mri_x4", size=128)
    residual = (y - physics.A(x))
    assert float(residual.std()) == pytest.approx(tasks.MRI_NOISE, rel=0.03)
    assert float(physics.noise_model.sigma) == pytest.approx(tasks.MRI_NOISE)


def test_simulated_coils_have_unit_sum_of_squares() -> None:
    physics = _problem("mri_multicoil_x4")[2]
    assert physics.coil_maps.dtype == torch.complex128  # .to(float64) keeps their phase
    torch.testing.assert_close(physics.coil_maps, medical.coil_maps(8, 32, 32).to(torch.complex128))
    maps = medical.coil_maps(8, 64, 48)
    assert maps.shape == (1, 8, 64, 48) and maps.dtype == torch.complex64
    torch.testing.assert_close(maps.abs().square().sum(1), torch.ones(1, 64, 48), atol=1e-5, rtol=0)


def test_ct_baseline_is_the_filtered_back_projection() -> None:
    """FBP of a noiseless 60-view sinogram of a smooth disc is close to it, far better than Aᵀy."""
    size = 64
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    disc = (0.5 * torch.exp(-(xx**2 + yy**2) / 0.2)).view(1, 1, size, size)
    physics = tasks.get("ct_views60").physics((1, size, size), torch.device("cpu"), torch.Generator())
    y = physics.A(disc)
    fbp = metrics.psnr(physics.A_dagger(y).clamp(0, 1), disc)
    assert fbp > 30
    assert fbp > metrics.psnr(physics.A_adjoint(y).clamp(0, 1), disc) + 10


def _disc(size: int) -> torch.Tensor:
    """A smooth 'body' of water-like values (0.5: 0 HU) with a denser core, 1×1×size×size."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    r2 = xx**2 + yy**2
    return (0.5 * torch.sigmoid(20 * (0.8 - r2)) + 0.2 * torch.exp(-r2 / 0.05)).view(1, 1, size, size)


def test_ct_noise_is_photon_counts_at_the_stated_dose() -> None:
    """y is the post-log measurement of Poisson counts: unbiased to ~1/(2N) and, per ray, of
    variance e^p / (I0 s²) (the post-log Gaussian approximation; p = s A x the line integral):
    standardised residuals have a standard deviation near 1 at both view counts; the line
    integral of a ray does not depend on the resolution; the level methods read (noise_model)
    is the counts' root-mean-square, read off y."""
    counts = tasks.get("ct_views60").photon_counts
    assert counts is not None and counts.photons == tasks.CT_PHOTONS
    assert tasks.get("ct_views60").params["photons"] == tasks.get("ct_views30").params["photons"]  # per ray
    for name in ("ct_views60", "ct_views30"):
        task = tasks.get(name)
        x = _disc(64)
        g = tasks.measurement_generator(name, "disc", 0, dataset="synthetic")
        physics = task.physics((1, 64, 64), torch.device("cpu"), g)
        clean = physics.A(x)
        y = task.measure(x, physics, g)
        s = counts.scale(physics, 64)
        assert float(clean.max()) * s > 2  # rays through the body lose most of their photons
        z = (y - clean) / (torch.exp(clean * s) / counts.photons).sqrt() * s
        assert float(z.std()) == pytest.approx(1.0, abs=0.05), name
        assert abs(float(z.mean())) < 0.05
        assert float(physics.noise_model.sigma) == pytest.approx(counts.sigma(y, physics, 64))
        assert float(physics.noise_model.sigma) == pytest.approx(float(((torch.exp(clean * s) / counts.photons).mean()
                                                                        ).sqrt()) / s, rel=0.05)
    coarse, fine = (tasks.get("ct_views60").physics((1, n, n), torch.device("cpu"), torch.Generator())
                    for n in (32, 64))
    p_coarse = float(coarse.A(_disc(32)).max()) * counts.scale(coarse, 32)
    p_fine = float(fine.A(_disc(64)).max()) * counts.scale(fine, 64)
    assert p_coarse == pytest.approx(p_fine, rel=0.05)


def test_ct_fbp_filters_hann_by_default_ram_lak_by_name() -> None:
    """The Hann window falls from 1 to 0 at Nyquist; on a noisy 60-view sinogram of a smooth
    body the Hann FBP is closer to the image than Ram-Lak's by more than 1 dB (it damps the noise
    the ramp amplifies); Ram-Lak remains a named option; an unknown filter is refused."""
    ramp, hann = medical.FBP_FILTERS["ram-lak"](), medical.FBP_FILTERS["hann"]()
    f = ramp._get_fourier_filter(128)
    window = (hann.create_filter(f) / ramp.create_filter(f)).real[1:]
    assert float(window[0]) == pytest.approx(1.0, abs=0.01) and float(window[-1]) == pytest.approx(0.0, abs=1e-6)
    assert bool((window[1:] <= window[:-1]).all())
    task = tasks.get("ct_views60")
    assert task.params["fbp_filter"] == "hann"
    x = _disc(64)
    g = tasks.measurement_generator(task.name, "disc", 0, dataset="synthetic")
    physics = task.physics((1, 64, 64), torch.device("cpu"), g)
    y = task.measure(x, physics, g)
    assert physics.fbp_filter == "hann"
    ram_lak = medical.sparse_view_ct(60, "ram-lak")((1, 64, 64), torch.device("cpu"), g)
    assert ram_lak.fbp_filter == "ram-lak"
    assert metrics.psnr(physics.A_dagger(y).clamp(0, 1), x) > metrics.psnr(ram_lak.A_dagger(y).clamp(0, 1), x) + 1
    with pytest.raises(ValueError, match="unknown FBP filter 'shepp'"):
        medical.sparse_view_ct(60, "shepp")


def test_medical_tasks_state_their_conventions() -> None:
    """MRI's simulated k-space and analytic coils (an inverse crime) and its per-slice data range,
    CT's photon counts and dose, declared on the tasks; the natural-image tasks need none."""
    for name in ("mri_x4", "mri_x8", "mri_multicoil_x4"):
        text = tasks.get(name).conventions
        assert "inverse crime" in text and "analytic" in text and "each slice's own data range" in text
    for name in ("ct_views60", "ct_views30"):
        text = tasks.get(name).conventions
        assert "inverse crime" in text and f"{tasks.CT_PHOTONS:,.0f} photons" in text and "half the dose" in text
    assert not tasks.get("denoising_s25").conventions
    assert "fastMRI)" not in spaces.MRI.description


def test_mri_is_measured_on_the_magnitude_with_the_reference_range() -> None:
    """PSNR on |x| with the data range max |x| of the reference slice itself; a global phase
    changes nothing, LPIPS is not computed; the harness's PSNR is that one."""
    space = spaces.MRI
    x = torch.rand(1, 2, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.7
    rotated = torch.stack([x[:, 0] * math.cos(1.0) - x[:, 1] * math.sin(1.0),
                           x[:, 0] * math.sin(1.0) + x[:, 1] * math.cos(1.0)], dim=1)
    torch.testing.assert_close(space.view(rotated), space.view(x))
    assert space.data_range(x) == pytest.approx(float(x.square().sum(1).sqrt().max()))
    names = {m.name for m in metrics.applicable(tasks.get("mri_x4"))}
    assert {"psnr", "ssim"} <= names and "lpips" not in names
    assert "lpips" not in {m.name for m in metrics.applicable(tasks.get("ct_views60"))}
    assert "lpips" in {m.name for m in metrics.applicable(tasks.get("denoising_s25"))}


def test_harness_records_magnitude_metrics_and_png_for_mri(tmp_path) -> None:  # type: ignore[no-untyped-def]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    magnitude = 0.8 * torch.exp(-(xx**2 + yy**2) / 0.3)
    image = torch.stack([magnitude * torch.cos(xx), -magnitude * torch.sin(xx)])  # signed parts
    pool = MethodPool(list, "none", tmp_path, torch.device("cpu"), progress=False)
    cell = Cell("trivial", "{}", "mri_x4", "synthetic", "blob", "full", 0)
    (outcome,) = harness.run_cells([cell], [image], pool, skip_metrics=())
    record = outcome.record
    assert record.status == "ok", record.error
    assert "lpips" not in record.metrics
    x, y, physics = harness.measurement(cell, image, torch.device("cpu"))
    zero_filled = physics.A_dagger(y)
    expected = metrics.psnr(spaces.MRI.view(zero_filled), magnitude[None, None],
                            metrics.MetricContext(tasks.get("mri_x4"), float(magnitude.max())))
    assert record.metrics["psnr"] == pytest.approx(expected, abs=1e-6)
    assert record.measurement_value == pytest.approx(expected, abs=1e-6)
    assert len(outcome.artifacts) == 3


@requires_shared
@pytest.mark.parametrize(("selected", "expected"), [
    (None, {("embedded", "denoising_s25"), ("embedded", "inpainting_random50"), ("mri_brain", "mri_x4")}),
    ("denoising_s25", {("embedded", "denoising_s25")}),
    ("mri_x4", {("mri_brain", "mri_x4")}),
])
def test_quick_profile_pairs_each_dataset_with_the_tasks_its_images_fit(selected: str | None,
                                                                        expected: set[tuple[str, str]]) -> None:
    """The gray embedded images never meet the MRI task (their space does not fit it); --tasks
    narrows a dataset's own task list and leaves out a dataset with none left."""
    from benchmark import cli
    from benchmark.run import plan, profiles

    argv = ["run", "--profile", "quick", "--methods", "trivial"] + (["--tasks", selected] if selected else [])
    args = cli.build_parser().parse_args(argv)
    cells, _ = plan.make_plan(cli._select(profiles.load("quick"), args))
    assert {(c.dataset, c.task) for c in cells} == expected


@requires_shared
def test_a_dataset_listing_a_task_its_images_do_not_fit_is_refused() -> None:
    from benchmark.core.errors import UserError
    from benchmark.run import plan, profiles

    doc = {"name": "bad", "methods": ["trivial"], "tasks": ["mri_x4"],
           "datasets": [{"name": "embedded", "resize": 64, "crop": 32, "limit": 1, "tasks": ["mri_x4"]}]}
    with pytest.raises(UserError, match="1-channel images; task 'mri_x4' needs complex MR image"):
        plan.make_plan(profiles.parse(doc))
