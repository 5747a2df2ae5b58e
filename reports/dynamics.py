"""Why DIP works, the dynamics view: PSNR per radial frequency band along the iterations.

The review's explanation of DIP (Alkhouri et al. 2025, after Heckel & Soltanolkotabi, ICLR 2020,
and Chakrabarty & Maji, arXiv:1912.08905) is its training dynamics: the network fits the low
spatial frequencies long before the high ones, and noise, spread evenly over the frequencies,
lives mostly in the high band, so it is fitted last. The harness measures the iterate's PSNR per
band at every trajectory point (``benchmark.problems.spectral``); this module draws, per (task,
dataset), one panel per iterative method: the bands' mean curves over images × seeds, the PSNR
over all frequencies, and where the method's stopping rule stops.
"""

from __future__ import annotations

import math
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.artist import Artist  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from benchmark.problems import metrics  # noqa: E402
from benchmark.problems.spectral import BANDS, share  # noqa: E402
from benchmark.results import statistics as stats  # noqa: E402

Palette = dict[str, tuple[float, float, float]]
#: low to high: cool to warm (the noise's band in red)
BAND_COLOURS = ("#2166ac", "#1b9e77", "#d6301d")
ALL = metrics.PSNR.name  # the PSNR over every frequency, drawn for reference
NCOLS = 4

CAPTION = (
    f"PSNR of the iterate in {len(BANDS)} bands of the radial frequency: "
    + ", ".join(f"{b.label} {b.describe()}" for b in BANDS)
    + " (one panel per method; mean over images × seeds, drawn while at least half of the runs are "
    "still going). A band's PSNR is normalised so that white noise scores the same in every band; grey "
    "dashed: the PSNR over all frequencies. Levels differ with how much of the image lies in a band "
    "(little at high frequencies, hence the high band's high PSNR): read when each band rises and falls. "
    "A network fits the low frequencies first (spectral bias): the "
    f"{BANDS[0].label} band's PSNR rises within the first iterations; the {BANDS[-1].label} band, which "
    f"holds {share(BANDS[-1]):.0%} of a white noise's energy, improves last and, on noisy measurements, "
    "falls once the network starts fitting the noise. Vertical line: where the method's stopping rule "
    "stops (median over runs of the iterate it returns; band: quartiles); circles: the band PSNRs of its "
    f"output (mean). A good stopping rule stops before the {BANDS[-1].label} band's PSNR falls.")


def band_long(df: pd.DataFrame) -> pd.DataFrame:
    """The per-band trajectories as rows (method, task, dataset, image_id, seed, step, metric,
    psnr), with the PSNR over all frequencies as metric ``psnr``; empty without band data."""
    names = {b.metric for b in BANDS}
    rows = []
    for r in df[df["status"] == "ok"].itertuples(index=False):
        points = r.trajectory if isinstance(r.trajectory, list) else []
        if not any(names & set(p) for p in points):
            continue
        for point in points:
            for name in (*names, ALL):
                value = point.get(name)
                if value is not None and math.isfinite(float(value)):
                    rows.append((r.method, r.task, r.dataset, r.image_id, r.seed, float(point["step"]), name,
                                 float(value)))
    return pd.DataFrame(rows, columns=["method", "task", "dataset", "image_id", "seed", "step", "metric", "db"])


def _mean_curve(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean PSNR per step while at least half of the runs are still going (past that, the mean
    would describe a few stragglers)."""
    runs = rows[["image_id", "seed"]].drop_duplicates().shape[0]
    agg = rows.groupby("step")["db"].agg(["mean", "count"]).reset_index()
    return agg[agg["count"] >= max(1, math.ceil(runs / 2))]


def _stop(runs: pd.DataFrame) -> tuple[float, float, float] | None:
    """Median and quartiles over runs of the iterate a stopping rule returns (None: no rule)."""
    ruled = runs[runs["stopping_rule"] != ""]
    stops = pd.to_numeric(ruled["selected_iteration"].fillna(ruled["iterations"]), errors="coerce").dropna()
    if stops.empty:
        return None
    q1, median, q3 = np.percentile(stops.to_numpy(dtype=float), [25, 50, 75])
    return float(median), float(q1), float(q3)


def _panel(ax: plt.Axes, rows: pd.DataFrame, runs: pd.DataFrame, method: str, colour: object) -> None:
    overall = _mean_curve(rows[rows["metric"] == ALL])
    ax.plot(overall["step"], overall["mean"], color="0.45", lw=1.2, ls="--", zorder=2)
    for band, c in zip(BANDS, BAND_COLOURS, strict=True):
        curve = _mean_curve(rows[rows["metric"] == band.metric])
        ax.plot(curve["step"], curve["mean"], color=c, lw=2.0, zorder=3)
    stop = _stop(runs)
    if stop is not None:
        median, q1, q3 = stop
        ax.axvspan(q1, q3, color="0.5", alpha=0.15, lw=0, zorder=1)
        ax.axvline(median, color="black", lw=1.1, zorder=4)
        for band, c in zip(BANDS, BAND_COLOURS, strict=True):
            output = pd.to_numeric(runs.get(band.metric, pd.Series(dtype=float)), errors="coerce")
            output = output[np.isfinite(output)]
            if len(output):
                ax.scatter([median], [output.mean()], color=c, s=34, edgecolor="black", lw=0.7, zorder=5)
    rules = runs["stopping_rule"][runs["stopping_rule"] != ""]
    rule = "no stopping rule"
    if len(rules):
        rule = textwrap.fill(f"stop: {rules.iloc[0]}", 48, max_lines=2, placeholder="…")
    ax.set_title(method + "\n" * (rule.count("\n") + 1), fontsize=9, color=colour)
    ax.text(0.5, 1.02, rule, transform=ax.transAxes, ha="center", va="bottom", fontsize=7, color="0.3")
    ax.set_xlabel("iteration")
    ax.grid(alpha=0.3)


def _legend(fig: Figure) -> None:
    handles: list[Artist] = [Line2D([], [], color=c, lw=2.0, label=f"{b.label} band {b.describe()}")
               for b, c in zip(BANDS, BAND_COLOURS, strict=True)]
    handles += [
        Line2D([], [], color="0.45", lw=1.2, ls="--", label="all frequencies"),
        Line2D([], [], color="black", lw=1.1, label="stopping rule's stop (median)"),
        Patch(color="0.5", alpha=0.15, label="stops' quartiles"),
        Line2D([], [], color="grey", marker="o", mec="black", ls="", label="output's band PSNR"),
    ]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8)


def figures(df: pd.DataFrame, palette: Palette) -> list[tuple[str, Figure]]:
    """One figure per (task, dataset) with band data: a panel per method that recorded it."""
    long = band_long(df)
    out: list[tuple[str, Figure]] = []
    if long.empty:
        return out
    ok = df[df["status"] == "ok"]
    for task, dataset in sorted({(t, d) for t, d in zip(long["task"], long["dataset"], strict=True)}):
        part = long[(long["task"] == task) & (long["dataset"] == dataset)]
        methods = [m for m in stats.method_order(df) if m in set(part["method"])]
        ncols = min(NCOLS, len(methods))
        nrows = math.ceil(len(methods) / ncols)
        fig, grid = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.9 * nrows), squeeze=False, sharey=True)
        axes = list(grid.ravel())
        for ax in axes[len(methods):]:
            ax.set_visible(False)
        for ax, method in zip(axes, methods, strict=False):
            runs = ok[(ok["method"] == method) & (ok["task"] == task) & (ok["dataset"] == dataset)]
            _panel(ax, part[part["method"] == method], runs, method, palette.get(method, "black"))
        for row in grid:
            row[0].set_ylabel("PSNR [dB]")
        _legend(fig)
        fig.suptitle(f"{task} · {dataset}: PSNR per frequency band along the iterations", fontsize=10)
        fig.tight_layout()
        out.append((f"{task} · {dataset}", fig))
    return out
