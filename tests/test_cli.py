"""The command line as a user meets it: listings, and one clear line + exit 2 for bad input,
with nothing written to the MLflow store or the results store."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["run", "--no-progress", "--no-report", "--results", str(tmp_path / "res"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}", *args])
    return code, capsys.readouterr().err


def _runs_in_store(tmp_path: Path) -> int:
    db = tmp_path / "ml.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_list_shows_every_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("trivial", "tv", "denoising_s25", "inpainting_random50", "sr_x4", "deblurring_gaussian",
                 "embedded", "set12", "bsd68", "train400", "smoke", "quick", "paper"):
        assert word in out


def test_list_describes_each_profile_for_users(capsys: pytest.CaptureFixture[str]) -> None:
    """Each profile says what a user gets and what it costs, in the user's words: no internal
    issue numbers, no promise of a time bound."""
    from benchmark.run import profiles

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in profiles.available():
        description = profiles.load(name).description
        assert description in out
        assert "issue" not in description.lower() and "<" not in description, (name, description)
    assert "About 1 h 45 min on 2 CPU cores" in profiles.load("quick_full").description  # as measured (README)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "smoke", "--methods", "nope"], r"unknown method 'nope'; valid choices: .*trivial"),
        (["--profile", "smoke", "--tasks", "denoising_s99"],
         r"unknown task 'denoising_s99'; valid choices: .*denoising_s25"),
        (["--profile", "smoke", "--datasets", "imagenet"], r"unknown dataset 'imagenet'; valid choices: .*set12"),
        (["--profile", "nonexistent"], r"unknown profile 'nonexistent'; valid choices: .*quick.*smoke"),
        (["--profile", "smoke", "--batch-size", "0"], r"--batch-size: expected an integer >= 1, got 0"),
    ],
)
def test_unknown_names_exit_2_and_write_nothing(args: list[str], message: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(args, tmp_path, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert pytest.importorskip("re").search(message, err), err
    assert _runs_in_store(tmp_path) == 0
    assert not (tmp_path / "res" / "results.sqlite").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: x\nmethods: all\ntasks: [denoising_s25]\ndatasets: [embedded]\nbogus: 1\n",
         r"unknown key 'bogus'; valid keys: .*datasets"),
        ("name: x\nmethods: all\ntasks: [denoising_s25]\n", r"missing required key 'datasets'"),
        ("name: x\nmethods: all\ntasks: [denoising_s25\n", r"malformed profile"),
        ("- just\n- a list\n", r"malformed profile .*mapping"),
        ("name: x\nmethods: [tv]\ntasks: [denoising_s25]\ndatasets: [embedded]\nmethod_params: {tv: {wieght: 1}}\n",
         r"method 'tv' has no parameter 'wieght'; valid parameters: .*weight"),
        ("name: x\nmethods: [tv]\ntasks: [denoising_s25]\ndatasets: [embedded]\nbatch_size: many\n",
         r"batch_size: expected an integer >= 1, got 'many'"),
    ],
)
def test_malformed_profile_exits_2(content: str, message: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    code, err = _run(["--profile", str(bad)], tmp_path, capsys)
    assert code == 2
    assert pytest.importorskip("re").search(message, err), err
    assert _runs_in_store(tmp_path) == 0


def test_corrupt_image_exits_2_without_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from benchmark.problems import data

    data_dir = tmp_path / "data" / "set5"
    data_dir.mkdir(parents=True)
    for name in data.manifests()["set5"].files:
        (data_dir / name).write_bytes(b"corrupt")
    monkeypatch.setenv("DIPBENCH_DATA", str(tmp_path / "data"))
    code, err = _run(["--profile", "smoke", "--methods", "trivial", "--datasets", "set5"], tmp_path, capsys)
    assert code == 2
    assert "checksum mismatch" in err and "set5" in err
    assert _runs_in_store(tmp_path) == 0


def test_module_entry_point_exits_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--profile", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown profile 'nope'")
