"""PnP-FFDNet: it is DPIR (deepinv's own DPIR on the same denoiser gives the same image), its
schedule is the paper's, and it beats TV on the linear tasks."""

from __future__ import annotations

import math

import deepinv as dinv
import pytest
import torch

from benchmark.core.errors import UserError
from benchmark.problems import data, metrics, tasks
from methods.pnp_ffdnet import PnPFFDNet, schedule
from methods.tv import TotalVariation

CPU = torch.device("cpu")


def problem(task_name: str, x: torch.Tensor) -> tuple[torch.Tensor, object]:
    task = tasks.get(task_name)
    g = tasks.measurement_generator(task_name, "pnp-test", 0, dataset="synthetic")
    physics = task.physics(tuple(x.shape), CPU, g)
    return task.measure(x[None], physics, g), physics


def method(cls: type, task_name: str, **overrides: object):  # type: ignore[no-untyped-def]
    return cls(**cls.resolve_params(tasks.get(task_name).family, overrides))


def test_the_schedule_is_dpirs() -> None:
    levels, weights = schedule(2.55 / 255, 8, 49.0, 2.55, 0.23)
    assert levels[0] == pytest.approx(49 / 255) and levels[-1] == pytest.approx(2.55 / 255)
    ratios = [b / a for a, b in zip(levels, levels[1:], strict=False)]
    assert all(r == pytest.approx(ratios[0]) and r < 1 for r in ratios)  # decreasing, log-spaced
    assert weights == pytest.approx([0.23 * (2.55 / 255) ** 2 / s**2 for s in levels])
    # noiseless tasks: the schedule ends at sigma_min, the weights use 0.255/255
    levels, weights = schedule(0.0, 24, 49.0, 4.0, 0.23)
    assert levels[-1] == pytest.approx(4 / 255) and weights[-1] == pytest.approx(0.23 * (0.255 / 4) ** 2)
    assert math.isclose(schedule(0.1, 1, 49.0, 2.55, 0.23)[0][0], 0.1)


def test_deblurring_is_deepinvs_dpir_on_the_same_denoiser() -> None:
    x = data.load("set12", limit=1)[0].tensor[:, :64, :64]
    y, physics = problem("deblurring_gaussian", x)
    pnp = method(PnPFFDNet, "deblurring_gaussian")
    ours = pnp.reconstruct(y, physics, seed=0).x
    # deepinv's DPIR: HQS with L2 data fidelity, 8 levels 49/255 → σ and stepsizes (σ_k/σ)²/0.23
    reference = dinv.optim.DPIR(sigma=tasks.get("deblurring_gaussian").noise_sigma, denoiser=pnp.denoiser)
    theirs = reference(y, physics, init=y.clamp(0, 1)).clamp(0, 1)
    assert float((ours - theirs).abs().max()) < 1e-4
    assert metrics.psnr(ours, x[None]) > metrics.psnr(y.clamp(0, 1), x[None]) + 2


@pytest.mark.parametrize("task_name", ["inpainting_random50", "sr_x4"])
def test_beats_tv_on_a_colour_crop(task_name: str) -> None:
    x = data.load("set5", limit=1, crop=64)[0].tensor
    y, physics = problem(task_name, x)
    pnp = method(PnPFFDNet, task_name).reconstruct(y, physics, seed=0)
    tv = method(TotalVariation, task_name).reconstruct(y, physics, seed=0)
    assert pnp.iterations == pnp.budget
    assert metrics.psnr(pnp.x, x[None]) > metrics.psnr(tv.x.clamp(0, 1), x[None]) + 1.0


def test_the_callback_sees_every_iterate_and_can_stop_it() -> None:
    x = data.load("set12", limit=1)[0].tensor[:, :32, :32]
    y, physics = problem("inpainting_random50", x)
    seen: list[int] = []

    def stop_at_five(step: int, x_k: torch.Tensor) -> bool:
        seen.append(step)
        return step < 5

    result = method(PnPFFDNet, "inpainting_random50").reconstruct(y, physics, seed=0, callback=stop_at_five)
    assert seen == [1, 2, 3, 4, 5] and result.iterations == 5


def test_bad_parameters_and_tasks_are_refused() -> None:
    for bad in ({"iterations": 0}, {"iterations": 2.5}, {"mu": -1}, {"sigma_min": 60}):
        with pytest.raises(UserError, match="pnp_ffdnet"):
            PnPFFDNet(**bad)
    reason = PnPFFDNet().skip_reason(tasks.get("denoising_s25"))
    assert reason is not None and "ffdnet" in reason
    assert PnPFFDNet().skip_reason(tasks.get("sr_x4"), channels=2) is not None
