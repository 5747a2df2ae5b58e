"""Statistics behind every table: bootstrap intervals, paired tests, and the per-cell summary.

Everything here is a pure function of the per-image table (``ResultsStore.frame()``), so the
numbers in the Markdown, HTML and LaTeX renderings and in the figures are computed once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.problems import metrics as registry

#: Numeric record fields besides the registry's metrics and costs.
NUMERIC_FIELDS = (
    "iterations", "budget", "selected_iteration", "iterations_saved", "oracle_psnr", "oracle_iteration",
    "es_gap_db", "measurement_psnr", "seed",
)
FAMILY_ORDER = {"baseline": 0, "dip": 1, "data-driven": 2}
N_RESAMPLES = 2000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0


def normalize(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with numeric columns as floats (None → NaN) and missing optional columns added,
    so reports work on frames from any store version and on hand-built test frames."""
    df = frame.copy()
    numeric = [m.name for m in registry.registered()] + list(registry.COSTS) + list(NUMERIC_FIELDS)
    for col in numeric:
        df[col] = pd.to_numeric(df[col], errors="coerce") if col in df else np.nan
    for col, default in (("status", "ok"), ("family", ""), ("stopping_rule", ""), ("error", ""), ("recon_path", "")):
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


def bootstrap_ci(
    values: np.ndarray | list[float] | pd.Series,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap of the mean over the samples (images × seeds).

    Resampling indices come from ``numpy.random.default_rng(seed).integers(0, n, (n_resamples, n))``,
    so the interval is reproducible. Non-finite values (an exact reconstruction has PSNR = inf) are
    left out; with one sample the interval has zero width.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size == 1:
        return (mean, mean, mean)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return (mean, float(low), float(high))


def paired_wilcoxon(a: pd.Series, b: pd.Series) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value on the pairs present in both series (same index,
    e.g. (image_id, seed)); None when fewer than two pairs or every difference is zero."""
    da = {k: float(v) for k, v in zip(a.index, a.to_numpy(), strict=True) if math.isfinite(v)}
    db = {k: float(v) for k, v in zip(b.index, b.to_numpy(), strict=True) if math.isfinite(v)}
    keys = sorted(set(da) & set(db))
    if len(keys) < 2:
        return None
    x, y = np.array([da[k] for k in keys]), np.array([db[k] for k in keys])
    if np.all(x == y):
        return None
    try:
        p = float(stats.wilcoxon(x, y).pvalue)
    except ValueError:
        return None
    return None if math.isnan(p) else p


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
    """One entry of the comparison table: a (method, task, dataset, metric) summary."""

    method: str
    task: str
    dataset: str
    metric: str
    status: str  # ok | skipped | failed | missing
    n: int = 0
    mean: float = math.nan
    low: float = math.nan
    high: float = math.nan
    p_value: float | None = None
    best: bool = False
    compared: bool = False  # False when the column has no other method to test against
    reason: str = ""

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """The comparison table in long form: one row per (method, task, dataset, metric).

    The best method per (task, dataset, metric) is the one with the best mean (direction from
    the registry); every other method gets the paired Wilcoxon p-value against it on
    the (image, seed) pairs both have.
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
                ok = rows[rows["status"] == "ok"]
                # one value per (image, seed), sorted, so the resampling does not depend on the row
                # order of the store (duplicates, e.g. two parameter sets, are averaged)
                values = ok.dropna(subset=[metric]).groupby(["image_id", "seed"])[metric].mean().sort_index()
                values = values[np.isfinite(values)]
                if len(values):
                    mean, low, high = bootstrap_ci(values.to_numpy())
                    cells[method] = CellStat(method, task, dataset, metric, "ok", len(values), mean, low, high)
                    samples[method] = values
                elif len(rows) and (rows["status"] == "skipped").all():
                    cells[method] = CellStat(method, task, dataset, metric, "skipped", reason=skip_reason(rows))
                elif len(rows) and (rows["status"] == "failed").any():
                    cells[method] = CellStat(method, task, dataset, metric, "failed")
                elif len(rows):
                    cells[method] = CellStat(method, task, dataset, metric, "missing")
            if samples:
                sign = 1.0 if registry.higher_is_better(metric) else -1.0
                best_value = max(sign * cells[m].mean for m in samples)
                best = sorted(m for m in samples if sign * cells[m].mean == best_value)
                for m in samples:
                    is_best = m in best and len(samples) > 1  # a lone method is not "best"
                    p = None if is_best else paired_wilcoxon(samples[m], samples[best[0]])
                    c = cells[m]
                    cells[m] = CellStat(c.method, task, dataset, metric, "ok", c.n, c.mean, c.low, c.high, p, is_best,
                                        compared=len(samples) > 1)
            out.extend(cells.values())
    columns = [f for f in CellStat.__dataclass_fields__] + ["half_width"]
    return pd.DataFrame([{**c.__dict__, "half_width": c.half_width} for c in out], columns=columns)


def _oracle_streams(infos: pd.Series) -> str:
    """The streams of iterates the rows' oracles are over, as the methods name them."""
    names = sorted({str(i["oracle_stream"]) for i in infos if isinstance(i, dict) and i.get("oracle_stream")})
    return ", ".join(names) or "not stated"


def seed_spread(frame: pd.DataFrame, metric: str = "psnr") -> pd.DataFrame:
    """How much a method's result moves from one run seed to another on the same image (DIP's
    run-to-run variance): per (method, task, dataset), over the images run with at least two
    seeds, the mean and the largest across-seed standard deviation of ``metric``."""
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
    (task, dataset): the PSNR the rule gave away against the oracle iterate, and the iterations
    it saved."""
    df = normalize(frame)
    ruled = df[(df["stopping_rule"] != "") & (df["status"] == "ok")]
    rows = []
    for (method, task, dataset), g in ruled.groupby(["method", "task", "dataset"], sort=True):
        gap = g.sort_values(["image_id", "seed"])["es_gap_db"].dropna()
        mean, low, high = bootstrap_ci(gap.to_numpy())
        rows.append(
            {
                "method": method, "task": task, "dataset": dataset, "n": int(len(gap)),
                "stopping_rule": str(g["stopping_rule"].iloc[0]),
                "es_gap_db": mean, "es_gap_half": (high - low) / 2.0,
                "psnr": g["psnr"].mean(), "oracle_psnr": g["oracle_psnr"].mean(),
                "selected_iteration": g["selected_iteration"].mean(),
                "oracle_iteration": g["oracle_iteration"].mean(),
                "iterations": g["iterations"].mean(), "budget": g["budget"].mean(),
                "iterations_saved": g["iterations_saved"].mean(),
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
