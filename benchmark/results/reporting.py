"""The report as a plug-in: what the command line asks of whatever turns results into a report.

The reports read results and sit above everything that makes them, so nothing under
``benchmark/`` imports them: the command line finds its reporter through the package entry
point group ``dipbench.reporters`` (the suite's ``reports`` package registers itself there in
``pyproject.toml``), the way pytest finds its plug-ins. A lab with its own report registers
another entry point and names it with ``DIPBENCH_REPORTER``.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from benchmark.core.errors import UserError

GROUP = "dipbench.reporters"
#: the reporter used when ``DIPBENCH_REPORTER`` names none
DEFAULT = "reports"


@runtime_checkable
class Reporter(Protocol):
    """The four things the command line needs from a report package (``reports`` has them)."""

    def build_report(self, frame: Any, out_dir: Path, *, title: str, recon_root: Path | None = None,
                     tuning: list[dict[str, Any]] | None = None) -> Path: ...

    def build_docs_page(self, frame: Any, out_dir: Path, *, title: str,
                        tuning: list[dict[str, Any]] | None = None) -> Path: ...

    def budget_banner(self, df: Any) -> str: ...

    def comparison_table(self, frame: Any, fmt: str = "markdown") -> str: ...


def available() -> dict[str, metadata.EntryPoint]:
    """The registered reporters by name."""
    return {ep.name: ep for ep in metadata.entry_points(group=GROUP)}


def load(name: str | None = None) -> Reporter:
    """The reporter named ``name`` (default: ``$DIPBENCH_REPORTER``, else ``reports``)."""
    wanted = name or os.environ.get("DIPBENCH_REPORTER") or DEFAULT
    found = available()
    if wanted not in found:
        known = ", ".join(sorted(found)) or "none"
        raise UserError(f"no reporter {wanted!r} is registered in the entry point group {GROUP!r} "
                        f"(registered: {known}); `make install` registers the suite's own (reports)")
    reporter = found[wanted].load()
    if not isinstance(reporter, Reporter):
        raise UserError(f"the reporter {wanted!r} ({found[wanted].value}) lacks build_report, build_docs_page, "
                        "budget_banner or comparison_table")
    return reporter
