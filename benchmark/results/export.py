"""Results for pandas: the store as two long tables, written as CSV or Parquet.

``results``: one row per (method, params, task, dataset, image, seed, metric) with its ``value``,
for every registered metric, every cost and the early-stopping figures of the cells that
finished; ``curves``: one row per (cell, step, metric) of the iterates' trajectories. Both carry
the cell key, so they join with each other and with the store; the method instance's ``label``
(``tv[weight=tuned]``), so pandas users group as the tables and MLflow runs do;
``run_budget``, the profile budget (test, quick, paper) that made each number; and the training
condition: ``train_task`` and ``train_set``, what the instance learnt from ("" for untrained
methods), and ``shift``, how the cell's test condition departs from it ("noise σ 25 → 50",
"content embedded → ct_chest"; "" in distribution; ``benchmark.results.robustness``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.core.errors import UserError
from benchmark.core.keys import canonical_json
from benchmark.problems import metrics
from benchmark.results.robustness import CONDITION_COLUMNS, condition_columns
from benchmark.results.statistics import instance_labels
from benchmark.results.store import ResultsStore

#: ``run_budget`` (not ``budget``: the store's ``budget`` is a method's iteration cap, and the
#: tables join with the store on ``cell_key``)
KEYS = ["cell_key", "method", "label", "params", "family", "task", "dataset", "image_id", "seed", "run_budget",
        *CONDITION_COLUMNS]
FORMATS = ("csv", "parquet")


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[frame["status"] == "ok"].copy()
    ok["params"] = ok["params"].map(canonical_json)
    ok["label"] = instance_labels(ok)
    ok["run_budget"] = ok["run_budget"].fillna("").astype(str) if "run_budget" in ok else ""
    return ok.join(condition_columns(ok))


def long_results(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-image table (``ResultsStore.frame``) in long form, one row per recorded value."""
    ok = _ok(frame)
    measured = list(frame.attrs.get("metrics") or [m.name for m in metrics.registered()])
    names = [n for n in [*measured, *metrics.COSTS, *metrics.SUMMARIES] if n in ok]
    long = ok.melt(id_vars=KEYS, value_vars=names, var_name="metric", value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    return long.dropna(subset=["value"]).reset_index(drop=True)


def long_curves(frame: pd.DataFrame) -> pd.DataFrame:
    """The trajectories in long form: one row per (cell, step, metric)."""
    rows: list[list[Any]] = []
    for r in _ok(frame).itertuples(index=False):
        ident = [getattr(r, k) for k in KEYS]
        for point in r.trajectory or []:
            step = int(point["step"])
            rows.extend([*ident, step, name, float(v)] for name, v in point.items() if name != "step" and v is not None)
    return pd.DataFrame(rows, columns=[*KEYS, "step", "metric", "value"])


def export(store_path: Path, out_dir: Path, fmt: str) -> dict[str, Path]:
    """Write ``results.<fmt>`` and ``curves.<fmt>`` into ``out_dir``; returns their paths."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; valid choices: {', '.join(FORMATS)}")
    frame = ResultsStore.open_existing(store_path).frame()
    tables = {"results": long_results(frame), "curves": long_curves(frame)}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, table in tables.items():
            path = out_dir / f"{name}.{fmt}"
            if fmt == "csv":
                table.to_csv(path, index=False)
            else:
                table.to_parquet(path, index=False)
            paths[name] = path
    except OSError as exc:
        raise UserError(f"cannot write the export to {out_dir} ({exc})") from exc
    return paths
