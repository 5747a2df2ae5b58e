"""The results store across releases and accidents: a store from the first release is migrated
(its rows kept, its cells recomputed under today's protocol); a corrupt, truncated or newer store
is reported and left as it is; a read-only folder or a full disk stops the run with a clear error
and keeps every committed cell."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import reports
from benchmark import cli
from benchmark.results import store as store_module
from benchmark.results.store import SCHEMA_VERSION, Record, ResultsStore, StoreError
from benchmark.run import profiles, runner

ROOT = Path(__file__).resolve().parents[1]
#: written by commit acd20ae (schema 1, no user_version): smoke profile, trivial and tv, 8 cells
FIXTURE_V1 = ROOT / "tests" / "fixtures" / "store_v1.sqlite"


def _v1_rows() -> list[tuple]:  # type: ignore[type-arg]
    with sqlite3.connect(f"{FIXTURE_V1.as_uri()}?mode=ro&immutable=1", uri=True) as conn:  # creates no -wal
        return conn.execute("SELECT cell_key, method, task, psnr, ssim, lpips, trajectory FROM records").fetchall()


def _copy_fixture(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE_V1, folder / "results.sqlite")
    return folder / "results.sqlite"


def test_a_first_release_store_is_migrated_with_its_values(tmp_path: Path) -> None:
    db = _copy_fixture(tmp_path)
    frame = ResultsStore(db).frame().set_index("cell_key")
    old = _v1_rows()
    assert len(old) == len(frame) == 8
    for key, _method, _task, psnr, ssim, lpips, trajectory in old:
        assert (frame.loc[key, "psnr"], frame.loc[key, "ssim"], frame.loc[key, "lpips"]) == (psnr, ssim, lpips)
        points = frame.loc[key, "trajectory"]
        assert [[p["step"], p["psnr"], p["ssim"]] for p in points] == json.loads(trajectory)
    assert sum(len(t) > 0 for t in frame.trajectory) == 4  # tv's cells
    for _ in range(2):  # opening a migrated store again changes nothing
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 8 * 3
        ResultsStore(db)


@pytest.mark.slow
def test_a_first_release_store_is_recomputed_under_todays_protocol_and_keeps_its_rows(tmp_path: Path) -> None:
    """Its cells were measured under an older protocol (noise and masks drawn otherwise), so the
    same profile today recomputes them instead of reusing them; the old rows stay in the store
    (their numbers still make tables) and today's tables read only today's cells."""
    _copy_fixture(tmp_path / "r")
    profile = dataclasses.replace(profiles.load("smoke"), methods=["trivial", "tv"], metrics_off=["lpips"])
    summary = runner.run_benchmark(profile, results_dir=tmp_path / "r", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                                   progress=False)
    assert (summary.planned, summary.already_done, summary.ran) == (8, 0, 8)
    store = ResultsStore(tmp_path / "r" / "results.sqlite")
    old_keys = [key for key, *_ in _v1_rows()]
    assert len(store.frame()) == 16 and not set(old_keys) & set(summary.keys)
    assert len(store.frame(summary.keys)) == 8
    table = reports.comparison_table(store.frame(old_keys))
    assert "LPIPS" in table and "PSNR [dB]" in table
    for task in ("denoising_s25", "inpainting_random50"):
        values = [psnr for _, method, t, psnr, *_ in _v1_rows() if (method, t) == ("tv", task)]
        assert len(values) == 2 and f"**{sum(values) / 2:.2f} ±" in table  # tv is the better of the two


def _exit_code(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(args)
    return code, capsys.readouterr().err


def _run_args(results: Path, tmp_path: Path) -> list[str]:
    return ["run", "--profile", "smoke", "--methods", "trivial", "--tasks", "denoising_s25", "--no-progress",
            "--no-report", "--results", str(results), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "header_only"])
def test_a_damaged_store_is_reported_and_left_as_it_is(damage: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    db = _copy_fixture(tmp_path / "r")
    payload = FIXTURE_V1.read_bytes()
    payload = {"garbage": b"this is not a database" * 100, "truncated": payload[: len(payload) // 2],
               "header_only": payload[:100]}[damage]
    db.write_bytes(payload)
    code, err = _exit_code(_run_args(tmp_path / "r", tmp_path), capsys)
    assert code == 2 and "corrupt or truncated" in err and str(db) in err
    assert db.read_bytes() == payload, "a damaged store must never be replaced"
    assert not (tmp_path / "m.db").exists(), "nothing may be written to MLflow"
    for args in (["report", "--results", str(tmp_path / "r")],
                 ["export", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "x")]):
        code, err = _exit_code(args, capsys)
        assert code == 2 and "corrupt or truncated" in err
    assert db.read_bytes() == payload


def test_a_store_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite"
    ResultsStore(db)
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}, written by a newer dipbench"):
        ResultsStore(db)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A results folder holding a migrated store, then made read-only: by permissions, or (root
    ignores them) by the immutable attribute."""
    folder = tmp_path / "ro"
    db = _copy_fixture(folder)
    ResultsStore(db)
    paths = [db, folder]
    if os.geteuid() != 0:
        db.chmod(0o444)
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        db.chmod(0o644)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", *map(str, paths)],
                                                         capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr +i: cannot make a folder read-only")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


def test_a_read_only_results_folder_is_a_clear_error_and_still_readable(
        read_only: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = read_only / "results.sqlite"
    before = db.read_bytes()
    code, err = _exit_code(_run_args(read_only, tmp_path), capsys)
    assert code == 2 and "read-only" in err and str(db) in err
    assert db.read_bytes() == before
    frame = ResultsStore.open_existing(db).frame()  # reports and exports still read it
    assert len(frame) == 8 and frame.psnr.notna().all()
    code, _ = _exit_code(["export", "--results", str(read_only), "--out", str(tmp_path / "x")], capsys)
    assert code == 0 and (tmp_path / "x" / "results.csv").is_file()


FULL_DISK = textwrap.dedent("""
    import resource, sys
    from benchmark import cli
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.exit(cli.main(sys.argv[2:]))
""")


@pytest.mark.slow
def test_a_full_disk_stops_the_run_and_keeps_every_committed_cell(tmp_path: Path) -> None:
    """A file-size limit (RLIMIT_FSIZE) a little above MLflow's database stands for a disk that
    fills up: the store's write-ahead log outgrows it part-way through the run."""
    profile = tmp_path / "many.yaml"
    profile.write_text("name: many\nmethods: [trivial]\ntasks: [denoising_s25]\n"
                       "datasets: [{name: embedded, crop: 16, limit: 4}]\nseeds: [" +
                       ", ".join(str(s) for s in range(25)) + "]\nmetrics_off: [lpips]\nsave_reconstructions: false\n")
    args = ["run", "--profile", str(profile), "--no-progress", "--no-report", "--results", str(tmp_path / "r"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    planned = 4 * 25
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    warm = subprocess.run([sys.executable, "-m", "benchmark", *args, "--seeds", "0", "--limit", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert warm.returncode == 0, warm.stderr
    db = tmp_path / "r" / "results.sqlite"
    with sqlite3.connect(tmp_path / "m.db") as conn:  # MLflow's database, compact, under the limit
        conn.execute("VACUUM")
    limit = (tmp_path / "m.db").stat().st_size + 64 * 1024
    # a reader (a report, say) holds a snapshot, so the write-ahead log grows by every commit
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM records").fetchone()
    limited = subprocess.run([sys.executable, "-c", FULL_DISK, str(limit), *args], cwd=ROOT,
                             capture_output=True, text=True, timeout=300, env=env)
    reader.close()
    assert limited.returncode == 2, limited.stderr[-2000:]
    assert "disk full" in limited.stderr and "Every cell committed before is kept" in limited.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = ResultsStore(db).frame()
    assert 1 < len(kept) < planned and kept.cell_key.is_unique and kept.psnr.notna().all()
    resumed = subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"cells planned {planned}, already done {len(kept)}, ran {planned - len(kept)}" in resumed.stdout
    final = ResultsStore(db).frame()
    assert len(final) == planned and final.cell_key.is_unique


def _open_and_write(path: str, start: Any, number: int) -> str | None:
    start.wait()
    try:
        store = ResultsStore(Path(path))
        store.put(dataclasses.replace(_a_record(), cell_key=f"cell{number}"))
    except StoreError as exc:
        return str(exc)
    return None


def _a_record() -> Record:
    return Record(cell_key="cell", method="trivial", task="denoising_s25", dataset="embedded", image_id="a", seed=0,
                  metrics={"psnr": 20.0})


def test_processes_opening_a_new_store_at_once_all_write_to_it(tmp_path: Path) -> None:
    """Two processes switching a new store to WAL race in a way SQLite's busy timeout does not
    cover (it answered "database is locked" at once in 9 of 40 such trials before the retry)."""
    context = multiprocessing.get_context("fork")
    processes = 6
    with context.Manager() as manager, context.Pool(processes) as pool:
        for trial in range(25):
            path = tmp_path / str(trial) / "results.sqlite"
            start = manager.Barrier(processes)
            errors = pool.starmap(_open_and_write, [(str(path), start, n) for n in range(processes)])
            assert errors == [None] * processes, trial
            assert len(ResultsStore(path).frame()) == processes


def test_a_lock_held_past_the_wait_is_reported_as_a_lock_not_as_damage(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.sqlite"
    ResultsStore(path)
    monkeypatch.setattr(store_module, "BUSY_WAIT_S", 0.3)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")  # a rollback journal: an exclusive lock blocks readers too
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            ResultsStore(path)  # would switch the store back to WAL
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_step_is_retried_only_while_the_store_is_locked(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results.sqlite")
    answers = iter([sqlite3.OperationalError("database is locked"), sqlite3.OperationalError("database is busy"), 7])

    def step() -> int:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert store._patiently(step) == 7
    calls = []

    def broken() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("no such table: records")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        store._patiently(broken)
    assert len(calls) == 1
