"""MLflow tracking, derived from the per-image results table.

One parent run per invocation (git commit, profile, its budget, device, package versions); one
child run per (method, task, dataset) with its parameters, mean metrics and 95% intervals over
images, the per-image table as an artifact, DIP trajectories as stepped metrics, and tags to
filter by (the budget among them). Only the driver
writes here. The default store is SQLite (``sqlite:///mlruns.db``); ``MLFLOW_TRACKING_URI``
overrides it.
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import mlflow
import numpy as np
import pandas as pd
import sqlalchemy.exc
from mlflow.entities import Metric, RunStatus
from mlflow.tracking import MlflowClient

from benchmark.api import TrainingReport
from benchmark.core.errors import UserError
from benchmark.problems import metrics as registry
from benchmark.problems.data import cache_root
from benchmark.results.inference import cluster_bootstrap_ci
from benchmark.results.leaderboard import EXPERIMENT_KIND

T = TypeVar("T")
EXPERIMENT = "dipbench"
DEFAULT_URI = "sqlite:///mlruns.db"

def summary_metrics() -> list[str]:
    """What a child run reports (mean and 95% interval): every registered metric, every cost,
    then the early-stopping figures."""
    return [m.name for m in registry.registered()] + list(registry.COSTS) + list(registry.SUMMARIES)


def tracking_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parents[2])
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in ("torch", "deepinv", "mlflow", "numpy", "lpips", "scikit-image"):
        try:
            out[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[f"version.{name}"] = "absent"
    return out


def _experiment_id(client: MlflowClient, artifact_root: Path | None) -> str:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root else None
    # the classic (model training) runs table in MLflow 3's UI, not its GenAI views
    return client.create_experiment(EXPERIMENT, artifact_location=location, tags=dict([EXPERIMENT_KIND]))


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///"):] or "mlruns.db") if uri.startswith("sqlite:///") else None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise writers of one SQLite store across processes (MLflow's first-use migration
    and concurrent writes are not safe on their own); other stores need no lock."""
    path = _sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def empty_store_template() -> Path:
    """An empty SQLite store migrated by this MLflow version, made once per machine and cached.

    MLflow builds a new store by running its ~70 schema migrations (about 9 s on a 2-core CPU:
    most of a small run's tracking cost, and paid by every test that opens a fresh store); a
    copy of a store it has just built is the same file, less its "Default" experiment, whose
    artifact folder and time MLflow sets from where and when it opens the copy (it recreates
    a missing one). ``make install`` makes it.
    """
    folder = cache_root() / "mlflow"
    template = folder / f"empty-store-mlflow-{mlflow.__version__}-sqlalchemy-{sqlalchemy.__version__}.db"
    if template.exists():
        return template
    folder.mkdir(parents=True, exist_ok=True)
    with store_lock(f"sqlite:///{template}"):
        if not template.exists():
            with tempfile.TemporaryDirectory(dir=folder) as scratch:
                built = Path(scratch) / "store.db"
                MlflowClient(f"sqlite:///{built}").search_experiments()
                with closing(sqlite3.connect(built)) as db, db:
                    db.execute("DELETE FROM experiments WHERE experiment_id = 0 AND name = 'Default'")
                os.replace(built, template)
    return template


def _start_from_template(uri: str) -> None:
    """A store that does not exist yet starts as a copy of the migrated empty one."""
    path = _sqlite_path(uri)
    if path is None or (path.exists() and path.stat().st_size > 0):
        return
    template = empty_store_template()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp{os.getpid()}")
    shutil.copyfile(template, partial)
    os.replace(partial, path)


class TrackingWriteError(UserError):
    """MLflow's store could not be written (a full disk, a read-only folder): said in one line."""


def _storage_failure(exc: BaseException) -> BaseException | None:
    """The OS or database error under an MLflow exception, when storage is what failed."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (OSError, sqlalchemy.exc.OperationalError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextmanager
def _writing(uri: str) -> Iterator[None]:
    try:
        with store_lock(uri):
            yield
    except Exception as exc:
        cause = _storage_failure(exc)
        if cause is None:
            raise
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise TrackingWriteError(f"cannot write the MLflow store {uri} ({first}): is the disk full or the folder "
                                 "read-only? The results store keeps every finished cell; fix it and rerun") from exc


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self: Tracker, *args: Any, **kwargs: Any) -> T:
        with _writing(self.uri):
            return method(self, *args, **kwargs)

    return wrapper


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Tracker:
    """Opens the parent run at start, closes it with the right status, logs children from the table."""

    def __init__(self, uri: str | None = None, artifact_root: Path | None = None) -> None:
        self.uri = tracking_uri(uri)
        mlflow.set_tracking_uri(self.uri)
        with _writing(self.uri):
            _start_from_template(self.uri)
            self.client = MlflowClient(self.uri)
            self.experiment_id = _experiment_id(self.client, artifact_root)
        self.parent_id: str | None = None

    @_locked
    def close_orphans(self) -> int:
        """Mark runs left RUNNING by a killed invocation on this host as KILLED (none stays open)."""
        host = socket.gethostname()
        runs = self.client.search_runs([self.experiment_id], "attributes.status = 'RUNNING'", max_results=1000)
        closed = 0
        for run in runs:
            tags = run.data.tags
            pid = int(tags.get("dipbench.pid", "0") or 0)
            if tags.get("dipbench.host") == host and pid and pid != os.getpid() and not _pid_alive(pid):
                self.client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.KILLED))
                closed += 1
        return closed

    @_locked
    def start(self, profile: Any, device: str, plan_size: int, todo: int) -> str:
        tags = {
            "dipbench.kind": "benchmark", "profile": profile.name, "budget": profile.budget, "device": device,
            "git_commit": git_commit(), "dipbench.host": socket.gethostname(), "dipbench.pid": str(os.getpid()),
            **package_versions(),
        }
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{profile.name}")
        self.parent_id = run.info.run_id
        self.client.log_param(self.parent_id, "profile", profile.name)
        self.client.log_param(self.parent_id, "cells_planned", plan_size)
        self.client.log_param(self.parent_id, "cells_to_run", todo)
        if profile.source and Path(profile.source).exists():
            self.client.log_artifact(self.parent_id, profile.source)
        return self.parent_id

    @_locked
    def log_batch_choices(self, choices: list[dict[str, Any]]) -> None:
        """The batch size each (method, task, shape) runs at and the per-image rates measured for
        it (``benchmark.run.calibration``), on the parent run: one param per group plus the JSON."""
        if not self.parent_id or not choices:
            return
        params = []
        for choice in choices:
            shape = "x".join(str(s) for s in choice["shape"])
            name = f"batch_size.{choice['method']}.{choice['task']}.{shape}"
            params.append(mlflow.entities.Param("".join(c if c.isalnum() or c in "._-/" else "_" for c in name)[:250],
                                                str(choice["batch_size"])))
        unique = {p.key: p for p in params}
        self.client.log_batch(self.parent_id, params=list(unique.values()))
        self.client.log_dict(self.parent_id, {"groups": choices}, "batch_calibration.json")

    @_locked
    def finish(self, status: str = "FINISHED") -> None:
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status=status)

    @_locked
    def log_training(self, method: str, task: str, dataset: str, report: TrainingReport, profile: str) -> None:
        """One run per trained (method, task): training time and the loss curve, under the parent.

        ``train_s`` is what the suite's weights cost to train, also when a cached checkpoint was
        reused (its recorded time; the ``cached`` tag says it was not spent in this run); for
        released weights (DnCNN, DiffUNet) it is the time to fetch and load them."""
        tags = {"mlflow.parentRunId": self.parent_id or "", "dipbench.kind": "training", "method": method,
                "task": task, "dataset": dataset, "profile": profile}
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"train {method} {task}")
        rid = run.info.run_id
        metrics = [Metric("train_s", report.seconds, 0, 0)]
        metrics += [Metric("train_loss", float(v), 0, i) for i, v in enumerate(report.losses)]
        for start in range(0, len(metrics), 900):
            self.client.log_batch(rid, metrics=metrics[start:start + 900])
        self.client.set_tag(rid, "cached", str(report.cached))
        self.client.set_terminated(rid)

    @_locked
    def log_tuning(self, profile: str, records: list[dict[str, Any]], path: Path | None = None) -> list[str]:
        """One run per tune record (kind "tune"): the chosen values as parameters, every grid
        point's validation PSNR as a stepped metric (step = its index in the record), the tuned
        file as an artifact; under the benchmark's parent run when one is open (the values it used)."""
        run_ids = []
        for rec in records:
            tags = {"dipbench.kind": "tune", "method": rec["method"], "profile": profile, "scope": rec["scope"],
                    "applies_to": str(rec["applies_to"]), "tasks": ",".join(rec["tasks"]),
                    "validation": json.dumps(rec["validation"])[:5000], "tuned_at_commit": str(rec.get("commit", "")),
                    "tuned_on": str(rec.get("date", ""))}
            if self.parent_id:
                tags["mlflow.parentRunId"] = self.parent_id
            run = self.client.create_run(self.experiment_id, tags=tags,
                                         run_name=f"tune {rec['method']} · {rec['applies_to']}")
            rid = run.info.run_id
            params = [mlflow.entities.Param(f"chosen.{k}", json.dumps(v)) for k, v in rec["chosen"].items()]
            params.append(mlflow.entities.Param("grid", json.dumps(rec["grid"])[:6000]))
            name, sign = str(rec["metric"]), 1.0 if registry.higher_is_better(str(rec["metric"])) else -1.0
            metrics = [Metric(f"validation_{name}", float(p["value"]), 0, i) for i, p in enumerate(rec["scores"])]
            best = max(rec["scores"], key=lambda p: sign * float(p["value"]))
            metrics.append(Metric(f"chosen_validation_{name}", float(best["value"]), 0, 0))
            for start in range(0, len(metrics), 900):
                self.client.log_batch(rid, params=params if start == 0 else [], metrics=metrics[start:start + 900])
            self.client.log_dict(rid, rec, "tune_record.json")
            if path is not None and path.is_file():
                self.client.log_artifact(rid, str(path))
            self.client.set_terminated(rid)
            run_ids.append(rid)
        return run_ids

    @_locked
    def log_groups(self, frame: pd.DataFrame, profile: str, recon_root: Path | None = None) -> list[str]:
        """One child run per (method, task, dataset) of the per-image table, with its
        reconstructions (PNG) as artifacts when ``recon_root`` holds them."""
        run_ids = []
        from benchmark.results.statistics import instance_labels

        frame = frame.assign(label=instance_labels(frame))
        for (label, task, dataset), rows in frame.groupby(["label", "task", "dataset"], sort=True):
            run_ids.append(self._log_group(label, task, dataset, rows, profile, recon_root))
        return run_ids

    @_locked
    def log_dict(self, name: str, payload: dict[str, Any]) -> None:
        """A JSON artifact on the parent run (e.g. the images' provenance)."""
        if self.parent_id:
            self.client.log_dict(self.parent_id, payload, name)

    @_locked
    def log_report(self, report_dir: Path) -> None:
        """The HTML report, its tables and figures, on the parent run."""
        if self.parent_id and report_dir.is_dir():
            self.client.log_artifacts(self.parent_id, str(report_dir), artifact_path="report")

    def _log_group(self, label: str, task: str, dataset: str, rows: pd.DataFrame, profile: str,
                   recon_root: Path | None = None) -> str:
        ok = rows[rows.status == "ok"]
        method = str(rows.method.iloc[0])
        # ``parameters``: what makes this instance differ from the method's defaults (its label's)
        tags = {"mlflow.parentRunId": self.parent_id or "", "dipbench.kind": "result", "method": method,
                "label": label, "parameters": label[len(method):].strip("[]"), "task": task, "dataset": dataset,
                "profile": profile, "family": str(rows.family.iloc[0]), "budget": _budget_tag(rows)}
        skipped = rows[rows.status == "skipped"]
        if len(skipped):
            tags["skip_reason"] = str(skipped.error.iloc[0])[:500]
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{label} · {task} · {dataset}")
        rid = run.info.run_id
        params = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in rows.params.iloc[0].items()}
        params["method"] = method
        self.client.log_batch(rid, params=[mlflow.entities.Param(k, str(v)[:6000]) for k, v in params.items()])
        batch = [Metric("n_images", float(ok["image_id"].nunique()), 0, 0), Metric("n_runs", float(len(ok)), 0, 0),
                 Metric("n_failed", float((rows.status == "failed").sum()), 0, 0)]
        if "train_images" in ok and ok["train_images"].notna().any():
            batch.append(Metric("train_images", float(ok["train_images"].max()), 0, 0))
        for name in summary_metrics():
            if name in ok and ok[name].notna().any():
                mean, low, high = _interval(ok, name)
                batch += [Metric(name, mean, 0, 0), Metric(f"{name}_ci95_low", low, 0, 0),
                          Metric(f"{name}_ci95_high", high, 0, 0)]
        batch += self._trajectory_metrics(ok)
        for start in range(0, len(batch), 900):
            self.client.log_batch(rid, metrics=batch[start:start + 900])
        # One upload per group (the table and its reconstructions together), not one per file.
        with tempfile.TemporaryDirectory() as tmp:
            rows.drop(columns=["trajectory"]).to_csv(Path(tmp) / "per_image.csv", index=False)
            for rel in rows.recon_path:
                if recon_root is not None and rel and (recon_root / rel).is_file():
                    (Path(tmp) / "reconstructions").mkdir(exist_ok=True)
                    shutil.copyfile(recon_root / rel, Path(tmp) / "reconstructions" / Path(rel).name)
            self.client.log_artifacts(rid, tmp)
        self.client.set_terminated(rid)
        return rid

    @staticmethod
    def _trajectory_metrics(ok: pd.DataFrame) -> list[Metric]:
        """The mean of every trajectory metric along the iterations (``trajectory_<metric>``), plus
        each image's curve of the primary metric, as stepped metrics."""
        primary = registry.primary().name
        out: list[Metric] = []
        by_step: dict[tuple[str, int], list[float]] = {}
        for _, row in ok.iterrows():
            for point in row.trajectory or []:
                step = int(point["step"])
                for name, value in point.items():
                    if name != "step" and value is not None:
                        by_step.setdefault((name, step), []).append(float(value))
                if primary in point:
                    out.append(Metric(f"trajectory_{primary}.{row.image_id}.seed{row.seed}", float(point[primary]), 0,
                                      step))
        for (name, step), values in sorted(by_step.items()):
            out.append(Metric(f"trajectory_{name}", float(np.mean(values)), 0, step))
        return out


def _budget_tag(rows: pd.DataFrame) -> str:
    """The profile budget(s) the rows ran under ("" in stores written before it was recorded)."""
    found = sorted({str(b) for b in rows.get("run_budget", pd.Series(dtype=str)).dropna() if b})
    return ", ".join(found)


def _interval(rows: pd.DataFrame, metric: str) -> tuple[float, float, float]:
    """The interval the report tables show: over images, an image's seeds averaged first
    (``benchmark.results.inference``)."""
    ordered = rows.sort_values(["image_id", "seed"])
    return cluster_bootstrap_ci(ordered[metric].astype(float).to_numpy(), ordered["image_id"].astype(str))
