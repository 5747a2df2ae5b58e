"""Ray executor: each batch of cells is a Ray task; the driver stays the only writer.

Workers return ``CellOutcome`` objects (records plus PNG bytes) and never touch MLflow or the
results store. Batches (``plan.batches``) are scheduled largest first (iterations × pixels), a
GPU is requested per task where the cluster has GPUs, and each worker process keeps its prepared
methods (trained checkpoints are loaded from the shared cache, which the driver filled before
dispatching).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmark.run.harness import CellOutcome, failed_outcome
from benchmark.run.plan import Cell
from benchmark.run.pool import MethodPool

_WORKER_POOLS: dict[str, MethodPool] = {}


class _StderrNow(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is when it emits."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def follow_stderr() -> None:
    """Make the driver's Ray console handlers write to the ``sys.stderr`` of the moment.

    Ray's driver handler (``PlainRayHandler``) means to, but ``StreamHandler.__init__`` binds it
    to the ``sys.stderr`` of the moment ``ray`` is first imported. Imported inside a pytest test,
    that is pytest's capture file, which pytest closes when the session ends: Ray's messages at
    interpreter exit then print "--- Logging error ---" tracebacks (ValueError: I/O operation
    on closed file). Each such handler is replaced by one with the same level, format and
    filters that looks ``sys.stderr`` up when it writes.
    """
    ray_logger = logging.getLogger("ray")
    for old in list(ray_logger.handlers):
        if isinstance(old, logging.StreamHandler) and not isinstance(old, (logging.FileHandler, _StderrNow)):
            new = _StderrNow()
            new.setLevel(old.level)
            new.setFormatter(old.formatter)
            for log_filter in old.filters:
                new.addFilter(log_filter)
            ray_logger.removeHandler(old)
            ray_logger.addHandler(new)


def _run_batch(work: Any, batch: list[Cell]) -> list[CellOutcome]:
    """Body of a Ray task: reuse this worker's method pool across the batches it gets."""
    import torch

    torch.set_num_threads(work.threads)
    pool = _WORKER_POOLS.get(work.token)
    if pool is None:
        _WORKER_POOLS.clear()
        pool = _WORKER_POOLS[work.token] = work.pool()
    return work.run(batch, pool)


def estimated_cost(cell: Cell, work: Any) -> float:
    """Iterations (or steps) × pixels: enough to put the long DIP fits first."""
    params = cell.params
    iterations = float(params.get("iterations") or params.get("sampling_steps") or params.get("train_steps") or 1)
    image = work.images.get((cell.dataset, cell.task, cell.image_id))
    return iterations * (float(image.numel()) if image is not None else 1.0)


class RayExecutor:
    def __init__(self, address: str | None = None, num_cpus: int | None = None, temp_dir: Path | None = None) -> None:
        self.address, self.num_cpus, self.temp_dir = address, num_cpus, temp_dir

    def _init(self) -> Any:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        import ray

        follow_stderr()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = self.num_cpus or os.cpu_count()
                if self.temp_dir:
                    kwargs["_temp_dir"] = str(self.temp_dir)
            ray.init(**kwargs)
            follow_stderr()  # and the handlers ray.init may have set up
        return ray

    def run(self, batches: list[list[Cell]], work: Any) -> Iterator[CellOutcome]:
        """One Ray task per batch, the costliest first; outcomes as the tasks finish."""
        if not batches:
            return
        ray = self._init()
        resources = ray.cluster_resources()
        gpus = 1 if resources.get("GPU", 0) > 0 else 0
        # Each task computes with the driver's thread count (same numbers as the local executor),
        # so it reserves that many CPUs: more tasks than cores would only oversubscribe them.
        cpus = max(1, min(int(work.threads), int(resources.get("CPU", 1))))
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_run_batch)
        work_ref = ray.put(work)
        order = sorted(batches, key=lambda b: sum(estimated_cost(c, work) for c in b), reverse=True)
        pending = {task.remote(work_ref, batch): batch for batch in order}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            batch = pending.pop(ref)
            try:
                yield from ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a lost worker fails its cells, not the benchmark
                for cell in batch:
                    yield failed_outcome(cell, work.profile_name, f"ray task failed: {type(exc).__name__}: {exc}")

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
