"""Tasks: one seeded measurement per (task, image, seed), the same for every method."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from benchmark.core import seeding
from benchmark.problems import tasks


def _measure(name: str, image_id: str = "img", seed: int = 0, shape: tuple[int, int, int] = (1, 32, 32),  # type: ignore[no-untyped-def]
             dataset: str = "set5"):
    task = tasks.get(name)
    shape = (task.space.channels[0], *shape[1:]) if shape[0] not in task.space.channels else shape
    x = torch.linspace(0, 1, shape[1] * shape[2]).reshape(1, *shape[1:]).expand(*shape).clone()
    g = tasks.measurement_generator(name, image_id, seed, dataset=dataset)
    physics = task.physics(shape, torch.device("cpu"), g)
    return x[None], physics, task.measure(x[None], physics, g)


@pytest.mark.parametrize("name", sorted(tasks.TASKS))
def test_measurement_is_reproducible_per_task_image_seed(name: str) -> None:
    _, _, y1 = _measure(name)
    _, _, y2 = _measure(name)
    assert torch.equal(y1, y2)


def test_other_seed_or_image_gives_other_noise() -> None:
    _, _, y = _measure("denoising_s25")
    assert not torch.equal(y, _measure("denoising_s25", seed=1)[2])
    assert not torch.equal(y, _measure("denoising_s25", image_id="other")[2])


def test_an_image_id_shared_by_two_datasets_gets_its_own_noise_and_mask_in_each() -> None:
    """Set5 and Set14 both hold the ids img_001 to img_005: the measurement is keyed by the dataset too."""
    _, _, y5 = _measure("denoising_s25", image_id="img_001", dataset="set5")
    _, _, y14 = _measure("denoising_s25", image_id="img_001", dataset="set14")
    assert not torch.equal(y5, y14)
    _, mask5, _ = _measure("inpainting_random50", image_id="img_001", dataset="set5")
    _, mask14, _ = _measure("inpainting_random50", image_id="img_001", dataset="set14")
    assert not torch.equal(mask5.mask, mask14.mask)


@pytest.mark.parametrize(("name", "sigma"), [("denoising_s15", 15), ("denoising_s25", 25), ("denoising_s50", 50)])
def test_denoising_noise_level(name: str, sigma: int) -> None:
    x, physics, y = _measure(name, shape=(1, 128, 128))
    assert float((y - x).std()) == pytest.approx(sigma / 255, rel=0.03)
    assert float(physics.noise_model.sigma) == pytest.approx(sigma / 255)


def test_random_inpainting_hides_half_the_pixels_the_same_in_every_channel() -> None:
    x, physics, y = _measure("inpainting_random50", shape=(3, 64, 64))
    mask = physics.mask.squeeze(0) if physics.mask.dim() == 4 else physics.mask
    assert float(1 - mask.mean()) == pytest.approx(0.5, abs=0.03)
    assert torch.equal(mask[0], mask[1]) and torch.equal(mask[1], mask[2])
    assert torch.equal(y, x * mask)


def test_box_inpainting_hides_the_centre() -> None:
    _, physics, _ = _measure("inpainting_box", shape=(1, 32, 32))
    mask = physics.mask.reshape(32, 32)
    assert float(mask[16, 16]) == 0 and float(mask[0, 0]) == 1
    assert float(1 - mask.mean()) == pytest.approx(0.25)


def test_super_resolution_shrinks_by_four_and_adjoint_is_consistent() -> None:
    x, physics, y = _measure("sr_x4", shape=(1, 32, 32))
    assert y.shape == (1, 1, 8, 8)
    u = torch.randn_like(y)
    assert float((physics.A(x) * u).sum()) == pytest.approx(float((x * physics.A_adjoint(u)).sum()), rel=1e-4)


def test_deblurring_blurs_with_a_little_noise() -> None:
    x, physics, y = _measure("deblurring_gaussian", shape=(1, 64, 64))
    assert 0 < float(physics.noise_model.sigma) < 0.02
    assert float((physics.A(x) - x).abs().mean()) > 0


def test_each_image_and_each_seed_gets_its_own_dip_initialisation() -> None:
    """Same image, two seeds: different DIP initialisations; two images, one seed: different ones."""
    from methods._dip import common

    params = {**common.SKIP_DEFAULTS, "channels": 8, "scales": 2}
    x, physics, y = _measure("denoising_s25")

    def setup(image_id: str, seed: int, dataset: str = "set5") -> tuple[torch.Tensor, torch.Tensor]:
        s = common.skip_setup(params, y, physics, seeding.method_seed(dataset, image_id, seed))
        return torch.cat([p.detach().flatten() for p in s.network.parameters()]), s.z

    first, z_first = setup("img_001", 0)
    again, z_again = setup("img_001", 0)
    assert torch.equal(first, again) and torch.equal(z_first, z_again)  # a rerun starts where it did
    for other, z_other in (setup("img_001", 1), setup("img_002", 0), setup("img_001", 0, dataset="set14")):
        assert not torch.equal(first, other) and not torch.equal(z_first, z_other)


def test_a_task_added_by_one_declaration_is_listed_and_runs(tmp_path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The tutorial's task (docs/tutorials/task.md): one ``register`` call, and it shows in
    ``benchmark list`` and runs through the harness like every other task."""
    import deepinv as dinv

    from benchmark import cli
    from benchmark.problems import spaces
    from benchmark.problems import tasks as task_registry
    from benchmark.run import profiles as profile_module
    from benchmark.run import runner

    def motion_blur(shape, device, generator):  # type: ignore[no-untyped-def]
        kernel = dinv.physics.functional.blur.gaussian_blur(sigma=(3.0, 0.5), angle=30)
        return dinv.physics.BlurFFT(img_size=shape, filter=kernel, device=device)

    task = task_registry.Task("deblurring_motion", "deblurring", "Anisotropic blur (σ = 3 × 0.5 px at 30°)",
                              noise_sigma=2.55 / 255, build=motion_blur, params={"blur_sigma": [3.0, 0.5]},
                              space=spaces.UNIT)
    task_registry.register(task)
    try:
        assert cli.main(["list", "tasks"]) == 0
        assert "deblurring_motion" in capsys.readouterr().out
        profile = profile_module.parse({"name": "scratch", "methods": ["trivial", "tv", "dip"],
                                        "tasks": ["deblurring_motion"], "budget": "test",
                                        "datasets": [{"name": "embedded", "resize": 64, "crop": 32, "limit": 1}]})
        summary = runner.run_benchmark(profile, results_dir=tmp_path / "r",
                                       tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", progress=False)
        assert summary.ran == 3 and not summary.failed and not summary.skipped, summary.failed
    finally:
        task_registry.unregister("deblurring_motion")


def test_a_task_of_an_undeclared_family_or_a_taken_name_is_refused() -> None:
    from benchmark.problems import tasks as task_registry

    base = task_registry.get("denoising_s25")
    with pytest.raises(ValueError, match="family 'dehazing' is not declared"):
        task_registry.register(dataclasses.replace(base, name="dehaze", family="dehazing"))
    with pytest.raises(ValueError, match="registered twice"):
        task_registry.register(dataclasses.replace(base, noise_sigma=0.5))
    with pytest.raises(ValueError, match="is a family's"):
        task_registry.register(dataclasses.replace(base, name="mri"))


def _text_mask(image_id: str = "img", seed: int = 0, side: int = 128, dataset: str = "dip9") -> torch.Tensor:
    _, physics, _ = _measure("inpainting_text", image_id, seed, shape=(3, side, side), dataset=dataset)
    return physics.mask.reshape(3, side, side)


@pytest.mark.parametrize("side", [96, 128, 512])
def test_text_inpainting_hides_about_a_fifth_of_the_pixels_the_same_in_every_channel(side: int) -> None:
    """Lines of text hide 18-27% of the pixels (the task says about 22%), in every channel alike,
    and y keeps the other pixels exactly."""
    for image_id in ("baboon", "house", "peppers"):
        x, physics, y = _measure("inpainting_text", image_id, shape=(3, side, side), dataset="dip9")
        mask = physics.mask.reshape(3, side, side)
        assert set(mask.unique().tolist()) == {0.0, 1.0}
        assert 0.18 <= float(1 - mask.mean()) <= 0.27
        assert torch.equal(mask[0], mask[1]) and torch.equal(mask[1], mask[2])
        assert torch.equal(y, x * mask)


@pytest.mark.parametrize(("side", "stroke"), [(128, 2), (512, 4)])
def test_text_strokes_are_a_few_pixels_wide_and_grow_with_the_image(side: int, stroke: int) -> None:
    """Every run of hidden pixels along a row or a column is a whole number of font pixels, each
    ``stroke`` image pixels wide: the bitmap font enlarged with the image."""
    assert tasks.text_scale(side, side) == stroke
    hidden = (_text_mask(side=side)[0] == 0).int()
    for lines in (hidden, hidden.T):
        padded = torch.nn.functional.pad(lines, (1, 1))
        edges = padded[:, 1:] - padded[:, :-1]
        starts, ends = (edges == 1).nonzero()[:, 1], (edges == -1).nonzero()[:, 1]
        runs = ends - starts
        # a run cut by the image's edge may be shorter; the others are multiples of the stroke
        inner = (starts > 0) & (ends < side)
        assert len(runs) > 50 and bool((runs[inner] % stroke == 0).all())


def test_text_mask_is_drawn_per_image_and_seed_and_again_the_same() -> None:
    first = _text_mask("house", 0)
    assert torch.equal(first, _text_mask("house", 0))
    for other in (_text_mask("house", 1), _text_mask("lena", 0), _text_mask("house", 0, dataset="set14")):
        assert not torch.equal(first, other)


def test_every_method_of_a_cell_sees_the_same_text_mask_and_y() -> None:
    """The harness measures a cell from (dataset, task, image, seed) only: two methods' cells of one
    image and seed get equal y and equal masks."""
    from benchmark.run import harness
    from benchmark.run.plan import Cell

    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    measured = []
    for method in ("tv", "dip"):
        cell = Cell(method, "{}", "inpainting_text", "dip9", "kodim01", "crop64", 0, label=method)
        _, y, physics = harness.measurement(cell, image, torch.device("cpu"))
        measured.append((y, physics.mask))
    (y_tv, mask_tv), (y_dip, mask_dip) = measured
    assert torch.equal(y_tv, y_dip) and torch.equal(mask_tv, mask_dip)
    assert 0 < float(mask_tv.mean()) < 1
