"""The results store: SQLite, the single source of truth; every table, plot, export and MLflow
run is derived from it.

Schema (``PRAGMA user_version`` = ``SCHEMA_VERSION``): ``records``, one row per cell (keys,
cost, status, the trajectory as JSON), and ``metrics``, one row per (cell, metric) with its
value, so a metric added to the registry needs no schema change. A store written by an older
release is migrated in place, in one transaction, when it is opened; a corrupt or truncated
store, or one from a newer release, is reported and left as it is. Rows are committed one by
one as cells finish (a crash loses at most the cells in flight), keyed by the cell's hash (a
rerun neither loses nor duplicates a result); SQLite's locking, with WAL and a busy timeout,
lets two benchmark commands write to one store at once. SQLite answers "database is locked"
without waiting in a few races its busy timeout does not cover (two processes switching a new
store to WAL, a reader meeting a WAL recovery): those steps are retried until ``BUSY_WAIT_S``.
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from benchmark.core.errors import UserError
from benchmark.problems import metrics
from benchmark.results.record import Record

#: 1: one ``records`` table with psnr/ssim/lpips columns and [step, psnr, ssim] trajectories
#: (no user_version); 2: a ``metrics`` table, trajectories as {"step", <metric>...} points;
#: 3: the oracle, ES-gap and measurement columns named for the primary metric, not for PSNR.
SCHEMA_VERSION = 3

#: How long a step waits for another process's lock before it is reported (SQLite's busy timeout too).
BUSY_WAIT_S = 120.0

_T = TypeVar("_T")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


_JSON_FIELDS = {"params", "trajectory", "info"}
_COLUMNS = [f.name for f in fields(Record) if f.name != "metrics"]
_DEFAULTS = {f.name: f.default_factory if f.default_factory is not MISSING else (lambda v=f.default: v)
             for f in fields(Record) if f.default is not MISSING or f.default_factory is not MISSING}
#: the metric columns of a version-1 store, and its trajectory rows' layout
_V1_METRICS = (metrics.PSNR.name, metrics.SSIM.name, metrics.LPIPS.name)
_V1_POINT = ("step", metrics.PSNR.name, metrics.SSIM.name)
#: columns renamed by version 3 (old → new)
_RENAMED_V3 = {"oracle_psnr": "oracle_value", "es_gap_db": "es_gap", "measurement_psnr": "measurement_value"}


def _sql_type(name: str) -> str:
    return "TEXT" if name in _JSON_FIELDS else ""


def _records_ddl(table: str) -> str:
    cols = ", ".join(f"{c} {_sql_type(c)}".strip() for c in _COLUMNS if c != "cell_key")
    return f"CREATE TABLE IF NOT EXISTS {table} (cell_key TEXT PRIMARY KEY, {cols})"


_METRICS_DDL = ("CREATE TABLE IF NOT EXISTS metrics (cell_key TEXT NOT NULL, metric TEXT NOT NULL, value REAL, "
                "PRIMARY KEY (cell_key, metric))")


class StoreError(UserError):
    """The store cannot be read or written; what it already holds is left untouched."""


def _finite_or_none(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


class ResultsStore:
    """Per-image results in ``<results_dir>/results.sqlite``; ``read_only`` for reports and exports."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if read_only:
            if not self.path.is_file():
                raise StoreError(f"no results store at {self.path}")
            self._check()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._patiently(self._use_wal)
        except (OSError, sqlite3.OperationalError) as exc:
            raise StoreError(f"cannot write the results store {self.path} ({exc}): is the folder read-only? "
                             "Nothing was changed; choose another folder with --results") from exc
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from exc
        self._check()
        self._upgrade()

    def _patiently(self, step: Callable[[], _T]) -> _T:
        """``step()``, tried again while SQLite says another process holds the lock; after
        ``BUSY_WAIT_S``, the lock is reported (a ``StoreError``)."""
        deadline = time.monotonic() + BUSY_WAIT_S
        while True:
            try:
                return step()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                if time.monotonic() > deadline:
                    raise self._locked(exc) from exc
            time.sleep(random.uniform(0.01, 0.2))

    def _use_wal(self) -> None:
        with self._open() as conn:
            conn.execute("PRAGMA journal_mode=WAL")

    @classmethod
    def open_existing(cls, path: Path) -> ResultsStore:
        """An existing store to read: migrated when its folder is writable, else read as it is."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"no results store at {path}")
        try:
            return cls(path)
        except StoreError as writable_error:
            try:
                return cls(path, read_only=True)
            except StoreError:
                raise writable_error from None

    # ------------------------------------------------------------------ opening, checks, migration

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            # a read-only folder cannot hold WAL's shared-memory file: read the file as it is
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_WAIT_S, isolation_level=None)
            try:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.OperationalError:
                conn.close()
                return sqlite3.connect(f"{uri}&immutable=1", uri=True, timeout=BUSY_WAIT_S, isolation_level=None)
        return sqlite3.connect(self.path, timeout=BUSY_WAIT_S, isolation_level=None)

    @contextmanager
    def _open(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _transaction(self, failure: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before any read (two processes may race); rolled back on
        any error. An error of the disk or the folder becomes ``failure`` (``{path}``, ``{exc}``)."""
        try:
            with self._open() as conn:
                self._patiently(lambda: conn.execute("BEGIN IMMEDIATE"))
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise self._locked(exc) from exc
            raise StoreError(failure.format(path=self.path, exc=exc)) from exc

    def _locked(self, exc: Exception) -> StoreError:
        return StoreError(f"the results store {self.path} stayed locked by another process for {BUSY_WAIT_S:g} s "
                          f"({exc}); nothing was changed: try again when that process is done")

    def _corrupt(self, exc: Exception | str) -> StoreError:
        return StoreError(f"the results store {self.path} is corrupt or truncated ({exc}); it was left as it "
                          "is: restore a copy, or move it away to start a new one")

    def _check(self) -> None:
        """Refuse a damaged store, or one from a newer release, before anything reads or writes it."""
        try:
            result, version = self._patiently(self._integrity)
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from exc
        if result != "ok":
            raise self._corrupt(result)
        if version > SCHEMA_VERSION:
            raise StoreError(f"the results store {self.path} has schema version {version}, written by a newer "
                             f"dipbench; this one reads versions up to {SCHEMA_VERSION}")
        if self.read_only and version < SCHEMA_VERSION and self._tables() and "records" in self._tables():
            raise StoreError(f"the results store {self.path} has schema version {version} and is read-only; "
                             f"open it once writable (any `benchmark run` or `report` on it) to migrate it")

    def _integrity(self) -> tuple[str, int]:
        with self._open() as conn:
            return conn.execute("PRAGMA quick_check").fetchone()[0], conn.execute("PRAGMA user_version").fetchone()[0]

    def _tables(self) -> set[str]:
        with self._open() as conn:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _upgrade(self) -> None:
        """Create the schema, or migrate an older one, in one transaction (two processes may race)."""
        with self._transaction("cannot write the results store {path} ({exc}): is the folder read-only or the "
                               "disk full? Nothing was changed") as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "records" in tables and version < 2:
                _migrate_v1(conn)
            elif "records" in tables and version < 3:
                present = {r[1] for r in conn.execute("PRAGMA table_info(records)")}
                for old, new in _RENAMED_V3.items():
                    if old in present:
                        conn.execute(f"ALTER TABLE records RENAME COLUMN {old} TO {new}")
            conn.execute(_records_ddl("records"))
            conn.execute(_METRICS_DDL)
            present = {r[1] for r in conn.execute("PRAGMA table_info(records)")}
            for column in _COLUMNS:  # a field added to Record later is added to older stores
                if column not in present:
                    conn.execute(f"ALTER TABLE records ADD COLUMN {column} {_sql_type(column)}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # ------------------------------------------------------------------------------ writing

    def put(self, record: Record) -> None:
        """Commit one record and its metrics (replacing an earlier failed attempt of the cell)."""
        if self.read_only:
            raise StoreError(f"the results store {self.path} was opened read-only")
        row = asdict(record)
        values = [json.dumps(row[c]) if c in _JSON_FIELDS else row[c] for c in _COLUMNS]
        marks = ", ".join("?" for _ in _COLUMNS)
        pairs = [(record.cell_key, k, _finite_or_none(v)) for k, v in record.metrics.items() if v is not None]
        with self._transaction("could not save a result to {path} ({exc}): is the disk full or the folder "
                               "read-only? Every cell committed before is kept; fix it and rerun to resume") as conn:
            conn.execute(f"INSERT OR REPLACE INTO records ({', '.join(_COLUMNS)}) VALUES ({marks})", values)
            conn.execute("DELETE FROM metrics WHERE cell_key = ?", (record.cell_key,))
            conn.executemany("INSERT INTO metrics (cell_key, metric, value) VALUES (?, ?, ?)", pairs)

    # ------------------------------------------------------------------------------ reading

    def done_keys(self) -> set[str]:
        """Cells that need no rerun: finished or skipped (failed cells are tried again, and so are
        those skipped because a dataset or released weights could not be had: the user may have
        set the variable since)."""
        with self._open() as conn:
            rows = conn.execute("SELECT cell_key FROM records WHERE status != 'failed' AND NOT (status = 'skipped' "
                                "AND (json_extract(info, '$.data_unavailable') IS NOT NULL "
                                "OR json_extract(info, '$.weights_unavailable') IS NOT NULL))").fetchall()
        return {r[0] for r in rows}

    def records(self, keys: Iterable[str] | None = None) -> list[Record]:
        with self._open() as conn:
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM records ORDER BY rowid").fetchall()
            values: dict[str, dict[str, float]] = {}
            for key, metric, value in conn.execute("SELECT cell_key, metric, value FROM metrics ORDER BY rowid"):
                values.setdefault(key, {})[metric] = math.nan if value is None else float(value)
        wanted = set(keys) if keys is not None else None
        out = []
        for row in rows:
            data = dict(zip(_COLUMNS, row, strict=True))
            if wanted is not None and data["cell_key"] not in wanted:
                continue
            for c in _JSON_FIELDS:
                data[c] = json.loads(data[c]) if data[c] else None
            for c, value in data.items():
                if value is None and c in _DEFAULTS:  # a column added after the row was written
                    data[c] = _DEFAULTS[c]()
            data["label"] = data.get("label") or data["method"]
            out.append(Record(**data, metrics=values.get(data["cell_key"], {})))
        return out

    def frame(self, keys: Iterable[str] | None = None) -> pd.DataFrame:
        """The per-image table (one row per cell), one column per metric."""
        return records_frame(self.records(keys))


def records_frame(records: Iterable[Record]) -> pd.DataFrame:
    """Records as the wide per-image table: the record's fields plus one column per metric
    (every registered metric, and any other one the records hold)."""
    recs = list(records)
    names = [m.name for m in metrics.registered()]
    names += sorted({k for r in recs for k in r.metrics} - set(names))
    rows = []
    for r in recs:
        row = asdict(r)
        values = row.pop("metrics")
        row.update({name: values.get(name) for name in names})
        rows.append(row)
    columns = _COLUMNS[: _COLUMNS.index("runtime_s")] + names + _COLUMNS[_COLUMNS.index("runtime_s"):]
    frame = pd.DataFrame(rows, columns=columns)
    for name in names:
        frame[name] = pd.to_numeric(frame[name], errors="coerce")
    frame.attrs["metrics"] = names  # which columns are metrics (the export's long table)
    return frame


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Schema 1 → 2 inside the caller's transaction: metric columns to the ``metrics`` table,
    [step, psnr, ssim] trajectory rows to named points, the rest of each row kept as it was."""
    old = [r[1] for r in conn.execute("PRAGMA table_info(records)")]
    conn.execute(_METRICS_DDL)
    for name in _V1_METRICS:
        if name in old:
            conn.execute(f"INSERT OR REPLACE INTO metrics (cell_key, metric, value) "
                         f"SELECT cell_key, '{name}', {name} FROM records WHERE {name} IS NOT NULL")
    conn.execute(_records_ddl("records_v2"))
    renamed = {new: old_name for old_name, new in _RENAMED_V3.items() if old_name in old}
    kept = [c for c in _COLUMNS if c in old or c in renamed]
    source = [renamed.get(c, c) for c in kept]
    conn.execute(f"INSERT INTO records_v2 ({', '.join(kept)}) SELECT {', '.join(source)} FROM records ORDER BY rowid")
    for key, text in conn.execute("SELECT cell_key, trajectory FROM records_v2").fetchall():
        points = json.loads(text) if text else []
        named = [dict(zip(_V1_POINT, map(float, p), strict=False)) for p in points]
        conn.execute("UPDATE records_v2 SET trajectory = ? WHERE cell_key = ?", (json.dumps(named), key))
    conn.execute("DROP TABLE records")
    conn.execute("ALTER TABLE records_v2 RENAME TO records")
