"""aSeqDIP and self-guided DIP on the shared loop: each step is the paper's algorithm written out
plainly (float64, so that the grouped kernels' rounding does not matter), batches equal solo runs
on the medical operators, and bad parameters are refused."""

from __future__ import annotations

import copy

import pytest
import torch

from benchmark.api import Problem, as_reconstruction
from benchmark.core import seeding
from benchmark.core.errors import UserError
from benchmark.problems import tasks
from methods._dip import loop, streams
from methods._dip.networks import crop_output
from methods.aseqdip import AutoencodingSequentialDIP, pad_to
from methods.selfguided_dip import SelfGuidedDIP

TINY = {"channels": 8, "skip_channels": 2, "scales": 3}
STEPS = 7


def measurement(task_name: str, shape=(1, 20, 28), seed: int = 0):  # type: ignore[no-untyped-def]
    task = tasks.get(task_name)
    g = tasks.measurement_generator(task_name, "synthetic", seed, dataset="synthetic")
    x = torch.rand((1, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    physics = task.physics(shape, torch.device("cpu"), g).to(torch.float64)
    return x, physics, task.measure(x, physics, g)


def spied_fit(method, y, physics, steps: int):  # type: ignore[no-untyped-def]
    """Run the method's fit through the loop, recording each step's output and the input the
    problem has after that step's hook."""
    fit = method.fit(y, physics, 0)
    outputs: list[torch.Tensor] = []
    inputs: list[torch.Tensor] = []

    def spy(step: int, out: torch.Tensor, handle: loop.Handle) -> None:
        if fit.hook is not None:
            fit.hook(step, out, handle)
        outputs.append(out.clone())
        inputs.append(handle.input().clone())

    problem = loop.FitProblem(fit.setup.network, fit.setup.z, fit.objective, fit.setup.size,
                              [loop.Watcher(steps, streams.Raw())], fit.setup.noise, fit.regulariser, spy)
    loop.fit_many([problem], method.settings())
    return outputs, inputs


@pytest.mark.parametrize("task_name", ["denoising_s25", "inpainting_random50"])
def test_aseqdip_is_the_papers_sequential_algorithm(task_name: str) -> None:
    """N Adam steps on mean((A f(z) − y)²) + λ mean((f(z) − z)²) per input, then z ← f(z) of the
    N-th step, padded; one network whose weights and Adam state carry through the updates."""
    _, physics, y = measurement(task_name)
    inner, weight, lr = 3, 0.7, 0.01
    method = AutoencodingSequentialDIP(**TINY, lr=lr, inner_steps=inner, ae_weight=weight, iterations=STEPS)
    outputs, inputs = spied_fit(method, y, physics, STEPS)

    setup = method.fit(y, physics, 0).setup
    net, z = copy.deepcopy(setup.network).train(), setup.z.clone()
    assert z.shape[1] == y.shape[1]  # the input is image-shaped: A†y
    torch.testing.assert_close(crop_output(z, *setup.size), physics.A_dagger(y).clamp(0, 1), atol=1e-12, rtol=0)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    for step in range(1, STEPS + 1):
        out = crop_output(net(z), *setup.size)
        loss = (physics.A(out) - y).square().mean() + weight * (out - crop_output(z, *setup.size)).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        torch.testing.assert_close(outputs[step - 1], out.detach(), atol=1e-9, rtol=0)
        if step % inner == 0:
            z = pad_to(out.detach(), z.shape[-2], z.shape[-1])
        torch.testing.assert_close(inputs[step - 1], z, atol=1e-9, rtol=0)

    # the input changes exactly at steps N, 2N, … to that step's output, its border repeated
    assert torch.equal(inputs[0], inputs[1]) and not torch.equal(inputs[1], inputs[2])
    assert torch.equal(crop_output(inputs[2], *setup.size), outputs[2])
    assert inputs[2].shape[-2] > setup.size[0] and torch.equal(inputs[2][..., 0, :], inputs[2][..., 1, :])


def test_aseqdip_pads_the_new_input_by_repeating_the_border() -> None:
    out = torch.arange(6.0).reshape(1, 1, 2, 3)
    padded = pad_to(out, 4, 7)
    assert padded.shape == (1, 1, 4, 7)
    torch.testing.assert_close(crop_output(padded, 2, 3), out)
    assert torch.equal(padded[0, 0, 0], padded[0, 0, 1]) and torch.equal(padded[0, 0, :, 0], padded[0, 0, :, 2])


@pytest.mark.parametrize("source", ["noise", "fbp"])
def test_self_guided_dip_is_the_papers_algorithm(source: str) -> None:
    """Each step: K draws f(z + η_j), η_j uniform on [0, σ max z), averaged into x̄; one Adam
    step of the network and one of the input on ‖A x̄ − y‖ + α‖x̄ − z‖."""
    _, physics, y = measurement("inpainting_random50")
    lr, input_lr, weight, draws, sigma = 0.01, 0.05, 1.5, 3, 0.5
    method = SelfGuidedDIP(**TINY, lr=lr, input_lr=input_lr, ae_weight=weight, draws=draws, iterations=STEPS,
                           ema=0.0, input=source)
    outputs, inputs = spied_fit(method, y, physics, STEPS)

    setup = method.fit(y, physics, 0).setup
    net, z = copy.deepcopy(setup.network).train(), setup.z.clone().requires_grad_(True)
    if source == "noise":  # the authors' input: U[0, 1) of the image's channels
        assert setup.z.shape[1] == 1 and 0.5 < float(setup.z.max()) < 1 and float(setup.z.min()) >= 0
    noise = seeding.generator(0, "perturbation")
    optimisers = [torch.optim.Adam(net.parameters(), lr=lr), torch.optim.Adam([z], lr=input_lr)]
    for step in range(1, STEPS + 1):
        passes = []
        for _ in range(draws):
            eta = torch.empty(z.shape, dtype=torch.float32).uniform_(generator=noise).to(z.dtype) * (sigma * z.max())
            passes.append(net(z + eta))
        mean = crop_output(torch.stack(passes).mean(dim=0), *setup.size)
        residual = physics.A(mean) - y
        loss = residual.flatten().norm() + weight * (mean - crop_output(z, *setup.size)).flatten().norm()
        for optimiser in optimisers:
            optimiser.zero_grad()
        loss.backward()
        for optimiser in optimisers:
            optimiser.step()
        torch.testing.assert_close(outputs[step - 1], mean.detach(), atol=1e-9, rtol=0)
        torch.testing.assert_close(inputs[step - 1], z.detach(), atol=1e-9, rtol=0)
    assert float((inputs[-1] - setup.z).abs().max()) > 0.1 * input_lr  # the input is optimised


def test_self_guided_dip_returns_the_average_of_its_mean_outputs() -> None:
    _, physics, y = measurement("denoising_s25")
    method = SelfGuidedDIP(**TINY, lr=0.01, iterations=STEPS, ema=0.9)
    outputs, _ = spied_fit(method, y, physics, STEPS)
    ema = outputs[0]
    for out in outputs[1:]:
        ema = 0.9 * ema + 0.1 * out
    result = method.reconstruct(y, physics, seed=0)
    torch.testing.assert_close(result.x, ema.clamp(0, 1), atol=1e-9, rtol=0)
    assert result.info["oracle_stream"] == "EMA 0.9 of outputs"


def _blob_problem(name: str, seed: int):  # type: ignore[no-untyped-def]
    task = tasks.get(name)
    channels = task.space.channels[0]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    blob = (0.8 * torch.exp(-(xx**2 + yy**2) / 0.3)).to(torch.float64)
    x = torch.stack([blob * torch.cos(xx), blob * torch.sin(yy)])[None] if channels == 2 else blob[None, None]
    g = tasks.measurement_generator(name, "blob", seed, dataset="synthetic")
    physics = task.physics((channels, 32, 32), torch.device("cpu"), g).to(torch.float64)
    return physics, task.measure(x, physics, g)


@pytest.mark.parametrize("cls", [AutoencodingSequentialDIP, SelfGuidedDIP])
@pytest.mark.parametrize("name", ["mri_x4", "mri_multicoil_x4", "ct_views60"])
def test_a_batch_equals_each_problem_alone_on_the_medical_operators(cls, name: str) -> None:  # type: ignore[no-untyped-def]
    """Per-problem inputs (aSeqDIP's updates, SG-DIP's optimised inputs) stay per problem in a
    batch; the problems stop at different steps, after an input update."""
    params = {**cls.resolve_params(tasks.get(name), {}, budget="test"), **TINY, "iterations": 6}
    if cls is AutoencodingSequentialDIP:
        params["inner_steps"] = 2
    method = cls(**params)
    problems = [_blob_problem(name, seed) for seed in (0, 1)]
    stops = (6, 4)
    batch = method.reconstruct_batch([Problem(y, physics, seed, lambda k, _x, s=stop: k < s)
                                      for seed, ((physics, y), stop) in enumerate(zip(problems, stops, strict=True))])
    for seed, ((physics, y), stop, got) in enumerate(zip(problems, stops, batch, strict=True)):
        alone = as_reconstruction(method.reconstruct(y, physics, seed=seed, callback=lambda k, _x, s=stop: k < s))
        assert got.iterations == alone.iterations == stop
        assert got.x.dtype == torch.float64
        torch.testing.assert_close(got.x, alone.x, atol=1e-9, rtol=0)


def test_the_authors_per_task_settings() -> None:
    mri = AutoencodingSequentialDIP.resolve_params(tasks.get("mri_x4"), {})
    ct = AutoencodingSequentialDIP.resolve_params(tasks.get("ct_views60"), {})
    deblur = AutoencodingSequentialDIP.resolve_params(tasks.get("deblurring_gaussian"), {})
    assert (mri["inner_steps"], mri["iterations"], ct["inner_steps"], ct["iterations"]) == (10, 60000, 10, 20000)
    assert deblur["ae_weight"] == 5.0
    quick = AutoencodingSequentialDIP.resolve_params(tasks.get("mri_x4"), {}, budget="quick")
    assert quick["inner_steps"] == 10 and quick["iterations"] <= 800
    sg = SelfGuidedDIP.resolve_params(tasks.get("mri_x4"), {})
    assert (sg["lr"], sg["input_lr"], sg["draws"], sg["reg_noise_std"], sg["ae_weight"]) == (3e-4, 0.1, 3, 0.5, 2.0)
    # a step of K passes: the quick budget's passes match the DIP family's cap
    assert SelfGuidedDIP.resolve_params(tasks.get("mri_x4"), {}, budget="quick")["iterations"] * 3 <= 800


@pytest.mark.parametrize(("cls", "params"), [
    (AutoencodingSequentialDIP, {"inner_steps": 0}),
    (AutoencodingSequentialDIP, {"ae_weight": -1.0}),
    (AutoencodingSequentialDIP, {"input": "fbp"}),
    (SelfGuidedDIP, {"draws": 0}),
    (SelfGuidedDIP, {"noise_law": "laplace"}),
    (SelfGuidedDIP, {"input": "uniform"}),
    (SelfGuidedDIP, {"input_lr": -0.1}),
])
def test_bad_parameters_are_refused(cls, params) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError):
        cls(**params)
