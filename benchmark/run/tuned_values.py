"""Tuned values: the records ``benchmark tune`` writes (the choice, its grid, every score, the
validation images from the training split) and what the plan applies from them.

A profile names its file (``tuned: tuned/quick.yaml``, relative to the profile's folder, which it
may not leave); each record is checked when read (its method, its parameters, validation images
from the training split).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from benchmark import registry
from benchmark.core.errors import UserError, one_line
from benchmark.problems import data, metrics, tasks
from benchmark.run.profiles import PROFILE_DIR, Profile

#: what a method instance's label shows for a parameter the tuned file chooses: ``tv[weight=tuned]``
TUNED = "tuned"
REQUIRED = ("method", "scope", "applies_to", "tasks", "chosen", "metric", "grid", "scores", "fixed", "validation")


def tuned_path(profile: Profile) -> Path | None:
    """The tuned-values file a profile names: a path relative to the profile's own folder, which
    it may not leave (``tuned: tuned/quick.yaml``)."""
    if profile.tuned is None:
        return None
    where = f"profile {profile.name!r}: tuned"
    if not profile.tuned or "\x00" in profile.tuned or Path(profile.tuned).is_absolute():
        raise UserError(f"{where}: expected a file path relative to the profile's folder, got {profile.tuned!r}")
    source = Path(profile.source)
    folder = source.parent if profile.source and source.is_file() else PROFILE_DIR
    return data.inside(folder / profile.tuned, folder, where)


def default_path(profile: Profile) -> Path:
    return tuned_path(profile) or PROFILE_DIR / "tuned" / f"{profile.name}.yaml"


@dataclass(frozen=True)
class TunedValues:
    """The records of a tuned-values file; ``params_for`` is what the plan applies."""

    records: tuple[dict[str, Any], ...] = ()
    path: Path | None = None

    def records_for(self, method: str, task: tasks.Task) -> list[dict[str, Any]]:
        return [r for r in self.records if r["method"] == method
                and r["applies_to"] == (task.name if r["scope"] == "task" else task.family)]

    def params_for(self, method: str, task: tasks.Task) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for rec in self.records_for(method, task):
            out.update(rec["chosen"])
        return out

    def names(self, method: str, task_list: Sequence[tasks.Task]) -> set[str]:
        """The parameters of ``method`` tuned for at least one of ``task_list``."""
        return {name for task in task_list for name in self.params_for(method, task)}


def _check_record(where: str, rec: Any) -> None:
    if not isinstance(rec, dict):
        raise UserError(f"{where}: expected a mapping")
    missing = [k for k in REQUIRED if k not in rec]
    if missing:
        raise UserError(f"{where}: lacks {', '.join(missing)}")
    if rec["scope"] not in ("task", "family"):
        raise UserError(f"{where}: scope {rec['scope']!r} is not task or family")
    cls = registry.get(rec["method"])  # an unknown method is a UserError naming the valid ones
    if not isinstance(rec["chosen"], dict) or not rec["chosen"]:
        raise UserError(f"{where}: chosen must map parameters to values")
    cls.check_names(rec["chosen"])
    if rec["validation"].get("split") != "train":
        raise UserError(f"{where}: validation images must come from the training split")
    if metrics.describe(str(rec["metric"])) is None or any("value" not in p for p in rec["scores"]):
        raise UserError(f"{where}: scores must give each grid point's value of a registered metric "
                        f"(metric: {rec['metric']!r}); rerun `benchmark tune`")


@lru_cache(maxsize=16)
def _read(path: str, mtime: float) -> TunedValues:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read tuned values {path}: {one_line(exc)}") from exc
    records = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise UserError(f"tuned values {path}: expected a mapping with a 'records' list")
    for i, rec in enumerate(records):
        _check_record(f"tuned values {path}: record {i}", rec)
    return TunedValues(tuple(records), Path(path))


def load(profile: Profile) -> TunedValues:
    """The profile's tuned values (none when it names no file)."""
    path = tuned_path(profile)
    if path is None:
        return TunedValues()
    if not path.is_file():
        raise UserError(f"profile {profile.name!r} names tuned values {path}, which does not exist; "
                        f"run `python -m benchmark tune --profile {profile.name}`")
    return _read(str(path), path.stat().st_mtime)


def write(path: Path, profile: Profile, records: Sequence[dict[str, Any]]) -> Path:
    """Merge ``records`` into the tuned-values file (a new record replaces the one it re-tunes)."""
    old: list[dict[str, Any]] = []
    if path.is_file():
        old = list(_read(str(path), path.stat().st_mtime).records)
    fresh = {(r["method"], r["scope"], r["applies_to"]) for r in records}
    kept = [r for r in old if (r["method"], r["scope"], r["applies_to"]) not in fresh]
    doc = {"profile": profile.name, "records": kept + list(records)}
    header = (f"# Tuned hyperparameters of the {profile.name!r} profile, chosen on validation images drawn from the\n"
              f"# training split (never test images). Written by `python -m benchmark tune --profile "
              f"{profile.name}`\n# (each record: command, date, commit, images, grid and every score); "
              "rerun it rather than editing values.\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=110), encoding="utf-8")
    tmp.replace(path)
    return path
