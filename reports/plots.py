"""Figures from the per-image table: DIP trajectories, quality vs runtime, distributions, examples.

Every function takes the normalized frame and the shared palette, so a method has the same colour
in every figure; each returns a matplotlib Figure (or None when there is nothing to draw).
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib import MatplotlibDeprecationWarning  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from benchmark.problems import metrics as registry  # noqa: E402
from benchmark.results import statistics as stats  # noqa: E402

Palette = dict[str, tuple[float, float, float]]
DPI = 110


def method_palette(methods: list[str] | pd.Series) -> Palette:
    """One fixed colour per method, assigned in sorted name order so that it does not depend on
    which rows a figure shows."""
    names = sorted(set(methods))
    base = "tab10" if len(names) <= 10 else ("tab20" if len(names) <= 20 else "husl")
    colours = sns.color_palette(base, n_colors=max(len(names), 1))
    return {name: tuple(colours[i]) for i, name in enumerate(names)}


def figure_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _blocks(df: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted({(t, d) for t, d in zip(df["task"], df["dataset"], strict=True)})


def _grid(n: int, *, ncols: int = 3, w: float = 4.6, h: float = 3.4) -> tuple[Figure, list]:
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _method_legend(fig: Figure, palette: Palette, methods: list[str], extra: list[Line2D] | None = None) -> None:
    handles = [Line2D([], [], color=palette[m], lw=2.5, label=m) for m in methods] + (extra or [])
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, title="method")


def trajectory_long(df: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """The trajectories of ``metric`` (the primary one by default) as rows (method, task, dataset,
    image_id, seed, step, value)."""
    metric = metric or registry.primary().name
    rows = []
    ok = df[(df["status"] == "ok") & df["trajectory"].map(lambda t: isinstance(t, list) and len(t) > 0)]
    for r in ok.itertuples(index=False):
        for point in r.trajectory:
            if metric in point:
                rows.append((r.method, r.task, r.dataset, r.image_id, r.seed, float(point["step"]),
                             float(point[metric])))
    return pd.DataFrame(rows, columns=["method", "task", "dataset", "image_id", "seed", "step", "value"])


def trajectories(df: pd.DataFrame, palette: Palette) -> Figure | None:
    """The primary metric against iteration per iterative method: mean over images × seeds with
    ±1 s.d., each run's stopping point (its output) and its oracle peak."""
    primary = registry.primary()
    long = trajectory_long(df, primary.name)
    if long.empty:
        return None
    blocks = _blocks(long)
    fig, axes = _grid(len(blocks))
    methods = [m for m in stats.method_order(df) if m in set(long["method"])]
    runs = df[(df["status"] == "ok") & df["trajectory"].map(lambda t: isinstance(t, list) and len(t) > 0)]
    for ax, (task, dataset) in zip(axes, blocks, strict=True):
        part = long[(long["task"] == task) & (long["dataset"] == dataset)]
        for method in methods:
            g = part[part["method"] == method]
            if g.empty:
                continue
            c = palette[method]
            agg = g.groupby("step")["value"].agg(["mean", "std", "count"]).reset_index()
            # past the point where most runs have stopped, the mean would describe a few stragglers
            agg = agg[agg["count"] >= max(1, math.ceil(agg["count"].max() / 2))]
            ax.plot(agg["step"], agg["mean"], color=c, lw=1.8)
            sd = agg["std"].fillna(0.0)
            ax.fill_between(agg["step"], agg["mean"] - sd, agg["mean"] + sd, color=c, alpha=0.15, lw=0)
            mine = runs[(runs["method"] == method) & (runs["task"] == task) & (runs["dataset"] == dataset)]
            stop_x = mine["selected_iteration"].fillna(mine["iterations"])
            ax.scatter(stop_x, mine[primary.name], color=c, marker="o", s=28, edgecolor="black", lw=0.6, zorder=3)
            ax.scatter(mine["oracle_iteration"], mine["oracle_value"], color=c, marker="*", s=90,
                       edgecolor="black", lw=0.5, zorder=4)
        ax.set_title(f"{task} · {dataset}")
        ax.set_xlabel("iteration")
        ax.set_ylabel(registry.header(primary.name))
        ax.grid(alpha=0.3)
    extra = [
        Line2D([], [], color="grey", marker="o", mec="black", ls="", label="stopping rule's output"),
        Line2D([], [], color="grey", marker="*", ms=11, mec="black", ls="", label="oracle peak (needs truth)"),
        Line2D([], [], color="grey", lw=6, alpha=0.3, label="± 1 s.d. over images × seeds"),
    ]
    _method_legend(fig, palette, methods, extra)
    fig.suptitle("PSNR along the iterations: the overfitting early stopping has to catch")
    fig.tight_layout()
    return fig


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The points no other point beats on both (lower ``x``, higher ``y``), sorted by ``x``."""
    front, best = [], -math.inf
    for _, r in points.sort_values([x, y], ascending=[True, False]).iterrows():
        if r[y] > best:
            front.append(r)
            best = r[y]
    return pd.DataFrame(front)


def quality_runtime(df: pd.DataFrame, palette: Palette, metric: str | None = None) -> Figure | None:
    """Mean quality (the primary metric by default) against mean runtime per image, one point per
    method and (task, dataset), with the Pareto front; trained methods also appear at their
    one-off training time."""
    metric = metric or registry.primary().name
    ok = df[(df["status"] == "ok") & df[metric].notna() & df["runtime_s"].notna()]
    ok = ok[np.isfinite(ok[metric])]
    if ok.empty:
        return None
    pts = ok.groupby(["method", "task", "dataset"]).agg(
        quality=(metric, "mean"), runtime=("runtime_s", "mean"), train=("train_s", "max")).reset_index()
    pts["runtime"] = pts["runtime"].clip(lower=1e-4)  # log axis: a free method still gets a point
    blocks = _blocks(pts)
    fig, axes = _grid(len(blocks))
    label = registry.header(metric)
    for ax, (task, dataset) in zip(axes, blocks, strict=True):
        part = pts[(pts["task"] == task) & (pts["dataset"] == dataset)]
        front = pareto_front(part, "runtime", "quality")
        ax.step(front["runtime"], front["quality"], where="post", color="0.35", ls="--", lw=1.2, zorder=1)
        for r in part.itertuples(index=False):
            c = palette[r.method]
            ax.scatter(r.runtime, r.quality, color=c, s=70, edgecolor="black", lw=0.6, zorder=3)
            if pd.notna(r.train) and r.train > 0:
                ax.scatter(r.train, r.quality, facecolor="none", edgecolor=c, marker="s", s=70, lw=1.8, zorder=3)
                ax.plot([r.runtime, r.train], [r.quality, r.quality], color=c, ls=":", lw=1.0, zorder=2)
        ax.set_xscale("log")
        ax.set_title(f"{task} · {dataset}")
        ax.set_xlabel("time per image [s] (log scale)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    methods = [m for m in stats.method_order(df) if m in set(pts["method"])]
    extra = [
        Line2D([], [], color="grey", marker="o", mec="black", ls="", label="reconstruction time"),
        Line2D([], [], color="grey", marker="s", mfc="none", mew=1.8, ls="", label="training time (one-off)"),
        Line2D([], [], color="0.35", ls="--", label="Pareto front"),
    ]
    _method_legend(fig, palette, methods, extra)
    fig.suptitle(f"{label.split(' [')[0]} against runtime (mean over images × seeds)")
    fig.tight_layout()
    return fig


def distributions(df: pd.DataFrame, palette: Palette) -> Figure | None:
    """Per-image values per method: box plots with every image × seed as a dot."""
    ok = df[df["status"] == "ok"]
    # the comparison table's metrics (not the per-band PSNRs of the dynamics section)
    metrics = [m.name for m in registry.registered() if m.table and m.name in ok and ok[m.name].notna().any()]
    if ok.empty or not metrics:
        return None
    blocks = _blocks(ok)
    methods_all = stats.method_order(df)
    ncols = len(blocks)
    fig, axes = plt.subplots(len(metrics), ncols, figsize=(max(3.0, 0.55 * len(methods_all) + 1.2) * ncols,
                                                           3.0 * len(metrics)), squeeze=False)
    for j, (task, dataset) in enumerate(blocks):
        part = ok[(ok["task"] == task) & (ok["dataset"] == dataset)]
        order = [m for m in methods_all if m in set(part["method"])]
        for i, metric in enumerate(metrics):
            ax = axes[i][j]
            data = part[part[metric].notna() & np.isfinite(part[metric])]
            if data.empty:
                ax.set_axis_off()
                continue
            with warnings.catch_warnings():  # seaborn 0.13 still passes matplotlib's deprecated `vert`
                warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
                sns.boxplot(data=data, x="method", y=metric, hue="method", order=order, hue_order=order,
                            palette=palette, showfliers=False, ax=ax, legend=False, linewidth=1.0)
            sns.stripplot(data=data, x="method", y=metric, order=order, color="black", size=3, alpha=0.6,
                          jitter=0.2, ax=ax)
            ax.set_ylabel(registry.header(metric))
            ax.set_xlabel("")
            ax.tick_params(axis="x", rotation=45)
            for t in ax.get_xticklabels():
                t.set_ha("right")
            ax.grid(alpha=0.3, axis="y")
            if i == 0:
                ax.set_title(f"{task} · {dataset}")
    fig.suptitle("Per-image results (box: quartiles; dots: images × seeds)")
    fig.tight_layout()
    return fig


def _show(ax: plt.Axes, path: Path | None, title: str, colour: object = "black") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8, color=colour)
    if path is not None and path.is_file():
        try:
            img = plt.imread(path)
        except (OSError, ValueError, SyntaxError):
            img = None
        if img is not None:
            if img.ndim == 2:
                ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                ax.imshow(img, interpolation="nearest")
            return
    ax.set_facecolor("0.92")
    ax.text(0.5, 0.5, "image missing", ha="center", va="center", fontsize=8, color="0.4", transform=ax.transAxes)


def examples(df: pd.DataFrame, palette: Palette, recon_root: Path, n_images: int = 3) -> list[tuple[str, Figure]]:
    """Per (task, dataset): rows = a few images, columns = truth, measurement (A⁺y), each method,
    titled with the primary metric."""
    primary = registry.primary()
    digits = primary.decimals if primary.decimals is not None else 3
    unit = f" {primary.unit}" if primary.unit else ""
    figures = []
    ok = df[(df["status"] == "ok") & (df["recon_path"] != "")]
    for task, dataset in _blocks(ok):
        part = df[(df["task"] == task) & (df["dataset"] == dataset)]
        shown = ok[(ok["task"] == task) & (ok["dataset"] == dataset)]
        picks = (shown.groupby("image_id")["seed"].min().sort_index().head(n_images))
        methods = [m for m in stats.method_order(df) if m in set(part["method"])]
        ncols = len(methods) + 2
        fig, axes = plt.subplots(len(picks), ncols, figsize=(1.9 * ncols, 2.3 * len(picks)), squeeze=False,
                                 layout="constrained")
        for i, (image_id, seed) in enumerate(picks.items()):
            stem = recon_root / dataset / task / f"{image_id}_seed{int(seed)}"
            mrow = part[(part["image_id"] == image_id) & (part["seed"] == seed)]
            mvalue = mrow["measurement_value"].dropna()
            mtitle = "measurement (A⁺y)" + (f"\n{mvalue.iloc[0]:.{digits}f}{unit}" if len(mvalue) else "\n")
            _show(axes[i][0], Path(f"{stem}_truth.png"), f"truth: {image_id}\nseed {int(seed)}")
            _show(axes[i][1], Path(f"{stem}_measurement.png"), mtitle)
            for j, method in enumerate(methods, start=2):
                row = mrow[mrow["method"] == method]
                ax = axes[i][j]
                if row.empty or row.iloc[0]["status"] != "ok":
                    status = "not run" if row.empty else str(row.iloc[0]["status"])
                    ax.set_xticks([])
                    ax.set_yticks([])
                    ax.set_title(f"{method}\n{status}", fontsize=8, color=palette[method])
                    ax.set_facecolor("0.96")
                    ax.text(0.5, 0.5, status, ha="center", va="center", fontsize=8, color="0.45",
                            transform=ax.transAxes)
                    continue
                r = row.iloc[0]
                path = recon_root / r["recon_path"] if r["recon_path"] else None
                q = f"{r[primary.name]:.{digits}f}{unit}" if pd.notna(r[primary.name]) else ""
                _show(ax, path, f"{method}\n{q}", palette[method])
        fig.suptitle(f"Example reconstructions: {task} · {dataset} (titles: {primary.label or primary.name})",
                     fontsize=10)
        figures.append((f"{task} · {dataset}", fig))
    return figures
