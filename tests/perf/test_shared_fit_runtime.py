"""A shared fit's runtimes against solo runs, measured side by side (issue 23).

DIP, ES-WMV, ES-EMV and self-validation (its CPU setting) read one fit of the quick network on
each of 2 embedded 64² crops (σ = 25 denoising, an 800-iteration cap): once as the four cells of
one measurement (the harness fits once and charges each rule the network's time to its stop plus
its own work), once each alone. Printed per rule: the shared cell's ``runtime_s`` over the solo
cell's, the wall time of the four shared cells against the sum of the four solo runs. Bar: every
shared ``runtime_s`` within 1.3× of its solo one (the noise of a shared machine), and the shared
fit cheaper in wall time than the solo runs together.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from benchmark import registry
from benchmark.core.keys import canonical_json
from benchmark.problems import data, tasks
from benchmark.run.harness import run_cells
from benchmark.run.plan import Cell
from benchmark.run.pool import MethodPool

pytestmark = pytest.mark.perf

RULES = {"dip": {}, "dip_eswmv": {}, "dip_esemv": {}, "dip_sv": {"ae_setting": "cpu"}}


def test_shared_fit_runtimes_against_solo_runs(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    task = tasks.get("denoising_s25")
    images = data.load("embedded", resize=128, crop=64, limit=2)
    pool = MethodPool(lambda: [], "embedded", tmp_path, torch.device("cpu"), progress=False)
    lines, shared_wall, solo_wall, ratios = [], 0.0, 0.0, []
    for image in images:
        cells = []
        for name, extra in RULES.items():
            params = registry.get(name).resolve_params(task, {"iterations": 800, **extra}, budget="quick")
            cells.append(Cell(name, canonical_json(params), task.name, "embedded", image.id, "perf", 0, name))
        start = time.perf_counter()
        together = run_cells(cells, [image.tensor] * len(cells), pool, skip_metrics=("lpips",),
                             save_reconstruction=False)
        shared_wall += time.perf_counter() - start
        for cell, outcome in zip(cells, together, strict=True):
            start = time.perf_counter()
            (alone,) = run_cells([cell], [image.tensor], pool, skip_metrics=("lpips",), save_reconstruction=False)
            solo_wall += time.perf_counter() - start
            shared, solo = outcome.record, alone.record
            assert shared.status == solo.status == "ok", (shared.error, solo.error)
            assert shared.metrics == solo.metrics  # the same numbers, as tests/test_shared_fit.py proves
            ratio = shared.runtime_s / solo.runtime_s
            ratios.append(ratio)
            lines.append(f"{image.id} {cell.method}: stop {solo.iterations}, runtime_s shared {shared.runtime_s:.2f} "
                         f"solo {solo.runtime_s:.2f} ({ratio:.2f}×)")
    with capsys.disabled():
        print(f"\nshared fit of {len(RULES)} rules, quick network, 2 × 64² ({torch.get_num_threads()} threads):")
        print("\n".join("  " + line for line in lines))
        print(f"  wall: shared {shared_wall:.1f} s, solo runs together {solo_wall:.1f} s "
              f"({solo_wall / shared_wall:.2f}× the shared fit)")
    assert all(1 / 1.3 <= r <= 1.3 for r in ratios), ratios
    assert shared_wall < solo_wall
