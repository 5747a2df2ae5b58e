"""Tables built once from the summaries, rendered three ways (Markdown, HTML, LaTeX).

A ``Table`` holds already-formatted cells, so the three renderings cannot disagree on a number;
each renderer only decides markup.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from benchmark.problems import metrics as registry
from benchmark.problems import tasks as task_registry
from benchmark.results import statistics as stats
from benchmark.results.inference import smallest_p


@dataclass
class Entry:
    text: str
    bold: bool = False
    note: str = ""  # small secondary text (the p-value)
    mark: str = ""  # footnote marker (a skip reason)
    tooltip: str = ""  # hover text in HTML


@dataclass
class Table:
    anchor: str
    caption: str
    stub: str  # header of the row-label column
    columns: list[str]
    rows: list[tuple[str, list[Entry]]]
    #: top header: (label, number of columns it spans); empty for a one-row header
    groups: list[tuple[str, int]] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)  # "a: reason" lines
    text_columns: set[int] = field(default_factory=set)  # left-aligned (names, not numbers)


TOO_FEW = "too few images to test"


def format_p(p: float | None) -> str:
    if p is None:
        return "p n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _marker(i: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return letters[i] if i < len(letters) else f"n{i}"


CAPTION = (
    "{budget}. Mean over images (an image's seeds averaged first) ± half-width of the 95% cluster-bootstrap "
    "interval over images (expanded percentile, {n} resamples, seed {seed}); each block's header gives its "
    "number of images. Bold: best per column ({directions}). p: two-sided Wilcoxon signed-rank test of the "
    "per-image means against the bold method on the images both have, Holm-adjusted over the methods compared "
    "in the column; n/a when every difference is zero."
)
TOO_FEW_CAPTION = (
    " '{too_few}': fewer than {min_images} images shared with the bold method, with which no two-sided test can "
    "reach p < 0.05 (4 images give p ≥ {p4:.3f}); blocks with fewer images here: {small}."
)
ITERATES_CAPTION = " iterates: the stream of iterates a method returns and its iteration cap."
END_CAPTION = " —: skipped (reason in the notes); failed cells are listed separately."


def _block_label(task: str, dataset: str, images: int) -> str:
    return f"{task} · {dataset} ({images} image{'' if images == 1 else 's'})"


def _caption(df: pd.DataFrame, summary: pd.DataFrame, counts: dict[tuple[str, str], int], iterative: bool,
             metrics: list[str]) -> str:
    directions = ", ".join(
        f"{'higher' if registry.higher_is_better(m) else 'lower'} {registry.header(m).split(' [')[0]}" for m in metrics
    )
    caption = CAPTION.format(budget=stats.budget_text(df).capitalize(), n=stats.N_RESAMPLES,
                             seed=stats.BOOTSTRAP_SEED, directions=directions)
    if len(summary) and summary["too_few"].any():
        small = [f"{t} · {d} ({n})" for (t, d), n in counts.items() if n < stats.MIN_IMAGES_FOR_TEST]
        caption += TOO_FEW_CAPTION.format(too_few=TOO_FEW, min_images=stats.MIN_IMAGES_FOR_TEST, p4=smallest_p(4),
                                          small=", ".join(small) or "none (some methods lack images)")
    return caption + (ITERATES_CAPTION if iterative else "") + END_CAPTION


def comparison(frame: pd.DataFrame) -> Table:
    """Rows: method instances; columns: the training images they learnt from, then per
    (task, dataset) block the iterates the method returns (iterative blocks) and the metrics."""
    summary = stats.summarize(frame)
    df = stats.normalize(frame)
    metrics = stats.table_metrics(df)
    blocks = sorted({(t, d) for t, d in zip(df["task"], df["dataset"], strict=True)})
    counts = stats.block_images(df)
    iterative = {b for b in blocks if _iterates(df[(df["task"] == b[0]) & (df["dataset"] == b[1])]).text}
    table = Table("comparison", _caption(df, summary, counts, bool(iterative), metrics), "method",
                  ["training images", "trained on"], [], groups=[("training", 2)], text_columns={1})
    for task, dataset in blocks:
        extra = ["iterates"] if (task, dataset) in iterative else []
        table.groups.append((_block_label(task, dataset, counts.get((task, dataset), 0)), len(extra) + len(metrics)))
        if extra:
            table.text_columns.add(len(table.columns))
        table.columns.extend(extra + [registry.header(m) for m in metrics])
    reasons: dict[str, str] = {}
    index = {(r.method, r.task, r.dataset, r.metric): r for r in summary.itertuples(index=False)}
    for method in stats.method_order(df):
        rows = df[df["method"] == method]
        cells = [_training_images(rows), _trained_on(rows)]
        for task, dataset in blocks:
            if (task, dataset) in iterative:
                cells.append(_iterates(rows[(rows["task"] == task) & (rows["dataset"] == dataset)]))
            for metric in metrics:
                r = index.get((method, task, dataset, metric))
                cells.append(_cell(r, metric, reasons))
        table.rows.append((method, cells))
    table.footnotes = [f"{mark}: {reason}" for reason, mark in reasons.items()]
    return table


def _iterates(rows: pd.DataFrame) -> Entry:
    """Which stream of iterates the rows return (``info.oracle_stream``) and their iteration cap
    (``budget``): "EMA 0.99 of outputs, ≤ 800 it."; empty for one-shot methods."""
    ok = rows[rows["status"] == "ok"]
    infos = ok["info"] if "info" in ok else pd.Series(dtype=object)
    streams = sorted({str(i["oracle_stream"]) for i in infos if isinstance(i, dict) and i.get("oracle_stream")})
    caps = sorted({int(v) for v in pd.to_numeric(ok.get("budget", pd.Series(dtype=float)), errors="coerce")
                   if pd.notna(v)})
    parts = [" / ".join(streams)] if streams else []
    if caps:
        parts.append("≤ " + " / ".join(str(c) for c in caps) + " it.")
    return Entry(", ".join(parts), tooltip="the stream of iterates returned and the iteration cap" if parts else "")


def _training_images(rows: pd.DataFrame) -> Entry:
    """How many training images a method instance learnt from: 0 when untrained, n/a unknown."""
    ok = rows.loc[rows["status"] == "ok", "train_images"] if "train_images" in rows else pd.Series(dtype=float)
    counts = sorted({int(v) for v in pd.to_numeric(ok, errors="coerce") if pd.notna(v)})
    if not counts:
        return Entry("n/a", tooltip="not recorded (released weights, or no finished cell)")
    return Entry(" / ".join(str(c) for c in counts),
                 tooltip="images the weights learnt from: of the training split for the suite's own training, "
                 "the authors' training set for released weights")


def _trained_on(rows: pd.DataFrame) -> Entry:
    """What a trained instance's weights are (``info.trained_on``: "suite prior, N images of
    <set>, S steps", "ffhq weights"); "untrained" for the baselines and the DIP family."""
    ok = rows[rows["status"] == "ok"]
    infos = ok["info"] if "info" in ok else pd.Series(dtype=object)
    said = sorted({str(i["trained_on"]) for i in infos if isinstance(i, dict) and i.get("trained_on")})
    if said:
        return Entry(" / ".join(said), tooltip="the weights behind these results")
    families = set(ok["family"]) if "family" in ok else set()
    if families and families <= {"baseline", "dip"}:
        return Entry("untrained", tooltip="learnt from no training image")
    return Entry("n/a", tooltip="not recorded (released weights that do not say, or no finished cell)")


def _cell(r: Any, metric: str, reasons: dict[str, str]) -> Entry:
    """One comparison entry from a ``summarize`` row (None: the method did not run on the block)."""
    if r is None:
        return Entry("", tooltip="not run")
    if r.status == "skipped":
        mark = reasons.setdefault(r.reason, _marker(len(reasons)))
        return Entry("—", mark=mark, tooltip=f"skipped: {r.reason}")
    if r.status == "failed":
        return Entry("failed", tooltip="every run of this cell failed; see the failed cells")
    if r.status == "missing":
        return Entry("n/a", tooltip="no value recorded")
    d = registry.decimals(metric, r.mean)
    runs = f"{r.n} image{'' if r.n == 1 else 's'}, {r.runs} runs"
    if pd.isna(r.half_width):
        text, tip = f"{r.mean:.{d}f}", f"{runs}; one image gives no interval over images"
    else:
        text = f"{r.mean:.{d}f} ± {r.half_width:.{d}f}"
        tip = f"{runs}; 95% CI over images [{r.low:.{d}f}, {r.high:.{d}f}]"
    note = ""
    if r.compared and not r.best:
        note = TOO_FEW if r.too_few else format_p(r.p_value)
        if r.p_raw is not None:
            tip += f"; p before Holm's correction {r.p_raw:.4f} on {r.pair_images} images"
    return Entry(text, bold=bool(r.best), note=note, tooltip=tip)


def es_gap(frame: pd.DataFrame) -> Table:
    """The early-stopping table: one row per method with a stopping rule, and task."""
    s = stats.es_gap_summary(frame)
    primary = registry.primary()
    label, unit = primary.label or primary.name, f" [{primary.unit}]" if primary.unit else ""
    columns = ["stopping rule", "task", "dataset", "images", f"{label}{unit}", f"oracle {label}{unit}",
               f"ES gap{unit}", "oracle over", "stopped at", "oracle at", "iterations run", "iteration cap",
               "iterations saved"]
    digits = primary.decimals if primary.decimals is not None else 3
    caption = (
        f"{stats.budget_text(frame).capitalize()}. Early stopping of the methods that declare a stopping rule: the "
        f"{label} given away against the oracle (the best of every iterate in hindsight, which needs the ground truth; "
        "'oracle over' names the stream of iterates, averaged or raw outputs), as mean ± half-width of the 95% "
        "cluster-bootstrap interval over images, and the iterations saved against the iteration cap (means of "
        "per-image means, an image's seeds averaged first)."
    )
    table = Table("es-gap", caption, "method", columns, [], text_columns={0, 1, 2, 7})

    def num(v: float, d: int = 0) -> Entry:
        return Entry("n/a" if pd.isna(v) else f"{v:.{d}f}")

    for r in s.itertuples(index=False):
        gap = "n/a" if pd.isna(r.es_gap) else f"{r.es_gap:.{digits}f}"
        if not pd.isna(r.es_gap_half):
            gap += f" ± {r.es_gap_half:.{digits}f}"
        table.rows.append((r.method, [
            Entry(r.stopping_rule), Entry(r.task), Entry(r.dataset), Entry(str(r.n), tooltip=f"{r.runs} runs"),
            num(r.value, digits), num(r.oracle_value, digits), Entry(gap), Entry(r.oracle_stream),
            num(r.selected_iteration), num(r.oracle_iteration), num(r.iterations), num(r.budget),
            num(r.iterations_saved),
        ]))
    return table


def seed_spread(frame: pd.DataFrame) -> Table:
    """The run-to-run table: how far a method's PSNR moves between run seeds on one image."""
    s = stats.seed_spread(frame)
    caption = (
        f"{stats.budget_text(frame).capitalize()}. Seed-to-seed spread: the standard deviation of an image's PSNR "
        "across the run seeds, mean and largest over the images run with at least two seeds. Each seed draws "
        "another measurement noise and, for a randomised method, another initialisation and noise stream: a "
        "deterministic method's spread is the measurement noise's share. It describes one image's runs, not the "
        "uncertainty of a mean: the comparison's intervals are over images."
    )
    table = Table("seed-spread", caption, "method", ["task", "dataset", "images", "seeds", "mean s.d. [dB]",
                                                     "max s.d. [dB]"], [], text_columns={0, 1})
    for r in s.itertuples(index=False):
        table.rows.append((r.method, [Entry(r.task), Entry(r.dataset), Entry(str(r.images)), Entry(str(r.seeds)),
                                      Entry(f"{r.mean_sd:.2f}"), Entry(f"{r.max_sd:.2f}")]))
    return table


def failed(frame: pd.DataFrame) -> Table:
    f = stats.failures(frame)
    caption = f"{stats.budget_text(frame).capitalize()}. Failed cells (rerunning the benchmark retries them)."
    table = Table("failed", caption, "method", ["task", "dataset", "image", "seed", "error"], [],
                  text_columns={0, 1, 2, 4})
    for r in f.itertuples(index=False):
        seed = "" if pd.isna(r.seed) else str(int(r.seed))
        table.rows.append((r.method, [Entry(r.task), Entry(r.dataset), Entry(r.image_id), Entry(seed), Entry(r.error)]))
    return table


# ---------------------------------------------------------------------------------- Markdown


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _md_cell(c: Entry) -> str:
    text = f"**{c.text}**" if c.bold and c.text else c.text
    if c.note:
        text += f" ({c.note})"
    if c.mark:
        text += f" [{c.mark}]"
    return _md_escape(text)


def to_markdown(table: Table, *, heading: str = "") -> str:
    """GitHub-flavoured Markdown; a grouped table becomes one sub-table per group, which keeps
    it readable in a terminal, each with the rows that have something in it."""
    out = [f"## {heading}", ""] if heading else []
    if not table.rows:
        return "\n".join(out + ["(none)", ""])
    spans = table.groups or [("", len(table.columns))]
    start = 0
    for label, span in spans:
        cols = table.columns[start:start + span]
        if label:
            out += [f"**{_md_escape(label)}**", ""]
        out.append("| " + " | ".join([table.stub] + [_md_escape(c) for c in cols]) + " |")
        out.append("|---|" + "".join("---|" if start + k in table.text_columns else "---:|" for k in range(len(cols))))
        for name, cells in table.rows:
            part = cells[start:start + span]
            if label and not any(c.text for c in part):  # not run on this block (e.g. a dataset's own methods)
                continue
            out.append("| " + " | ".join([_md_escape(name)] + [_md_cell(c) for c in part]) + " |")
        out.append("")
        start += span
    out.append(_md_escape(table.caption))
    out += [""] + [f"- {_md_escape(n)}" for n in table.footnotes] + ([""] if table.footnotes else [])
    return "\n".join(out)


# -------------------------------------------------------------------------------------- HTML


def _align(table: Table, k: int) -> str:
    return " class='txt'" if k in table.text_columns else ""


def to_html(table: Table) -> str:
    e = html.escape
    head = []
    if table.groups:
        head.append(
            f"<tr><th rowspan='2' class='stub'>{e(table.stub)}</th>"
            + "".join(f"<th colspan='{span}' class='group'>{e(label)}</th>" for label, span in table.groups)
            + "</tr>"
        )
        head.append("<tr>" + "".join(f"<th>{e(c)}</th>" for c in table.columns) + "</tr>")
    else:
        head.append(
            f"<tr><th class='stub'>{e(table.stub)}</th>"
            + "".join(f"<th{_align(table, k)}>{e(c)}</th>" for k, c in enumerate(table.columns))
            + "</tr>"
        )
    body = []
    for name, cells in table.rows:
        tds = []
        for k, c in enumerate(cells):
            inner = f"<strong>{e(c.text)}</strong>" if c.bold else e(c.text)
            if c.note:
                inner += f" <span class='p'>{e(c.note)}</span>"
            if c.mark:
                inner += f"<sup>{e(c.mark)}</sup>"
            title = f" title='{e(c.tooltip)}'" if c.tooltip else ""
            cls = " class='best'" if c.bold else (" class='skip'" if c.mark else _align(table, k))
            tds.append(f"<td{title}{cls}>{inner}</td>")
        body.append(f"<tr><th class='stub'>{e(name)}</th>{''.join(tds)}</tr>")
    notes = "".join(f"<li>{e(n)}</li>" for n in table.footnotes)
    return (
        f"<div class='table-wrap'><table id='{e(table.anchor)}'><caption>{e(table.caption)}</caption>"
        f"<thead>{''.join(head)}</thead><tbody>{''.join(body)}</tbody></table>"
        + (f"<ul class='notes'>{notes}</ul>" if notes else "")
        + "</div>"
    )


# ------------------------------------------------------------------------------------- LaTeX

_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "—": "---", "·": "/", "±": r"$\pm$", "×": r"$\times$", "<": r"$<$", ">": r"$>$"}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    ncol = len(table.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\footnotesize",
             rf"\caption{{{tex_escape(table.caption)}}}", rf"\label{{tab:{table.anchor}}}",
             r"\begin{tabular}{l" + "".join("l" if k in table.text_columns else "r" for k in range(ncol)) + "}",
             r"\toprule"]
    if table.groups:
        cells, rules, col = [""], [], 2
        for label, span in table.groups:
            cells.append(rf"\multicolumn{{{span}}}{{c}}{{{tex_escape(label)}}}")
            rules.append(rf"\cmidrule(lr){{{col}-{col + span - 1}}}")
            col += span
        lines += [" & ".join(cells) + r" \\", " ".join(rules)]
    lines += [" & ".join([tex_escape(table.stub)] + [tex_escape(c) for c in table.columns]) + r" \\", r"\midrule"]
    for name, row in table.rows:
        cells = [tex_escape(name)]
        for c in row:
            text = tex_escape(c.text)
            text = rf"\textbf{{{text}}}" if c.bold and c.text else text
            if c.note:
                text += rf" {{\scriptsize ({tex_escape(c.note)})}}"
            if c.mark:
                text += rf"\textsuperscript{{{tex_escape(c.mark)}}}"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    for note in table.footnotes:
        lines.append(rf"\par\smallskip {tex_escape(note)}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def render(table: Table, fmt: str) -> str:
    if fmt == "markdown":
        return to_markdown(table)
    if fmt == "html":
        return to_html(table)
    if fmt == "latex":
        return to_latex(table)
    raise ValueError(f"unknown table format {fmt!r}; valid: markdown, html, latex")


def conventions(frame: pd.DataFrame) -> Table:
    """How the measurements and metrics of the tasks present were made, where a reader could
    assume otherwise (``Task.conventions``: MRI's simulated k-space and data range, CT's photon
    counts and dose): one row per distinct statement, naming its tasks."""
    said: dict[str, list[str]] = {}
    for name in sorted(set(frame["task"].astype(str))) if "task" in frame else []:
        task = task_registry.TASKS.get(name)
        if task is not None and task.conventions:
            said.setdefault(task.conventions, []).append(name)
    table = Table("conventions", "How these tasks' measurements and metrics are made (declared on each task).",
                  "tasks", ["convention"], [], text_columns={0})
    for text, names in said.items():
        table.rows.append((", ".join(names), [Entry(text)]))
    return table
