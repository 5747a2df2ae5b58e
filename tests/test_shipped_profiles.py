"""Every profile the suite ships passes every check that runs before any work (names, values,
images each task's metrics can measure, memory), as `benchmark run --profile X` makes them."""

from __future__ import annotations

import pytest

from benchmark.run import profiles, runner
from tests.conftest import requires_shared


@requires_shared
@pytest.mark.parametrize("name", sorted(profiles.available()))
def test_a_shipped_profile_passes_the_plan_time_checks(name: str) -> None:
    cells, _, by_id, _ = runner.checked_plan(profiles.load(name))
    assert cells, f"profile {name} plans no cell"
    assert {(c.dataset, c.task, c.image_id) for c in cells} <= set(by_id)
