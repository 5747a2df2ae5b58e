"""The shared DIP loop: determinism, stopping, selection, image sizes, the networks."""

from __future__ import annotations

import pytest
import torch

from benchmark.core.errors import UserError
from benchmark.problems import tasks
from methods._dip import loop, streams
from methods._dip.networks import DeepDecoder, SkipNet, padded_shape, parameter_count
from methods._dip.objectives import total_variation
from methods._dip.stopping import Verdict
from methods.deep_decoder import DeepDecoderMethod
from methods.dip import DeepImagePrior
from methods.dip_eswmv import DipESWMV
from methods.dip_holdout import DipHoldout
from methods.dip_sv import DipSelfValidation
from methods.dip_tv import DipTV

TINY = {"iterations": 4, "channels": 8, "skip_channels": 2, "input_channels": 4, "scales": 3}
TINY_DD = {"iterations": 4, "channels": 8, "scales": 3}


def measurement(task_name: str, shape=(1, 24, 40), seed: int = 0):
    task = tasks.get(task_name)
    g = tasks.measurement_generator(task_name, "synthetic", seed, dataset="synthetic")
    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(seed))
    physics = task.physics(shape, torch.device("cpu"), g)
    return x, physics, task.measure(x, physics, g)


def trajectory(method, y, physics, seed):
    seen = []
    result = method.reconstruct(y, physics, seed=seed, callback=lambda k, x: seen.append(x.clone()) is None)
    return result, seen


@pytest.mark.parametrize(
    "cls,params",
    [(DeepImagePrior, TINY), (DipTV, TINY), (DipSelfValidation, {**TINY, "ae_window": 16, "ae_setting": "cpu"}),
     (DipHoldout, TINY), (DipESWMV, {**TINY, "window": 2}),
     (DeepDecoderMethod, TINY_DD)],
)
def test_same_seed_same_trajectory_other_seed_other_result(cls, params):
    _, physics, y = measurement("denoising_s25")
    first, traj_a = trajectory(cls(**params), y, physics, seed=3)
    torch.manual_seed(12345)  # other code moving the global RNG must not matter
    second, traj_b = trajectory(cls(**params), y, physics, seed=3)
    assert len(traj_a) == len(traj_b) == params["iterations"]
    assert all(torch.equal(a, b) for a, b in zip(traj_a, traj_b, strict=True))
    assert torch.equal(first.x, second.x)
    other = cls(**params).reconstruct(y, physics, seed=4)
    assert not torch.equal(first.x, other.x)


def test_reconstruct_leaves_the_global_rng_alone():
    _, physics, y = measurement("denoising_s25")
    torch.manual_seed(7)
    before = torch.get_rng_state()
    DeepImagePrior(**TINY).reconstruct(y, physics, seed=0)
    assert torch.equal(before, torch.get_rng_state())


def test_callback_false_stops_the_run_and_the_last_iterate_is_returned():
    _, physics, y = measurement("denoising_s25")
    seen = []

    def callback(step, x):
        seen.append(x.clone())
        return step < 3

    result = DeepImagePrior(**{**TINY, "iterations": 50}).reconstruct(y, physics, seed=0, callback=callback)
    assert (result.iterations, result.selected_iteration, result.budget) == (3, 3, 50)
    assert result.info["stopped_by"] == "callback"
    assert torch.equal(result.x, seen[-1])


def test_the_loop_returns_the_iterate_of_the_rules_best_step():
    net = SkipNet(2, 1, channels=4, skip_channels=1, scales=2)
    z = torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.1
    target = torch.full((1, 1, 8, 8), 0.5)
    seen = {}

    def rule(step, x, fit_loss):
        assert fit_loss.shape == (1,)
        return Verdict(stop=step == 4, best=step == 2)

    result = loop.fit_one(
        net, z, lambda x: ((x - target) ** 2).flatten(1).mean(1), loop.LoopSettings(lr=0.01),
        size=(8, 8), iterations=10, rule=rule, callback=lambda k, x: seen.setdefault(k, x.clone()) is not None,
    )
    assert (result.iterations, result.selected_iteration, result.stopped_by) == (4, 2, "rule")
    assert torch.equal(result.x, seen[2])


def test_a_budget_shorter_than_the_variance_window_returns_the_last_iterate():
    _, physics, y = measurement("denoising_s25")
    result = DipESWMV(**{**TINY, "window": 10}).reconstruct(y, physics, seed=0)
    assert (result.iterations, result.selected_iteration) == (4, 4)
    assert result.info["stopped_by"] == "budget" and result.info["min_variance"] is None


def test_ema_output_is_the_papers_running_average():
    net = SkipNet(2, 1, channels=4, skip_channels=1, scales=2)
    z = torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.1
    raw, averaged = [], []
    objective = lambda x: (x**2).flatten(1).mean(1)  # noqa: E731
    state = {k: v.clone() for k, v in net.state_dict().items()}
    loop.fit_one(net, z, objective, loop.LoopSettings(0.01), size=(8, 8), iterations=3,
                 callback=lambda k, x: raw.append(x.clone()) is None)
    net.load_state_dict(state)
    loop.fit_one(net, z, objective, loop.LoopSettings(0.01), size=(8, 8), iterations=3, stream=streams.Ema(0.9),
                 callback=lambda k, x: averaged.append(x.clone()) is None)
    expected = raw[0]
    for r in raw[1:]:
        expected = 0.9 * expected + 0.1 * r
    assert torch.allclose(averaged[-1], expected, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 24, 40), (3, 17, 33)])
def test_odd_image_sides_are_padded_internally_and_cropped_back(shape):
    _, physics, y = measurement("inpainting_random50", shape=shape)
    result = DeepImagePrior(**TINY).reconstruct(y, physics, seed=0)
    assert result.x.shape == (1, *shape)
    assert padded_shape(17, 33, 3) == (24, 40)


@pytest.mark.parametrize("task_name", sorted(tasks.TASKS))
def test_every_task_gives_an_image_of_the_right_size(task_name):
    space = tasks.get(task_name).space  # MRI images are 2-channel (real, imaginary), CT slices square
    channels = 3 if 3 in space.channels else space.channels[0]
    x, physics, y = measurement(task_name, shape=(channels, 48 if space.name == "ct" else 32, 48))
    for cls, params in [(DeepImagePrior, TINY), (DipSelfValidation, TINY), (DeepDecoderMethod, TINY_DD)]:
        result = cls(**params).reconstruct(y, physics, seed=0)
        assert result.x.shape == x.shape and torch.isfinite(result.x).all()


def test_super_resolution_fits_at_the_high_resolution_size():
    _, physics, y = measurement("sr_x4", shape=(1, 32, 48))
    assert y.shape[-2:] == (8, 12)
    for cls, params in [(DeepImagePrior, TINY), (DeepDecoderMethod, TINY_DD)]:
        result = cls(**params).reconstruct(y, physics, seed=0)
        assert result.x.shape == (1, 1, 32, 48)


def test_networks_have_the_papers_sizes():
    # The paper's denoising / super-resolution skip network for colour images, and the
    # deep decoder of k = 128 channels and six layers (Heckel & Hand: 100,224 weights).
    assert parameter_count(SkipNet(32, 3, 128, 4, 5)) == 2_217_831
    assert parameter_count(DeepDecoder(3, 128, 5)) == 100_224
    out = SkipNet(32, 3, 16, 4, 5)(torch.rand(1, 32, 64, 96))
    assert out.shape == (1, 3, 64, 96) and out.min() > 0 and out.max() < 1


def test_total_variation_of_flat_and_step_images():
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert float(total_variation(flat)) == pytest.approx(0.0, abs=1e-3)
    step = torch.zeros(1, 1, 8, 8)
    step[..., 4:] = 1.0  # one vertical edge: a jump of 1 in 8 of the 64 pixels
    assert float(total_variation(step)) == pytest.approx(8 / 64, abs=1e-3)


@pytest.mark.parametrize(
    "params", [{"iterations": 0}, {"lr": -1.0}, {"ema": 1.0}, {"channels": 2.5}, {"reg_noise_std": -0.1}]
)
def test_bad_parameters_are_refused_with_a_user_error(params):
    _, physics, y = measurement("denoising_s25")
    with pytest.raises(UserError):
        DeepImagePrior(**{**TINY, **params}).reconstruct(y, physics, seed=0)


def test_unknown_parameters_are_refused():
    with pytest.raises(UserError, match="tv_weight"):
        DeepImagePrior(tv_weight=0.1)
