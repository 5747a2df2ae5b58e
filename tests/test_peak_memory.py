"""Peak memory on CPU: what a cell's ``peak_mem_mb`` column reports."""

from __future__ import annotations

import gc
import time

import torch

from benchmark.run.clock import PeakMemory

CPU = torch.device("cpu")
MB = 2**20


class _Cycle:
    """Garbage only the cyclic collector frees, as an earlier cell's network can leave behind."""

    def __init__(self, megabytes: int) -> None:
        self.me = self
        self.tensor = torch.ones(megabytes * MB // 4)


def _hold(megabytes: int, seconds: float = 0.15) -> None:
    workspace = torch.ones(megabytes * MB // 4)
    time.sleep(seconds)
    del workspace


def test_an_allocation_is_measured_as_its_size() -> None:
    with PeakMemory(CPU) as memory:
        _hold(200)
    assert 0.8 * 200 < memory.megabytes < 1.3 * 200


def test_earlier_garbage_collected_during_the_run_does_not_hide_its_peak() -> None:
    gc.disable()
    try:
        _Cycle(300)
    finally:
        gc.enable()
    with PeakMemory(CPU) as memory:
        time.sleep(0.05)  # sampled before the collection: the baseline then drops by 300 MB
        gc.collect()
        time.sleep(0.05)
        _hold(200)
    assert 0.8 * 200 < memory.megabytes < 1.3 * 200


def test_nothing_allocated_measures_near_zero() -> None:
    with PeakMemory(CPU) as memory:
        time.sleep(0.05)
    assert memory.megabytes < 20
