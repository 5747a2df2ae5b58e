"""Stopping rules observe one shared fit (issue 23): DIP, ES-WMV, ES-EMV and self-validation fit
the same network to the same measurement, so the harness fits it once and lets every rule watch.

A shared fit must give each rule exactly what it gives alone (same machine, threads and seed: the
network's arithmetic is the same, and a rule never acts on it), and each rule's runtime must stay
what a user running that method alone pays: the network's time up to its stop plus its own.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from benchmark import registry
from benchmark.api import Problem, Reconstruction
from benchmark.problems import tasks
from benchmark.run import plan
from benchmark.run.pool import MethodPool
from methods._dip import common
from methods._dip import loop as dip_loop

RULES = ("dip", "dip_eswmv", "dip_esemv", "dip_sv")
#: a small common budget: the test network at 32², a cap the rules stop within or reach
SMALL = {"iterations": 90, "channels": 8, "scales": 2, "lr": 0.01}


def _methods(task: tasks.Task) -> list[common.DipMethod]:
    out = []
    for name in RULES:
        cls = registry.get(name)
        params = cls.resolve_params(task, SMALL, budget="test")
        out.append(cls(**params))  # type: ignore[arg-type]
    return out


def _problem(task_name: str, seed: int = 0) -> tuple[torch.Tensor, Any, torch.Tensor]:
    task = tasks.get(task_name)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((1, 1, 32, 32), generator=g) * 0.5 + 0.25
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # some structure
    physics = task.physics((1, 32, 32), torch.device("cpu"), g)
    return x, physics, task.measure(x, physics, g)


class Recorder:
    """The iterates a callback sees, step by step."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, torch.Tensor]] = []

    def __call__(self, step: int, x: torch.Tensor) -> bool:
        self.seen.append((step, x.clone()))
        return True


def _same(a: Reconstruction, b: Reconstruction) -> None:
    assert torch.equal(a.x, b.x)
    assert (a.iterations, a.selected_iteration, a.budget) == (b.iterations, b.selected_iteration, b.budget)
    assert a.info["stopped_by"] == b.info["stopped_by"]


@pytest.mark.parametrize("task_name", ["denoising_s25", "inpainting_random50"])
def test_the_methods_share_one_fit(task_name: str) -> None:
    keys = {m.shared_fit_key() for m in _methods(tasks.get(task_name))}
    assert len(keys) == 1 and None not in keys


def test_a_different_network_or_objective_is_another_fit() -> None:
    task = tasks.get("denoising_s25")
    dip = registry.get("dip")
    base = dip(**dip.resolve_params(task, SMALL, budget="test"))
    wider = dip(**dip.resolve_params(task, {**SMALL, "channels": 16}, budget="test"))
    tv = registry.get("dip_tv")(**registry.get("dip_tv").resolve_params(task, SMALL, budget="test"))
    holdout = registry.get("dip_holdout")(**registry.get("dip_holdout").resolve_params(task, SMALL, budget="test"))
    assert len({base.shared_fit_key(), wider.shared_fit_key(), tv.shared_fit_key(), holdout.shared_fit_key()}) == 4


@pytest.mark.parametrize("task_name", ["denoising_s25", "inpainting_random50"])
def test_a_shared_fit_gives_each_rule_exactly_what_it_gives_alone(task_name: str) -> None:
    torch.manual_seed(0)
    methods = _methods(tasks.get(task_name))
    _, physics, y = _problem(task_name)
    alone, alone_seen = [], []
    for method in methods:
        recorder = Recorder()
        alone.append(method.reconstruct(y, physics, seed=7, callback=recorder))
        alone_seen.append(recorder.seen)
    recorders = [Recorder() for _ in methods]
    shared = common.DipMethod.solve_shared([[(m, Problem(y, physics, 7, r)) for m, r in zip(methods, recorders,
                                                                                            strict=True)]])[0]
    stops = set()
    for a, s, seen, recorder in zip(alone, shared, alone_seen, recorders, strict=True):
        _same(a, s)
        assert [k for k, _ in recorder.seen] == [k for k, _ in seen]
        assert all(torch.equal(u, v) for (_, u), (_, v) in zip(recorder.seen, seen, strict=True))
        assert s.info["shared_fit"] == len(methods)
        stops.add(s.iterations)
    assert len(stops) > 1, "the rules should stop at different steps for this test to mean something"


def test_a_batch_of_shared_fits_gives_each_problem_what_it_gives_alone() -> None:
    """B measurements × the rules, in float64 (where the grouped kernels' order does not matter);
    the cheap rules (the contract tests batch every method alone, self-validation included)."""
    task = tasks.get("denoising_s25")
    methods = [m for m in _methods(task) if m.name != "dip_sv"]
    problems = []
    for seed in (1, 2):
        _, physics, y = _problem("denoising_s25", seed)
        problems.append((y.double(), physics.to(torch.float64)))
    together = common.DipMethod.solve_shared([[(m, Problem(y, ph, 3 + i)) for m in methods]
                                              for i, (y, ph) in enumerate(problems)])
    for i, (y, ph) in enumerate(problems):
        for method, shared in zip(methods, together[i], strict=True):
            alone = method.reconstruct(y, ph, seed=3 + i)
            assert (alone.iterations, alone.selected_iteration) == (shared.iterations, shared.selected_iteration)
            assert torch.allclose(alone.x, shared.x, atol=1e-9)


class FakeClock:
    """A clock that the network's steps and the rules advance by known amounts, so that the cost
    accounting can be checked exactly, whatever the machine's load."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_each_rule_pays_the_network_to_its_stop_plus_its_own_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a clock that the network advances by 1 s per step and each rule by its own amount per
    call, a rule's cost in a shared fit is exactly its cost alone: its steps × 1 s plus its calls."""
    clock = FakeClock()
    monkeypatch.setattr(dip_loop.time, "perf_counter", clock)
    forward = dip_loop.Group.forward

    def timed_forward(self: dip_loop.Group, step: int) -> torch.Tensor:
        clock.now += 1.0
        return forward(self, step)

    monkeypatch.setattr(dip_loop.Group, "forward", timed_forward)
    costs = {"dip": 0.0, "dip_eswmv": 0.01, "dip_esemv": 0.02, "dip_sv": 0.05}
    methods = _methods(tasks.get("denoising_s25"))
    for method in methods:
        original = type(method).read

        def read(self: Any, y: Any, physics: Any, seed: int, original: Any = original) -> common.Reading:
            reading = original(self, y, physics, seed)
            rule, cost = reading.rule, costs[self.name]

            def timed_rule(step: int, x: torch.Tensor, loss: torch.Tensor) -> Any:
                clock.now += cost
                return rule(step, x, loss) if rule is not None else dip_loop.Verdict(best=True)

            reading.rule = timed_rule
            return reading

        monkeypatch.setattr(type(method), "read", read)
    _, physics, y = _problem("denoising_s25")
    alone = [m.reconstruct(y, physics, seed=5) for m in methods]
    shared = common.DipMethod.solve_shared([[(m, Problem(y, physics, 5)) for m in methods]])[0]
    for method, a, s in zip(methods, alone, shared, strict=True):
        assert a.cost is not None and s.cost is not None
        assert s.cost.network_s == pytest.approx({1: float(s.iterations)})  # 1 s a step, up to its stop
        assert s.cost.own_s == pytest.approx(costs[method.name] * s.iterations)
        assert s.cost.network_s == pytest.approx(a.cost.network_s) and s.cost.own_s == pytest.approx(a.cost.own_s)


def test_the_plan_batches_the_rules_of_one_measurement_together() -> None:
    """Cells of methods sharing a fit, on one measurement, land in one batch (up to B measurements)."""
    profile_cells = []
    for name, (image, seed) in itertools.product(RULES, [("a", 0), ("a", 1), ("b", 0)]):
        profile_cells.append(plan.Cell(name, "{}", "denoising_s25", "embedded", image, "c", seed, name))
    batches = plan.batches(profile_cells, lambda c: (1, 8, 8), 2, lambda c: "shared")
    assert [len(b) for b in batches] == [8, 4]
    for batch in batches:
        measurements = {(c.image_id, c.seed) for c in batch}
        assert all(sum(1 for c in batch if (c.image_id, c.seed) == m) == len(RULES) for m in measurements)


def test_the_harness_reads_one_fit_for_the_rules_of_a_measurement() -> None:
    """Through ``run_cells``: the four cells of one measurement in one batch give the records each
    cell gives alone, and say that they read a shared fit."""
    from benchmark.core.keys import canonical_json
    from benchmark.problems import data
    from benchmark.run import harness

    image = data.load("embedded", crop=32, resize=64, limit=1)[0]
    task = tasks.get("denoising_s25")
    cells = [plan.Cell(m.name, canonical_json(m.params), task.name, "embedded", image.id, "c", 0, m.name)
             for m in _methods(task)]
    pool = MethodPool(list, "none", data.cache_root() / "shared-fit", torch.device("cpu"), progress=False)
    together = harness.run_cells(cells, [image.tensor] * len(cells), pool, skip_metrics=("lpips",),
                                 save_reconstruction=False)
    for cell, outcome in zip(cells, together, strict=True):
        (alone,) = harness.run_cells([cell], [image.tensor], pool, skip_metrics=("lpips",), save_reconstruction=False)
        shared = outcome.record
        assert shared.status == alone.record.status == "ok", (shared.error, alone.record.error)
        assert shared.metrics == alone.record.metrics
        assert (shared.iterations, shared.selected_iteration, shared.oracle_value) == (
            alone.record.iterations, alone.record.selected_iteration, alone.record.oracle_value)
        assert shared.info["shared_fit"] == len(cells) and alone.record.info["shared_fit"] == 1
        assert shared.runtime_s is not None and shared.runtime_s > 0


def test_a_shrinking_group_is_charged_at_each_size_s_calibrated_rate() -> None:
    """``Calibration.factor_at``: measured sizes as measured, sizes between them interpolated, the
    largest measured one's beyond it; the harness scales each group size's network seconds by it."""
    from benchmark.api import SoloCost
    from benchmark.run.calibration import Calibration, solo_runtime

    calibration = Calibration(rates={1: 10.0, 2: 16.0, 4: 24.0})
    assert calibration.factor_at(1) == 1.0 and calibration.factor_at(2) == pytest.approx(1.6)
    assert calibration.factor_at(3) == pytest.approx(2.0) and calibration.factor_at(8) == pytest.approx(2.4)
    result = Reconstruction(x=torch.zeros(1), cost=SoloCost({4: 1.0, 2: 0.5, 1: 0.25}, own_s=0.1))
    runtime, _ = solo_runtime(result, share=9.9, size=4, calibration=calibration)
    assert runtime == pytest.approx(1.0 * 2.4 + 0.5 * 1.6 + 0.25 + 0.1)
