"""The report's numbers, checked against direct computations on a synthetic per-image table."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import reports
from benchmark.problems import metrics
from benchmark.results import statistics as stats
from reports import plots, tables
from reports.synthetic import METHODS, TASKS, demo_frame

DEN, INP = TASKS


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return demo_frame()


@pytest.fixture(scope="module")
def summary(frame: pd.DataFrame) -> pd.DataFrame:
    return stats.summarize(frame)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    df = demo_frame(root / "recon")
    return reports.build_report(df, root / "out", title="Synthetic benchmark", recon_root=root / "recon")


def ok_values(frame: pd.DataFrame, method: str, task: str, metric: str) -> pd.Series:
    rows = frame[(frame.method == method) & (frame.task == task) & (frame.status == "ok")]
    return rows.set_index(["image_id", "seed"])[metric].astype(float).sort_index()


def direct_interval(units: np.ndarray, n: int = stats.N_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Hesterberg's expanded percentile bootstrap interval of the mean, written out."""
    k = len(units)
    idx = np.random.default_rng(seed).integers(0, k, size=(n, k))
    means = units[idx].mean(axis=1)
    tail = sps.norm.cdf(-np.sqrt(k / (k - 1)) * sps.t.ppf(0.975, k - 1))
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def test_bootstrap_interval_is_the_expanded_percentile_bootstrap_of_the_mean() -> None:
    x = np.random.default_rng(3).normal(28.0, 1.5, size=12)
    mean, low, high = stats.bootstrap_ci(x)
    assert mean == pytest.approx(x.mean())
    assert (low, high) == pytest.approx(direct_interval(x), abs=1e-12)
    assert stats.bootstrap_ci(x) == stats.bootstrap_ci(x)  # seeded: the same every time
    # the expansion vanishes with many units: an independent percentile bootstrap (other random
    # draws) agrees to Monte-Carlo precision
    many = np.random.default_rng(4).normal(28.0, 1.5, size=400)
    _, low, high = stats.bootstrap_ci(many)
    ref = sps.bootstrap((many,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(9))
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.03)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.03)


def test_bootstrap_edge_cases() -> None:
    mean, low, high = stats.bootstrap_ci([31.0])  # one image: a mean, no interval over images
    assert mean == 31.0 and np.isnan(low) and np.isnan(high)
    assert stats.bootstrap_ci([30.0, np.inf, 32.0])[0] == pytest.approx(31.0)  # exact recon left out
    assert all(np.isnan(v) for v in stats.bootstrap_ci([]))


def test_summary_cell_matches_a_direct_computation(frame: pd.DataFrame, summary: pd.DataFrame) -> None:
    s = summary
    row = s[(s.method == "tv") & (s.task == DEN) & (s.metric == "psnr")].iloc[0]
    per_image = ok_values(frame, "tv", DEN, "psnr").groupby(level="image_id").mean().sort_index().to_numpy()
    low, high = direct_interval(per_image)
    assert (row.n, row.runs) == (4, 8)  # 4 images, 2 seeds each
    assert row["mean"] == pytest.approx(per_image.mean())
    assert (row.low, row.high) == pytest.approx((low, high), abs=1e-12)
    md = reports.comparison_table(frame)
    assert f"{per_image.mean():.2f} ± {(high - low) / 2:.2f}" in md
    # shuffling the store's rows changes nothing
    shuffled = frame.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(stats.summarize(shuffled), s)


def metric_column(table: tables.Table, task: str, metric: str) -> int:
    """The index in ``table.columns`` of ``metric`` in the block of ``task``."""
    start = 0
    for label, span in table.groups:
        if label.startswith(f"{task} ·"):
            return table.columns.index(metrics.header(metric), start, start + span)
        start += span
    raise KeyError(task)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("metric", ["psnr", "ssim", "lpips", "runtime_s"])
def test_best_mean_per_column_is_bold(frame: pd.DataFrame, summary: pd.DataFrame, task: str, metric: str) -> None:
    ok = frame[(frame.task == task) & (frame.status == "ok")]
    means = ok.groupby("method")[metric].mean()
    expected = means.idxmin() if metric in ("lpips", "runtime_s") else means.idxmax()
    s = summary
    col = s[(s.task == task) & (s.metric == metric) & (s.status == "ok")]
    assert list(col[col.best].method) == [expected]
    table = tables.comparison(frame)
    j = metric_column(table, task, metric)
    bold = [name for name, cells in table.rows if cells[j].bold]
    assert bold == [expected]
    md = tables.to_markdown(table)
    line = next(line for line in md.splitlines() if line.startswith(f"| {expected} |") and "**" in line)
    assert "**" in line


def test_runtime_best_is_the_fastest_method(frame: pd.DataFrame, summary: pd.DataFrame) -> None:
    s = summary
    best = s[(s.task == DEN) & (s.metric == "runtime_s") & s.best]
    assert list(best.method) == ["identity"]  # lower is better for time


def test_wilcoxon_p_value_is_scipys_on_the_per_image_means(frame: pd.DataFrame, summary: pd.DataFrame) -> None:
    s = summary
    best = s[(s.task == DEN) & (s.metric == "psnr") & s.best].method.iloc[0]
    # "flaky" failed on one (image, seed): the test pairs the runs both methods have, averages the
    # differences over each image's seeds and tests the 4 per-image differences
    a, b = ok_values(frame, "flaky", DEN, "psnr"), ok_values(frame, best, DEN, "psnr")
    pairs = pd.concat([a, b], axis=1, join="inner")
    assert len(pairs) == 7
    diffs = (pairs.iloc[:, 0] - pairs.iloc[:, 1]).groupby(level="image_id").mean()
    expected = sps.wilcoxon(diffs.to_numpy()).pvalue
    row = s[(s.method == "flaky") & (s.task == DEN) & (s.metric == "psnr")].iloc[0]
    assert row.p_raw == pytest.approx(expected, rel=1e-12)
    assert (row.n, row.runs, row.pair_images) == (4, 7, 4)
    assert row.p_raw >= 0.125  # the smallest two-sided p 4 images can give
    column = s[(s.task == DEN) & (s.metric == "psnr") & ~s.best]
    assert (column.p_value >= column.p_raw).all()  # Holm's correction only raises a p
    # 4 images: the table says so instead of a p
    assert row.too_few and tables.TOO_FEW in reports.comparison_table(frame)


def test_wilcoxon_is_na_without_pairs_or_differences() -> None:
    idx = pd.MultiIndex.from_tuples([("a", 0), ("b", 0), ("c", 0)], names=["image_id", "seed"])
    x = pd.Series([1.0, 2.0, 3.0], index=idx)
    assert stats.paired_test(x, x) == (None, 3)  # identical
    assert stats.paired_test(x.iloc[:1], x.iloc[:1] + 1) == (None, 1)  # one image
    p, n = stats.paired_test(x, x + np.array([0.5, -0.2, 0.9]))
    assert n == 3 and p == pytest.approx(sps.wilcoxon([1, 2, 3], [1.5, 1.8, 3.9]).pvalue)
    assert tables.format_p(None) == "p n/a"


def test_skipped_cells_show_a_dash_and_their_reason(frame: pd.DataFrame) -> None:
    reason = "DnCNN is trained for denoising only"
    md, tex, page = (reports.comparison_table(frame, f) for f in ("markdown", "latex", "html"))
    row = next(line for line in md.splitlines() if line.startswith("| dncnn |") and "—" in line)
    assert row.count("— [a]") == 4
    assert f"a: {reason}" in md
    assert f"a: {reason}" in tex and r"---\textsuperscript{a}" in tex
    assert f"title='skipped: {reason}'" in page


def test_failed_cells_are_listed_apart(frame: pd.DataFrame) -> None:
    f = stats.failures(frame)
    assert f[["method", "image_id", "seed"]].values.tolist() == [["flaky", "coins", 1], ["flaky", "coins", 1]]
    assert set(f.error) == {"RuntimeError: singular matrix"}
    md = tables.to_markdown(tables.failed(frame))
    assert md.count("RuntimeError: singular matrix") == 2


def test_every_method_is_in_every_rendering(frame: pd.DataFrame) -> None:
    md, tex = reports.comparison_table(frame, "markdown"), reports.comparison_table(frame, "latex")
    for method in METHODS:
        assert re.search(rf"^\| {method} \|", md, re.M)
        assert re.search(rf"^{re.escape(tables.tex_escape(method))} &", tex, re.M)
    assert tex.count(r"\begin{table}") == tex.count(r"\end{table}") == 1
    assert "dip\\_es" in tex and "denoising\\_s25" in tex
    with pytest.raises(ValueError, match="unknown table format"):
        reports.comparison_table(frame, "csv")


def test_a_markdown_block_lists_only_the_methods_run_on_it(frame: pd.DataFrame) -> None:
    """A dataset entry with its own ``methods:`` list: the other methods get no empty rows in
    its sub-table (the HTML table keeps one grid, blank where not run)."""
    one_task = frame[~((frame["method"] == "tv") & (frame["task"] == TASKS[1]))]
    md = reports.comparison_table(one_task, "markdown")
    blocks = {b.split("**")[0]: b for b in md.split("\n**")[1:]}
    first, second = (next(b for label, b in blocks.items() if label.startswith(t)) for t in TASKS[:2])
    assert re.search(r"^\| tv \|", first, re.M)
    assert not re.search(r"^\| tv \|", second, re.M)
    assert all(re.search(rf"^\| {m} \|", second, re.M) for m in METHODS if m not in ("tv", "flaky"))


def test_a_lone_method_is_neither_bold_nor_tested(frame: pd.DataFrame) -> None:
    md = reports.comparison_table(frame[frame.method == "tv"])
    assert "| tv |" in md
    row = next(line for line in md.splitlines() if line.startswith("| tv |"))
    assert "**" not in row and "p=" not in md and "p n/a" not in md


def test_latex_escapes_names() -> None:
    assert tables.tex_escape("dip_es & 50% #1") == r"dip\_es \& 50\% \#1"


def test_lpips_column_is_dropped_when_never_measured(frame: pd.DataFrame) -> None:
    no_lpips = frame.assign(lpips=None)
    assert stats.table_metrics(stats.normalize(no_lpips)) == ["psnr", "ssim", "runtime_s"]
    assert "LPIPS" not in reports.comparison_table(no_lpips)


def test_es_gap_table_matches_the_rows(frame: pd.DataFrame) -> None:
    g = stats.es_gap_summary(frame)
    assert set(g.method) == {"dip", "dip_es"}  # the methods that declare a stopping rule
    assert set(g.stopping_rule) == {"fixed budget", "moving variance"}
    for r in g.itertuples():
        rows = frame[(frame.method == r.method) & (frame.task == r.task)]
        assert r.es_gap == pytest.approx(rows.es_gap.mean())
        assert r.iterations_saved == pytest.approx(rows.iterations_saved.mean())
    early = g[(g.method == "dip_es") & (g.task == DEN)].iloc[0]
    fixed = g[(g.method == "dip") & (g.task == DEN)].iloc[0]
    assert fixed.iterations_saved == 0 and early.iterations_saved > 0
    md = tables.to_markdown(tables.es_gap(frame))
    assert f"{early.es_gap:.2f} ± {early.es_gap_half:.2f}" in md
    # Each method says which stream of iterates its oracle is over.
    assert early.oracle_stream == "raw outputs" and fixed.oracle_stream == "EMA 0.99 of outputs"
    assert "oracle over" in md and "raw outputs" in md
    assert stats.es_gap_summary(frame.assign(info=[{}] * len(frame))).oracle_stream.eq("not stated").all()


def test_seed_spread_is_the_across_seed_sd_per_image(frame: pd.DataFrame) -> None:
    spread = stats.seed_spread(frame)
    row = spread[(spread.method == "dip") & (spread.task == DEN)].iloc[0]
    ok = frame[(frame.method == "dip") & (frame.task == DEN) & (frame.status == "ok")]
    per_image = ok.groupby("image_id").psnr.std(ddof=1)
    assert (row.images, row.seeds) == (len(per_image), ok.seed.nunique())
    assert row.mean_sd == pytest.approx(per_image.mean()) and row.max_sd == pytest.approx(per_image.max())
    one_seed = frame[frame.seed == frame.seed.min()]
    assert stats.seed_spread(one_seed).empty  # a single seed has no spread to show
    assert f"{row.mean_sd:.2f}" in tables.to_markdown(tables.seed_spread(frame))


class _TableRows(HTMLParser):
    """Counts body rows per <table> and collects <img> sources."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[int] = []
        self.in_body = False
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(0)
        elif tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_body:
            self.tables[-1] += 1
        elif tag == "img":
            self.images.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self.in_body = False


def test_html_report_is_self_contained_with_no_empty_table(built: Path) -> None:
    text = built.read_text(encoding="utf-8")
    parser = _TableRows()
    parser.feed(text)
    assert len(parser.tables) == 4  # comparison, ES gap, seed spread, failed cells
    assert all(n > 0 for n in parser.tables)
    # runtime, trajectories, distributions, and per task one spectral-bias figure and one example grid
    assert len(parser.images) == 3 + 2 * len(TASKS)
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert not re.search(r"(src|href)=['\"]?(https?:|/|\.)", text)  # nothing fetched from elsewhere
    out = built.parent
    # training images, then per task, then the seed spread (denoising only)
    assert (out / "tables.md").read_text().count("| dncnn |") == 4
    assert r"\begin{tabular}" in (out / "tables.tex").read_text()
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "distributions.png", "dynamics-0.png", "dynamics-1.png", "examples-0.png", "examples-1.png", "runtime.png",
        "trajectories.png"]


def test_report_survives_missing_images_and_empty_results(tmp_path: Path, frame: pd.DataFrame) -> None:
    with_paths = frame.assign(recon_path=[f"nowhere/{i}.png" for i in range(len(frame))])
    index = reports.build_report(with_paths, tmp_path / "a", title="missing", recon_root=tmp_path / "none")
    assert index.read_text().count("data:image/png") == 3 + 2 * len(TASKS)
    empty = reports.build_report(pd.DataFrame(columns=list(frame.columns)), tmp_path / "b", title="empty")
    text = empty.read_text()
    assert "<table" not in text and "No results yet." in text
    assert "(none)" in (tmp_path / "b" / "tables.md").read_text()


def test_tables_do_not_depend_on_row_order(frame: pd.DataFrame) -> None:
    backwards = frame.iloc[::-1]
    for fmt in ("markdown", "html", "latex"):
        assert reports.comparison_table(frame, fmt) == reports.comparison_table(backwards, fmt)
    assert tables.to_markdown(tables.es_gap(frame)) == tables.to_markdown(tables.es_gap(backwards))


def test_palette_gives_a_method_the_same_colour_everywhere(frame: pd.DataFrame) -> None:
    full = plots.method_palette(frame.method)
    assert full == plots.method_palette(list(reversed(frame.method.tolist())))
    assert len(set(full.values())) == len(METHODS)


def test_pareto_front_keeps_only_undominated_points() -> None:
    pts = pd.DataFrame({"runtime": [0.01, 0.5, 1.0, 20.0, 30.0], "quality": [20.0, 27.0, 26.0, 29.0, 28.5]})
    front = plots.pareto_front(pts, "runtime", "quality")
    assert front["runtime"].tolist() == [0.01, 0.5, 20.0]


def test_trajectory_figure_has_one_curve_per_iterative_method(frame: pd.DataFrame) -> None:
    df = stats.normalize(frame)
    fig = plots.trajectories(df, plots.method_palette(df.method))
    assert fig is not None
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == len(TASKS)
    for ax in axes:
        assert ax.get_xlabel() == "iteration" and ax.get_ylabel() == "PSNR [dB]"
        assert len(ax.get_lines()) == 2  # dip and dip_es
    long = plots.trajectory_long(df)
    assert set(long.method) == {"dip", "dip_es"}
    assert plots.trajectories(df[df.family != "dip"], {}) is None


def test_iterative_rows_state_their_stream_and_iteration_cap(frame: pd.DataFrame) -> None:
    """The DIP variants of a block ran under one cap and each says which stream it returns."""
    table = tables.comparison(frame)
    rows = dict(table.rows)
    start = 0
    for label, span in table.groups:
        if label.startswith(f"{DEN} ·"):
            break
        start += span
    assert table.columns[start] == "iterates" and start in table.text_columns
    assert rows["dip"][start].text == "EMA 0.99 of outputs, ≤ 200 it."
    assert rows["dip_es"][start].text == "raw outputs, ≤ 200 it."
    assert rows["tv"][start].text == "" and rows["dncnn"][start].text == ""  # one-shot here: nothing to say
    assert "iterates: the stream of iterates" in table.caption
    one_shot = tables.comparison(frame[frame.family != "dip"])
    assert "iterates" not in one_shot.columns and "iterates:" not in one_shot.caption


def test_the_docs_results_page_is_generated_from_the_store_with_every_section(tmp_path: Path) -> None:
    """`benchmark report --docs`: the page holds every section of the report, the header line
    with the cell counts, and each figure it links exists beside it."""
    df = demo_frame(tmp_path / "recon")
    page = reports.build_docs_page(df, tmp_path / "results" / "demo", title="Results of the demo profile")
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Results of the demo profile")
    assert f"{len(df)} cells" in text
    for section in reports.report_sections(stats.normalize(df)):
        assert f"## {section.title}" in text
    linked = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", text)
    assert linked and all((page.parent / link).is_file() for link in linked)
    assert all(method in text for method in METHODS)  # every method of the store has its rows
