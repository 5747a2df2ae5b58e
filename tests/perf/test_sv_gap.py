"""Self-validation's ES gap: the authors' autoencoder training against the CPU setting (issue 22).

``dip_sv`` runs with the quick budget's network and patience (300 steps) under a 2000-step cap on
2 embedded crops (σ = 25 denoising, seed 0), 64² by default (``DIPBENCH_SV_GAP_SIDE`` sets the
side: 32 is what a CPU affords, the authors' setting taking over 30 minutes per 64² crop), once
with the authors' autoencoder training (every iterate, one epoch of 8 Adam steps over the
256-iterate window per DIP step) and once with the CPU setting (one iterate in 8 of the same
256-step window, one Adam step of 8 per DIP step). Printed per image and setting: where the run
stopped, the step it returned, its PSNR, the oracle's (the best iterate of the same run) and the
ES gap (oracle − returned), and the runtime.

Bars: every run ends with a finite PSNR and a gap >= 0, and the CPU setting's mean ES gap is
within ``GAP_TOLERANCE_DB`` of the authors' setting's: the CPU setting keeps self-validation's
substance. Measured on 2 × 32² (``DIPBENCH_SV_GAP_SIDE=32``, 2-core AMD EPYC, one thread), ES gap
(stopped on its rule or at the cap): camera CPU 2.69 dB (cap), authors 2.51 (cap); astronaut CPU
1.59 (rule, step 1576), authors 1.86 (cap); mean 2.14 against 2.19 dB, at 57 against 833 s per
crop. Neither setting stops reliably at that size: the autoencoder's error still falls at 2000
steps, long after the best iterate (steps 331 and 259).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from benchmark import registry
from benchmark.core.keys import canonical_json
from benchmark.problems import data, tasks
from benchmark.run.harness import run_cells
from benchmark.run.plan import Cell
from benchmark.run.pool import MethodPool
from tests.conftest import cpu_bar

#: the authors' setting trains 8 Adam steps of 32 iterates per DIP step: tens of minutes per image
pytestmark = cpu_bar("DIPBENCH_SV_GAP", "about an hour")

CAP = 2000
#: how much larger the CPU setting's mean ES gap may be than the authors' (measured: 0.05 smaller)
GAP_TOLERANCE_DB = 0.5
#: the crops' side
SIDE = int(os.environ.get("DIPBENCH_SV_GAP_SIDE", "64"))
SETTINGS = ("cpu", "authors")  # the CPU setting first: minutes, where the authors' takes tens


def test_self_validation_gap_authors_against_cpu_setting(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    task = tasks.get("denoising_s25")
    images = data.load("embedded", resize=2 * SIDE, crop=SIDE, limit=2)
    pool = MethodPool(lambda: [], "embedded", tmp_path, torch.device("cpu"), progress=False)
    stopped = {setting: 0 for setting in SETTINGS}
    gaps: dict[str, list[float]] = {setting: [] for setting in SETTINGS}
    for image in images:
        for setting in SETTINGS:
            params = registry.get("dip_sv").resolve_params(
                task, {"iterations": CAP, "ae_setting": setting}, budget="quick")
            cell = Cell("dip_sv", canonical_json(params), task.name, "embedded", image.id, "perf", 0, "dip_sv")
            (outcome,) = run_cells([cell], [image.tensor], pool, skip_metrics=("lpips",), save_reconstruction=False)
            record = outcome.record
            assert record.status == "ok", record.error
            psnr, gap = record.metrics["psnr"], record.es_gap
            assert math.isfinite(psnr) and gap is not None and gap >= 0
            stopped[setting] += int(record.iterations is not None and record.iterations < CAP)
            gaps[setting].append(gap)
            with capsys.disabled():  # as it goes: the authors' setting takes minutes per image
                print(f"\n  {image.id} {setting:7s}: ran {record.iterations}, "
                      f"returned step {record.selected_iteration}, PSNR {psnr:.2f}, "
                      f"oracle {record.oracle_value:.2f} at {record.oracle_iteration}, "
                      f"ES gap {gap:.2f} dB, runtime {record.runtime_s:.1f} s", flush=True)
    mean_gap = {setting: sum(gaps[setting]) / len(gaps[setting]) for setting in SETTINGS}
    with capsys.disabled():
        print(f"\nself-validation, quick network, {len(images)} × {SIDE}² σ 25, cap {CAP} "
              f"({torch.get_num_threads()} threads):")
        for setting in SETTINGS:
            print(f"  {setting}: stopped on its rule {stopped[setting]}/{len(images)}, mean ES gap "
                  f"{mean_gap[setting]:.2f} dB")
    assert mean_gap["cpu"] <= mean_gap["authors"] + GAP_TOLERANCE_DB
