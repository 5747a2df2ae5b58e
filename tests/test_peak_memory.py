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


def test_memory_an_earlier_cell_freed_but_the_allocator_kept_does_not_hide_the_peak() -> None:
    """What a DIP or MRI cell leaves behind: tensors below glibc's mmap threshold, freed into its
    heap and kept there (something allocated after them pins the heap's top). A new allocation
    reuses those pages, so resident memory would not grow by it unless the heap is trimmed first."""
    raise_threshold = torch.ones(30 * MB // 4)  # freeing an mmapped chunk raises glibc's threshold to 30 MB
    del raise_threshold
    earlier = [torch.ones(20 * MB // 4) for _ in range(10)]  # 200 MB in the heap
    pin = torch.ones(8 * MB // 4)  # larger than any hole the heap has: it lies above them
    del earlier
    with PeakMemory(CPU) as memory:
        _hold(64)
    assert 0.8 * 64 < memory.megabytes < 1.3 * 64
    del pin


def test_nothing_allocated_measures_near_zero() -> None:
    with PeakMemory(CPU) as memory:
        time.sleep(0.05)
    assert memory.megabytes < 20
