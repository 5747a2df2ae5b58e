"""The documentation site: reference pages generated from the registries, built with mkdocs in
strict mode (a warning fails it), and opened in a browser."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import docsite, registry
from benchmark.problems import metrics, tasks
from benchmark.run import profiles

ROOT = Path(__file__).resolve().parents[1]


def test_the_methods_reference_lists_every_method_with_its_citation(tmp_path: Path) -> None:
    pages = {p.name: p.read_text() for p in docsite.write_reference(tmp_path)}
    methods = pages["methods.md"]
    for name, cls in registry.available().items():
        assert f"## `{name}`" in methods and cls.citation in methods
        assert "**Runs on**" in methods
    assert all(f"`{name}`" in pages["tasks.md"] for name in tasks.TASKS)
    assert all(f"`{m.name}`" in pages["metrics.md"] for m in metrics.registered())
    assert all(f"`{name}`" in pages["profiles.md"] for name in profiles.available())


def test_a_method_s_page_gives_its_settings_per_budget_and_task() -> None:
    page = "\n".join(docsite.method_page("dip", registry.get("dip")))
    assert "| parameter | paper | test | quick |" in page
    assert "`iterations`" in page and "`denoising`" in page  # a per-task setting
    assert "Tunable" in page and "notebook" in page  # the tunables and the docstring's sources


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built from a copy of docs/ with freshly generated reference pages (strict)."""
    work = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "docs", work / "docs")
    shutil.copy(ROOT / "mkdocs.yml", work / "mkdocs.yml")
    docsite.write_reference(work / "docs")
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run([str(mkdocs), "build", "--strict", "--quiet", "--site-dir", str(work / "site")],
                          cwd=work, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT),
                                                                         "PATH": str(mkdocs.parent)})
    assert done.returncode == 0, done.stdout + done.stderr
    return work / "site"


def test_the_site_builds_without_a_warning(site: Path) -> None:
    assert (site / "index.html").is_file()
    methods = (site / "reference" / "methods" / "index.html").read_text()
    assert "Deep Image Prior" in methods and "Ulyanov" in methods
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "reconstruct" in api and "budgets" in api  # mkdocstrings rendered the contract


@pytest.mark.browser
def test_the_site_opens_in_a_browser(site: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("no chromium on this machine (.ci/run installs it)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto((site / "index.html").as_uri())
        assert "dipbench" in page.title()
        page.goto((site / "reference" / "methods" / "index.html").as_uri())
        assert page.locator("h2#dip").count() == 1
        page.goto((site / "tutorials" / "method" / "index.html").as_uri())
        assert "budgets" in page.content()
        browser.close()
