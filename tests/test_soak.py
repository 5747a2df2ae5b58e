"""Soak: a 200-cell benchmark SIGKILLed at 5 random (seeded) moments and resumed each time loses
no cell, computes none twice, and leaves MLflow with one FINISHED parent run and the killed
ones KILLED. The figures are printed in the terminal summary (with or without ``-s``)."""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmark.results.store import ResultsStore
from benchmark.results.tracking import EXPERIMENT

ROOT = Path(__file__).resolve().parents[1]
IMAGES, SEEDS, KILLS = 4, 50, 5
PLANNED = IMAGES * SEEDS


def _cells(db: Path) -> dict[str, float]:
    """The committed cells and when each finished, read as another process would while the
    benchmark writes (a cell computed twice would show a second finishing time)."""
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30) as conn:
            return dict(conn.execute("SELECT cell_key, finished_at FROM records").fetchall())
    except sqlite3.OperationalError:  # the store is being created
        return {}


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("DIPBENCH_SOAK"),
                    reason="a minute and a half of CPU: set DIPBENCH_SOAK=1 (test_resilience kills a run in every run)")
def test_a_benchmark_killed_five_times_loses_and_duplicates_nothing(tmp_path: Path,
                                                                     request: pytest.FixtureRequest) -> None:
    profile = tmp_path / "soak.yaml"
    profile.write_text(
        # TV (tens of ms a cell) rather than the instant trivial baseline: the watcher below must
        # see the count rise cell by cell, or a fast machine finishes before the kill
        f"name: soak\nmethods: [tv]\ntasks: [denoising_s25]\n"
        f"datasets: [{{name: embedded, crop: 32, limit: {IMAGES}}}]\nseeds: {list(range(SEEDS))}\n"
        "metrics_off: [lpips]\nsave_reconstructions: false\n")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    command = [sys.executable, "-m", "benchmark", "run", "--profile", str(profile), "--no-progress", "--no-report",
               "--results", str(tmp_path / "r"), "--tracking-uri", uri]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    db = tmp_path / "r" / "results.sqlite"
    rng = random.Random(11)
    committed: dict[str, float] = {}
    kills = recomputed = 0
    while kills < KILLS:
        # a random moment: once 1 to 20 more cells are in, plus up to 20 ms (mid-cell or mid-commit);
        # 5 kills take at most 100 of the 200 cells, so even a fast machine is still running then
        target = len(committed) + rng.randint(1, 20)
        pause = rng.uniform(0.0, 0.02)
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while len(_cells(db)) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(pause)
        assert proc.poll() is None, f"the run ended before its kill: {proc.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        now = _cells(db)
        assert set(committed) <= set(now), "a committed cell was lost"
        recomputed += sum(now[k] != t for k, t in committed.items())
        committed = now
    assert len(committed) < PLANNED, "the kills came too late to test anything"

    final = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stderr[-2000:]
    found = re.search(r"cells planned (\d+), already done (\d+), ran (\d+)", final.stdout)
    assert found, final.stdout[-2000:]
    planned, done, ran = map(int, found.groups())
    assert planned == PLANNED and done + ran == PLANNED
    frame = ResultsStore(db).frame()
    lost = PLANNED - frame.cell_key.nunique()
    after = dict(zip(frame.cell_key, frame.finished_at, strict=True))
    recomputed += sum(after[k] != t for k, t in committed.items() if k in after)
    duplicated = recomputed + (len(committed) - done) + (len(frame) - frame.cell_key.nunique())
    assert (lost, duplicated) == (0, 0) and set(frame.status) == {"ok"}

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id],
                              "tags.`dipbench.kind` = 'benchmark'")
    statuses = sorted(r.info.status for r in runs)
    assert statuses == ["FINISHED"] + ["KILLED"] * KILLS
    request.node.user_properties.append(("figures", (
        f"soak: cells planned {PLANNED}, killed {kills} times, lost {lost}, duplicated {duplicated}; "
        f"MLflow parent runs: {statuses.count('FINISHED')} FINISHED, {statuses.count('KILLED')} KILLED")))
