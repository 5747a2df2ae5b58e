"""The results store: one SQLite table with a row per cell, the single source of truth.

Every table, plot and MLflow run is derived from it. Rows are committed one by one as cells
finish (so a crash loses at most the cell in flight), keyed by the cell's hash (so a rerun
neither loses nor duplicates a result). SQLite's own locking, with WAL and a busy timeout, lets
two benchmark commands write to one store at once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class Record:
    """One reconstruction: keys, the method's own metrics, cost, and the DIP trajectory."""

    cell_key: str
    method: str
    task: str
    dataset: str
    image_id: str
    seed: int
    params: dict[str, Any] = field(default_factory=dict)
    family: str = ""
    profile: str = ""
    status: str = "ok"  # ok | failed | skipped
    error: str = ""
    psnr: float | None = None
    ssim: float | None = None
    lpips: float | None = None
    runtime_s: float | None = None
    peak_mem_mb: float | None = None
    #: images per second of the batch the cell ran in (what batching buys; runtime_s is solo)
    throughput: float | None = None
    train_s: float | None = None
    iterations: int | None = None
    budget: int | None = None
    selected_iteration: int | None = None
    iterations_saved: int | None = None
    oracle_psnr: float | None = None
    oracle_iteration: int | None = None
    es_gap_db: float | None = None
    trajectory: list[list[float]] = field(default_factory=list)  # [step, psnr, ssim]
    measurement_psnr: float | None = None
    device: str = ""
    finished_at: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    recon_path: str = ""


_JSON_FIELDS = {"params", "trajectory", "info"}
_COLUMNS = [f.name for f in fields(Record)]


def _sql_type(name: str) -> str:
    return "TEXT" if name in _JSON_FIELDS else ""


class ResultsStore:
    """Per-image results in ``<results_dir>/results.sqlite``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            cols = ", ".join(f"{c} {_sql_type(c)}".strip() for c in _COLUMNS if c != "cell_key")
            conn.execute(f"CREATE TABLE IF NOT EXISTS records (cell_key TEXT PRIMARY KEY, {cols})")
            present = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
            for column in (c for c in _COLUMNS if c not in present):  # a store from before the column
                conn.execute(f"ALTER TABLE records ADD COLUMN {column} {_sql_type(column)}".strip())

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=120.0, isolation_level=None)

    def put(self, record: Record) -> None:
        """Commit one record (replacing an earlier failed attempt of the same cell)."""
        row = asdict(record)
        values = [json.dumps(row[c]) if c in _JSON_FIELDS else row[c] for c in _COLUMNS]
        marks = ", ".join("?" for _ in _COLUMNS)
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"INSERT OR REPLACE INTO records ({', '.join(_COLUMNS)}) VALUES ({marks})", values)
            conn.execute("COMMIT")

    def done_keys(self) -> set[str]:
        """Cells that need no rerun: finished or skipped (failed cells are tried again)."""
        with self._connect() as conn:
            rows = conn.execute("SELECT cell_key FROM records WHERE status != 'failed'").fetchall()
        return {r[0] for r in rows}

    def records(self, keys: Iterable[str] | None = None) -> list[Record]:
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM records ORDER BY rowid").fetchall()
        wanted = set(keys) if keys is not None else None
        out = []
        for row in rows:
            data = dict(zip(_COLUMNS, row))
            if wanted is not None and data["cell_key"] not in wanted:
                continue
            for c in _JSON_FIELDS:
                data[c] = json.loads(data[c]) if data[c] else ([] if c == "trajectory" else {})
            out.append(Record(**data))
        return out

    def frame(self, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """The per-image table as a DataFrame (one row per cell)."""
        recs = self.records(keys)
        if not recs:
            return pd.DataFrame(columns=_COLUMNS)
        return pd.DataFrame([asdict(r) for r in recs])
