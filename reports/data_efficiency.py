"""The headline figure: how much training data does a learned method need to beat DIP?

Per (task, dataset): the quality of every trained method against its number of training
images (log scale, mean over images × seeds with the bootstrap CI), and every untrained method
(DIP family, TV, BM3D, …) as a horizontal band (its mean and CI: it uses zero training images).
The crossing point of a trained method is where its line reaches the best untrained mean
(interpolated in log N between the two sizes around it).

The number of training images is the record's ``train_images`` column when the store has it,
else ``params["train_images"]``; 0 or missing on a trained method means "the whole training
set" and leaves it off the lines (its size is not in the record). Data-driven methods without a
size (released weights: DnCNN, FFDNet, PnP) are drawn as dotted bands: trained elsewhere.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchmark.problems import metrics as registry
from benchmark.results import statistics as stats
from reports.plots import Palette, _grid, _method_legend
from reports.tables import Entry, Table

UNTRAINED_FAMILIES = ("baseline", "dip")


_TRAIN_IMAGES = re.compile(r"(?<=[\[,])train_images=[^,\]]*(,|(?=\]))")


def line_label(label: str) -> str:
    """The line a method instance belongs to: its label without ``train_images``, so that
    ``unet[train_images=1]``, ``unet[train_images=4]`` and ``unet`` (all images) are one line."""
    stripped = _TRAIN_IMAGES.sub("", label).replace(",]", "]")
    return stripped[:-2] if stripped.endswith("[]") else stripped


def train_images(df: pd.DataFrame) -> pd.Series:
    """Training images per row: the column, else the parameter, else 0 (untrained or unknown)."""
    if "train_images" in df:
        values = pd.to_numeric(df["train_images"], errors="coerce")
    else:
        params = df["params"] if "params" in df else pd.Series([{}] * len(df), index=df.index)
        values = pd.Series([p.get("train_images") if isinstance(p, dict) else None for p in params],
                           index=df.index, dtype=object)
        values = pd.to_numeric(values, errors="coerce")
    return values.fillna(0).astype(float)


@dataclass(frozen=True)
class Crossing:
    task: str
    dataset: str
    method: str
    reference: str  # the best untrained method
    reference_psnr: float
    n_images: float | None  # interpolated crossing, None when the line never reaches it
    text: str  # "≈ 12", "≤ 1", "> 64"


def _curves(df: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(trained points, untrained bands, pretrained bands): mean, low, high per group."""
    ok = df[(df["status"] == "ok") & df[metric].notna()].copy()
    ok = ok[np.isfinite(ok[metric])]
    ok["n_train"] = train_images(ok)
    learned_rows = ~ok["family"].isin(UNTRAINED_FAMILIES)
    ok.loc[learned_rows, "method"] = ok.loc[learned_rows, "method"].map(line_label)
    rows = []
    for keys, part in ok.groupby(["task", "dataset", "method", "family", "n_train"]):
        mean, low, high = stats.bootstrap_ci(part[metric])
        rows.append((*keys, mean, low, high))
    agg = pd.DataFrame(rows, columns=["task", "dataset", "method", "family", "n_train", "mean", "low", "high"])
    untrained = agg[agg["family"].isin(UNTRAINED_FAMILIES)]
    learned = agg[~agg["family"].isin(UNTRAINED_FAMILIES)]
    return learned[learned["n_train"] > 0], untrained, learned[learned["n_train"] <= 0]


def crossing(points: pd.DataFrame, level: float) -> tuple[float | None, str]:
    """Where a (n_train, mean) line, sorted by size, first reaches ``level`` (log-N interpolation)."""
    pts = points.sort_values("n_train")
    n, q = pts["n_train"].to_numpy(float), pts["mean"].to_numpy(float)
    if q[0] >= level:
        return float(n[0]), f"≤ {n[0]:g}"
    for i in range(1, len(n)):
        if q[i] >= level:
            t = (level - q[i - 1]) / (q[i] - q[i - 1])
            value = 10 ** (math.log10(n[i - 1]) + t * (math.log10(n[i]) - math.log10(n[i - 1])))
            return value, f"≈ {value:.3g}"
    return None, f"> {n[-1]:g}"


def crossings(df: pd.DataFrame, metric: str = "psnr") -> list[Crossing]:
    """Every trained method's crossing of the best untrained method, per (task, dataset)."""
    trained, untrained, _ = _curves(stats.normalize(df), metric)
    out = []
    for (task, dataset), part in trained.groupby(["task", "dataset"]):
        bands = untrained[(untrained["task"] == task) & (untrained["dataset"] == dataset)]
        if bands.empty:
            continue
        best = bands.loc[bands["mean"].idxmax()]
        for method, line in part.groupby("method"):
            value, text = crossing(line, float(best["mean"]))
            out.append(Crossing(task, dataset, str(method), str(best["method"]), float(best["mean"]), value, text))
    return out


def figure(df: pd.DataFrame, palette: Palette, metric: str = "psnr") -> Figure | None:
    """Quality against training images, per (task, dataset); None without a trained line."""
    trained, untrained, pretrained = _curves(df, metric)
    if trained.empty:
        return None
    blocks = sorted({(t, d) for t, d in zip(trained["task"], trained["dataset"], strict=True)})
    fig, axes = _grid(len(blocks), w=5.2, h=3.8)
    found = {(c.task, c.dataset, c.method): c for c in crossings(df, metric)}
    # a line gathers instances (unet[train_images=1], unet[train_images=4]): the colour of its first
    colour_of_line = {line_label(str(m)): palette[str(m)] for m in sorted(set(df["method"]), reverse=True)
                      if str(m) in palette}
    shown: list[str] = []
    for ax, (task, dataset) in zip(axes, blocks, strict=True):
        lines = trained[(trained["task"] == task) & (trained["dataset"] == dataset)]
        lo, hi = lines["n_train"].min(), lines["n_train"].max()
        for dotted, bands in ((False, untrained), (True, pretrained)):
            for r in bands[(bands["task"] == task) & (bands["dataset"] == dataset)].itertuples(index=False):
                c = palette[r.method]
                ax.axhspan(r.low, r.high, color=c, alpha=0.12, lw=0)
                ax.axhline(r.mean, color=c, lw=1.6, ls=":" if dotted else "--")
                shown.append(r.method)
        for method, line in lines.groupby("method"):
            line = line.sort_values("n_train")
            c = palette.get(str(method)) or colour_of_line[str(method)]
            ax.plot(line["n_train"], line["mean"], color=c, marker="o", lw=2.2)
            ax.fill_between(line["n_train"], line["low"], line["high"], color=c, alpha=0.2, lw=0)
            shown.append(str(method))
            hit = found.get((task, dataset, str(method)))
            if hit is not None and hit.n_images is not None and lo < hit.n_images <= hi:
                ax.axvline(hit.n_images, color=c, lw=1.0, ls="-.")
                ax.plot([hit.n_images], [hit.reference_psnr], marker="X", ms=11, color=c, mec="black", zorder=5)
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.5, hi * 1.5)
        sizes = sorted(set(lines["n_train"]))
        ax.set_xticks(sizes, [f"{n:g}" for n in sizes])
        ax.minorticks_off()
        ax.set_title(f"{task} · {dataset}")
        ax.set_xlabel("training images (log scale)")
        ax.set_ylabel(registry.header(metric))
        ax.grid(alpha=0.3, which="both")
    order = [*stats.method_order(df), *shown]
    methods = [m for m in dict.fromkeys(order) if m in set(shown)]
    extra = [
        Line2D([], [], color="grey", marker="o", lw=2.2, label="trained: mean, 95% CI"),
        Line2D([], [], color="grey", ls="--", label="untrained (0 images): mean, CI band"),
        Line2D([], [], color="grey", ls=":", label="released weights (external data)"),
        Line2D([], [], color="grey", marker="X", mec="black", ls="", ms=9, label="crossing of the best untrained"),
    ]
    _method_legend(fig, {**colour_of_line, **palette}, methods, extra)
    fig.suptitle("Quality against the amount of training data")
    fig.tight_layout()
    return fig


def crossing_table(df: pd.DataFrame, metric: str = "psnr") -> Table:
    """The crossing points as a table: per (task, dataset) and trained method."""
    rows = [
        (f"{c.task} · {c.dataset}", [Entry(c.method), Entry(f"{c.reference} ({c.reference_psnr:.2f})"), Entry(c.text)])
        for c in crossings(df, metric)
    ]
    return Table(
        "tab-crossing", "Training images a trained method needs to match the best untrained method "
        f"({registry.header(metric)}, mean over images × seeds; log-N interpolation).",
        "task · dataset", ["trained method", "best untrained", "crossing (images)"], rows, text_columns={0, 1, 2},
    )
