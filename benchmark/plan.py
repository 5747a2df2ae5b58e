"""The plan: a profile's methods × tasks × datasets × images × seeds as a list of cells.

A cell's key is a stable hash of (method, resolved parameters, task, dataset, image, crop,
seed), so a rerun knows what is already done and never duplicates a result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from benchmark import data, registry, tasks
from benchmark.errors import UserError
from benchmark.profiles import DatasetSpec, Profile


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Cell:
    method: str
    params_json: str
    task: str
    dataset: str
    image_id: str
    crop: str  # the image preparation, e.g. "resize96-crop64"
    seed: int

    @cached_property
    def key(self) -> str:
        ident = [self.method, self.params_json, self.task, self.dataset, self.image_id, self.crop, self.seed]
        return hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:24]

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)

    @property
    def group(self) -> tuple[str, str, str]:
        """The (method, task, dataset) group: one MLflow child run, one table cell."""
        return (self.method, self.task, self.dataset)


def selected_methods(profile: Profile) -> list[str]:
    known = registry.available()
    names = list(known) if profile.methods == ["all"] else profile.methods
    for name in names:
        registry.get(name)  # raises a UserError listing the valid names
    for name in profile.method_params:
        if name not in known:
            raise UserError(f"method_params names unknown method {name!r}; valid: {', '.join(known)}")
    return names


def resolved_params(profile: Profile, method: str, task: tasks.Task) -> dict[str, Any]:
    """Method defaults ← per-task-family defaults ← profile overrides; validated now."""
    cls = registry.get(method)
    params = cls.resolve_params(task.family, profile.method_params.get(method, {}))
    cls(**params)  # unknown parameters raise a UserError naming the valid ones
    return params


def load_images(spec: DatasetSpec, multiple: int = 1) -> list[data.Image]:
    return data.load(spec.name, split="test", crop=spec.crop, limit=spec.limit, multiple=multiple, resize=spec.resize,
                     path=spec.path, mode=spec.mode)


def make_plan(profile: Profile) -> tuple[list[Cell], dict[tuple[str, int], list[data.Image]]]:
    """All cells of ``profile`` plus the images they need (validating every name first)."""
    methods = selected_methods(profile)
    task_objs = [tasks.get(t) for t in profile.tasks]
    for spec in profile.datasets:
        if spec.path is not None and spec.name in data.available():
            raise UserError(f"dataset folder {spec.path}: its name {spec.name!r} is a registered dataset's; "
                            "give it another (name: in the profile's entry)")
        if spec.path is None and spec.name not in data.available():
            raise UserError(f"unknown dataset {spec.name!r}; valid choices: {', '.join(sorted(data.available()))}; "
                            "or a folder of images (a path on the CLI, path: in a profile)")
    images: dict[tuple[str, int], list[data.Image]] = {}
    cells: list[Cell] = []
    for spec in profile.datasets:
        for name in spec.tasks or []:
            if name not in profile.tasks:
                raise UserError(f"dataset {spec.name!r} lists task {name!r}, which is not among the profile's tasks: "
                                f"{', '.join(profile.tasks)}")
        for task in task_objs:
            if spec.tasks is not None and task.name not in spec.tasks:
                continue
            key = (spec.name, task.size_multiple)
            if key not in images:
                images[key] = load_images(spec, task.size_multiple)
            prep = f"resize{spec.resize}-crop{spec.crop}" + (f"-{spec.mode}" if spec.mode else "")
            for method in methods:
                params_json = canonical_json(resolved_params(profile, method, task))
                for image in images[key]:
                    for seed in profile.seeds:
                        cells.append(Cell(method, params_json, task.name, spec.name, image.id, prep, seed))
    return cells, images


def batch_group(cell: Cell, shape: tuple[int, ...]) -> tuple[object, ...]:
    """What cells solved in one batch share: method, parameters, task and image shape."""
    return (cell.method, cell.params_json, cell.task, shape)


def batches(cells: Sequence[Cell], shape_of: Callable[[Cell], tuple[int, ...]],
            size: int | Callable[[tuple[object, ...]], int]) -> list[list[Cell]]:
    """Cells grouped for ``reconstruct_batch``: same method, parameters, task and image shape,
    at most ``size`` (and the method's ``max_batch``) per batch, in the plan's order. ``size``
    may be a function of the group's ``batch_group`` key (the calibrated choice of each group)."""
    size_of = size if callable(size) else (lambda _key: size)
    open_batches: dict[tuple[object, ...], list[Cell]] = {}
    order: list[list[Cell]] = []
    for cell in cells:
        key = batch_group(cell, shape_of(cell))
        chosen = size_of(key)
        if chosen < 1:
            raise ValueError(f"batch size must be >= 1, got {chosen}")
        limit = max(1, min(chosen, registry.get(cell.method).max_batch))
        batch = open_batches.get(key)
        if batch is None or len(batch) >= limit:
            batch = open_batches[key] = []
            order.append(batch)
        batch.append(cell)
    return order
