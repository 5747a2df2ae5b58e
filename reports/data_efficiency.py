"""The headline figure: how much training data does a learned method need to beat DIP?

Per (task, dataset): the quality of every method the suite trained against its number of
training images (log scale, mean with the cluster-bootstrap CI over images, an image's seeds
averaged first), every untrained method (DIP family, TV, BM3D, …) as a horizontal band (its mean
and CI: it uses zero training images), and every method with released weights (DnCNN, FFDNet,
PnP-FFDNet, DPS with ``pretrained``) as a marker with its CI at the size of the training set its
authors state (``benchmark.api.ReleasedTraining``; its records' ``trained_on`` begins with
"released weights"). The crossing point of a trained method is where its line reaches the best
untrained mean (interpolated in log N between the two sizes around it); a released method has one
size, so its entry says whether that many images reached it. A row is trained when its family is
a trained one or when it records training images: a DIP fit started from weights the suite
pretrained (the educated warm start) is a line, not a band.

The number of training images is the record's ``train_images`` column when the store has it,
else ``params["train_images"]``; 0 or missing on a method the suite trained means "the whole
training set" and leaves it off the lines (its size is not in the record). Weights trained
elsewhere whose training set is not stated are drawn as dotted bands. Shift cells (an instance
trained on another condition than the test's) are left out: they are the robustness section's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchmark.api import is_released
from benchmark.problems import metrics as registry
from benchmark.results import robustness
from benchmark.results import statistics as stats
from reports.plots import Palette, _grid, _method_legend
from reports.tables import Entry, Table

UNTRAINED_FAMILIES = ("baseline", "dip")
COLUMNS = ["task", "dataset", "method", "family", "n_train", "mean", "low", "high", "trained_with", "budget"]

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


def trained_on(df: pd.DataFrame) -> pd.Series:
    """What each row's weights are (``info["trained_on"]``), "" where the record does not say."""
    infos = df["info"] if "info" in df else pd.Series([{}] * len(df), index=df.index)
    return pd.Series([str(i.get("trained_on", "")) if isinstance(i, dict) else "" for i in infos], index=df.index,
                     dtype=str)


@dataclass(frozen=True)
class Curves:
    """The figure's groups, each a frame of ``COLUMNS``: mean, low, high per group."""

    trained: pd.DataFrame  # the suite's training, at a known size: the lines
    untrained: pd.DataFrame  # zero training images: the bands
    released: pd.DataFrame  # released weights at their stated training-set size: the markers
    external: pd.DataFrame  # weights trained elsewhere on an unstated set: dotted bands


@dataclass(frozen=True)
class Crossing:
    task: str
    dataset: str
    method: str
    reference: str  # the best untrained method
    reference_psnr: float
    n_images: float | None  # interpolated crossing, None when the line never reaches it
    text: str  # "≈ 12", "≤ 1", "> 64"
    trained_with: str = ""  # the records' ``trained_on``
    budget: str = ""  # the run's profile budget
    released: bool = False


def _joined(values: pd.Series) -> str:
    """The distinct non-empty texts, in their order (a line's sizes in ascending order)."""
    return " / ".join(dict.fromkeys(t for v in values for t in str(v).split(" / ") if t))


def _curves(df: pd.DataFrame, metric: str | None) -> Curves:
    metric = metric or registry.primary().name
    ok = df[(df["status"] == "ok") & df[metric].notna()].copy()
    # in distribution only: a shift cell (trained on another condition) is the robustness section's
    ok = ok[robustness.condition_columns(ok)["shift"] == ""]
    ok = ok[np.isfinite(ok[metric].to_numpy(dtype=float))]
    ok["n_train"] = train_images(ok)
    ok["trained_with"] = trained_on(ok)
    ok["released"] = ok["trained_with"].map(is_released).astype(bool)
    ok["budget"] = ok["run_budget"] if "run_budget" in ok else ""
    learned_rows = (~ok["family"].isin(UNTRAINED_FAMILIES) | (ok["n_train"] > 0)) & ~ok["released"]
    ok.loc[learned_rows, "method"] = ok.loc[learned_rows, "method"].map(line_label)
    rows = []
    for keys, part in ok.sort_values(["image_id", "seed"]).groupby(
            ["task", "dataset", "method", "family", "n_train", "released"], sort=True):
        mean, low, high = stats.cluster_bootstrap_ci(part[metric].to_numpy(), part["image_id"])
        rows.append((*keys, mean, low, high, _joined(part["trained_with"].sort_values()),
                     _joined(part["budget"].sort_values())))
    agg = pd.DataFrame(rows, columns=[*COLUMNS[:5], "released", *COLUMNS[5:]])
    untrained = agg["family"].isin(UNTRAINED_FAMILIES) & (agg["n_train"] <= 0) & ~agg["released"]
    learned = ~untrained & ~agg["released"]
    sized = agg["n_train"] > 0
    pick = {name: agg.loc[mask, COLUMNS].reset_index(drop=True) for name, mask in (
        ("trained", learned & sized), ("untrained", untrained), ("released", agg["released"] & sized),
        ("external", learned & ~sized))}
    return Curves(**pick)


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


def crossings(df: pd.DataFrame, metric: str | None = None) -> list[Crossing]:
    """Every trained method's crossing of the best untrained method, per (task, dataset); released
    weights are listed too, at the one size their authors state."""
    curves = _curves(stats.normalize(df), metric)
    out = []
    for released, frame in ((False, curves.trained), (True, curves.released)):
        for (task, dataset), part in frame.groupby(["task", "dataset"], sort=True):
            bands = curves.untrained[(curves.untrained["task"] == task) & (curves.untrained["dataset"] == dataset)]
            if bands.empty:
                continue
            best = bands.loc[bands["mean"].idxmax()]
            for method, line in part.groupby("method", sort=True):
                line = line.sort_values("n_train")
                value, text = crossing(line, float(best["mean"]))
                out.append(Crossing(str(task), str(dataset), str(method), str(best["method"]), float(best["mean"]),
                                    value, text + (" (released)" if released else ""),
                                    _joined(line["trained_with"]), _joined(line["budget"]), released))
    return out


def _block(frame: pd.DataFrame, task: str, dataset: str) -> pd.DataFrame:
    return frame[(frame["task"] == task) & (frame["dataset"] == dataset)]


def _bands(ax: Axes, frame: pd.DataFrame, palette: Palette, style: str) -> list[str]:
    """Horizontal mean lines with their CI band (none where one image gives no interval)."""
    drawn = []
    for r in frame.itertuples(index=False):
        c = palette[str(r.method)]
        if np.isfinite(r.low) and np.isfinite(r.high):
            ax.axhspan(float(r.low), float(r.high), color=c, alpha=0.12, lw=0)
        ax.axhline(float(r.mean), color=c, lw=1.6, ls=style)
        drawn.append(str(r.method))
    return drawn


def figure(df: pd.DataFrame, palette: Palette, metric: str | None = None) -> Figure | None:
    """Quality against training images, per (task, dataset); None without a trained line or a
    released method with a stated training set."""
    metric = metric or registry.primary().name
    curves = _curves(df, metric)
    sized = pd.concat([curves.trained, curves.released]) if len(curves.released) else curves.trained
    if sized.empty:
        return None
    blocks = sorted({(t, d) for t, d in zip(sized["task"], sized["dataset"], strict=True)})
    fig, axes = _grid(len(blocks), w=5.2, h=3.8)
    found = {(c.task, c.dataset, c.method): c for c in crossings(df, metric) if not c.released}
    # a line gathers instances (unet[train_images=1], unet[train_images=4]): the colour of its first
    colour_of_line = {line_label(str(m)): palette[str(m)] for m in sorted(set(df["method"]), reverse=True)
                      if str(m) in palette}
    shown: list[str] = []
    for ax, (task, dataset) in zip(axes, blocks, strict=True):
        lines, released = _block(curves.trained, task, dataset), _block(curves.released, task, dataset)
        sizes = sorted(set(lines["n_train"]) | set(released["n_train"]))
        lo, hi = min(sizes), max(sizes)
        shown += _bands(ax, _block(curves.untrained, task, dataset), palette, "--")
        shown += _bands(ax, _block(curves.external, task, dataset), palette, ":")
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
        for r in released.itertuples(index=False):
            c = palette[r.method]
            err = [[r.mean - r.low], [r.high - r.mean]] if np.isfinite(r.low) else None
            ax.errorbar([r.n_train], [r.mean], yerr=err, color=c, marker="D", ms=8, capsize=4, lw=1.6, ls="")
            ax.annotate("released", (r.n_train, r.mean), textcoords="offset points", xytext=(6, 6), fontsize=8,
                        color=c)
            shown.append(str(r.method))
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.5, hi * 1.5)
        ax.set_xticks(sizes, [f"{n:g}" for n in sizes])
        ax.minorticks_off()
        ax.set_title(f"{task} · {dataset}")
        ax.set_xlabel("training images (log scale)")
        ax.set_ylabel(registry.header(metric))
        ax.grid(alpha=0.3, which="both")
    order = [*stats.method_order(df), *shown]
    methods = [m for m in dict.fromkeys(order) if m in set(shown)]
    extra = [
        Line2D([], [], color="grey", marker="o", lw=2.2, label="trained by the suite: mean, 95% CI"),
        Line2D([], [], color="grey", ls="--", label="untrained (0 images): mean, CI band"),
        Line2D([], [], color="grey", marker="D", ls="", label="released weights at their training-set size"),
        Line2D([], [], color="grey", ls=":", label="weights trained elsewhere, set not stated"),
        Line2D([], [], color="grey", marker="X", mec="black", ls="", ms=9, label="crossing of the best untrained"),
    ]
    _method_legend(fig, {**colour_of_line, **palette}, methods, extra)
    fig.suptitle("Quality against the amount of training data")
    fig.tight_layout()
    return fig


def crossing_table(df: pd.DataFrame, metric: str | None = None) -> Table:
    """The crossing points as a table: per (task, dataset) and trained method, with what the
    method was trained with and the budget of the run."""
    metric = metric or registry.primary().name
    rows = [
        (f"{c.task} · {c.dataset}", [Entry(c.method), Entry(c.trained_with or "not recorded"),
                                     Entry(c.budget or "not recorded"),
                                     Entry(f"{c.reference} ({c.reference_psnr:.2f})"), Entry(c.text)])
        for c in crossings(df, metric)
    ]
    return Table(
        "tab-crossing", "Training images a trained method needs to match the best untrained method "
        f"({registry.header(metric)}, mean over images, an image's seeds averaged first; log-N interpolation). "
        "Released weights have one size, their authors' training set: '≤ N (released)' where it reaches the best "
        "untrained method, '> N (released)' where it does not. 'trained with': what the weights learnt from; "
        "'budget': the profile budget the run used.",
        "task · dataset", ["trained method", "trained with", "budget", "best untrained", "crossing (images)"], rows,
        text_columns={0, 1, 2, 3, 4},
    )
