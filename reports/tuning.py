"""The report's "Tuned hyperparameters" table: each value ``benchmark tune`` chose on validation
images from the training split, with the grid's scores, and each tunable parameter the run used
untuned, so that no untuned value passes for a tuned one (issue 12, item 7)."""

from __future__ import annotations

from typing import Any

from benchmark.problems import metrics as registry
from reports.tables import Entry, Table

CAPTION = ("Hyperparameters chosen by `benchmark tune` on validation images drawn from the training split "
           "(mean PSNR over them at each grid point; never test images), then every tunable parameter "
           "this profile uses untuned (its method default, its budget's value or the profile's). Stale: a "
           "parameter held fixed while tuning has changed since; rerun `benchmark tune`.")


def _point(params: dict[str, Any], names: bool = True) -> str:
    return ", ".join(f"{k}={v}" if names else str(v) for k, v in params.items())


def table(rows: list[dict[str, Any]]) -> Table:
    """``rows``: ``benchmark.run.tuning.report_rows`` (tune records, then untuned tunables)."""
    out = Table("tuning", CAPTION, "method",
                ["applies to", "parameter", "value", f"validation {registry.header(registry.primary().name)}",
                 "grid (best … worst)", "validation images", "record"], [], text_columns={0, 1, 2, 4, 5, 6})
    for rec in rows:
        if "untuned" in rec:
            out.rows.append((rec["method"], [Entry(str(rec["applies_to"])), Entry(str(rec["untuned"])),
                                             Entry(str(rec["value"])), Entry(""), Entry(""), Entry(""),
                                             Entry(f"untuned ({rec['where']})")]))
            continue
        sign = -1.0 if registry.higher_is_better(str(rec["metric"])) else 1.0  # best first
        ranked = sorted(rec["scores"], key=lambda point: sign * float(point["value"]))
        grid = " · ".join(f"{_point(p['params'])}: {float(p['value']):.2f}" for p in ranked[:3])
        if len(ranked) > 3:
            grid += f" … {_point(ranked[-1]['params'])}: {float(ranked[-1]['value']):.2f} ({len(ranked)} points)"
        val = rec["validation"]
        stale = f"; stale: {', '.join(rec['stale'])} changed" if rec.get("stale") else ""
        applies = rec["applies_to"] if rec["scope"] == "task" else f"{rec['applies_to']} ({', '.join(rec['tasks'])})"
        out.rows.append((rec["method"], [
            Entry(str(applies)), Entry(", ".join(rec["chosen"])), Entry(_point(rec["chosen"], names=False)),
            Entry(f"{float(ranked[0]['value']):.2f}"), Entry(grid),
            Entry(f"{len(val['images'])} of {val['dataset']}/{val['split']}", tooltip=", ".join(val["images"])),
            Entry(f"{rec.get('date', '')} @ {str(rec.get('commit', ''))[:12]}{stale}"),
        ]))
    return out
