"""Profiles: small YAML files that say what a benchmark runs (methods × tasks × datasets × seeds).

A malformed profile is a ``UserError`` naming the bad key and the valid ones, caught before any
work starts or any run is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import UserError, unknown

PROFILE_DIR = Path(__file__).resolve().parent / "profiles"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    crop: int | None = None  # centre crop to crop² (None: full resolution)
    resize: int | None = None  # first resize so the shorter side is this (None: keep)
    limit: int | None = None  # first N images (None: all)
    tasks: list[str] | None = None  # only these of the profile's tasks (None: all of them)


@dataclass(frozen=True)
class TrainingSpec:
    dataset: str = "embedded"
    crop: int | None = None
    resize: int | None = None
    train_images: int | None = None  # limit the training set, to plot quality against data


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    methods: list[str]
    tasks: list[str]
    datasets: list[DatasetSpec]
    seeds: list[int] = field(default_factory=lambda: [0])
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    device: str = "auto"
    trajectory_every: int = 10
    lpips: bool = True
    save_reconstructions: bool = True
    #: cells of one method, task and image size handed to a method at once (DIP fits them in
    #: one step); an execution setting, not part of a cell's identity
    batch_size: int = 8
    source: str = ""


_TOP_KEYS = {f for f in Profile.__dataclass_fields__ if f != "source"}


def available() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PROFILE_DIR.glob("*.yaml"))}


def _check_keys(where: str, given: dict[str, Any], valid: set[str]) -> None:
    extra = sorted(set(given) - valid)
    if extra:
        raise UserError(f"{where}: unknown key {extra[0]!r}; valid keys: {', '.join(sorted(valid))}")


def _as_list(where: str, value: Any, kind: type) -> list[Any]:
    if isinstance(value, kind):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise UserError(f"{where}: expected a list of {kind.__name__}, got {value!r}")
    return value


def _positive(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where}: expected an integer >= 1, got {value!r}")
    return value


def parse(doc: Any, source: str = "<profile>") -> Profile:
    """Validate a profile document (already parsed YAML) into a ``Profile``."""
    if not isinstance(doc, dict):
        raise UserError(f"malformed profile {source}: expected a mapping at the top level")
    _check_keys(f"profile {source}", doc, _TOP_KEYS)
    for required in ("name", "methods", "tasks", "datasets"):
        if required not in doc:
            raise UserError(f"profile {source}: missing required key {required!r}")
    datasets = []
    for entry in _as_list(f"profile {source}: datasets", doc["datasets"], (str, dict)):  # type: ignore[arg-type]
        entry = {"name": entry} if isinstance(entry, str) else entry
        _check_keys(f"profile {source}: dataset entry", entry, set(DatasetSpec.__dataclass_fields__))
        datasets.append(DatasetSpec(**entry))
    training = doc.get("training") or {}
    _check_keys(f"profile {source}: training", training, set(TrainingSpec.__dataclass_fields__))
    method_params = doc.get("method_params") or {}
    if not isinstance(method_params, dict) or not all(isinstance(v, dict) for v in method_params.values()):
        raise UserError(f"profile {source}: method_params must map method names to parameter mappings")
    methods = doc["methods"]
    methods = ["all"] if methods == "all" else _as_list(f"profile {source}: methods", methods, str)
    try:
        return Profile(
            name=str(doc["name"]),
            description=str(doc.get("description", "")),
            methods=methods,
            tasks=_as_list(f"profile {source}: tasks", doc["tasks"], str),
            datasets=datasets,
            seeds=_as_list(f"profile {source}: seeds", doc.get("seeds", [0]), int),
            method_params=method_params,
            training=TrainingSpec(**training),
            device=str(doc.get("device", "auto")),
            trajectory_every=int(doc.get("trajectory_every", 10)),
            lpips=bool(doc.get("lpips", True)),
            save_reconstructions=bool(doc.get("save_reconstructions", True)),
            batch_size=_positive(f"profile {source}: batch_size", doc.get("batch_size", 8)),
            source=source,
        )
    except (TypeError, ValueError) as exc:
        raise UserError(f"malformed profile {source}: {exc}") from exc


def load(name_or_path: str) -> Profile:
    """A profile by registered name (``benchmark/profiles/<name>.yaml``) or by file path."""
    path = Path(name_or_path)
    if not (path.suffix in {".yaml", ".yml"} and path.exists()):
        known = available()
        if name_or_path not in known:
            raise unknown("profile", name_or_path, known)
        path = known[name_or_path]
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"malformed profile {path}: {exc}") from exc
    return parse(doc, str(path))
