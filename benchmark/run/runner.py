"""The benchmark driver: plan → prepare trained methods → execute cells → store → MLflow, then the
report the caller hands in (``report``: the CLI passes the reports package's builder; the run layer
never imports the reports).

The driver is the only writer to the results store and to MLflow; executors only return
``CellOutcome`` objects. Each finished cell is committed at once, so an interrupted benchmark
resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from benchmark import registry
from benchmark.problems import data, tasks
from benchmark.results.store import Record, ResultsStore, StoreError
from benchmark.results.tracking import Tracker
from benchmark.run import calibration, harness, resources, tuned_values
from benchmark.run.executors import LocalExecutor, Work
from benchmark.run.harness import CellOutcome, calibrate, data_unavailable_outcome, pick_device
from benchmark.run.plan import Cell, batch_group, batches, make_plan, measurement_key
from benchmark.run.pool import MethodPool
from benchmark.run.profiles import Profile


def default_results_dir(profile: Profile) -> Path:
    return Path(os.environ.get("DIPBENCH_RESULTS", "results")) / profile.name


#: ``(the plan's per-image table, the results folder) -> the report's index file``: what the caller
#: makes of the results once the run ends (the CLI: ``reports.build_report``)
ReportBuilder = Callable[[Any, Path], "Path | None"]


@dataclass
class Summary:
    planned: int
    already_done: int
    ran: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0
    #: methods skipped because their released weights cannot be had here → the reason and fix
    no_weights: dict[str, str] = field(default_factory=dict)
    #: standard sets (test or training) that cannot be had here → the reason and fix; their cells were skipped
    no_data: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    results_dir: Path = Path()
    parent_run_id: str = ""
    report: Path | None = None
    keys: list[str] = field(default_factory=list)  # the plan's cells (the store may hold others)
    prepare_s: float = 0.0  # training or loading trained methods, in the driver
    reconstruct_s: float = 0.0  # the methods' own (timed) work as it ran, summed over the cells run
    calibrate_s: float = 0.0  # measuring batch sizes (once per method and shape, then cached)
    #: where the harness's share goes: plan and data, metrics, trajectory, PNG encoding, files
    #: and store, MLflow, report (seconds; measured in the driver or reported by the cells)
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def harness_s(self) -> float:
        """Everything else: data, measurements, metrics, MLflow, the report (local executor)."""
        return max(self.wall_s - self.prepare_s - self.reconstruct_s - self.calibrate_s, 0.0)


@contextmanager
def _timed(parts: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        parts[name] = parts.get(name, 0.0) + time.perf_counter() - started


def _write_artifacts(root: Path, artifacts: dict[str, bytes]) -> None:
    for rel, payload in artifacts.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(payload)
        os.replace(tmp, path)


def checked_plan(profile: Profile, unavailable: dict[str, str] | None = None
                 ) -> tuple[list[Cell], dict[tuple[str, int], list[Any]],
                            dict[tuple[str, str, str], torch.Tensor], torch.device]:
    """The plan's cells, its images (also by (dataset, task, image id)) and the device, after
    every check that can run before any work: names, values, images measurable, memory. With
    ``unavailable``, the sets that cannot be had here go there (``make_plan``); their cells have
    no image and are left out of the checks."""
    cells, images = make_plan(profile, unavailable)
    device = pick_device(profile.device)
    by_id = {}
    for (dataset, multiple), imgs in images.items():
        for task_name in profile.tasks:
            if tasks.get(task_name).size_multiple == multiple:
                by_id.update({(dataset, task_name, img.id): img.tensor for img in imgs})
    # auto: one problem must fit; the calibration tries only the batch sizes that fit (``_batch_sizes``)
    resources.check_plan([c for c in cells if c.dataset not in (unavailable or {})],
                         lambda c: by_id[(c.dataset, c.task, c.image_id)], profile.metrics_off,
                         profile.batch_size if isinstance(profile.batch_size, int) else 1, device)
    return cells, images, by_id, device


def run_benchmark(
    profile: Profile,
    *,
    results_dir: Path | None = None,
    tracking_uri: str | None = None,
    executor: Any = None,
    strict: bool = False,
    progress: bool = True,
    report: ReportBuilder | None = None,
    on_record: Callable[[CellOutcome], None] | None = None,
) -> Summary:
    """Run (or resume) ``profile``; everything is validated before any run is written."""
    run = _Run(profile, results_dir, progress, on_record)
    run.start_tracking(tracking_uri)
    status = "FAILED"
    try:
        run.record_unavailable()
        run.prepare_trained()
        run.execute(executor)
        run.finish(report)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        run.close(status)
    if strict and run.summary.failed:
        raise BenchmarkFailed(run.summary)
    return run.summary


class _Run:
    """One invocation of a profile, job by job: the checked plan and the store (at construction),
    MLflow, the skipped cells of unavailable sets, training, the cells, then the report."""

    def __init__(self, profile: Profile, results_dir: Path | None, progress: bool,
                 on_record: Callable[[CellOutcome], None] | None) -> None:
        self.started = time.perf_counter()
        self.profile, self.progress, self.on_record = profile, progress, on_record
        self.parts: dict[str, float] = {}
        #: standard sets that cannot be had here → the reason and the fix
        self.unavailable: dict[str, str] = {}
        self.cells, self.images, by_id, self.device = checked_plan(profile, self.unavailable)
        self.results_dir = Path(results_dir or default_results_dir(profile))
        self.store = ResultsStore(self.results_dir / "results.sqlite")
        done = self.store.done_keys()
        self.todo = [c for c in self.cells if c.key not in done and c.dataset not in self.unavailable]
        self.absent = [c for c in self.cells if c.key not in done and c.dataset in self.unavailable]
        self.work = Work(profile.name, str(self.device), profile.trajectory_every, profile.metrics_off,
                         profile.save_reconstructions, profile.training, str(harness.checkpoint_dir()), by_id,
                         progress)
        self.pool = self.work.pool()
        self.pool.progress = progress
        done_before = len(self.cells) - len(self.todo) - len(self.absent)
        self.summary = Summary(planned=len(self.cells), already_done=done_before, ran=0, results_dir=self.results_dir,
                               keys=[c.key for c in self.cells], parts=self.parts)
        self.parts["plan and data"] = time.perf_counter() - self.started

    def start_tracking(self, tracking_uri: str | None) -> None:
        """The MLflow parent run, with the images' provenance and the tune records this run uses."""
        with _timed(self.parts, "MLflow"):
            self.tracker = Tracker(tracking_uri, artifact_root=self.results_dir.parent / "mlartifacts")
            self.tracker.close_orphans()
            self.tracker.start(self.profile, str(self.device), len(self.cells), len(self.todo))
            self.tracker.log_dict("provenance.json", _provenance(self.results_dir, self.images))
            tuned = tuned_values.load(self.profile)
            if tuned.records:  # the tune records behind the values this run uses, under its parent run
                self.tracker.log_tuning(self.profile.name, list(tuned.records), tuned.path)
        self.summary.parent_run_id = self.tracker.parent_id or ""

    def keep(self, outcome: CellOutcome) -> None:
        """Commit one finished cell (its files, then its record) and count it."""
        with _timed(self.parts, "files and store"):
            try:
                _write_artifacts(self.results_dir / "recons", outcome.artifacts)
            except OSError as exc:
                raise StoreError(f"could not save a reconstruction under {self.results_dir / 'recons'} ({exc}): is "
                                 "the disk full or the folder read-only? Every cell committed before is kept; "
                                 "fix it and rerun to resume") from exc
            outcome.record.run_budget = self.profile.budget  # every number says what budget made it
            self.store.put(outcome.record)
        rec = outcome.record
        for name in ("metrics", "trajectory", "png"):
            self.parts[name] = self.parts.get(name, 0.0) + float(rec.info.get(f"{name}_s", 0.0))
        self.summary.ran += 1
        _tally(self.summary, rec)
        if self.on_record:
            self.on_record(outcome)

    def record_unavailable(self) -> None:
        """The cells of sets that cannot be had here: skipped, with the fix, before any work (the
        next run retries them)."""
        for cell in self.absent:
            self.keep(data_unavailable_outcome(cell, self.profile.name, self.unavailable[cell.dataset],
                                               str(self.device)))

    def prepare_trained(self) -> None:
        started = time.perf_counter()
        _prepare_trained(self.todo, self.work, self.pool, self.tracker, self.profile)
        self.summary.prepare_s = time.perf_counter() - started

    def execute(self, executor: Any) -> None:
        """Every cell to do, in calibrated batches (the cells of a shared fit together)."""
        pool, work = self.pool, self.work
        size_of = _batch_sizes(self.todo, work, pool, self.profile.batch_size, self.tracker)

        def share_of(cell: Cell) -> str | None:
            return pool.instance(cell).shared_fit_key()

        runner = executor or LocalExecutor(pool)
        bar = tqdm(total=len(self.todo), desc=f"{self.profile.name}", unit="cell", disable=not self.progress,
                   dynamic_ncols=True)
        for outcome in runner.run(batches(self.todo, lambda c: tuple(work.image(c).shape), size_of, share_of), work):
            self.keep(outcome)
            rec = outcome.record
            self.summary.reconstruct_s += float(rec.info.get("batch_share_s", rec.runtime_s or 0.0))
            bar.set_postfix_str(f"{rec.label or rec.method}/{rec.task}/{rec.image_id}"[:48])
            bar.update(1)
        bar.close()
        self.summary.calibrate_s = pool.calibrator.measured_s

    def finish(self, report: ReportBuilder | None) -> None:
        """The plan's per-image table to MLflow (a child run per method instance, task and dataset)
        and the caller's report."""
        with _timed(self.parts, "files and store"):
            frame = self.store.frame([c.key for c in self.cells])
        with _timed(self.parts, "MLflow"):
            self.tracker.log_groups(frame, self.profile.name, self.results_dir / "recons")
        if report is not None:
            with _timed(self.parts, "report"):
                self.summary.report = report(frame, self.results_dir)
            if self.summary.report is not None:
                with _timed(self.parts, "MLflow"):
                    self.tracker.log_report(self.summary.report.parent)

    def close(self, status: str) -> None:
        with _timed(self.parts, "MLflow"):
            try:
                self.tracker.finish(status)
            except Exception:  # noqa: BLE001 - on a full disk the error that stopped the run is the one to show
                if status == "FINISHED":
                    raise
        self.summary.wall_s = time.perf_counter() - self.started


def _tally(summary: Summary, rec: Record) -> None:
    """Count a finished cell's failure or skip (and why) in the summary."""
    if rec.status == "failed":
        where = f"{rec.label or rec.method} · {rec.task} · {rec.dataset} · {rec.image_id} · seed {rec.seed}"
        summary.failed.append((where, rec.error))
    elif rec.status == "skipped":
        summary.skipped += 1
        if rec.info.get("weights_unavailable"):
            summary.no_weights.setdefault(rec.method, rec.error or "")
        if rec.info.get("data_unavailable"):
            summary.no_data.setdefault(str(rec.info["data_unavailable"]), rec.error or "")


class BenchmarkFailed(Exception):
    """``--strict``: some cells failed."""

    def __init__(self, summary: Summary) -> None:
        super().__init__(f"{len(summary.failed)} cell(s) failed")
        self.summary = summary


def _prepare_trained(todo: list[Cell], work: Work, pool: MethodPool, tracker: Tracker, profile: Profile) -> None:
    """Train (or load) every trained method once per task, in the driver, before any cell runs."""
    seen: set[tuple[str, str, str, str, int]] = set()
    for cell in todo:
        channels = int(work.image(cell).shape[0])
        key = (cell.method, cell.params_json, cell.task, cell.training, channels)
        if key in seen:
            continue
        seen.add(key)
        try:
            _, report = pool.get(cell, channels)
        except Exception:  # noqa: BLE001 - recorded as failed (or skipped) cells by run_cells
            continue
        if report is not None:
            tracker.log_training(cell.label or cell.method, cell.task, cell.training or pool.training_name, report,
                                 profile.name)


def _batch_sizes(todo: list[Cell], work: Work, pool: MethodPool, setting: int | str,
                 tracker: Tracker) -> Callable[[tuple[object, ...]], int]:
    """The batch size of each (method, parameters, task, shape) group, calibrated here in the driver.

    ``auto``: the fastest per image of B = 1, 2, 4, 8 (never one slower than one by one); a fixed
    size: that size, calibrated against B = 1 so that batched cells report solo-equivalent
    runtimes. Measurements are cached, so executors' workers find them on disk.
    """
    groups: dict[tuple[object, ...], list[Cell]] = {}
    for cell in todo:
        shared = pool.instance(cell).shared_fit_key()
        groups.setdefault(batch_group(cell, tuple(work.image(cell).shape), shared), []).append(cell)
    chosen: dict[tuple[object, ...], int] = {}
    logged: list[dict[str, Any]] = []
    for key, members in groups.items():
        firsts: dict[tuple[str, str, str, int], Cell] = {}
        for cell in members:
            firsts.setdefault(measurement_key(cell), cell)
        cells = list(firsts.values())  # one cell per measurement: a batch counts measurements
        limit = min(min(registry.get(c.method).max_batch for c in members), len(cells))
        images = [work.image(c) for c in cells]
        if setting == "auto":
            one = pool.instance(cells[0]).memory_estimate(tuple(int(s) for s in images[0].shape))  # type: ignore[arg-type]
            if one:
                limit = max(1, min(limit, resources.available_bytes(pool.device) // one))
        wanted = min(limit, int(setting)) if setting != "auto" else limit
        chosen[key] = max(1, wanted)
        sizes = calibration.candidates(limit) if setting == "auto" else sorted({1, wanted})
        if wanted <= 1:
            continue
        try:
            method = pool.instance(cells[0])
            if method.skip_reason(tasks.get(cells[0].task), channels=int(images[0].shape[0])) is not None:
                continue
            found = calibrate(cells[: max(sizes)], images[: max(sizes)], pool, sizes)
        except Exception:  # noqa: BLE001 - the cells report the failure themselves when they run
            continue
        if setting == "auto":
            chosen[key] = found.best(limit)
        logged.append({"method": cells[0].method, "params": cells[0].params, "task": cells[0].task,
                       "shape": list(images[0].shape), "setting": setting, "batch_size": chosen[key],
                       "rates": {str(b): r for b, r in sorted(found.rates.items())}, "per_step": found.per_step})
    tracker.log_batch_choices(logged)
    return lambda key: chosen.get(key, 1)


def _provenance(results_dir: Path, images: dict[tuple[str, int], list[data.Image]]) -> dict[str, Any]:
    """Which file, with which sha256, each image of the plan came from; merged into
    ``results_dir/provenance.json`` (the store may hold earlier runs' datasets too)."""
    this_run: dict[str, dict[str, dict[str, str]]] = {}
    for (dataset, _), imgs in images.items():
        for img in imgs:
            this_run.setdefault(dataset, {})[img.id] = {"file": img.file, "sha256": img.sha256}
    path = results_dir / "provenance.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(this_run)
    _write_artifacts(results_dir, {"provenance.json": json.dumps(merged, indent=1, sort_keys=True).encode()})
    return this_run
