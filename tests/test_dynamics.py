"""The report's spectral-bias section: PSNR per frequency band along the iterations, per (task,
dataset) and method, with each stopping rule's stop, checked against the synthetic table."""

from __future__ import annotations

from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

import reports
from benchmark.problems.spectral import BANDS
from benchmark.results import statistics as stats
from reports import dynamics, plots
from reports.synthetic import TASKS, demo_frame

NAMES = [b.metric for b in BANDS]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return stats.normalize(demo_frame())


def _without_bands(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["trajectory"] = [[{k: v for k, v in p.items() if k not in NAMES} for p in t] for t in out["trajectory"]]
    return out


def test_one_figure_per_task_with_a_panel_per_iterative_method(frame: pd.DataFrame) -> None:
    figures = dynamics.figures(frame, plots.method_palette(frame.method))
    assert [name for name, _ in figures] == [f"{task} · embedded" for task in TASKS]
    for (_, fig), task in zip(figures, TASKS, strict=True):
        panels = [ax for ax in fig.axes if ax.get_visible()]
        assert [ax.get_title().strip() for ax in panels] == ["dip", "dip_es"]
        for ax, method in zip(panels, ("dip", "dip_es"), strict=True):
            runs = frame[(frame.method == method) & (frame.task == task) & (frame.status == "ok")]
            for band, colour in zip(BANDS, dynamics.BAND_COLOURS, strict=True):
                (line,) = [ln for ln in ax.get_lines() if mcolors.same_color(ln.get_color(), colour)]
                steps, means = line.get_data()
                # the mean over images × seeds at the first step, computed directly
                first = [p[band.metric] for t in runs.trajectory for p in t if p["step"] == steps[0]]
                assert len(first) == len(runs) == 8 and means[0] == pytest.approx(np.mean(first))
            # the stop: a vertical line at the median of the iterates the rule returned
            (stop,) = [ln for ln in ax.get_lines() if mcolors.same_color(ln.get_color(), "black")]
            assert stop.get_xdata()[0] == pytest.approx(runs.selected_iteration.median())
        plots.figure_png(fig)


def test_band_rows_are_every_point_of_every_run(frame: pd.DataFrame) -> None:
    """One row per (run, point, band) plus the PSNR over all frequencies; the synthetic fixed-budget
    run over-fits as DIP does: its high band ends below its peak, its low band at its best."""
    long = dynamics.band_long(frame)
    runs = frame[frame.trajectory.map(len) > 0]
    assert set(long.method) == {"dip", "dip_es"}
    assert long.groupby("metric").size().to_dict() == {n: sum(runs.trajectory.map(len)) for n in [*NAMES, "psnr"]}
    mean = long.groupby(["method", "metric", "step"])["db"].mean()
    high, low = mean[("dip", "psnr_high")], mean[("dip", "psnr_low")]
    assert high.iloc[-1] < high.max() - 1 and low.iloc[-1] == pytest.approx(low.max(), abs=0.05)


def test_no_band_data_no_figure_and_the_report_says_so(frame: pd.DataFrame, tmp_path: Path) -> None:
    assert dynamics.figures(_without_bands(frame), {}) == []
    assert dynamics.band_long(frame[frame.family != "dip"]).empty
    text = reports.build_report(_without_bands(frame), tmp_path / "none", title="t").read_text()
    assert "Why DIP works: spectral bias" in text and "No run recorded PSNR per frequency band" in text
    built = reports.build_report(frame, tmp_path / "with", title="t")
    assert "No run recorded PSNR per frequency band" not in built.read_text()
    assert sorted(p.name for p in (tmp_path / "with" / "figures").glob("dynamics-*.png")) == [
        f"dynamics-{i}.png" for i in range(len(TASKS))]


def test_infinite_band_values_are_left_out_of_the_means(frame: pd.DataFrame) -> None:
    """An iterate exact in a band (PSNR = ∞) must not turn a mean curve into ∞."""
    edited = frame.copy()
    edited["trajectory"] = [[{**p, "psnr_high": float("inf")} if p["step"] == 10 else p for p in t]
                            for t in edited["trajectory"]]
    long = dynamics.band_long(edited)
    assert np.isfinite(long.db).all() and 10.0 not in set(long[long.metric == "psnr_high"].step)
