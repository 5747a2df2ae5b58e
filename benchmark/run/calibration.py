"""Batch-size calibration: per-image throughput at B = 1, 2, 4, 8, measured once and cached.

Fitting B problems in one step pays only where the per-step work is small next to what the
device can do at once: on a CPU the paper's 128-channel DIP network is already slower per image
at B = 8 than alone (``make perf``), the 32-channel one is ~1.5× faster. So the harness measures
instead of guessing. For one (method, parameters, task, image shape, device, thread count) it
runs ``reconstruct_batch`` on B copies of real problems for a few steps, timing the steps
through the callback every iterative method calls once per step (the first steps are warm-up),
and caches the per-image rates on disk. ``batch_size: auto`` picks the fastest B, and never one
that measured slower than one by one. The same solo run gives the solo-equivalent runtime and
peak memory the tables report for cells that ran in a batch (issue 12, item 1).

Nothing here knows a method: a method that batches (``max_batch > 1``) only has to call the
callback once per step and stop when it says so, as the method contract already asks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.api import Method, Problem, Reconstruction, SoloCost
from benchmark.run.clock import PeakMemory, sync

#: batch sizes ``auto`` tries
CANDIDATES = (1, 2, 4, 8)
#: untimed steps first (allocations, kernel selection), then the timed ones
WARMUP_STEPS = 2
STEPS = 5
#: a batch must beat one by one by this factor to be chosen (measurement noise on shared CPUs)
MARGIN = 1.05
#: how rates and peaks are measured; a cached calibration made otherwise is measured again. 2: the
#: CPU peak is taken after trimming glibc's heap (``clock.release_free_heap``); before it, freed
#: heap pages reused by the method could hide its peak (0 MB for DIP cells)
MEASUREMENT = 2


@dataclass
class Calibration:
    """Measured per-image rates (images·steps per second) and peak memory, by batch size."""

    rates: dict[int, float] = field(default_factory=dict)
    peak_mb: dict[int, float] = field(default_factory=dict)
    #: True when the method reported its steps; otherwise rates are per whole call
    per_step: bool = True
    #: the :data:`MEASUREMENT` it was made under
    measurement: int = MEASUREMENT

    def best(self, limit: int) -> int:
        """The fastest measured batch size up to ``limit``; 1 unless a batch beats it by MARGIN."""
        solo = self.rates.get(1)
        if solo is None:
            return 1
        choices = [b for b in self.rates if b <= limit and (b == 1 or self.rates[b] >= MARGIN * solo)]
        return max(choices, key=lambda b: self.rates[b]) if choices else 1

    def solo_factor(self, batch: int) -> float | None:
        """Solo time per image ÷ time per image in a batch of ``batch`` (None if not measured)."""
        if batch == 1:
            return 1.0
        if 1 in self.rates and batch in self.rates and self.rates[1] > 0:
            return self.rates[batch] / self.rates[1]
        return None

    def factor_at(self, batch: int) -> float | None:
        """:meth:`solo_factor` at any batch size: a group that shrinks as problems stop runs at sizes
        not measured, whose rate is interpolated linearly between the measured sizes around it (the
        largest measured one's beyond it). None without a solo rate."""
        if batch == 1:
            return 1.0
        solo = self.rates.get(1)
        if not solo:
            return None
        if batch in self.rates:
            return self.rates[batch] / solo
        below = max(b for b in self.rates if b < batch)
        above = min((b for b in self.rates if b > batch), default=None)
        if above is None:
            return self.rates[below] / solo
        t = (batch - below) / (above - below)
        return ((1 - t) * self.rates[below] + t * self.rates[above]) / solo

    def as_info(self) -> str:
        """Compact, for records and MLflow: ``"1:12.3,2:20.1,…"`` (images·steps per second)."""
        return ",".join(f"{b}:{r:.4g}" for b, r in sorted(self.rates.items()))


def _device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()}:{platform.processor() or os.cpu_count()}"


def cache_key(method: str, params_json: str, task: str, shape: Sequence[int], device: torch.device) -> str:
    """Everything the rate depends on: the work, the device and the threads computing it."""
    ident = [method, params_json, task, list(shape), _device_label(device), torch.get_num_threads(),
             torch.__version__]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


def _time_batch(method: Method, problems: Sequence[Problem], device: torch.device) -> tuple[float, float, bool]:
    """(images·steps per second, peak MB, timed per step) of ``problems`` solved together."""
    marks: list[float] = []
    last = WARMUP_STEPS + STEPS

    def tick(step: int, _x: torch.Tensor) -> bool:
        sync(device)
        marks.append(time.perf_counter())
        return step < last

    timed = [dataclasses.replace(p, callback=tick if i == 0 else (lambda s, _x: s < last))
             for i, p in enumerate(problems)]
    with PeakMemory(device) as memory:
        started = time.perf_counter()
        method.reconstruct_batch(timed)
        sync(device)
        total = time.perf_counter() - started
    steps = [b - a for a, b in zip(marks[WARMUP_STEPS - 1:], marks[WARMUP_STEPS:], strict=False)]
    if len(steps) >= 2:
        return len(problems) / statistics.median(steps), memory.megabytes, True
    return len(problems) / max(total, 1e-9), memory.megabytes, False


class Calibrator:
    """Rates measured once per key, kept in memory and in ``folder`` (JSON, one file per key)."""

    def __init__(self, folder: Path | None, device: torch.device) -> None:
        self.folder, self.device = folder, device
        self._known: dict[str, Calibration] = {}
        self.measured_s = 0.0  # time spent measuring in this process (not served from cache)

    def _load(self, key: str) -> Calibration:
        if key in self._known:
            return self._known[key]
        found = Calibration()
        path = self.folder / f"{key}.json" if self.folder else None
        if path is not None and path.is_file():
            try:
                doc = json.loads(path.read_text())
                if doc.get("measurement") != MEASUREMENT:
                    raise ValueError("measured otherwise")
                found = Calibration({int(b): float(r) for b, r in doc["rates"].items()},
                                    {int(b): float(m) for b, m in doc["peak_mb"].items()}, bool(doc["per_step"]))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                found = Calibration()  # unreadable or measured otherwise: measured again
        self._known[key] = found
        return found

    def _save(self, key: str, calibration: Calibration) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.json"
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(dataclasses.asdict(calibration)))
        os.replace(tmp, path)

    def known(self, key: str) -> Calibration | None:
        """What is already measured for ``key`` (memory or disk), measuring nothing."""
        found = self._load(key)
        return found if found.rates else None

    def measure(self, key: str, method: Method, make_problems: Callable[[int], list[Problem]],
                sizes: Sequence[int]) -> Calibration:
        """The calibration of ``key``, measuring the batch sizes of ``sizes`` not yet known.

        ``make_problems(b)`` gives ``b`` problems of the key's shape (no callbacks)."""
        calibration = self._load(key)
        missing = sorted(set(sizes) - set(calibration.rates))
        if not missing:
            return calibration
        started = time.perf_counter()
        for batch in missing:
            rate, peak, per_step = _time_batch(method, make_problems(batch), self.device)
            calibration.rates[batch], calibration.peak_mb[batch] = rate, peak
            calibration.per_step = calibration.per_step and per_step
        self.measured_s += time.perf_counter() - started
        self._save(key, calibration)
        return calibration


def candidates(limit: int) -> list[int]:
    """The batch sizes ``auto`` measures for a group of at most ``limit`` problems."""
    return [b for b in CANDIDATES if b <= max(1, limit)]


def solo_runtime(result: Reconstruction, share: float, size: int,
                 calibration: Calibration | None) -> tuple[float, float | None]:
    """(what the cell would have cost alone, the solo/batch factor of its batch size). With the
    method's own cost split, the network's share at each group size is scaled by that size's
    factor and the method's own work added as it is."""
    factor = calibration.solo_factor(size) if calibration is not None else (1.0 if size == 1 else None)
    if result.cost is None:
        return (share * factor if factor is not None else share), factor
    network = sum(seconds * _factor_at(calibration, group) for group, seconds in result.cost.network_s.items())
    return network + result.cost.own_s, factor


def _factor_at(calibration: Calibration | None, group_size: int) -> float:
    """The calibrated solo/batch factor of a group size (1.0 where none is known)."""
    scale = calibration.factor_at(group_size) if calibration is not None else None
    return scale if scale is not None else 1.0


def solo_cost_info(cost: SoloCost, calibration: Calibration | None) -> dict[str, Any]:
    """The parts of a solo runtime that a method's reported cost makes (kept in the record, so a
    reader can redo it): the network's seconds at each group size, the factor applied to each
    and the method's own work."""
    return {"network_s": {str(group): seconds for group, seconds in cost.network_s.items()},
            "factors": {str(group): _factor_at(calibration, group) for group in cost.network_s},
            "own_s": cost.own_s}
