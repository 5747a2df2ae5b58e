"""The leaderboard: one MLflow page per (task, dataset) of a benchmark run, ranked by PSNR.

MLflow's experiment page reads its whole view (search filter, sort order, visible columns) from
a saved view: an experiment tag ``mlflow.sharedViewState.<key>`` that the page loads when the
URL says ``?viewStateShareKey=<key>`` (MLflow 3's "share view" feature). The suite writes one
saved view per (task, dataset) of the latest run of a profile: its method runs only (no parent,
no training runs), shown flat in the classic (model training) view, with the method, its
parameters, the budget it ran under, training images, PSNR, SSIM, LPIPS, runtime and training
time as columns, best PSNR first; the view's name says the budget too ("· budget quick"), so a
CPU-budget ranking is never taken for the paper-scale one. Opening the URL shows the ranking
without a click.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from benchmark.core.errors import UserError
from benchmark.problems import metrics as registry

VIEW_TAG_PREFIX = "mlflow.sharedViewState."
#: the experiment kind MLflow 3 shows with the classic runs table (not the GenAI views)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def sort_key() -> str:
    """The leaderboard's order: the primary metric (``metrics.primary()``), in MLflow's syntax."""
    return f"metrics.`{registry.primary().name}`"


def columns() -> tuple[str, ...]:
    """The leaderboard's columns, in MLflow's column-key syntax (``<type>.`<name>` ``): the method,
    its parameters and budget, its training images, every metric of the comparison table, runtime
    and training time."""
    shown = [f"metrics.`{m.name}`" for m in registry.registered() if m.table]
    return ("tags.`method`", "tags.`parameters`", "tags.`budget`", "metrics.`train_images`", *shown,
            "metrics.`runtime_s`", "metrics.`train_s`")


@dataclass(frozen=True)
class Board:
    """One leaderboard page: the (task, dataset) it ranks and its saved view's key."""

    task: str
    dataset: str
    experiment_id: str
    key: str

    def url(self, base: str) -> str:
        """The page under an MLflow server at ``base`` (e.g. http://127.0.0.1:5000)."""
        return (f"{base.rstrip('/')}/#/experiments/{self.experiment_id}/runs"
                f"?viewStateShareKey={self.key}&workflowType=machine_learning")


def latest_run(client: MlflowClient, experiment_id: str, profile: str | None = None) -> str | None:
    """The id of the latest benchmark invocation (of ``profile`` when given), or None."""
    where = "tags.`dipbench.kind` = 'benchmark'" + (f" and tags.profile = '{profile}'" if profile else "")
    runs = client.search_runs([experiment_id], where, order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def _view(name: str, search_filter: str) -> str:
    """A saved-view envelope as MLflow's UI writes it: {name, createdAt, updatedAt, state}."""
    state = {
        "searchFilter": search_filter,
        "orderByKey": sort_key(),
        "orderByAsc": False,
        "selectedColumns": list(columns()),
        "columnOrder": list(columns()),
        "runListHidden": False,
        "viewMaximized": False,
    }
    now = int(time.time() * 1000)
    return json.dumps({"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps(state)})


def publish(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Board]:
    """Write (or refresh) one saved view per (task, dataset) of the run ``parent_run_id``."""
    parent = client.get_run(parent_run_id)
    profile = parent.data.tags.get("profile", "")
    budget = parent.data.tags.get("budget") or "not recorded"
    base = f"tags.`dipbench.kind` = 'result' and tags.`mlflow.parentRunId` = '{parent_run_id}'"
    children = client.search_runs([experiment_id], base, max_results=5000)
    pairs = sorted({(r.data.tags.get("task", ""), r.data.tags.get("dataset", "")) for r in children})
    client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND)
    boards = []
    for task, dataset in pairs:
        key = hashlib.sha256(f"dipbench|{parent_run_id}|{task}|{dataset}".encode()).hexdigest()[:20]
        search = f"{base} and tags.task = '{task}' and tags.dataset = '{dataset}'"
        client.set_experiment_tag(experiment_id, f"{VIEW_TAG_PREFIX}{key}",
                                  _view(f"dipbench leaderboard · {profile} · budget {budget} · {task} · {dataset}",
                                        search))
        boards.append(Board(task, dataset, experiment_id, key))
    return boards


def publish_latest(uri: str, experiment: str, profile: str | None = None) -> list[Board]:
    """The boards of the latest run of ``profile`` in the store at ``uri``; a ``UserError`` when
    there is none yet."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    parent = latest_run(client, found.experiment_id, profile) if found is not None else None
    if found is None or parent is None:
        what = f" of profile {profile!r}" if profile else ""
        raise UserError(f"no benchmark run{what} in the MLflow store {uri}; run `make benchmark` first")
    return publish(client, found.experiment_id, parent)
