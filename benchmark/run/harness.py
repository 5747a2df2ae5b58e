"""run_cells: the only place that sees the ground truth.

It makes each measurement from a generator seeded by (dataset, task, image, seed), calls the method on a
batch of cells (one task and image size) with the clock running, and measures everything with
the clock paused: every applicable metric of the registry (``benchmark.problems.metrics``), the
trajectory of iterative methods (through the callback), the oracle (the best PSNR over every
iterate the callback got, on the stream the method names in ``info["oracle_stream"]``), the ES
gap, wall time (GPU-synchronised), iterations and peak memory.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark import registry
from benchmark.api import (
    TRAIN_SET,
    TRAIN_TASK,
    Method,
    Problem,
    Reconstruction,
    as_reconstruction,
)
from benchmark.core import seeding
from benchmark.core.errors import DataUnavailable, NotApplicable, WeightsUnavailable
from benchmark.problems import conditions, data, metrics, tasks
from benchmark.problems.conditions import TRAIN_CONTENT
from benchmark.results.store import Record
from benchmark.run.calibration import Calibration, cache_key, solo_cost_info, solo_runtime
from benchmark.run.clock import PeakMemory, Stopwatch
from benchmark.run.plan import Cell, measurement_key
from benchmark.run.pool import MethodPool
from benchmark.run.profiles import training_dataset
from benchmark.run.recording import TrajectoryRecorder, reconstruction_uncertainty, to_png, uncertainty_png


def checkpoint_dir() -> Path:
    """Where trained methods cache their checkpoints (under the data cache)."""
    return data.cache_root() / "checkpoints"


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class CellOutcome:
    """A record plus the files to write next to the results (written by the driver only)."""

    record: Record
    artifacts: dict[str, bytes] = field(default_factory=dict)


def _base_record(cell: Cell, method: Method, profile: str, device: torch.device) -> Record:
    return Record(
        cell_key=cell.key, method=cell.method, task=cell.task, dataset=cell.dataset,
        image_id=cell.image_id, seed=cell.seed, params=cell.params, family=method.family,
        stopping_rule=method.stopping_rule, profile=profile, device=str(device), label=cell.label or cell.method,
        info=training_condition(cell, method),
    )


def training_condition(cell: Cell, method: Method) -> dict[str, Any]:
    """What the cell's instance learnt from, for its record (``benchmark.results.robustness`` reads
    it): ``train_task`` (where its training depends on the task), ``train_set`` (the dataset of the
    cell's training set; its preparation is the cell's ``training``), ``train_content`` (the kind
    of those images, or of its released weights': natural, CT, MRI) and ``condition_params`` (the
    parameters that chose them: a shift cell's in-distribution twin differs from it in these only);
    nothing for a method that learnt nothing."""
    info: dict[str, Any] = {}
    train_task = method.train_task(tasks.get(cell.task))
    if train_task:
        info[TRAIN_TASK] = train_task
    learnt_from = training_dataset(cell.training) if cell.training else ""
    if learnt_from:
        info[TRAIN_SET] = learnt_from
    content = method.released_content() or (conditions.content_of(learnt_from) if learnt_from else "")
    if content:
        info[TRAIN_CONTENT] = content
    if info:
        info["condition_params"] = list(method.condition_parameters())
    return info


def artifact_stem(cell: Cell) -> str:
    return f"{cell.dataset}/{cell.task}/{cell.image_id}_seed{cell.seed}"


def method_seed(cell: Cell) -> int:
    """The seed the method gets for ``cell``: the run seed mixed with the dataset and image."""
    return seeding.method_seed(cell.dataset, cell.image_id, cell.seed)


def measurement(cell: Cell, image: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """(x, y, physics) of ``cell``: the measurement drawn from (dataset, task, image, seed)."""
    task = tasks.get(cell.task)
    x = image.to(device).unsqueeze(0)
    generator = tasks.measurement_generator(cell.task, cell.image_id, cell.seed, dataset=cell.dataset)
    channels, height, width = image.shape
    physics = task.physics((int(channels), int(height), int(width)), device, generator)
    return x, task.measure(x, physics, generator), physics


def calibration_key(cell: Cell, shape: tuple[int, ...], pool: MethodPool) -> str:
    """The rates' cache key: the shared fit's where the method shares one (every method reading it
    runs the same network), else the method's and its parameters'."""
    shared = pool.instance(cell).shared_fit_key()
    name, params = ("shared fit", shared) if shared is not None else (cell.method, cell.params_json)
    return cache_key(name, params, cell.task, shape, pool.device)


def calibrate(cells: Sequence[Cell], images: Sequence[torch.Tensor], pool: MethodPool,
              sizes: Sequence[int]) -> Calibration:
    """Per-image rates of ``cells``' method at the batch sizes ``sizes`` (see
    ``benchmark.run.calibration``), on B of these cells' own measurements (repeated when too few)."""
    firsts: dict[tuple[str, str, str, int], int] = {}
    for i, cell in enumerate(cells):
        firsts.setdefault(measurement_key(cell), i)
    cells, images = [cells[i] for i in firsts.values()], [images[i] for i in firsts.values()]
    method, _ = pool.get(cells[0], int(images[0].shape[0]))
    made = [measurement(cell, image, pool.device) for cell, image in zip(cells, images, strict=True)]
    problems = [Problem(y, physics, method_seed(cell)) for cell, (_, y, physics) in zip(cells, made, strict=True)]
    key = calibration_key(cells[0], tuple(images[0].shape), pool)
    return pool.calibrator.measure(key, method, lambda b: [problems[i % len(problems)] for i in range(b)], sizes)


@dataclass
class _Prepared:
    """A cell ready to reconstruct: its measurement and the harness's view of it."""

    position: int
    cell: Cell
    record: Record
    image: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    physics: Any


def run_cells(
    cells: Sequence[Cell],
    images: Sequence[torch.Tensor],
    pool: MethodPool,
    *,
    profile: str = "",
    trajectory_every: int = 10,
    save_reconstruction: bool = True,
    skip_metrics: Collection[str] = (),
) -> list[CellOutcome]:
    """Run a batch of cells (see ``plan.batches``) and measure each.

    A batch holds the cells of one method, parameters, task and image size, or of methods that
    read one shared fit (``Method.shared_fit_key``): then the cells of one measurement are read
    from one fit. The method gets every problem in one call; each cell's runtime and peak memory
    are solo-equivalent (see ``_reconstruct``; the batch's own are kept in ``info``). Failures
    become failed records, never exceptions; when a batch of several raises, its cells are run
    again one by one, so that one bad cell does not take the others down.
    """
    outcomes: dict[int, CellOutcome] = {}
    ready: list[_Prepared] = []
    made: dict[tuple[str, str, str, int], tuple[torch.Tensor, torch.Tensor, Any]] = {}
    for position, (cell, image) in enumerate(zip(cells, images, strict=True)):
        record: Record | None = None
        try:
            method = pool.instance(cell)
            record = _base_record(cell, method, profile, pool.device)
            task = tasks.get(cell.task)
            reason = method.skip_reason(task, channels=int(image.shape[0]))
            if reason is not None:
                record.status, record.error = "skipped", reason
                record.finished_at = time.time()
                outcomes[position] = CellOutcome(record)
                continue
            _, report = pool.get(cell, int(image.shape[0]))
            if report is not None:
                record.train_s = report.seconds
                record.train_images = report.images
                record.info["train_cached"] = report.cached
                if report.description:
                    record.info["trained_on"] = report.description
            key = measurement_key(cell)
            if key not in made:  # one measurement per (dataset, task, image, seed), whoever reads it
                made[key] = measurement(cell, image, pool.device)
            ready.append(_Prepared(position, cell, record, image, *made[key]))
        except Exception as exc:  # noqa: BLE001 - a failing cell must not stop the benchmark
            outcomes[position] = _failure(cell, profile, exc, record, pool.device)
            if isinstance(exc, (WeightsUnavailable, NotApplicable, DataUnavailable)):  # not an error of the
                outcomes[position].record.status = "skipped"  # method: skipped, with the reason and the fix
                if isinstance(exc, WeightsUnavailable):
                    outcomes[position].record.info["weights_unavailable"] = True
                if isinstance(exc, DataUnavailable):  # its training set cannot be had here
                    outcomes[position].record.info["data_unavailable"] = exc.dataset
    groups = {_batch_identity(r, pool) for r in ready}
    if len(groups) > 1:
        raise ValueError("a batch must hold cells of one method, parameters, task and image size, or of methods "
                         "that share one fit")
    skip = frozenset(skip_metrics)
    def attempt(items: list[_Prepared]) -> dict[int, CellOutcome]:
        return _reconstruct(items, pool, profile=profile, trajectory_every=trajectory_every, skip_metrics=skip,
                            save_reconstruction=save_reconstruction)

    try:
        outcomes.update(attempt(ready))
    except Exception as exc:  # noqa: BLE001 - a batch of several is retried one by one: the bad cell fails alone
        if len(ready) == 1:
            outcomes[ready[0].position] = _failure(ready[0].cell, profile, exc, ready[0].record, pool.device)
        else:
            for item in ready:
                try:
                    outcomes.update(attempt([item]))
                except Exception as cell_exc:  # noqa: BLE001
                    outcomes[item.position] = _failure(item.cell, profile, cell_exc, item.record, pool.device)
    return [outcomes[i] for i in range(len(cells))]


def _batch_identity(item: _Prepared, pool: MethodPool) -> tuple[object, ...]:
    """What the cells of one batch share: the shared fit (with the task and image size), else the
    method, its parameters, the task and the image size."""
    shared = pool.instance(item.cell).shared_fit_key()
    ident: tuple[object, ...] = (shared,) if shared is not None else (item.cell.method, item.cell.params_json)
    return (*ident, item.cell.task, tuple(item.x.shape))


def _solve(ready: list[_Prepared], pool: MethodPool, problems: list[Problem]) -> list[Reconstruction]:
    """The timed call: one ``reconstruct_batch``, or one ``solve_shared`` over the measurements
    when the methods share a fit (each measurement's cells read one fit)."""
    methods = [pool.get(r.cell, int(r.image.shape[0]))[0] for r in ready]
    if methods[0].shared_fit_key() is None:
        return [as_reconstruction(r) for r in methods[0].reconstruct_batch(problems)]
    by_measurement: dict[tuple[str, str, str, int], list[int]] = {}
    for i, item in enumerate(ready):
        by_measurement.setdefault(measurement_key(item.cell), []).append(i)
    groups = [[(methods[i], problems[i]) for i in members] for members in by_measurement.values()]
    solved = type(methods[0]).solve_shared(groups)
    out: list[Reconstruction | None] = [None] * len(ready)
    for members, results in zip(by_measurement.values(), solved, strict=True):
        for i, result in zip(members, results, strict=True):
            out[i] = as_reconstruction(result)
    assert all(r is not None for r in out)
    return out  # type: ignore[return-value]


def _reconstruct(ready: list[_Prepared], pool: MethodPool, *, profile: str, trajectory_every: int,
                 skip_metrics: frozenset[str], save_reconstruction: bool) -> dict[int, CellOutcome]:
    """The timed part: one call for the batch, then each result measured, clock paused.

    A cell's ``runtime_s`` and ``peak_mem_mb`` are what a user fitting that image alone with that
    method would see: a method that reports its costs (``Reconstruction.cost``: the network's share
    by group size up to its stop, and its own work) gets the network's share scaled by the
    calibrated solo/batch rate ratio of each group size plus its own work as it is; otherwise, for a
    batch of B > 1, its share of the batch's time (by iterations) scaled by the ratio. Peak memory
    is the solo run's (the batch's, undivided, where no solo peak was measured). ``throughput`` is
    what batching buys: measurements per second of the batch as it ran.
    """
    if not ready:
        return {}
    device = pool.device
    size = len({measurement_key(r.cell) for r in ready})
    calibration = (calibrate([r.cell for r in ready], [r.image for r in ready], pool, (1, size)) if size > 1
                   else pool.calibrator.known(calibration_key(ready[0].cell, tuple(ready[0].image.shape), pool)))
    clock = Stopwatch(device)
    task = tasks.get(ready[0].cell.task)
    measured = [m for m in metrics.applicable(task, skip_metrics) if m.trajectory]
    # each image its own data range (an MRI magnitude's is its reference's largest value)
    recorders = [TrajectoryRecorder(r.x, clock, max(1, trajectory_every),
                                    metrics.MetricContext(task, task.space.data_range(r.x)), measured, task.space)
                 for r in ready]
    problems = [Problem(r.y, r.physics, method_seed(r.cell), recorder)
                for r, recorder in zip(ready, recorders, strict=True)]
    with PeakMemory(device) as memory:
        clock.start()
        results = _solve(ready, pool, problems)
        runtime = clock.stop()
    if len(results) != len(ready):
        raise ValueError(f"the method returned {len(results)} results for {len(ready)} problems")
    shares = _shares(results, recorders, runtime)
    solo_peak = calibration.peak_mb.get(1, 0.0) if calibration is not None else 0.0
    outcomes: dict[int, CellOutcome] = {}
    for item, result, recorder, share in zip(ready, results, recorders, shares, strict=True):
        try:
            item.record.throughput = size / runtime if runtime > 0 else None
            item.record.info.update(batch_size=size, batch_share_s=share)
            if calibration is not None:
                item.record.info["batch_rates"] = calibration.as_info()
            runtime_solo, factor = solo_runtime(result, share, size, calibration)
            if result.cost is not None:  # what the solo runtime was made of, so that a reader can redo it
                item.record.info["solo_cost"] = solo_cost_info(result.cost, calibration)
            if size > 1:
                item.record.info.update(batch_runtime_s=runtime, batch_peak_mem_mb=memory.megabytes,
                                        solo_factor=factor if factor is not None else "uncalibrated")
            peak = solo_peak if size > 1 and solo_peak > 0 else memory.megabytes
            outcomes[item.position] = CellOutcome(*_measure(
                item.record, item.cell, result, item.x, item.y, item.physics, recorder,
                runtime_solo, peak, skip_metrics, save_reconstruction))
        except Exception as exc:  # noqa: BLE001
            outcomes[item.position] = _failure(item.cell, profile, exc, item.record, device)
    return outcomes


def _shares(results: Sequence[Reconstruction], recorders: Sequence[TrajectoryRecorder], runtime: float) -> list[float]:
    """Each cell's share of the batch's wall time, which the shares add up to: by the work the
    method reports (``cost``), else by iterations."""
    work = [(r.cost.network_total + r.cost.own_s) if r.cost is not None else float(r.iterations or rec.last_step or 1)
            for r, rec in zip(results, recorders, strict=True)]
    total = sum(work) or 1.0
    return [runtime * w / total for w in work]


def _failure(cell: Cell, profile: str, exc: BaseException, record: Record | None, device: torch.device) -> CellOutcome:
    outcome = failed_outcome(cell, profile, f"{type(exc).__name__}: {exc}", record)
    outcome.record.info["traceback"] = traceback.format_exc(limit=8)
    outcome.record.device = str(device)
    return outcome


def data_unavailable_outcome(cell: Cell, profile: str, reason: str, device: str) -> CellOutcome:
    """The record of a cell whose images cannot be had here (``DataUnavailable``): skipped with
    the reason and the fix; the next run tries it again (``ResultsStore.done_keys``)."""
    method = registry.get(cell.method)
    record = Record(cell_key=cell.key, method=cell.method, task=cell.task, dataset=cell.dataset,
                    image_id=cell.image_id, seed=cell.seed, params=cell.params, family=method.family,
                    stopping_rule=method.stopping_rule, profile=profile, device=device,
                    label=cell.label or cell.method, status="skipped", error=reason, finished_at=time.time())
    record.info["data_unavailable"] = cell.dataset
    return CellOutcome(record)


def failed_outcome(cell: Cell, profile: str, error: str, record: Record | None = None) -> CellOutcome:
    """A failed record for ``cell``, keeping what was already known about it."""
    if record is None:
        record = Record(cell_key=cell.key, method=cell.method, task=cell.task, dataset=cell.dataset,
                        image_id=cell.image_id, seed=cell.seed, params=cell.params, profile=profile,
                        label=cell.label or cell.method)
    record.status, record.error, record.finished_at = "failed", error, time.time()
    return CellOutcome(record)


@torch.inference_mode()
def _measure(record: Record, cell: Cell, result: Any, x: torch.Tensor, y: torch.Tensor, physics: Any,
             recorder: TrajectoryRecorder, runtime: float, peak_mb: float, skip_metrics: frozenset[str],
             save_reconstruction: bool) -> tuple[Record, dict[str, bytes]]:
    x_hat = result.x.detach()
    if x_hat.dim() == 3:
        x_hat = x_hat.unsqueeze(0)
    if x_hat.shape != x.shape:
        raise ValueError(f"reconstruction has shape {tuple(x_hat.shape)}, expected {tuple(x.shape)}")
    if not torch.isfinite(x_hat).all():
        raise FloatingPointError("diverged: the reconstruction has NaN or Inf values")
    space = recorder.space
    x_hat = space.project(x_hat)
    started = time.perf_counter()
    std = reconstruction_uncertainty(result, x, space)
    context = recorder.context.with_uncertainty(std)
    seen, truth = space.view(x_hat), space.view(x)  # what metrics compare (magnitudes for MRI)
    record.metrics = {m.name: m.fn(seen, truth, context)
                      for m in metrics.applicable(context.task, skip_metrics, uncertainty=std is not None)}
    record.runtime_s = runtime
    record.peak_mem_mb = peak_mb
    record.iterations = result.iterations if result.iterations is not None else (recorder.last_step or None)
    record.budget = result.budget
    record.selected_iteration = result.selected_iteration
    if result.budget is not None and record.iterations is not None:
        record.iterations_saved = max(result.budget - record.iterations, 0)
    record.trajectory = recorder.points
    recorder.flush()
    primary = recorder.primary
    if recorder.oracle_step is not None and recorder.oracle_value is not None and primary.name in record.metrics:
        # The oracle: the best of every iterate the callback got, the returned one included (gap >= 0).
        value = record.metrics[primary.name]
        if result.selected_iteration is not None:
            recorder._consider(int(result.selected_iteration), value)
        record.oracle_value, record.oracle_iteration = recorder.oracle_value, recorder.oracle_step
        sign = 1.0 if primary.higher_is_better else -1.0
        record.es_gap = sign * (recorder.oracle_value - value)
    baseline = space.project(physics.A_dagger(y))
    if primary.name in record.metrics:
        record.measurement_value = primary.fn(space.view(baseline), truth, context)
    record.info.update({k: v for k, v in result.info.items() if isinstance(v, (int, float, str, bool))})
    encoded = time.perf_counter()
    artifacts: dict[str, bytes] = {}
    if save_reconstruction:
        stem = artifact_stem(cell)
        record.recon_path = f"{stem}_{cell.method}_{cell.key[:8]}.png"
        artifacts[record.recon_path] = to_png(space.display(x_hat, x))
        artifacts[f"{stem}_truth.png"] = to_png(space.display(x, x))
        artifacts[f"{stem}_measurement.png"] = to_png(space.display(baseline, x))
        if std is not None:  # beside the reconstruction, scaled to its own peak (stated in info)
            path = f"{stem}_{cell.method}_{cell.key[:8]}_std.png"
            artifacts[path], peak = uncertainty_png(std, context.data_range)
            record.info.update(uncertainty_path=path, uncertainty_max=peak)
    # the harness's own costs, for the CLI's split of the wall time
    record.info.update(metrics_s=encoded - started, png_s=time.perf_counter() - encoded, trajectory_s=recorder.seconds)
    record.finished_at = time.time()
    return record, artifacts
