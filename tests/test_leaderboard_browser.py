"""The MLflow leaderboard a user browses: results logged by the benchmark's tracker, served by
``mlflow server``, ranked through its REST API and shown by its web UI in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from benchmark.results import leaderboard
from benchmark.results import statistics as stats
from reports.synthetic import TASKS, demo_frame

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
MLFLOW = Path(sys.executable).with_name("mlflow")
STARTUP_TIMEOUT_S = 120.0  # it answers /health after ~15-30 s on two busy cores

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # ~80 s on two busy cores: server start-up, logging through REST, the UI
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)"),
    pytest.mark.skipif(not MLFLOW.exists(), reason=f"needs the mlflow command next to {sys.executable}"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer /health within {STARTUP_TIMEOUT_S:.0f} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets mlflow stop its uvicorn and job-runner children; if it hangs, kill the process
    group it leads (started with its own session, so the group holds only what it spawned)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def api(url: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def results() -> pd.DataFrame:
    """The synthetic results plus a second instance of TV (as a grid would make it), a trained
    method's training-image count, and nothing else changed."""
    frame = demo_frame()
    swept = frame[frame.method == "tv"].assign(label="tv[weight=0.1]", psnr=lambda d: d.psnr - 0.5,
                                                cell_key=lambda d: d.cell_key + "-swept")
    frame = pd.concat([frame, swept], ignore_index=True)
    frame.loc[frame.method == "dncnn", "train_images"] = 400
    return frame


def populate(uri: str, artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """Log the results the way ``make benchmark`` does (a parent run and one child per
    (method instance, task, dataset), plus a training run), here through the server's REST API."""
    import mlflow.tracking._tracking_service.utils as tracking_utils

    from benchmark.api import TrainingReport
    from benchmark.results.tracking import Tracker

    # the tracker sets mlflow's process-wide URI; put it back after the test
    monkeypatch.setattr(tracking_utils, "_tracking_uri", getattr(tracking_utils, "_tracking_uri", None), raising=False)
    tracker = Tracker(uri, artifact_root=artifacts)
    frame = results()
    tracker.start(types.SimpleNamespace(name="synthetic", budget="quick", source=""), "cpu", len(frame), len(frame))
    tracker.log_training("dncnn", TASKS[0], "embedded", TrainingReport(seconds=5.0, cached=True), "synthetic")
    tracker.log_groups(frame, "synthetic")
    tracker.finish()
    return tracker.experiment_id, tracker.parent_id or ""


def read_board(page: Any, leader: str) -> tuple[list[str], list[float], list[str]]:
    """The run names, the PSNR column and the column headers of the runs table, top to bottom."""
    page.get_by_text(leader).first.wait_for(timeout=90_000)
    page.locator(f"[col-id='{leaderboard.sort_key()}']").first.wait_for(timeout=30_000)
    time.sleep(2)  # let the grid settle after the first paint
    by_index: dict[int, tuple[str, str]] = {}
    for index in sorted({int(i) for i in page.locator("[row-index]").evaluate_all(
            "rows => rows.map(r => r.getAttribute('row-index'))") if i is not None and i.lstrip("-").isdigit()}):
        row = page.locator(f"[row-index='{index}']")
        name = row.locator("a").first.inner_text().strip()
        psnr = row.locator(f"[col-id='{leaderboard.sort_key()}']").first.inner_text().strip()
        by_index[index] = (name, psnr)
    headers = [h.strip() for h in page.get_by_role("columnheader").all_inner_texts()]
    ordered = [by_index[i] for i in sorted(by_index) if i >= 0]
    return [n for n, _ in ordered], [float(p) for _, p in ordered if p], headers


def test_leaderboard_ranks_runs_in_the_mlflow_ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    cmd = [str(MLFLOW), "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--artifacts-destination", str(tmp_path / "artifacts")]
    shot = Path(os.environ.get("DIPBENCH_SCREENSHOTS") or tmp_path) / "leaderboard.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    summary = stats.summarize(results())
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    try:
        wait_healthy(url, proc, log)
        experiment_id, parent = populate(url, tmp_path / "artifacts", monkeypatch)
        boards = leaderboard.publish_latest(url, "dipbench", "synthetic")
        assert [(b.task, b.dataset) for b in boards] == [(t, "embedded") for t in sorted(TASKS)]
        task = TASKS[0]
        ranked = summary[(summary.task == task) & (summary.metric == "psnr") & (summary.status == "ok")]
        expected = ranked.sort_values("mean", ascending=False)
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 2100, "height": 560})
                page.goto(boards[0].url(url), wait_until="domcontentloaded")
                leader = f"{expected.method.iloc[0]} · {task} · embedded"
                names, psnrs, headers = read_board(page, leader)
                page.screenshot(path=str(shot))
            finally:
                browser.close()
        # flat: the method runs only (no parent, no training run), best PSNR first, as in the report
        assert names == [f"{m} · {task} · embedded" for m in expected.method], names
        assert psnrs == sorted(psnrs, reverse=True) and len(psnrs) == len(expected)
        assert psnrs[0] == pytest.approx(expected["mean"].iloc[0], abs=0.01)
        for column in ("method", "parameters", "budget", "train_images", "psnr", "ssim", "lpips", "runtime_s",
                       "train_s"):
            assert column in headers, headers
        benchmark_through_the_server(url, tmp_path, monkeypatch)
    finally:
        stop(proc)
    assert proc.returncode is not None


def benchmark_through_the_server(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`benchmark run --tracking-uri http://…`: the same driver code logs to a tracking server."""
    import dataclasses

    import mlflow.tracking._tracking_service.utils as tracking_utils

    from benchmark.run import profiles, runner

    monkeypatch.setattr(tracking_utils, "_tracking_uri", getattr(tracking_utils, "_tracking_uri", None), raising=False)
    profile = dataclasses.replace(profiles.load("smoke"), methods=["trivial", "tv"], tasks=["denoising_s25"],
                                  metrics_off=["lpips"])
    summary = runner.run_benchmark(profile, results_dir=tmp_path / "served", tracking_uri=url, progress=False)
    assert summary.ran == summary.planned == 4 and not summary.failed
    experiment = api(url, "experiments/get-by-name?experiment_name=dipbench")["experiment"]["experiment_id"]
    children = api(url, "runs/search", {"experiment_ids": [experiment],
                                        "filter": f"tags.mlflow.parentRunId = '{summary.parent_run_id}'"})["runs"]
    assert sorted(tags(r)["method"] for r in children) == ["trivial", "tv"]
    assert all(r["info"]["status"] == "FINISHED" and "psnr" in metrics(r) for r in children)


def tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def metrics(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}

