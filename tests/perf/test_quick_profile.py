"""The quick profile's wall time, as a new user gets it: `make benchmark` in a fresh clone (its
own .venv, empty dataset/checkpoint cache, training included), then again with warm caches
(venv and trained checkpoints reused, results cleared). Measures the committed tree (HEAD).

The longest of `make perf` (about 15 minutes on 2 cores); skip it with
`make perf PYTEST_ARGS="-k 'not quick_profile'"`. Printed, never asserted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.perf

ROOT = Path(__file__).resolve().parents[2]


def _make_benchmark(clone: Path, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(["make", "benchmark"], cwd=clone, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return time.perf_counter() - start, done.stdout


def test_quick_profile_wall_time(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {**os.environ, "DIPBENCH_CACHE": str(tmp_path / "cache"), "MLFLOW_TRACKING_URI": "",
           "DIPBENCH_RESULTS": str(tmp_path / "results")}
    env.pop("DIPBENCH_PERF", None)
    env.pop("MLFLOW_TRACKING_URI")
    fresh, fresh_out = _make_benchmark(clone, env)
    shutil.rmtree(tmp_path / "results")
    (clone / "mlruns.db").unlink()
    warm, warm_out = _make_benchmark(clone, env)
    split = [re.search(r"time: .*", out) for out in (fresh_out, warm_out)]
    with capsys.disabled():
        print(f"\nquick profile, `make benchmark`: fresh clone {fresh / 60:.1f} min (install and training "
              f"included), warm caches {warm / 60:.1f} min")
        for label, found in zip(("fresh", "warm"), split, strict=True):
            print(f"  {label}: {found.group(0) if found else '(no time split printed)'}")
