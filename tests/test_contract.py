"""Conformance tests run over every registered method automatically (benchopt-style).

Each method, with its own test budget (``budgets["test"]``), on each smoke task: returns an image
of the right shape, finite, deterministic for a seed, stops when the callback says so, and beats
nothing-at-all (an all-zero image).
"""

from __future__ import annotations

import inspect
from functools import cache

import pytest
import torch

from benchmark import registry
from benchmark.api import Method, Problem, TrainingContext, as_reconstruction
from benchmark.core.errors import UserError
from benchmark.problems import data, metrics, spaces, tasks
from benchmark.problems.data import cache_root
from benchmark.run import plan, profiles

SMOKE = profiles.load("smoke")
METHODS = sorted(registry.available())
#: the smoke tasks, and one task of each medical operator (single- and multi-coil MRI, CT) on a
#: 32² slice of its set (the training sets: the smoke profile's per image space)
MEDICAL = {"mri_x4": "mri_brain", "mri_multicoil_x4": "mri_brain", "ct_views60": "ct_chest"}
TASKS = SMOKE.tasks + (list(MEDICAL) if (data.data_root() and (data.data_root() / "mri_brain").is_dir()) else [])


@cache
def _image(task_name: str = "") -> torch.Tensor:
    if task_name in MEDICAL:
        return data.load(MEDICAL[task_name], resize=32, limit=1)[0].tensor
    spec = SMOKE.datasets[0]
    return data.load(spec.name, crop=spec.crop, resize=spec.resize, limit=1)[0].tensor


@cache
def _method(name: str, task_name: str) -> Method:
    task = tasks.get(task_name)
    cls = registry.get(name)
    method = cls(**cls.resolve_params(task, {}, budget="test"))
    if method.needs_training and method.skip_reason(task) is None:
        prepared = plan.training_preparation(SMOKE, task.space.channels[0], task)  # as the smoke run trains
        method.prepare(TrainingContext(prepared.load(), prepared.name, task,
                                       cache_root() / "contract", seed=0, device=torch.device("cpu"), progress=False))
    return method


def _problem(task_name: str, seed: int = 0, dtype: torch.dtype = torch.float32):  # type: ignore[no-untyped-def]
    task = tasks.get(task_name)
    x = _image(task_name).to(dtype)
    g = tasks.measurement_generator(task_name, "contract", seed, dataset=MEDICAL.get(task_name, SMOKE.datasets[0].name))
    physics = task.physics(tuple(x.shape), torch.device("cpu"), g).to(dtype)
    return task, x[None], physics, task.measure(x[None], physics, g)


def _applicable(name: str, task_name: str) -> Method:
    method = _method(name, task_name)
    reason = method.skip_reason(tasks.get(task_name), channels=int(_image(task_name).shape[0]))
    if reason is not None:
        assert isinstance(reason, str) and reason, "a skip reason must say why"
        pytest.skip(f"{name} does not apply to {task_name}: {reason}")
    return method


def test_registry_lists_every_method_file() -> None:
    assert {"trivial", "tv"} <= set(METHODS)
    for name, cls in registry.available().items():
        assert cls.name == name and cls.family in {"baseline", "dip", "data-driven"} and cls.summary
        assert cls.citation, f"{name} cites no paper (a baseline says what it is)"


@pytest.mark.parametrize("name", METHODS)
def test_signature_never_receives_ground_truth(name: str) -> None:
    params = inspect.signature(registry.get(name).reconstruct).parameters
    assert list(params)[:3] == ["self", "y", "physics"]
    assert {"seed", "callback"} <= set(params)
    assert not {"x", "x_true", "target", "ground_truth", "gt"} & set(params)


@pytest.mark.parametrize("name", METHODS)
def test_unknown_parameter_is_refused(name: str) -> None:
    with pytest.raises(UserError, match="valid parameters"):
        registry.get(name)(definitely_not_a_parameter=1)


@pytest.mark.parametrize("name", METHODS)
def test_budgets_are_declared_on_the_method_and_valid(name: str) -> None:
    """Every budget a method declares (and "paper", its defaults) names real parameters with valid
    values on every task, and its per-task tables are keyed by tasks and families only."""
    cls = registry.get(name)
    assert "test" in cls.budgets, "every method has a test budget (the conformance tests and smoke profile)"
    for budget in ("paper", *cls.budgets):
        plan.check_task_keys(cls, budget)
        for task in tasks.TASKS.values():
            cls.validate(cls.resolve_params(task, {}, budget=budget))


@pytest.mark.parametrize("profile_name", sorted(profiles.available()))
def test_every_method_of_a_shipped_profile_has_its_budget(profile_name: str) -> None:
    profile = profiles.load(profile_name)
    missing = [m for m in plan.selected_methods(profile) if not registry.get(m).has_budget(profile.budget)]
    assert not missing, f"{profile_name} runs budget {profile.budget!r}, which {missing} do not declare"


def test_a_missing_budget_or_a_misspelt_task_key_is_refused_when_the_plan_is_made() -> None:
    from benchmark.api import Method

    class NoCpu(Method):
        name = "no_cpu_budget"
        budgets = {"test": {}}
        task_defaults = {"denoisng": {}}  # misspelt family

    with pytest.raises(UserError, match="has no 'cpu' budget"):
        NoCpu.budget_params("cpu")
    with pytest.raises(UserError, match="'denoisng' is neither a task nor a task family"):
        plan.check_task_keys(NoCpu, "test")


@pytest.mark.parametrize("name", METHODS)
def test_a_trained_method_takes_train_images(name: str) -> None:
    """One knob for training data: every trained method has ``train_images`` (None: all)."""
    cls = registry.get(name)
    assert cls.needs_training == ("train_images" in cls.defaults)
    if cls.needs_training:
        assert cls.defaults["train_images"] is None
        for bad in (0, -1, 2.5, True):
            with pytest.raises(UserError, match="train_images"):
                cls.validate({**cls.defaults, "train_images": bad})


@pytest.mark.parametrize("name", METHODS)
def test_a_value_of_the_wrong_type_is_refused(name: str) -> None:
    cls = registry.get(name)
    for key, default in cls.defaults.items():
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            with pytest.raises(UserError, match=f"method '{name}': parameter '{key}' must be"):
                cls.validate({**cls.defaults, key: "not-a-number"})


@pytest.mark.parametrize("task_name", TASKS)
@pytest.mark.parametrize("name", METHODS)
def test_output_shape_finite_and_better_than_nothing(name: str, task_name: str) -> None:
    method = _applicable(name, task_name)
    _, x, physics, y = _problem(task_name)
    out = as_reconstruction(method.reconstruct(y, physics, seed=0)).x.detach()
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    # Nothing-at-all: an empty (all-zero) reconstruction, compared in the task's image space.
    space = spaces.of(physics)
    ctx = metrics.MetricContext(tasks.get(task_name), space.data_range(x))
    assert (metrics.psnr(space.view(out), space.view(x), ctx)
            > metrics.psnr(space.view(torch.zeros_like(x)), space.view(x), ctx)), f"{name} no better than nothing"


@pytest.mark.parametrize("task_name", TASKS[:1])
@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_output(name: str, task_name: str) -> None:
    method = _applicable(name, task_name)
    _, _, physics, y = _problem(task_name)
    first = as_reconstruction(method.reconstruct(y, physics, seed=3)).x
    second = as_reconstruction(method.reconstruct(y, physics, seed=3)).x
    assert torch.equal(first, second)


@pytest.mark.parametrize("task_name", TASKS[:1])
@pytest.mark.parametrize("name", METHODS)
def test_callback_can_stop_it(name: str, task_name: str) -> None:
    method = _applicable(name, task_name)
    _, x, physics, y = _problem(task_name)
    steps: list[int] = []

    def stop_at_three(step: int, x_k: torch.Tensor) -> bool:
        steps.append(step)
        assert x_k.shape == x.shape
        return step < 3

    result = as_reconstruction(method.reconstruct(y, physics, seed=0, callback=stop_at_three))
    assert result.x.shape == x.shape
    assert len(steps) <= 3, f"{name} kept iterating after the callback returned False"
    if steps:
        assert steps == list(range(1, len(steps) + 1))
        assert result.iterations is None or result.iterations <= 3


def _batches_for_real(method: Method) -> bool:
    """Whether the method solves a batch its own way (rather than the default one by one)."""
    return type(method).reconstruct_batch is not Method.reconstruct_batch


@pytest.mark.parametrize("task_name", SMOKE.tasks)  # the medical operators' batching: test_medical_methods
@pytest.mark.parametrize("name", METHODS)
def test_a_batch_gives_what_each_problem_gives_alone(name: str, task_name: str) -> None:
    """``reconstruct_batch`` (what the harness calls) agrees with ``reconstruct`` one by one,
    each problem with its own seed and callback; the callbacks stop them at different steps.

    A batch computes with other kernels than a single problem (grouped convolutions), so in
    float32 the reduction order differs and Adam amplifies the rounding differences within a few
    steps, by an amount that depends on the CPU, the thread count and the GPU. A method that
    batches its own way is therefore compared in float64 (it must compute in the dtype of
    ``y``), where the two agree to ~1e-12 whatever runs them; one that solves a batch one by one
    runs the same kernels in the same order and must agree exactly.
    """
    method = _applicable(name, task_name)
    batched = _batches_for_real(method)
    dtype = torch.float64 if batched else torch.float32
    problems = [_problem(task_name, seed=s, dtype=dtype) for s in (0, 1, 2)]
    stops = (3, 5, 4)

    def stopper(limit: int, seen: list[int]):  # type: ignore[no-untyped-def]
        return lambda step, x_k: seen.append(step) is None and step < limit

    seen_batch: list[list[int]] = [[], [], []]
    batch = method.reconstruct_batch([
        Problem(y, physics, seed, stopper(stop, seen))
        for seed, ((_, _, physics, y), stop, seen) in enumerate(zip(problems, stops, seen_batch, strict=True))
    ])
    assert len(batch) == len(problems)
    for seed, ((_, x, physics, y), stop, seen, got) in enumerate(zip(problems, stops, seen_batch, batch, strict=True)):
        seen_alone: list[int] = []
        alone = as_reconstruction(method.reconstruct(y, physics, seed=seed, callback=stopper(stop, seen_alone)))
        together = as_reconstruction(got)
        assert seen == seen_alone, f"{name}: problem {seed}'s callback saw other steps in a batch"
        assert together.iterations == alone.iterations
        assert together.selected_iteration == alone.selected_iteration
        assert together.x.shape == x.shape
        if batched:
            assert together.x.dtype == alone.x.dtype == torch.float64, f"{name} must compute in the dtype of y"
            torch.testing.assert_close(together.x, alone.x, atol=1e-9, rtol=0)
        else:
            assert torch.equal(together.x, alone.x)
