"""Issue 13's DPS question at a CPU budget: the ``dps_cpu`` profile run as a user runs it.

DPS (Chung et al., ICLR 2023) with a colour prior the suite trains on all 432 cbsd432 images
(32 channels, 3 levels, 3000 steps of 16 × 48²), 500 sampling steps, against TV, PnP-FFDNet and
bicubic on 64² centre crops of Set5, random inpainting and bicubic ×4 super-resolution. Every
tuned value comes from ``benchmark/profiles/tuned/dps_cpu.yaml``: TV's weight per task and DPS's
ζ per family, chosen on four cbsd432 crops that DPS's prior was trained without
(``benchmark.run.tuning.HeldOut``).

The test asserts what was measured (README, "DPS measured on this CPU"): with its ζ tuned, DPS
beats TV on inpainting, and on super-resolution it stays below TV in PSNR by at most
``MAX_SR_GAP_DB`` (a posterior sample is not the posterior mean) while its LPIPS, the distance
DPS's authors report, is not worse than TV's. It takes about 40 minutes of one core of the
2-core machine (26 of them training the prior), so it runs only when asked:

    DIPBENCH_PERF=1 DIPBENCH_DPS_BAR=1 DIPBENCH_CACHE=~/.cache/dipbench \\
        .venv/bin/python -m pytest tests/perf/test_dps_set5.py -s

With a lasting DIPBENCH_CACHE a second run loads the prior and only samples. The figures (each
method's mean per task) are printed in the summary.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import pytest

from benchmark import cli
from benchmark.results.store import ResultsStore
from tests.conftest import cpu_bar

#: how far DPS may stay below TV in PSNR on ``sr_x4_bicubic`` (measured 2.4 dB: see the README)
MAX_SR_GAP_DB = 3.0

pytestmark = cpu_bar("DIPBENCH_DPS_BAR", "40 minutes")


def test_dps_with_a_cbsd432_prior_against_tv_on_set5(tmp_path: Path, record_property: pytest.RecordProperty) -> None:
    results = tmp_path / "results"
    assert cli.main(["run", "--profile", "dps_cpu", "--seeds", "0", "--results", str(results), "--tracking-uri",
                     f"sqlite:///{tmp_path / 'mlruns.db'}", "--no-progress", "--no-report", "--strict"]) == 0
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for rec in ResultsStore(results / "results.sqlite", read_only=True).records():
        assert rec.status in ("ok", "skipped"), rec.error
        for metric in ("psnr", "lpips"):
            if rec.status == "ok" and rec.metrics.get(metric) is not None:
                values[(rec.method, rec.task, metric)].append(float(rec.metrics[metric]))
    mean = {key: statistics.fmean(v) for key, v in values.items()}
    figures = "; ".join(f"{m} {t} {k} {v:.3f}" for (m, t, k), v in sorted(mean.items()))
    record_property("figures", figures)
    print(figures)
    assert len(values[("dps", "inpainting_random50", "psnr")]) == 5
    assert mean[("dps", "inpainting_random50", "psnr")] > mean[("tv", "inpainting_random50", "psnr")], figures
    sr_gap = mean[("tv", "sr_x4_bicubic", "psnr")] - mean[("dps", "sr_x4_bicubic", "psnr")]
    assert sr_gap <= MAX_SR_GAP_DB, figures
    if ("dps", "sr_x4_bicubic", "lpips") in mean:  # LPIPS needs its offline weights
        assert mean[("dps", "sr_x4_bicubic", "lpips")] <= mean[("tv", "sr_x4_bicubic", "lpips")], figures
