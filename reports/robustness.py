"""The robustness section: what a trained method loses when the test condition moves away from its training.

Per shift (the noise level, the MRI acceleration or mask, the CT views, the kind of image: what a
cell's instance learnt from against what it is tested on) and test block, a table of each method's
in-distribution result (the same method trained on the test condition; for DIP and the baselines,
which learn nothing, the method on the test condition), its shifted result and the drop, with 95%
intervals over images (``benchmark.results.robustness``), and a slope chart per panel: each
method's mean from the in-distribution condition to the shifted one, so that who keeps their rank
shows at a glance. DIP fits each measurement afresh, with its settings for the test condition, so
its line is flat by construction; the figure shows which trained methods fall below it. (Darestani,
Chaudhari & Heckel, ICML 2021, measured dataset and anatomy shifts for MRI and found un-trained
networks whose hyperparameters were tuned on the first distribution losing about as much as trained
ones: a shift of DIP's own settings is not measured here.)
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchmark.problems import metrics as registry
from benchmark.results import robustness
from benchmark.results import statistics as stats
from reports.plots import Palette, _grid, _method_legend
from reports.tables import Entry, Table

CAPTION = (
    "{budget}. Per shift and test block (task · dataset), {metric}: 'in distribution' is the method trained on the "
    "test condition (its twin: the same method and parameters apart from what it learnt from), 'shifted' the "
    "instance trained on another condition, both on the same test images; the other methods, in distribution on "
    "the test condition (DIP and the baselines learn nothing; FFDNet is told σ), show their result there in both "
    "columns. Mean over images (an image's seeds averaged first) ± half-width of the 95% cluster-bootstrap "
    "interval over images; drop: in distribution − shifted (positive: the shift costs that much), mean of the "
    "per-image differences of image means (paired by image) with its 95% bootstrap interval ({n} resamples, "
    "seed {seed}); —: a shifted instance whose twin is not in these results (its shifted result only). Rank: "
    "among the methods of the panel, 1 = best, before → after the shift."
)


def _interval(mean: float, low: float, high: float, metric: str) -> str:
    if math.isnan(mean):
        return "—"
    d = registry.decimals(metric, mean)
    if math.isnan(low) or math.isnan(high):
        return f"{mean:.{d}f}"
    return f"{mean:.{d}f} ± {(high - low) / 2:.{d}f}"


def _drop(r: pd.Series, metric: str) -> Entry:
    if not r["shifted"]:
        return Entry("0 (not shifted)", tooltip="in distribution here: learns nothing, learnt this condition or is "
                     "told it (FFDNet's σ)")
    if not r["paired"]:
        return Entry("—", tooltip="no instance of this method trained on the test condition in these results")
    d = registry.decimals(metric, r["drop_mean"])
    if math.isnan(r["drop_low"]):
        return Entry(f"{r['drop_mean']:.{d}f}", tooltip="one image gives no interval over images")
    return Entry(f"{r['drop_mean']:.{d}f} [{r['drop_low']:.{d}f}, {r['drop_high']:.{d}f}]",
                 bold=bool(r["drop_low"] > 0), tooltip="bold: the whole interval is a loss")


def _rank(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.0f}"


def table(frame: pd.DataFrame, metric: str | None = None) -> Table:
    """One row per method and panel of ``robustness.shift_table`` (``metric``: the primary one unless named)."""
    metric = metric or registry.primary().name
    found = robustness.shift_table(frame, metric)
    caption = CAPTION.format(budget=stats.budget_text(frame).capitalize(), metric=registry.header(metric),
                             n=stats.N_RESAMPLES, seed=stats.BOOTSTRAP_SEED)
    rows = []
    for _, r in found.iterrows():
        moves = not math.isnan(r["rank_in"]) and r["rank_in"] != r["rank_shifted"]
        rows.append((f"{r['shift']} · {r['task']} · {r['dataset']}", [
            Entry(str(r["method"])), Entry(str(r["twin"]) or "—"), Entry(str(r["images"])),
            Entry(_interval(r["in_mean"], r["in_low"], r["in_high"], metric)),
            Entry(_interval(r["shifted_mean"], r["shifted_low"], r["shifted_high"], metric)),
            _drop(r, metric),
            Entry(f"{_rank(r['rank_in'])} → {_rank(r['rank_shifted'])}" + (" (moves)" if moves else "")),
        ]))
    return Table("tab-robustness", caption, "shift · test task · dataset",
                 ["method", "in-distribution twin", "images", "in distribution", "shifted", "drop [95% CI]", "rank"],
                 rows, text_columns={0, 1, 6})


def figure(frame: pd.DataFrame, palette: Palette, metric: str | None = None) -> Figure | None:
    """A slope chart per (shift, test block): each method's mean from the in-distribution condition
    (left) to the shifted one (right), shifted instances solid (from their twin; a diamond on the
    right alone without one), the methods in distribution there dashed (flat), the rank at each end;
    None without a shift panel."""
    metric = metric or registry.primary().name
    found = robustness.shift_table(frame, metric)
    if found.empty:
        return None
    panels = list(found.groupby(["shift", "task", "dataset"], sort=True))
    fig, axes = _grid(len(panels), w=4.8, h=3.8)
    shown: list[str] = []
    for ax, ((shift, task, dataset), part) in zip(axes, panels, strict=True):
        for r in part.itertuples(index=False):
            colour = palette.get(str(r.method), (0.4, 0.4, 0.4))
            if r.shifted and not r.paired:  # no twin: its shifted result alone
                ax.plot([1], [r.shifted_mean], color=colour, marker="D", ms=7, ls="")
            else:
                ax.plot([0, 1], [r.in_mean, r.shifted_mean], color=colour, lw=2.2 if r.shifted else 1.4,
                        ls="-" if r.shifted else "--", marker="o", ms=6)
                ax.annotate(_rank(r.rank_in), (0, r.in_mean), textcoords="offset points", xytext=(-12, -3),
                            fontsize=8, color=colour)
            ax.annotate(_rank(r.rank_shifted), (1, r.shifted_mean), textcoords="offset points", xytext=(6, -3),
                        fontsize=8, color=colour)
            shown.append(str(r.method))
        ax.set_xticks([0, 1], ["in distribution", "shifted"])
        ax.set_xlim(-0.25, 1.25)
        ax.set_title(f"{shift}\n{task} · {dataset}", fontsize=9)
        ax.set_ylabel(registry.header(metric))
        ax.grid(alpha=0.3, axis="y")
    methods = [m for m in dict.fromkeys([*stats.method_order(stats.normalize(frame)), *shown]) if m in set(shown)]
    extra = [Line2D([], [], color="grey", lw=2.2, marker="o", label="twin → shifted instance"),
             Line2D([], [], color="grey", lw=1.4, ls="--", marker="o", label="not shifted: same result"),
             Line2D([], [], color="grey", marker="D", ls="", label="shifted, no twin in these results"),
             Line2D([], [], color="none", label="numbers: rank in the panel")]
    _method_legend(fig, {**{m: (0.4, 0.4, 0.4) for m in methods}, **palette}, methods, extra)
    fig.suptitle(f"Who keeps their rank when the condition moves ({registry.header(metric).split(' [')[0]})")
    fig.tight_layout()
    return fig
