"""The architecture's layers: every import points downward, and no module imports itself back.

From the bottom: ``benchmark.core`` (errors, seeding, memory, keys) → ``benchmark.problems``
(tasks, spaces, metrics, data) → the method contract (``benchmark.api``, ``benchmark.registry``)
→ ``methods`` → ``benchmark.results`` (records, store, statistics, export, tracking) →
``benchmark.run`` (profiles, plan, harness, executors, tuning, the driver) → the command line
(``benchmark.cli``, ``benchmark.__main__``, ``benchmark.gpu_check``) → ``reports`` on top: nothing
under ``benchmark/`` imports the reports, the command line finds them as a plug-in (the entry
point group ``dipbench.reporters``, ``benchmark.results.reporting``).
Every import counts, also those inside functions or under ``TYPE_CHECKING``: a late import is
still a dependency. The reports read results and never run anything: they may not import
``benchmark.run`` or ``methods`` either. Method plug-ins are found by package name
(``registry.PLUGIN_PACKAGES``), not imported by the contract.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "methods", "reports")
#: (prefix, layer): the longest matching prefix wins
LAYERS = (
    ("benchmark.core", 0),
    ("benchmark.problems", 1),
    ("benchmark.api", 2),
    ("benchmark.registry", 2),
    ("methods", 3),
    ("benchmark.results", 4),
    ("benchmark.run", 5),
    ("benchmark", 6),  # the package itself, the CLI, the GPU check
    ("reports", 7),
)
#: what a layer may not import although it lies below (the reports only read results)
FORBIDDEN = {"reports": ("benchmark.run", "methods", "benchmark.cli", "benchmark.gpu_check", "benchmark.docsite")}


def layer_of(module: str) -> int:
    matches = [(len(prefix), layer) for prefix, layer in LAYERS
               if module == prefix or module.startswith(prefix + ".")]
    return max(matches)[1]


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = modules()


def imports_of(name: str) -> set[str]:
    path = MODULES[name]
    return imports_in(path.read_text(encoding="utf-8"), name, is_package=path.name == "__init__.py")


def imports_in(source: str, name: str, *, is_package: bool = False) -> set[str]:
    """The project modules the module ``name`` of ``source`` imports (``from a import b`` names
    ``a.b`` when that is a module)."""
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t.split(".")[0] in PACKAGES and t in MODULES and t != name)
    return out


GRAPH = {name: imports_of(name) for name in MODULES}


def test_the_layers_cover_every_module() -> None:
    assert {"benchmark.core.errors", "benchmark.problems.tasks", "benchmark.api", "methods.dip",
            "benchmark.results.store", "benchmark.run.harness", "reports", "benchmark.cli"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_downward(name: str) -> None:
    here = layer_of(name)
    upward = sorted(t for t in GRAPH[name] if layer_of(t) > here)
    assert not upward, f"{name} (layer {here}) imports a higher layer: {upward}"
    forbidden = next((banned for prefix, banned in FORBIDDEN.items()
                      if name == prefix or name.startswith(prefix + ".")), ())
    reaching = sorted(t for t in GRAPH[name] for b in forbidden if t == b or t.startswith(b + "."))
    assert not reaching, f"{name} may not import {reaching}"


def test_nothing_under_benchmark_imports_the_reports() -> None:
    importers = sorted(n for n, targets in GRAPH.items() if n.split(".")[0] in ("benchmark", "methods")
                       and any(t == "reports" or t.startswith("reports.") for t in targets))
    assert not importers


def test_the_command_line_finds_the_reports_as_its_plug_in() -> None:
    import reports
    from benchmark.results import reporting

    assert "reports" in reporting.available()
    assert reporting.load() is reports


def test_an_unknown_reporter_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.core.errors import UserError
    from benchmark.results import reporting

    monkeypatch.setenv("DIPBENCH_REPORTER", "no_such_reporter")
    with pytest.raises(UserError, match="no reporter 'no_such_reporter'.*registered: .*reports"):
        reporting.load()


def test_no_import_cycle() -> None:
    """Between modules (a package's ``__init__`` importing its own modules is not a cycle)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def edges(name: str) -> list[str]:
        return [t for t in GRAPH[name] if not name.startswith(t + ".") and not t.startswith(name + ".")]

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in edges(name):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_a_planted_upward_import_is_caught() -> None:
    """The check itself: a late import of the harness in a problems module, or of the store in
    the core, is found (relative imports too)."""
    source = "def f():\n    from benchmark.run import harness\n    from ..results.store import ResultsStore\n"
    found = imports_in(source, "benchmark.problems.tasks")
    assert found == {"benchmark.run.harness", "benchmark.results.store"}
    assert all(layer_of(t) > layer_of("benchmark.problems.tasks") for t in found)
    assert layer_of("benchmark.registry") < layer_of("methods.dip") < layer_of("benchmark.run.plan")
