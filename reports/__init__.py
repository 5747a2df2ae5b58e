"""Reports: pure functions from the per-image results table to tables and figures.

``build_report`` writes ``index.html`` (self-contained), ``tables.md``, ``tables.tex`` and the
figures as PNG files; ``comparison_table`` renders the main table for the command line.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.results import statistics as stats
from reports import data_efficiency, dynamics, plots, robustness, tables, uncertainty
from reports import html as _html
from reports import tuning as tuning_table

__all__ = ["build_report", "comparison_table", "stats", "tables", "plots"]


def comparison_table(frame: pd.DataFrame, fmt: str = "markdown") -> str:
    """The methods × (task, dataset, metric) table as ``markdown``, ``html`` or ``latex``."""
    return tables.render(tables.comparison(frame), fmt)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _meta(df: pd.DataFrame) -> str:
    """The header line: what ran, under which budget, on how many images per block, and how the
    intervals are made (a small run says that it is small)."""
    counts = df["status"].value_counts()
    parts = [
        f"{len(df)} cells: {counts.get('ok', 0)} ok, {counts.get('skipped', 0)} skipped, "
        f"{counts.get('failed', 0)} failed",
        ", ".join(_count(df[col].nunique(), noun) for col, noun in
                  (("method", "method"), ("task", "task"), ("dataset", "dataset"), ("image_id", "image")))
        + f", seeds {sorted(int(s) for s in df['seed'].dropna().unique())}",
    ]
    profiles = sorted({p for p in df.get("profile", pd.Series(dtype=str)).dropna().astype(str) if p})
    if profiles:
        parts.append("profile " + ", ".join(profiles))
    parts.append(stats.budget_text(df))
    blocks = stats.block_images(df)
    if blocks:
        sizes = ", ".join(f"{t} · {d} {_count(n, 'image')}" for (t, d), n in blocks.items())
        parts.append(f"images per block: {sizes}; intervals and tests are over images, an image's seeds averaged "
                     f"first (paired tests need at least {stats.MIN_IMAGES_FOR_TEST} images)")
    devices = sorted({d for d in df.get("device", pd.Series(dtype=str)).dropna().astype(str) if d})
    if devices:
        parts.append("device " + ", ".join(devices))
    finished = pd.to_numeric(df.get("finished_at", pd.Series(dtype=float)), errors="coerce")
    if finished.notna().any() and finished.max() > 0:
        stamp = _dt.datetime.fromtimestamp(float(finished.max()), tz=_dt.timezone.utc)
        parts.append(f"last cell finished {stamp:%Y-%m-%d %H:%M} UTC")
    return " · ".join(parts)


def budget_banner(df: pd.DataFrame) -> str:
    """The report's first line under a budget other than the papers' (empty under "paper")."""
    cpu = stats.cpu_budgets(df)
    if not cpu:
        return ""
    which = ", ".join(cpu)
    return (f"These are CPU-budget rankings on small images (budget {which}), not the paper-scale comparison: "
            "the methods ran with reduced iterations, networks and training, chosen to fit a CPU.")


def _figure(anchor: str, title: str, caption: str, fig: object | None) -> tuple[_html.Figure, ...]:
    return () if fig is None else (_html.Figure(anchor, title, caption, plots.figure_png(fig)),)  # type: ignore[arg-type]


def report_sections(df: pd.DataFrame, *, recon_root: Path | None = None,
                    tuning: list[dict[str, Any]] | None = None) -> list[_html.Section]:
    """The report's sections (tables and figures) for a normalised frame: one list that the HTML
    report, the Markdown tables and the documentation site's results page all render."""
    palette = plots.method_palette(df["method"])

    comparison, es_gap, failed = tables.comparison(df), tables.es_gap(df), tables.failed(df)
    spread = tables.seed_spread(df)
    tuned = tuning_table.table(tuning or [])
    figs_runtime = _figure(
        "fig-runtime", "quality vs runtime",
        "One point per method and (task, dataset): mean PSNR against mean reconstruction time per image. "
        "The dashed staircase is the Pareto front (nothing is both faster and better). Hollow squares put "
        "trained methods at their one-off training time, joined by a dotted line.",
        plots.quality_runtime(df, palette))
    figs_data = _figure(
        "fig-data-efficiency", "quality vs training images",
        "Per task and dataset: each trained method's mean PSNR against its number of training images (log "
        "scale; band: 95% cluster-bootstrap CI over images, an image's seeds averaged first). Untrained methods "
        "use zero training images: dashed lines with their CI band. Diamonds with error bars: released weights, "
        "at the size of the training set their authors state. X: where a trained line reaches the best "
        "untrained method (listed below, with what each method was trained with and the run's budget).",
        data_efficiency.figure(df, palette))
    crossing = data_efficiency.crossing_table(df)
    shift_table = robustness.table(df)
    figs_shift = _figure(
        "fig-robustness", "robustness to distribution shift",
        "Per shift and test block: each method's mean from the in-distribution condition (the method trained on "
        "the test condition; DIP and the baselines on it) to the shifted one (trained on another condition, tested "
        "on the same images); solid: trained methods, dashed: methods that learn nothing, numbers: rank in the panel.",
        robustness.figure(df, palette))
    figs_traj = _figure(
        "fig-trajectories", "PSNR vs iteration",
        "Mean PSNR of the iterate along the iterations over images × seeds (band: ± 1 s.d.; drawn while at "
        "least half of the runs are still going). Circles: where each run's stopping rule stopped and "
        "the PSNR of its output; stars: the best iterate in hindsight (oracle).",
        plots.trajectories(df, palette))
    figs_dyn = tuple(_html.Figure(f"fig-dynamics-{i}", f"spectral bias {name}", dynamics.CAPTION, plots.figure_png(fig))
                     for i, (name, fig) in enumerate(dynamics.figures(df, palette)))
    figs_dist = _figure(
        "fig-distributions", "per-image distributions",
        "Per-image metric values per method (box: quartiles, whiskers 1.5 IQR; dots: every image × seed).",
        plots.distributions(df, palette))
    examples: tuple[_html.Figure, ...] = ()
    if recon_root is not None:
        examples = tuple(
            _html.Figure(f"fig-examples-{i}", f"examples {name}",
                         f"{name}: ground truth, the measurement as A⁺y, and every method's reconstruction "
                         "for the first images (lowest seed).", plots.figure_png(fig))
            for i, (name, fig) in enumerate(plots.examples(df, palette, Path(recon_root)))
        )

    uncertain = uncertainty.calibration_table(df)
    figs_uncertainty: tuple[_html.Figure, ...] = ()
    if recon_root is not None:
        figs_uncertainty = tuple(
            _html.Figure(f"fig-uncertainty-{i}", f"uncertainty {name}",
                         f"{name}: for each method that returns a per-pixel standard deviation, ground truth, "
                         "reconstruction, |error| and the std, the last two on one colour scale.",
                         plots.figure_png(fig))
            for i, (name, fig) in enumerate(uncertainty.figures(df, Path(recon_root))))
    conventions = tables.conventions(df)
    stated = [_html.Section("conventions", "Conventions", table=conventions)] if conventions.rows else []

    sections = [
        _html.Section("comparison", "Comparison", table=comparison, empty="No results yet."),
        *stated,
        _html.Section("runtime", "Quality against runtime", figures=figs_runtime, empty="No timed results."),
        _html.Section("data-efficiency", "How much training data beats DIP?", figures=figs_data, table=crossing,
                      empty="No trained method with a training-set size (train_images) in these results."),
        _html.Section("robustness", "Robustness: when the test condition moves", figures=figs_shift,
                      table=shift_table,
                      empty="No shift cell in these results: no trained instance was tested away from what it learnt "
                      "(train_task, train_set; the robustness profile runs them)."),
        _html.Section("trajectories", "DIP trajectories", figures=figs_traj,
                      empty="No method recorded a trajectory."),
        _html.Section("dynamics", "Why DIP works: spectral bias", figures=figs_dyn,
                      empty="No run recorded PSNR per frequency band along its iterations."),
        _html.Section("es-gap", "Early-stopping gap", table=es_gap, empty="No method with a stopping rule."),
        _html.Section("seed-spread", "Seed-to-seed spread", table=spread,
                      empty="No image was run with more than one seed."),
        _html.Section("distributions", "Per-image distributions", figures=figs_dist, empty="No results yet."),
        _html.Section("examples", "Example reconstructions", figures=examples,
                      empty="No reconstructions saved with these results."),
        _html.Section("uncertainty", "Uncertainty", table=uncertain, figures=figs_uncertainty,
                      empty="No method returned a per-pixel uncertainty."),
        _html.Section("tuning", "Tuned hyperparameters", table=tuned,
                      empty="No tunable parameter in this run: nothing was tuned."),
        _html.Section("failed", "Failed cells", table=failed, empty="No cell failed."),
    ]
    return sections


def build_report(frame: pd.DataFrame, out_dir: Path, *, title: str, recon_root: Path | None = None,
                 tuning: list[dict[str, Any]] | None = None) -> Path:
    """Write the report for ``frame`` into ``out_dir`` and return the path of ``index.html``;
    ``tuning``: the profile's tune records and untuned tunables (``benchmark.run.tuning.report_rows``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = stats.normalize(frame)
    sections = report_sections(df, recon_root=recon_root, tuning=tuning)
    index = out_dir / "index.html"
    banner = budget_banner(df)
    index.write_text(_html.page(title, _meta(df), sections, banner=banner), encoding="utf-8")

    _write_figures(out_dir / "figures", sections)
    named = [(s.title, s.table) for s in sections if s.table is not None and s.anchor in TABLES]
    md = [f"# {title}", ""] + ([f"**{banner}**", ""] if banner else []) + [_meta(df), ""]
    md += [tables.to_markdown(t, heading=h) for h, t in named]
    (out_dir / "tables.md").write_text("\n".join(md), encoding="utf-8")
    tex = [f"% {title}: generated by reports.build_report; needs \\usepackage{{booktabs}}", ""]
    tex += [tables.to_latex(t) for _, t in named if t.rows]
    (out_dir / "tables.tex").write_text("\n".join(tex), encoding="utf-8")
    return index


#: the sections whose tables ``tables.md`` and ``tables.tex`` carry
TABLES = ("comparison", "conventions", "robustness", "es-gap", "seed-spread", "uncertainty", "tuning", "failed")


def _write_figures(folder: Path, sections: list[_html.Section]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.png"):  # a figure that no longer applies must not linger
        stale.unlink()
    for section in sections:
        for f in section.figures:
            (folder / f"{f.anchor.removeprefix('fig-')}.png").write_bytes(f.png)


def build_docs_page(frame: pd.DataFrame, out_dir: Path, *, title: str,
                    tuning: list[dict[str, Any]] | None = None) -> Path:
    """The documentation site's results page for ``frame`` (``benchmark report --docs``): every
    section of the report as Markdown, its figures beside it; generated from the store, never
    copied by hand. Returns the page's path (``out_dir/index.md``)."""
    out_dir = Path(out_dir)
    df = stats.normalize(frame)
    sections = report_sections(df, tuning=tuning)
    _write_figures(out_dir / "figures", sections)
    banner = budget_banner(df)
    md = [f"# {title}", ""] + ([f"!!! warning \"CPU budget\"\n    {banner}", ""] if banner else []) + [_meta(df), ""]
    for section in sections:
        md += [f"## {section.title}", ""]
        if section.table is None and not section.figures:
            md += [section.empty, ""]
            continue
        for f in section.figures:
            md += [f"![{f.title}](figures/{f.anchor.removeprefix('fig-')}.png)", "", f"*{f.caption}*", ""]
        if section.table is not None:
            md += [tables.to_markdown(section.table), ""]
    page = out_dir / "index.md"
    page.write_text("\n".join(md), encoding="utf-8")
    return page
