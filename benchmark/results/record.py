"""One reconstruction's row of the results table: the record the harness makes and the store keeps."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from benchmark.problems import metrics


@dataclass(slots=True)
class Record:
    """One reconstruction: keys, the registry's metrics, cost, and the trajectory."""

    cell_key: str
    method: str
    task: str
    dataset: str
    image_id: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    family: str = ""
    stopping_rule: str = ""  # the method's declared stopping rule ("" when it has none)
    profile: str = ""
    #: the profile's budget the cell ran under ("test", "quick", "paper"; "" in stores written
    #: before it was recorded). Not ``budget``: that field is the iteration cap the method was given
    run_budget: str = ""
    status: str = "ok"  # ok | failed | skipped
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # name → value (benchmark.problems.metrics)
    runtime_s: float | None = None
    peak_mem_mb: float | None = None
    #: images per second of the batch the cell ran in (what batching buys; runtime_s is solo)
    throughput: float | None = None
    train_s: float | None = None
    #: training images the method learnt from (0: untrained; None: unknown, e.g. released weights)
    train_images: int | None = 0
    iterations: int | None = None
    budget: int | None = None
    selected_iteration: int | None = None
    iterations_saved: int | None = None
    #: the primary metric (``metrics.primary()``) of the best iterate in hindsight, and its step
    oracle_value: float | None = None
    oracle_iteration: int | None = None
    #: what the method's own choice gave away against that oracle, in the primary metric's unit
    es_gap: float | None = None
    #: the iterates' metrics every ``trajectory_every`` steps: [{"step": k, <metric>: …, …}, …]
    trajectory: list[dict[str, float]] = field(default_factory=list)
    #: the primary metric of the measurement's pseudo-inverse A⁺y (what the method starts from)
    measurement_value: float | None = None
    device: str = ""
    finished_at: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    recon_path: str = ""
    #: the method instance as reports show it: the name plus the parameters that differ from
    #: its defaults, e.g. ``dip[iterations=500]``
    label: str = ""


#: a metric may not take the name of a record field (the store's columns and the export's keys)
metrics.reserve(f.name for f in fields(Record))
