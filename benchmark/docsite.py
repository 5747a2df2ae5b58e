"""The documentation site's reference pages, generated from the registries (``benchmark docs``).

Every method, task, metric and profile is read from its registry, never copied by hand: a method's
page gives its citation, its module docstring (settings and where it departs from its authors), its
parameters under each budget and task family, its tunables and the tasks it applies to; a task's
its physics, noise, space and family; a metric's its direction and where it applies. ``mkdocs build``
then renders them with the hand-written pages (``docs/``) into the site (``make docs``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmark import registry
from benchmark.api import PAPER_BUDGET, Method
from benchmark.core.keys import canonical_json
from benchmark.problems import metrics, tasks
from benchmark.run import profiles

#: where the generated pages go, under the docs folder
REFERENCE = "reference"


def _cell(value: Any) -> str:
    text = canonical_json(value) if isinstance(value, (dict, list)) else repr(value)
    return text.replace("|", "\\|")


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cells) + " |" for cells in rows]
    return [*out, ""]


def _docstring(cls: type[Method]) -> str:
    module = inspect.getmodule(cls)
    return inspect.cleandoc(module.__doc__ or cls.__doc__ or "") if module is not None else ""


def method_page(name: str, cls: type[Method]) -> list[str]:
    """One method's section: citation, docstring, parameters per budget and family, tunables, tasks."""
    lines = [f"## `{name}`", "", f"*{cls.family}* · {cls.summary}", "", f"**Paper.** {cls.citation}", ""]
    doc = _docstring(cls)
    if doc:
        lines += [doc, ""]
    budgets = [PAPER_BUDGET, *cls.budgets]
    lines += ["**Parameters** (paper: the defaults, the authors' settings; other columns: what each budget sets "
              "over them)", ""]
    rows = []
    for key, default in cls.defaults.items():
        rows.append([f"`{key}`", _cell(default), *(_cell(cls.budgets[b][key]) if key in cls.budgets[b] else ""
                                                  for b in budgets[1:])])
    lines += _table(["parameter", PAPER_BUDGET, *budgets[1:]], rows)
    if cls.task_defaults:
        lines += ["**Per task** (family or task name; the task's name wins)", ""]
        lines += _table(["task or family", "settings"],
                        ([f"`{k}`", _cell(dict(v))] for k, v in cls.task_defaults.items()))
    for budget, table in cls.budget_task_params.items():
        lines += [f"**Per task under the {budget} budget**", ""]
        lines += _table(["task or family", "settings"], ([f"`{k}`", _cell(dict(v))] for k, v in table.items()))
    if cls.tunable:
        grid = "; ".join(f"`{k}` ∈ {_cell(list(v))}" for k, v in cls.tunable.items())
        lines += [f"**Tunable** (per {cls.tune_by}, on validation images from the training split): {grid}", ""]
    facts = [f"y is used {cls.uses_y}"]
    if cls.stopping_rule:
        facts.append(f"stopping rule: {cls.stopping_rule}")
    if cls.needs_training:
        facts.append("learns from the training split (`train_images`)")
    for key, released in cls.released_training.items():
        facts.append(released.description + (f" (`{key}`)" if key else ""))
    if cls.max_batch > 1:
        facts.append(f"solves up to {cls.max_batch} problems at once")
    if facts:
        lines += ["**Facts:** " + "; ".join(facts) + ".", ""]
    runs: list[str] = []
    skipped: dict[str, list[str]] = {}
    for task in tasks.TASKS.values():
        reason = _skip(cls, task)
        if reason is None:
            runs.append(f"`{task.name}`")
        else:
            skipped.setdefault(reason, []).append(f"`{task.name}`")
    lines += ["**Runs on** " + (", ".join(runs) or "no registered task") + ".", ""]
    lines += [f"**Not on** {', '.join(names)}: {reason}" for reason, names in skipped.items()]
    return [*lines, ""]


def _skip(cls: type[Method], task: tasks.Task) -> str | None:
    """Why ``cls`` does not run on ``task`` (None: it does)."""
    try:
        method = cls(**cls.resolve_params(task, {}, budget="test" if "test" in cls.budgets else PAPER_BUDGET))
        return method.skip_reason(task)
    except Exception as exc:  # noqa: BLE001 - a page must render even where a method cannot be built
        return f"not checked ({type(exc).__name__})"


def methods_page() -> str:
    known = registry.available()
    lines = ["# Methods", "", "Generated from the method registry (`benchmark docs`); each method is one file in "
             "`methods/`.", ""]
    lines += _table(["method", "family", "paper"],
                    ([f"[`{n}`](#{n})", c.family, c.citation] for n, c in known.items()))
    for name, cls in known.items():
        lines += method_page(name, cls)
    return "\n".join(lines)


def tasks_page() -> str:
    lines = ["# Tasks", "", "Generated from the task registry (`benchmark.problems.tasks`): one declaration each, "
             "on deepinv physics. Families: " + ", ".join(f"`{f}`" for f in tasks.FAMILIES) + ".", ""]
    rows = []
    for task in tasks.TASKS.values():
        physics = getattr(task.build, "__qualname__", "").split(".<locals>")[0]
        rows.append([f"`{task.name}`", task.family, task.description.replace("|", "\\|"), f"{task.noise_sigma:g}",
                     task.space.name, f"`{physics}`", _cell(dict(task.params))])
    lines += _table(["task", "family", "description", "noise σ", "space", "physics builder", "parameters"], rows)
    lines += ["## Image spaces", ""]
    from benchmark.problems import spaces

    lines += _table(["space", "what the numbers mean", "channels", "photographs (LPIPS applies)"],
                    ([f"`{s.name}`", s.description, "/".join(map(str, s.channels)), "yes" if s.photographic else "no"]
                     for s in spaces.SPACES.values()))
    return "\n".join(lines)


def metrics_page() -> str:
    lines = ["# Metrics", "", "Generated from the metric registry (`benchmark.problems.metrics`): each metric is "
             "declared once, with its direction; the harness, the store, the tables, the plots, the export and "
             "MLflow read it from there.", ""]
    rows = []
    for m in metrics.registered():
        doc = inspect.getdoc(m.fn) or ""
        rows.append([f"`{m.name}`", metrics.header(m.name), "higher" if m.higher_is_better else "lower",
                     "yes" if m.trajectory else "", "yes" if m.table else "",
                     (doc.splitlines()[0] if doc else "").replace("|", "\\|")])
    lines += _table(["metric", "label", "better", "along iterations", "table column", "definition"], rows)
    lines += ["## Costs", ""]
    lines += _table(["cost", "label", "better"], ([f"`{c.name}`", metrics.header(c.name),
                                                    "higher" if c.higher_is_better else "lower"]
                                                   for c in metrics.COSTS.values()))
    return "\n".join(lines)


def profiles_page() -> str:
    lines = ["# Profiles", "", "Generated from `benchmark/profiles/*.yaml`: what each runs and what it costs "
             "(`python -m benchmark plan --profile NAME` estimates it on your machine).", ""]
    rows = []
    for name in profiles.available():
        profile = profiles.load(name)
        rows.append([f"`{name}`", profile.budget, ", ".join(profile.tasks),
                     ", ".join(d.name for d in profile.datasets), profile.description.replace("|", "\\|")])
    lines += _table(["profile", "budget", "tasks", "datasets", "description"], rows)
    return "\n".join(lines)


def write_reference(docs: Path) -> list[Path]:
    """Write the generated reference pages under ``docs/reference``; returns their paths."""
    folder = docs / REFERENCE
    folder.mkdir(parents=True, exist_ok=True)
    pages = {"methods.md": methods_page(), "tasks.md": tasks_page(), "metrics.md": metrics_page(),
             "profiles.md": profiles_page()}
    written = []
    for file, text in pages.items():
        path = folder / file
        path.write_text(text + "\n", encoding="utf-8")
        written.append(path)
    return written
