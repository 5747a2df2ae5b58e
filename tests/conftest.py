"""Test configuration: point at the shared data beside the checkout, isolate caches, seed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from benchmark.api import TrainingContext

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

os.environ.setdefault("DIPBENCH_DATA", str(SHARED / "datasets"))
os.environ.setdefault("DIPBENCH_WEIGHTS", str(SHARED / "weights"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TQDM_DISABLE", "1")

# Under pytest-xdist (`make test PYTEST_ARGS="-n 2"`, as CI runs it) the workers share the cores:
# each torch (and each command a test starts) gets its share of them, so no worker's threads wait
# on another's.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(_share)
    torch.set_num_threads(_share)

# Speed benchmarks run only under `make perf`, never as part of the unit tests.
collect_ignore_glob = [] if os.environ.get("DIPBENCH_PERF") else ["perf/*"]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    if "DIPBENCH_CACHE" not in os.environ:
        os.environ["DIPBENCH_CACHE"] = str(tmp_path_factory.mktemp("dipbench-cache"))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """For tests of tiny nets: they gain nothing from threads, and on a busy machine extra
    threads only wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shared_data_available() -> bool:
    return (Path(os.environ["DIPBENCH_DATA"]) / "set12").is_dir()


requires_shared = pytest.mark.skipif(not shared_data_available(), reason="needs ../shared/datasets (DIPBENCH_DATA)")


def cpu_bar(variable: str, cost: str) -> list[pytest.MarkDecorator]:
    """The marks of an opt-in bar measured on this CPU (``tests/perf``): the shared data, one
    thread, three hours at most, and run only when ``variable`` is set (it costs ``cost``)."""
    return [pytest.mark.perf, requires_shared,
            pytest.mark.skipif(not os.environ.get(variable), reason=f"{cost} of CPU: set {variable}=1"),
            pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(3 * 3600)]


def published_bar() -> pytest.MarkDecorator:
    """The mark of a published figure on a whole test set that costs minutes on 2 cores: run when
    ``DIPBENCH_PUBLISHED_BARS`` is set (CI runs one level of each published method instead)."""
    return pytest.mark.skipif(not os.environ.get("DIPBENCH_PUBLISHED_BARS"),
                              reason="minutes of CPU: set DIPBENCH_PUBLISHED_BARS=1")


def colour_training_context(task_name: str, cache: Path) -> TrainingContext:
    """Four 96² crops of cbsd432 as the harness hands a colour training set to a trained method
    (seed 0, CPU, colour test images): the small colour case of the U-Net and DPS tests."""
    from benchmark.api import TrainingContext
    from benchmark.problems import data, tasks  # imported when used: the environment above is set first
    train = [img.tensor for img in data.load("cbsd432", split="train", crop=96, limit=4)]
    return TrainingContext(images=train, dataset="cbsd432", task=tasks.get(task_name), cache_dir=cache, seed=0,
                           device=torch.device("cpu"), progress=False, channels=3)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Figures a test measured (``user_properties`` named "figures", e.g. the soak test's), shown
    in the summary whether or not output is captured."""
    lines = [str(value) for report in terminalreporter.stats.get("passed", [])
             for name, value in getattr(report, "user_properties", []) if name == "figures"]
    if lines:
        terminalreporter.section("figures")
        for line in lines:
            terminalreporter.write_line(line)
