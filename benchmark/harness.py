"""run_cells: the only place that sees the ground truth.

It makes each measurement from a generator seeded by (task, image, seed), calls the method on a
batch of cells (one task and image size) with the clock running, and measures everything with
the clock paused: quality metrics, the PSNR/SSIM trajectory of iterative methods (through the
callback), the oracle best iterate, the ES gap, wall time (GPU-synchronised), iterations and
peak memory.
"""

from __future__ import annotations

import io
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

from benchmark import metrics, registry, tasks
from benchmark.api import Method, Problem, TrainingContext, TrainingReport, as_reconstruction
from benchmark.plan import Cell
from benchmark.store import Record


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Wall time of the reconstruction alone: measurement work runs inside ``paused()``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.elapsed = 0.0
        self._started: float | None = None

    def start(self) -> None:
        _sync(self.device)
        self._started = time.perf_counter()

    def stop(self) -> float:
        _sync(self.device)
        if self._started is not None:
            self.elapsed += time.perf_counter() - self._started
            self._started = None
        return self.elapsed

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory above the starting point: CUDA's allocator stats on GPU, sampled RSS on CPU."""

    def __init__(self, device: torch.device, interval: float = 0.005) -> None:
        self.device, self.interval = device, interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        elif os.path.exists("/proc/self/statm"):
            self._base = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_bytes = max(self.peak_bytes, _rss_bytes() - self._base)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, _rss_bytes() - self._base)

    @property
    def megabytes(self) -> float:
        return max(self.peak_bytes, 0) / 2**20


@dataclass
class TrajectoryRecorder:
    """The harness's callback: every ``every`` steps it measures x_k, with the clock paused."""

    truth: torch.Tensor
    clock: Stopwatch
    every: int
    points: list[list[float]] = field(default_factory=list)
    last_step: int = 0

    def __call__(self, step: int, x_k: torch.Tensor) -> bool:
        self.last_step = step
        if step % self.every == 0:
            with self.clock.paused(), torch.inference_mode():
                x = x_k.detach().clamp(0, 1)
                self.points.append([step, metrics.psnr(x, self.truth), metrics.ssim(x, self.truth)])
        return True


def to_png(x: torch.Tensor) -> bytes:
    """A 1×C×H×W or C×H×W tensor in [0, 1] as 8-bit PNG bytes."""
    array = x.detach().float().clamp(0, 1).squeeze(0).cpu().numpy()
    array = np.round(array * 255).astype(np.uint8)
    image = PILImage.fromarray(array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class CellOutcome:
    """A record plus the files to write next to the results (written by the driver only)."""

    record: Record
    artifacts: dict[str, bytes] = field(default_factory=dict)


class LazyImages(Sequence[torch.Tensor]):
    """The training split, loaded on first access (most methods never touch it)."""

    def __init__(self, load: Callable[[], list[torch.Tensor]]) -> None:
        self._load = load
        self._images: list[torch.Tensor] | None = None

    def _all(self) -> list[torch.Tensor]:
        if self._images is None:
            self._images = list(self._load())
        return self._images

    def __len__(self) -> int:
        return len(self._all())

    def __getitem__(self, index):  # type: ignore[no-untyped-def, override]
        return self._all()[index]


class MethodPool:
    """Method instances per (method, params, task), prepared (trained or loaded) once each."""

    def __init__(self, training_images: Callable[[], list[torch.Tensor]], training_name: str, cache_dir: Path,
                 device: torch.device, progress: bool = True) -> None:
        self.training_images = LazyImages(training_images)
        self.training_name, self.cache_dir, self.device, self.progress = training_name, cache_dir, device, progress
        self._instances: dict[tuple[str, str, str], Method] = {}
        self._prepared: dict[tuple[str, str, str], TrainingReport | None] = {}
        self._failures: dict[tuple[str, str, str], Exception] = {}

    def instance(self, cell: Cell) -> Method:
        """The (unprepared) method of ``cell``: cheap, to ask it whether it applies."""
        key = (cell.method, cell.params_json, cell.task)
        if key not in self._instances:
            self._instances[key] = registry.get(cell.method)(**cell.params)
        return self._instances[key]

    def get(self, cell: Cell) -> tuple[Method, TrainingReport | None]:
        """The prepared method for ``cell``; a failed preparation is remembered, not retried."""
        key = (cell.method, cell.params_json, cell.task)
        if key in self._failures:
            raise self._failures[key]
        method = self.instance(cell)
        if key not in self._prepared:
            try:
                self._prepared[key] = self._prepare(method, tasks.get(cell.task))
            except Exception as exc:
                self._failures[key] = exc
                raise
        return method, self._prepared[key]

    def _prepare(self, method: Method, task: tasks.Task) -> TrainingReport | None:
        if method.skip_reason(task) is not None:
            return None
        ctx = TrainingContext(
            images=self.training_images, dataset=self.training_name, task=task,
            cache_dir=self.cache_dir, seed=0, device=self.device, progress=self.progress,
        )
        return method.prepare(ctx)


def _base_record(cell: Cell, method: Method, profile: str, device: torch.device) -> Record:
    return Record(
        cell_key=cell.key, method=cell.method, task=cell.task, dataset=cell.dataset,
        image_id=cell.image_id, seed=cell.seed, params=cell.params, family=method.family,
        profile=profile, device=str(device),
    )


def artifact_stem(cell: Cell) -> str:
    return f"{cell.dataset}/{cell.task}/{cell.image_id}_seed{cell.seed}"


@dataclass
class _Prepared:
    """A cell ready to reconstruct: its measurement and the harness's view of it."""

    position: int
    cell: Cell
    record: Record
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
    with_lpips: bool = True,
    save_reconstruction: bool = True,
) -> list[CellOutcome]:
    """Run cells of one method, task and image size as one batch, and measure each.

    The method gets every problem in one ``reconstruct_batch`` call; each cell's runtime and
    peak memory are its share of the batch's (the batch's own are kept in ``info``). Failures
    become failed records, never exceptions; when a batch of several raises, its cells are run
    again one by one, so that one bad cell does not take the others down.
    """
    outcomes: dict[int, CellOutcome] = {}
    ready: list[_Prepared] = []
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
            _, report = pool.get(cell)
            if report is not None:
                record.train_s = report.seconds
                record.info["train_cached"] = report.cached
            x = image.to(pool.device).unsqueeze(0)
            generator = tasks.measurement_generator(cell.task, cell.image_id, cell.seed)
            physics = task.physics(tuple(image.shape), pool.device, generator)
            ready.append(_Prepared(position, cell, record, x, task.measure(x, physics, generator), physics))
        except Exception as exc:  # noqa: BLE001 - a failing cell must not stop the benchmark
            outcomes[position] = _failure(cell, profile, exc, record, pool.device)
    if len(ready) > 1 and len({(r.cell.method, r.cell.params_json, r.cell.task, r.x.shape) for r in ready}) > 1:
        raise ValueError("a batch must hold cells of one method, parameters, task and image size")
    options = dict(profile=profile, trajectory_every=trajectory_every, with_lpips=with_lpips,
                   save_reconstruction=save_reconstruction)
    try:
        outcomes.update(_reconstruct(ready, pool, **options))
    except Exception as exc:  # noqa: BLE001 - a batch of several is retried one by one: the bad cell fails alone
        if len(ready) == 1:
            outcomes[ready[0].position] = _failure(ready[0].cell, profile, exc, ready[0].record, pool.device)
        else:
            for item in ready:
                try:
                    outcomes.update(_reconstruct([item], pool, **options))
                except Exception as cell_exc:  # noqa: BLE001
                    outcomes[item.position] = _failure(item.cell, profile, cell_exc, item.record, pool.device)
    return [outcomes[i] for i in range(len(cells))]


def _reconstruct(ready: list[_Prepared], pool: MethodPool, *, profile: str, trajectory_every: int,
                 with_lpips: bool, save_reconstruction: bool) -> dict[int, CellOutcome]:
    """The timed part: one ``reconstruct_batch`` call, then each result measured, clock paused."""
    if not ready:
        return {}
    device = pool.device
    method, _ = pool.get(ready[0].cell)
    clock = Stopwatch(device)
    recorders = [TrajectoryRecorder(r.x, clock, max(1, trajectory_every)) for r in ready]
    problems = [Problem(r.y, r.physics, r.cell.seed, recorder) for r, recorder in zip(ready, recorders, strict=True)]
    with PeakMemory(device) as memory:
        clock.start()
        results = method.reconstruct_batch(problems)
        runtime = clock.stop()
    if len(results) != len(ready):
        raise ValueError(f"reconstruct_batch returned {len(results)} results for {len(ready)} problems")
    share = len(ready)
    outcomes: dict[int, CellOutcome] = {}
    for item, result, recorder in zip(ready, results, recorders, strict=True):
        try:
            if share > 1:
                item.record.info.update(batch_size=share, batch_runtime_s=runtime, batch_peak_mem_mb=memory.megabytes)
            outcomes[item.position] = CellOutcome(*_measure(
                item.record, item.cell, as_reconstruction(result), item.x, item.y, item.physics, recorder,
                runtime / share, memory.megabytes / share, with_lpips, save_reconstruction))
        except Exception as exc:  # noqa: BLE001
            outcomes[item.position] = _failure(item.cell, profile, exc, item.record, device)
    return outcomes


def _failure(cell: Cell, profile: str, exc: BaseException, record: Record | None, device: torch.device) -> CellOutcome:
    outcome = failed_outcome(cell, profile, f"{type(exc).__name__}: {exc}", record)
    outcome.record.info["traceback"] = traceback.format_exc(limit=8)
    outcome.record.device = str(device)
    return outcome


def failed_outcome(cell: Cell, profile: str, error: str, record: Record | None = None) -> CellOutcome:
    """A failed record for ``cell``, keeping what was already known about it."""
    if record is None:
        record = Record(cell_key=cell.key, method=cell.method, task=cell.task, dataset=cell.dataset,
                        image_id=cell.image_id, seed=cell.seed, params=cell.params, profile=profile)
    record.status, record.error, record.finished_at = "failed", error, time.time()
    return CellOutcome(record)


@torch.inference_mode()
def _measure(record: Record, cell: Cell, result: Any, x: torch.Tensor, y: torch.Tensor, physics: Any,
             recorder: TrajectoryRecorder, runtime: float, peak_mb: float, with_lpips: bool,
             save_reconstruction: bool) -> tuple[Record, dict[str, bytes]]:
    x_hat = result.x.detach()
    if x_hat.dim() == 3:
        x_hat = x_hat.unsqueeze(0)
    if x_hat.shape != x.shape:
        raise ValueError(f"reconstruction has shape {tuple(x_hat.shape)}, expected {tuple(x.shape)}")
    if not torch.isfinite(x_hat).all():
        raise FloatingPointError("diverged: the reconstruction has NaN or Inf values")
    x_hat = x_hat.clamp(0, 1)
    record.psnr = metrics.psnr(x_hat, x)
    record.ssim = metrics.ssim(x_hat, x)
    record.lpips = metrics.lpips_distance(x_hat, x) if with_lpips else None
    record.runtime_s = runtime
    record.peak_mem_mb = peak_mb
    record.iterations = result.iterations if result.iterations is not None else (recorder.last_step or None)
    record.budget = result.budget
    record.selected_iteration = result.selected_iteration
    if result.budget is not None and record.iterations is not None:
        record.iterations_saved = max(result.budget - record.iterations, 0)
    record.trajectory = recorder.points
    if recorder.points:
        # The oracle: the best iterate the harness saw, the returned one included (so gap >= 0).
        candidates = [(p[1], int(p[0])) for p in recorder.points]
        if result.selected_iteration is not None:
            candidates.append((record.psnr, int(result.selected_iteration)))
        record.oracle_psnr, record.oracle_iteration = max(candidates)
        record.es_gap_db = record.oracle_psnr - record.psnr
    baseline = physics.A_dagger(y).clamp(0, 1)
    record.measurement_psnr = metrics.psnr(baseline, x)
    record.info.update({k: v for k, v in result.info.items() if isinstance(v, (int, float, str, bool))})
    record.finished_at = time.time()
    artifacts: dict[str, bytes] = {}
    if save_reconstruction:
        stem = artifact_stem(cell)
        record.recon_path = f"{stem}_{cell.method}_{cell.key[:8]}.png"
        artifacts[record.recon_path] = to_png(x_hat)
        artifacts[f"{stem}_truth.png"] = to_png(x)
        artifacts[f"{stem}_measurement.png"] = to_png(baseline)
    return record, artifacts
