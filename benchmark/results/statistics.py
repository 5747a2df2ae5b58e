"""Statistics behind every table: the per-cell summary, the early-stopping and seed tables.

Everything here is a pure function of the per-image table (``ResultsStore.frame()``), so the
numbers in the Markdown, HTML and LaTeX renderings and in the figures are computed once. The
intervals and tests are over images, seeds averaged within an image (``inference``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from benchmark.problems import metrics as registry
from benchmark.results.inference import (
    BOOTSTRAP_SEED,
    CONFIDENCE,
    MIN_IMAGES_FOR_TEST,
    N_RESAMPLES,
    bootstrap_ci,
    cluster_bootstrap_ci,
    holm,
    paired_test,
)

__all__ = [
    # the intervals and tests (``inference``), re-exported for the reports
    "BOOTSTRAP_SEED", "CONFIDENCE", "MIN_IMAGES_FOR_TEST", "N_RESAMPLES", "bootstrap_ci", "cluster_bootstrap_ci",
    "holm", "paired_test",
    # the summaries
    "NUMERIC_FIELDS", "FAMILY_ORDER", "PAPER_BUDGET", "CellStat", "normalize", "instance_labels", "method_order",
    "table_metrics", "skip_reason", "summarize", "block_images", "budgets", "cpu_budgets", "budget_text",
    "seed_spread", "es_gap_summary", "failures",
]

#: Numeric record fields besides the registry's metrics and costs.
NUMERIC_FIELDS = (
    "iterations", "budget", "selected_iteration", "iterations_saved", "oracle_value", "oracle_iteration",
    "es_gap", "measurement_value", "seed",
)
FAMILY_ORDER = {"baseline": 0, "dip": 1, "data-driven": 2}
#: the budget of the papers' settings; every other one is a CPU-sized budget on small images
PAPER_BUDGET = "paper"


def normalize(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with numeric columns as floats (None → NaN) and missing optional columns added,
    so reports work on frames from any store version and on hand-built test frames."""
    df = frame.copy()
    numeric = [m.name for m in registry.registered()] + list(registry.COSTS) + list(NUMERIC_FIELDS)
    for col in numeric:
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else np.nan
    for col, default in (("status", "ok"), ("family", ""), ("stopping_rule", ""), ("error", ""), ("recon_path", ""),
                         ("run_budget", "")):
        df[col] = df[col].fillna(default).astype(str) if col in df else default
    for col in ("method", "task", "dataset", "image_id"):
        df[col] = df[col].astype(str)
    # Reports are about method instances: ``method`` becomes the label (``dip[iterations=500]``),
    # the registered name stays in ``method_name``.
    if "method_name" not in df:
        df["method_name"], df["method"] = df["method"], instance_labels(df)
    if "trajectory" not in df:
        df["trajectory"] = [[] for _ in range(len(df))]
    if "info" not in df:
        df["info"] = [{} for _ in range(len(df))]
    return df


def instance_labels(frame: pd.DataFrame) -> pd.Series:
    """Each row's method instance label (the method name for rows stored before labels)."""
    names = frame["method"].astype(str)
    if "label" not in frame:
        return names
    labels = frame["label"].fillna("").astype(str)
    return labels.where(labels != "", names)


def method_order(frame: pd.DataFrame) -> list[str]:
    """Methods grouped by family (baselines, DIP variants, data-driven), then by name."""
    fam = frame.groupby("method")["family"].first() if len(frame) else pd.Series(dtype=str)
    return sorted(fam.index, key=lambda m: (FAMILY_ORDER.get(fam[m], 3), m))


def table_metrics(frame: pd.DataFrame) -> list[str]:
    """The comparison columns (the registry's metrics, then runtime) that have at least one
    value: LPIPS may be switched off, a metric may apply to some tasks only."""
    ok = frame[frame["status"] == "ok"]
    return [m for m in registry.table_columns() if m in ok and ok[m].notna().any()]


def skip_reason(rows: pd.DataFrame) -> str:
    """The reason a skipped cell gives: the ``error`` text, else ``info['reason']``."""
    for _, row in rows.iterrows():
        if row["error"]:
            return str(row["error"])
        info = row["info"] if isinstance(row["info"], dict) else {}
        if info.get("reason"):
            return str(info["reason"])
    return "skipped"


@dataclass(frozen=True)
class CellStat:
    """One entry of the comparison table: a (method, task, dataset, metric) summary over images."""

    method: str
    task: str
    dataset: str
    metric: str
    status: str  # ok | skipped | failed | missing
    n: int = 0  # images: the unit of the interval and of the test
    runs: int = 0  # (image, seed) runs behind them
    mean: float = math.nan  # the mean of the per-image means
    low: float = math.nan
    high: float = math.nan
    #: the paired test against the best method, Holm-adjusted over the methods compared in the
    #: block for this metric (None: not tested); ``p_raw`` before the correction
    p_value: float | None = None
    p_raw: float | None = None
    pair_images: int = 0  # images this method and the best one share: the test's n
    best: bool = False
    compared: bool = False  # False when the column has no other method to test against
    reason: str = ""

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    @property
    def too_few(self) -> bool:
        """Tested against the best on fewer images than a two-sided test at 5% needs."""
        return self.compared and not self.best and self.pair_images < MIN_IMAGES_FOR_TEST


def _run_values(ok: pd.DataFrame, metric: str) -> pd.Series:
    """One value per (image, seed), sorted, so nothing depends on the store's row order
    (duplicates, e.g. two parameter sets with one label, are averaged)."""
    values = ok.dropna(subset=[metric]).groupby(["image_id", "seed"])[metric].mean().sort_index()
    return values[np.isfinite(values.to_numpy(dtype=float))]


def _compare(cells: dict[str, CellStat], samples: dict[str, pd.Series], metric: str) -> None:
    """Mark the best method of a block's column and test every other one against it (in place)."""
    sign = 1.0 if registry.higher_is_better(metric) else -1.0
    best_value = max(sign * cells[m].mean for m in samples)
    best = sorted(m for m in samples if sign * cells[m].mean == best_value)
    compared = len(samples) > 1  # a lone method is neither best nor tested
    raw: dict[str, float | None] = {}
    shared: dict[str, int] = {}
    for m in samples:
        if compared and m not in best:
            raw[m], shared[m] = paired_test(samples[m], samples[best[0]])
    adjusted = holm(raw)
    for m in samples:
        cells[m] = replace(cells[m], best=compared and m in best, compared=compared, p_raw=raw.get(m),
                           p_value=adjusted.get(m), pair_images=shared.get(m, 0))


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """The comparison table in long form: one row per (method, task, dataset, metric).

    Per method, the mean of its per-image means with the cluster-bootstrap interval over images.
    The best method per (task, dataset, metric) is the one with the best mean (direction from the
    registry); every other method gets the paired Wilcoxon p on the per-image means both have,
    Holm-adjusted over the methods compared in that column (``inference``).
    """
    df = normalize(frame)
    metrics = table_metrics(df)
    methods = method_order(df)
    out: list[CellStat] = []
    for key, block in df.groupby(["task", "dataset"], sort=True):
        task, dataset = str(key[0]), str(key[1])
        by_method = {str(m): g for m, g in block.groupby("method")}
        for metric in metrics:
            cells: dict[str, CellStat] = {}
            samples: dict[str, pd.Series] = {}
            for method in methods:
                rows = by_method.get(method, block.iloc[:0])
                values = _run_values(rows[rows["status"] == "ok"], metric)
                if len(values):
                    images = values.index.get_level_values("image_id")
                    mean, low, high = cluster_bootstrap_ci(values.to_numpy(), images)
                    cells[method] = CellStat(method, task, dataset, metric, "ok", images.nunique(), len(values), mean,
                                             low, high)
                    samples[method] = values
                elif len(rows) and (rows["status"] == "skipped").all():
                    cells[method] = CellStat(method, task, dataset, metric, "skipped", reason=skip_reason(rows))
                elif len(rows) and (rows["status"] == "failed").any():
                    cells[method] = CellStat(method, task, dataset, metric, "failed")
                elif len(rows):
                    cells[method] = CellStat(method, task, dataset, metric, "missing")
            if samples:
                _compare(cells, samples, metric)
            out.extend(cells.values())
    columns = [f for f in CellStat.__dataclass_fields__] + ["half_width", "too_few"]
    return pd.DataFrame([{**c.__dict__, "half_width": c.half_width, "too_few": c.too_few} for c in out],
                        columns=columns)


def block_images(frame: pd.DataFrame) -> dict[tuple[str, str], int]:
    """How many images each (task, dataset) block has finished results on (any method)."""
    df = normalize(frame)
    ok = df[df["status"] == "ok"]
    return {(str(t), str(d)): int(g["image_id"].nunique()) for (t, d), g in ok.groupby(["task", "dataset"], sort=True)}


def budgets(frame: pd.DataFrame) -> list[str]:
    """The profile budgets the rows ran under (``run_budget``), sorted; empty when not recorded."""
    df = normalize(frame)
    return sorted({b for b in df["run_budget"] if b})


def cpu_budgets(frame: pd.DataFrame) -> list[str]:
    """The budgets of these rows that are not the papers' settings (test, quick, a CPU budget)."""
    return [b for b in budgets(frame) if b != PAPER_BUDGET]


def budget_text(frame: pd.DataFrame) -> str:
    """"budget quick", "budgets paper, quick" or "budget not recorded", for headers and captions."""
    found = budgets(frame)
    if not found:
        return "budget not recorded"
    return ("budget " if len(found) == 1 else "budgets ") + ", ".join(found)


def _oracle_streams(infos: pd.Series) -> str:
    """The streams of iterates the rows' oracles are over, as the methods name them."""
    names = sorted({str(i["oracle_stream"]) for i in infos if isinstance(i, dict) and i.get("oracle_stream")})
    return ", ".join(names) or "not stated"


def seed_spread(frame: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """How much a method's result moves from one run seed to another on the same image (DIP's
    run-to-run variance): per (method, task, dataset), over the images run with at least two
    seeds, the mean and the largest across-seed standard deviation of ``metric`` (the primary
    one by default). This is about seeds on purpose; the comparison's intervals are over images
    (``inference``)."""
    metric = metric or registry.primary().name
    columns = ["method", "task", "dataset", "images", "seeds", "mean_sd", "max_sd"]
    df = normalize(frame)
    ok = df[(df["status"] == "ok")].dropna(subset=[metric]) if len(df) else df
    rows = []
    for (method, task, dataset), g in ok.groupby(["method", "task", "dataset"], sort=True):
        per_image = g.groupby(["image_id", "seed"])[metric].mean().groupby(level="image_id")
        sd = per_image.std(ddof=1)[per_image.size() >= 2].dropna()
        if len(sd):
            rows.append((method, task, dataset, len(sd), int(per_image.size().max()), float(sd.mean()),
                         float(sd.max())))
    return pd.DataFrame(rows, columns=columns)


def es_gap_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Early-stopping cost and benefit per method with a stopping rule (its declaration) and
    (task, dataset): what the rule gave away against the oracle iterate in the primary metric
    (with its interval over images), and the iterations it saved; every figure a mean of
    per-image means. The primary metric's own column is named ``value``."""
    df = normalize(frame)
    ruled = df[(df["stopping_rule"] != "") & (df["status"] == "ok")].copy()
    ruled["value"] = ruled[registry.primary().name]
    columns = ["value", "oracle_value", "selected_iteration", "oracle_iteration", "iterations", "budget",
               "iterations_saved"]
    rows = []
    for (method, task, dataset), g in ruled.groupby(["method", "task", "dataset"], sort=True):
        g = g.sort_values(["image_id", "seed"])
        gap = g.dropna(subset=["es_gap"])
        mean, low, high = cluster_bootstrap_ci(gap["es_gap"].to_numpy(), gap["image_id"])
        per_image = g.groupby("image_id", sort=True)[columns].mean().mean()
        rows.append(
            {
                "method": method, "task": task, "dataset": dataset, "n": int(gap["image_id"].nunique()),
                "runs": int(len(gap)), "stopping_rule": str(g["stopping_rule"].iloc[0]),
                "es_gap": mean, "es_gap_half": (high - low) / 2.0,
                **{c: float(per_image[c]) for c in columns},
                "oracle_stream": _oracle_streams(g["info"]),
            }
        )
    order = {m: i for i, m in enumerate(method_order(df))}
    result = pd.DataFrame(rows)
    if len(result):
        result = result.sort_values(["task", "dataset", "method"],
                                    key=lambda s: s.map(order) if s.name == "method" else s)
    return result.reset_index(drop=True)


def failures(frame: pd.DataFrame) -> pd.DataFrame:
    """The failed cells, one row each, with the error's last line (a traceback's message)."""
    df = normalize(frame)
    failed = df[df["status"] == "failed"]
    cols = ["method", "task", "dataset", "image_id", "seed", "error"]
    out = failed[cols].copy()
    out["error"] = out["error"].map(lambda e: (e.strip().splitlines() or [""])[-1][:200])
    return out.sort_values(cols[:5]).reset_index(drop=True)
