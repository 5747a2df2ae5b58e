"""``batch_size: auto`` against one by one, and solo-equivalent runtimes, side by side (issue 16, 12).

For the paper's (128 channels) and the quick profile's (32 channels) DIP networks at 64² and
128², grey σ = 25 denoising: the calibration's choice (B = 1, 2, 4, 8) and the per-image rate at
that B measured right after, next to B = 1's. Bar: no row slower per image than B = 1 (10%
allowed for the noise of a shared machine). Then the quick profile's DIP cells run through the
harness in one batch and one by one: a batched cell's ``runtime_s`` must be within 1.3× of the
same cell's solo ``runtime_s``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from perf_problems import denoising_problems

from benchmark.api import Problem
from benchmark.problems import data
from benchmark.run.calibration import Calibrator, candidates
from benchmark.run.harness import run_cells
from benchmark.run.plan import Cell, canonical_json
from benchmark.run.pool import MethodPool
from methods.dip import DeepImagePrior

pytestmark = pytest.mark.perf

NETWORKS = {"paper": 128, "quick": 32}
ITERATIONS = 12


def _rate(method: DeepImagePrior, problems: list[Problem], batch: int) -> float:
    """Image-iterations per second fitting ``problems`` ``batch`` at a time."""
    start = time.perf_counter()
    for first in range(0, len(problems), batch):
        method.reconstruct_batch(problems[first:first + batch])
    return len(problems) * ITERATIONS / (time.perf_counter() - start)


@pytest.mark.parametrize("network,side", [(n, s) for n in NETWORKS for s in (64, 128)])
def test_auto_is_never_slower_per_image_than_one_by_one(network: str, side: int, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    params = {**DeepImagePrior.defaults, "channels": NETWORKS[network], "iterations": ITERATIONS}
    method = DeepImagePrior(**params)
    problems = denoising_problems(side, 8)
    found = Calibrator(tmp_path, torch.device("cpu")).measure(
        "key", method, lambda b: problems[:b], candidates(8))
    chosen = found.best(8)
    solo, batched = _rate(method, problems, 1), _rate(method, problems, chosen)
    with capsys.disabled():
        rates = ", ".join(f"B={b} {r:.1f}" for b, r in sorted(found.rates.items()))
        print(f"\n{network} net {side}² ({torch.get_num_threads()} threads): calibrated image-iterations/s "
              f"{rates} → auto B={chosen}: {batched:.1f}/s against B=1 {solo:.1f}/s ({batched / solo:.2f}×)")
    assert batched >= 0.9 * solo


def test_a_batched_dip_cell_reports_about_its_solo_runtime(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    params = canonical_json(DeepImagePrior.resolve_params("denoising", {"iterations": 100, "channels": 32}))
    images = data.load("embedded", resize=128, crop=64, limit=4)
    cells = [Cell("dip", params, "denoising_s25", "embedded", img.id, "perf", 0) for img in images]
    tensors = [img.tensor for img in images]
    pool = MethodPool(lambda: [], "embedded", tmp_path, torch.device("cpu"), progress=False)
    batched = run_cells(cells, tensors, pool, skip_metrics=("lpips",), save_reconstruction=False)
    alone = [run_cells([c], [t], pool, skip_metrics=("lpips",), save_reconstruction=False)[0]
             for c, t in zip(cells, tensors, strict=True)]
    ratios = [b.record.runtime_s / a.record.runtime_s for b, a in zip(batched, alone, strict=True)]
    with capsys.disabled():
        print(f"\nquick DIP, 4 cells at 64²: batched runtime_s ÷ solo runtime_s = "
              f"{', '.join(f'{r:.2f}' for r in ratios)} (batch throughput {batched[0].record.throughput:.2f} img/s, "
              f"solo {alone[0].record.throughput:.2f} img/s)")
    assert all(1 / 1.3 <= r <= 1.3 for r in ratios)
