"""The two costs the harness measures around a method: wall time and peak memory.

Kept apart from the harness so that a script with only torch (``benchmark/gpu_check.py``) can
time methods the same way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Wall time of the reconstruction alone: measurement work runs inside ``paused()``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.elapsed = 0.0
        self._started: float | None = None

    def start(self) -> None:
        sync(self.device)
        self._started = time.perf_counter()

    def stop(self) -> float:
        sync(self.device)
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


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, where the C library has one (not on macOS or musl)."""
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_free_heap() -> None:
    """Hand the memory the C allocator holds free back to the system (glibc's ``malloc_trim(0)``,
    a few ms). Without it a run reuses what an earlier cell freed but the allocator kept, so its
    resident memory, and the peak measured from it, does not grow by what it allocates."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class PeakMemory:
    """Peak memory above the starting point: CUDA's allocator stats on GPU, sampled RSS on CPU.

    On CPU the heap is trimmed first (:func:`release_free_heap`), and the peak is the largest rise
    of resident memory above its lowest point so far, not above the first sample: a cyclic garbage
    collection that frees an earlier cell's tensors while the method runs would otherwise lower
    the baseline and hide the method's own peak.
    """

    def __init__(self, device: torch.device, interval: float = 0.005) -> None:
        self.device, self.interval = device, interval
        self.peak_bytes = 0
        self._lowest = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        elif os.path.exists("/proc/self/statm"):
            release_free_heap()
            self._lowest = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _observe(self) -> None:
        rss = _rss_bytes()
        self._lowest = min(self._lowest, rss)
        self.peak_bytes = max(self.peak_bytes, rss - self._lowest)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._observe()

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._observe()

    @property
    def megabytes(self) -> float:
        return max(self.peak_bytes, 0) / 2**20
