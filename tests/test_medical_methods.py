"""Methods on the medical operators: what the smoke-task conformance tests cannot see there."""

from __future__ import annotations

import pytest
import torch

from benchmark import registry, spaces, tasks
from benchmark.api import Problem, as_reconstruction


def _problem(name: str, seed: int, dtype: torch.dtype = torch.float64):  # type: ignore[no-untyped-def]
    task = tasks.get(name)
    channels = task.space.channels[0]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    blob = (0.8 * torch.exp(-(xx**2 + yy**2) / 0.3)).to(dtype)
    x = torch.stack([blob * torch.cos(xx), blob * torch.sin(yy)])[None] if channels == 2 else blob[None, None]
    g = tasks.measurement_generator(name, "blob", seed, dataset="synthetic")
    physics = task.physics((channels, 32, 32), torch.device("cpu"), g).to(dtype)
    return x, physics, task.measure(x, physics, g)


@pytest.mark.parametrize("name", ["mri_multicoil_x4", "ct_views60"])
def test_dip_batch_matches_alone_on_medical_operators(name: str) -> None:
    """The batched DIP loop on the multi-coil and CT operators, float64: the same as one by one."""
    cls = registry.get("dip")
    method = cls(**{**cls.resolve_params(tasks.get(name).family, {}, budget="test"), "iterations": 8})
    problems = [_problem(name, seed) for seed in (0, 1)]
    batch = method.reconstruct_batch([Problem(y, physics, seed) for seed, (_, physics, y) in enumerate(problems)])
    for seed, ((x, physics, y), got) in enumerate(zip(problems, batch, strict=True)):
        alone = as_reconstruction(method.reconstruct(y, physics, seed=seed)).x
        together = as_reconstruction(got).x
        assert together.dtype == torch.float64 and together.shape == x.shape
        torch.testing.assert_close(together, alone, atol=1e-9, rtol=0)


def test_mri_networks_end_linearly_and_start_at_zero() -> None:
    """On MRI the DIP output is signed (no sigmoid): an untrained network gives the zero image."""
    from methods._dip import common

    x, physics, y = _problem("mri_x4", 0)
    params = registry.get("dip").resolve_params("mri", {}, budget="test")
    setup = common.skip_setup(params, y, physics, seed=0)
    assert setup.network.output_layer == spaces.MRI.output_layer == "linear"
    with torch.no_grad():
        assert float(setup.network(setup.z).abs().max()) == 0.0
    unit = common.skip_setup(params, y, tasks.get("denoising_s25").physics((2, 32, 32), torch.device("cpu"),
                                                                          torch.Generator()), seed=0)
    assert unit.network.output_layer == "sigmoid"


def test_pnp_denoises_real_and_imaginary_parts() -> None:
    """PnP-FFDNet applies to MRI (its parts as gray images) and beats the zero-filled image."""
    from benchmark import metrics

    method = registry.get("pnp_ffdnet")(iterations=8)
    task = tasks.get("mri_x4")
    assert method.skip_reason(task, channels=2) is None
    x, physics, y = _problem("mri_x4", 0, torch.float32)
    out = as_reconstruction(method.reconstruct(y, physics, seed=0)).x
    ctx = metrics.MetricContext(task, spaces.MRI.data_range(x))
    zero_filled = metrics.psnr(spaces.MRI.view(physics.A_dagger(y)), spaces.MRI.view(x), ctx)
    assert metrics.psnr(spaces.MRI.view(out), spaces.MRI.view(x), ctx) > zero_filled
    assert float(out.min()) < 0  # signed parts are kept, not clipped to [0, 1]
