"""Uncertainty: for the methods whose reconstructions carry a per-pixel standard deviation (DPS
with several samples, a Bayesian DIP), how well it is calibrated and where it points.

The harness stores the std map as a PNG beside the reconstruction, scaled to its own largest
value, and that value (as a fraction of the data range) in the record's ``info``
(``uncertainty_path``, ``uncertainty_max``); here it is scaled back, so that the std and the
|error| maps share one colour scale in data-range units.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from benchmark.problems import metrics as registry  # noqa: E402
from benchmark.results import statistics as stats  # noqa: E402
from reports.tables import Entry, Table  # noqa: E402

#: the calibration metrics the table and the panel titles show (declared in the metric registry)
CALIBRATION = ("coverage_2sd", "sd_error_corr")


def _with_uncertainty(frame: pd.DataFrame) -> pd.DataFrame:
    df = stats.normalize(frame)
    ok = df[df["status"] == "ok"]
    has = [c for c in CALIBRATION if c in ok]
    return ok[ok[has].notna().any(axis=1)] if has else ok.iloc[0:0]


def calibration_table(df: pd.DataFrame) -> Table:
    """Per method instance and (task, dataset): the mean calibration metrics over images × seeds."""
    rows_df = _with_uncertainty(df)
    blocks = [] if rows_df.empty else sorted({(t, d) for t, d in zip(rows_df["task"], rows_df["dataset"], strict=True)})
    columns = ["task · dataset", "n"] + [registry.header(m) for m in CALIBRATION]
    caption = ("Calibration of the per-pixel uncertainty, mean over images × seeds: coverage ±2σ is the share "
               "of pixels whose error lies within two standard deviations (0.954 for a calibrated Gaussian "
               "posterior; lower: over-confident), corr(σ, |error|) Pearson's correlation of the std with the "
               "absolute error over pixels (0: the std says nothing about where the errors are).")
    table = Table("uncertainty", caption, "method", columns, [], text_columns={0})
    for method in stats.method_order(rows_df):
        for task, dataset in blocks:
            part = rows_df[(rows_df["method"] == method) & (rows_df["task"] == task) & (rows_df["dataset"] == dataset)]
            if part.empty:
                continue
            cells = [Entry(f"{task} · {dataset}"), Entry(str(len(part)))]
            for metric in CALIBRATION:
                values = pd.to_numeric(part.get(metric), errors="coerce").dropna()
                cells.append(Entry(f"{values.mean():.{registry.decimals(metric, 0.5)}f}" if len(values) else "n/a"))
            table.rows.append((method, cells))
    return table


def _read(path: Path) -> np.ndarray | None:
    """A PNG as a 2-D array in [0, 1] (colour averaged to gray), None when missing or unreadable."""
    if not path.is_file():
        return None
    try:
        img = plt.imread(path)
    except (OSError, ValueError, SyntaxError):
        return None
    img = np.asarray(img, dtype=np.float64)
    return img[..., :3].mean(axis=-1) if img.ndim == 3 else img


def figures(df: pd.DataFrame, recon_root: Path, n_images: int = 2) -> list[tuple[str, Figure]]:
    """Per (task, dataset) with an uncertainty: rows = method × a few images (lowest seed); columns
    = truth, reconstruction, |error| and the std, the last two on one colour scale."""
    out: list[tuple[str, Figure]] = []
    rows_df = _with_uncertainty(df)
    if rows_df.empty:
        return out
    rows_df = rows_df[[isinstance(i, dict) and bool(i.get("uncertainty_path")) for i in rows_df["info"]]]
    for task, dataset in sorted({(t, d) for t, d in zip(rows_df["task"], rows_df["dataset"], strict=True)}):
        part = rows_df[(rows_df["task"] == task) & (rows_df["dataset"] == dataset)]
        picks = []
        for method in stats.method_order(part):
            mine = part[part["method"] == method].sort_values(["image_id", "seed"])
            picks += [r for _, r in mine.drop_duplicates("image_id").head(n_images).iterrows()]
        fig, axes = plt.subplots(len(picks), 4, figsize=(8.4, 2.3 * len(picks)), squeeze=False, layout="constrained")
        for i, r in enumerate(picks):
            stem = recon_root / dataset / task / f"{r['image_id']}_seed{int(r['seed'])}"
            truth, recon = _read(Path(f"{stem}_truth.png")), _read(recon_root / r["recon_path"])
            std = _read(recon_root / r["info"]["uncertainty_path"])
            std = None if std is None else std * float(r["info"].get("uncertainty_max", 1.0))
            error = None if truth is None or recon is None or truth.shape != recon.shape else np.abs(recon - truth)
            top = max((float(m.max()) for m in (error, std) if m is not None), default=1.0) or 1.0
            scores = ", ".join(f"{registry.header(m)} {r[m]:.3f}" for m in CALIBRATION if pd.notna(r.get(m)))
            panels = ((truth, f"truth: {r['image_id']}", "gray", 1.0), (recon, f"{r['method']}", "gray", 1.0),
                      (error, "|error|", "magma", top), (std, f"std\n{scores}", "magma", top))
            for ax, (img, title, cmap, vmax) in zip(axes[i], panels, strict=True):
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_title(title, fontsize=7)
                if img is None:
                    ax.set_facecolor("0.92")
                    ax.text(0.5, 0.5, "image missing", ha="center", va="center", fontsize=7, transform=ax.transAxes)
                else:
                    ax.imshow(img, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest")
        fig.suptitle(f"Uncertainty: {task} · {dataset} (|error| and std on one scale, fractions of the data "
                     "range)", fontsize=9)
        out.append((f"{task} · {dataset}", fig))
    return out
