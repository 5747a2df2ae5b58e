"""Robustness to distribution shift, from the per-image table: each shift cell beside its in-distribution twin.

A record says what its instance learnt from (``info``: ``train_task``, ``train_set``, the kind of
images ``train_content``, and the ``condition_params`` that chose them;
``benchmark.run.harness.training_condition``); with the cell's own task and dataset that gives its
shift (``benchmark.problems.conditions.describe``; "" in distribution). A shifted instance's
*in-distribution twin* is the same method on the same test block with equal parameters apart from
the condition parameters, trained on the test condition (``unet`` for
``unet[train_task=denoising_s25]`` on σ = 50; ``dncnn`` for ``dncnn[model_sigma=25]``;
``unet[train_set=ct_chest_train]`` for a ``unet`` that learnt natural images and is tested on CT
slices). Every other method in distribution on the test block (the DIP family and the baselines,
which learn nothing; FFDNet, told σ) has no condition to shift there: its in-distribution and
shifted results are both its result on the test condition, so every method of a test block can be
ranked before and after the shift.

Intervals are over images, an image's seeds averaged first (``inference``): each result's
cluster-bootstrap interval, and the drop's from the per-image differences of the twin's and the
shifted instance's image means, paired by image (the images both have).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from benchmark.api import TRAIN_SET, TRAIN_TASK
from benchmark.core.keys import canonical_json
from benchmark.problems import conditions
from benchmark.problems import metrics as registry
from benchmark.results.inference import bootstrap_ci, per_image_means
from benchmark.results.statistics import normalize

CONDITION_COLUMNS = [TRAIN_TASK, TRAIN_SET, "shift"]
#: the results of one method in one shift panel
COLUMNS = ["shift", "task", "dataset", "method", "twin", "shifted", "paired", "images", "in_mean", "in_low", "in_high",
           "shifted_mean", "shifted_low", "shifted_high", "drop_mean", "drop_low", "drop_high", "rank_in",
           "rank_shifted"]


def _info(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def condition_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Per row of the per-image table: the task and the training set its instance learnt from
    ("" where none: untrained, released weights, or a training that does not depend on the task)
    and its ``shift`` (from those, the kind of images it learnt from and the test condition)."""
    infos = frame["info"] if "info" in frame else pd.Series([{}] * len(frame), index=frame.index)
    rows = []
    for info, task, dataset in zip(infos, frame["task"].astype(str), frame["dataset"].astype(str), strict=True):
        learnt = _info(info)
        train_task, train_set = str(learnt.get(TRAIN_TASK) or ""), str(learnt.get(TRAIN_SET) or "")
        content = str(learnt.get(conditions.TRAIN_CONTENT) or "")
        rows.append((train_task, train_set, conditions.describe(train_task, task, content, dataset)))
    return pd.DataFrame(rows, columns=CONDITION_COLUMNS, index=frame.index)


def _core(params: Any, info: Any) -> str:
    """The parameters that say how an instance reconstructs: all but its condition parameters."""
    skip = set(_info(info).get("condition_params") or ())
    return canonical_json({k: v for k, v in (params if isinstance(params, dict) else {}).items() if k not in skip})


def _set_conditions(params: Any, info: Any) -> int:
    """How many condition parameters an instance sets (the default twin sets none)."""
    names = _info(info).get("condition_params") or ()
    return sum((params if isinstance(params, dict) else {}).get(k) is not None for k in names)


def _means(rows: pd.DataFrame, metric: str) -> pd.Series:
    return per_image_means(rows[metric].to_numpy(dtype=float), rows["image_id"].astype(str))


def _ranks(values: dict[str, float], higher: bool) -> dict[str, float]:
    """1 for the best mean; ties share the better rank; NaN for a method without a mean."""
    ordered = sorted((v for v in values.values() if not math.isnan(v)), reverse=higher)
    return {m: math.nan if math.isnan(v) else float(ordered.index(v) + 1) for m, v in values.items()}


def _row(shift: str, task: str, dataset: str, method: str, twin: str, shifted: bool, before: pd.Series | None,
         after: pd.Series, sign: float) -> dict[str, Any]:
    """One method's entry of a panel: ``before`` (None: no twin) and ``after`` are per-image means;
    the drop is paired by image, ``sign`` · (before − after), so that a positive drop is a loss
    whatever the metric; 0 for a method that is not shifted (before is after)."""
    nothing = (math.nan, math.nan, math.nan)
    if before is None:
        drop = nothing
    elif shifted:
        shared = before.index.intersection(after.index)
        drop = bootstrap_ci(sign * (before.loc[shared] - after.loc[shared]).to_numpy())
    else:
        drop = (0.0, 0.0, 0.0)
    return {"shift": shift, "task": task, "dataset": dataset, "method": method, "twin": twin, "shifted": shifted,
            "paired": shifted and before is not None, "images": int(after.size),
            **dict(zip(("in_mean", "in_low", "in_high"), bootstrap_ci(before.to_numpy()) if before is not None
                       else nothing, strict=True)),
            **dict(zip(("shifted_mean", "shifted_low", "shifted_high"), bootstrap_ci(after.to_numpy()), strict=True)),
            **dict(zip(("drop_mean", "drop_low", "drop_high"), drop, strict=True))}


def shift_table(frame: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """One row per (shift, test task, test dataset, method): every shifted instance with its twin's
    result (``in_*``), its own (``shifted_*``) and the drop (positive: a loss, whatever the metric's
    direction); a shifted instance without a twin in the table (released weights that learnt
    photographs, tested on CT slices) has its shifted result only (``paired`` False: NaN before
    and for the drop); and every other method in distribution on that test block (``shifted``
    False: DIP and the baselines, which learn nothing; networks trained on, or told, the test
    condition), whose in-distribution and shifted results are one (drop 0 by construction). Per
    panel, each method's rank before (NaN without a twin) and after the shift. ``metric``: the
    primary one unless named."""
    metric = metric or registry.primary().name
    df = normalize(frame)
    if metric not in df or not len(df):
        return pd.DataFrame(columns=COLUMNS)
    ok = df[(df["status"] == "ok") & df[metric].notna()].copy()
    if not len(ok):
        return pd.DataFrame(columns=COLUMNS)
    ok = ok.join(condition_columns(ok))
    ok["core"] = [_core(p, i) for p, i in zip(ok["params"], ok["info"], strict=True)]
    ok["set_conditions"] = [_set_conditions(p, i) for p, i in zip(ok["params"], ok["info"], strict=True)]
    higher = registry.higher_is_better(metric)
    sign = 1.0 if higher else -1.0  # the drop: positive is a loss
    rows: list[dict[str, Any]] = []
    for (shift, task, dataset), block in ok[ok["shift"] != ""].groupby(["shift", "task", "dataset"], sort=True):
        test = ok[(ok["task"] == task) & (ok["dataset"] == dataset)]
        inside = test[test["shift"] == ""]
        panel: list[dict[str, Any]] = []
        twins: set[str] = set()
        for label, rows_of in block.groupby("method", sort=True):
            first = rows_of.iloc[0]
            candidates = inside[(inside["method_name"] == first["method_name"]) & (inside["core"] == first["core"])]
            ordered = candidates.sort_values(["set_conditions", "method"])  # the default instance first
            twin = str(ordered.iloc[0]["method"]) if len(ordered) else ""
            twins.add(twin)
            before = _means(candidates[candidates["method"] == twin], metric) if twin else None
            panel.append(_row(str(shift), str(task), str(dataset), str(label), twin, True, before,
                              _means(rows_of, metric), sign))
        for label, rows_of in inside[~inside["method"].isin(twins)].groupby("method", sort=True):
            means = _means(rows_of, metric)
            panel.append(_row(str(shift), str(task), str(dataset), str(label), "", False, means, means, sign))
        for key in ("in", "shifted"):
            ranks = _ranks({e["method"]: e[f"{key}_mean"] for e in panel}, higher)
            for entry in panel:
                entry[f"rank_{key}"] = ranks[entry["method"]]
        rows.extend(panel)
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["shift", "task", "dataset", "rank_in", "method"]).reset_index(drop=True)
