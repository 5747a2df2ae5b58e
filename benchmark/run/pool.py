"""The method instances of a run: made once per (method, parameters, task), prepared (trained or
loaded) once per training set and test-image channel count."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from benchmark import registry
from benchmark.api import Method, TrainingContext, TrainingReport
from benchmark.problems import tasks
from benchmark.run.calibration import Calibrator
from benchmark.run.plan import Cell


class LazyImages(Sequence[torch.Tensor]):
    """The training split, loaded on first access (most methods never touch it)."""

    def __init__(self, load: Callable[[], list[torch.Tensor]]) -> None:
        self._load = load
        self._images: list[torch.Tensor] | None = None

    def _all(self) -> list[torch.Tensor]:
        if self._images is None:
            self._images = list(self._load())
        return self._images

    def __len__(self) -> int:
        return len(self._all())

    def __getitem__(self, index):
        return self._all()[index]


class MethodPool:
    """Method instances per (method, params, task), prepared (trained or loaded) once per
    training set and test-image channel count."""

    def __init__(self, training_images: Callable[[], list[torch.Tensor]], training_name: str, cache_dir: Path,
                 device: torch.device, progress: bool = True,
                 load_training: Callable[[str], list[torch.Tensor]] | None = None) -> None:
        self.training_images = LazyImages(training_images)
        self.training_name, self.cache_dir, self.device, self.progress = training_name, cache_dir, device, progress
        self._load_training = load_training
        self._training_sets: dict[str, LazyImages] = {training_name: self.training_images}
        self._instances: dict[tuple[str, str, str], Method] = {}
        self._prepared: dict[tuple[str, str, str, str, int | None], TrainingReport | None] = {}
        self._failures: dict[tuple[str, str, str, str, int | None], Exception] = {}
        self.calibrator = Calibrator(cache_dir / "calibration", device)

    def instance(self, cell: Cell) -> Method:
        """The (unprepared) method of ``cell``: cheap, to ask it whether it applies."""
        key = (cell.method, cell.params_json, cell.task)
        if key not in self._instances:
            self._instances[key] = registry.get(cell.method)(**cell.params)
        return self._instances[key]

    def training_for(self, cell: Cell) -> tuple[str, LazyImages]:
        """The name and (lazily loaded) images of the training set ``cell`` learns from."""
        name = cell.training or self.training_name
        if name not in self._training_sets:
            load = self._load_training
            if load is None:
                raise ValueError(f"this pool has no loader for training set {name!r}")
            self._training_sets[name] = LazyImages(lambda: load(name))
        return name, self._training_sets[name]

    def get(self, cell: Cell, channels: int | None = None) -> tuple[Method, TrainingReport | None]:
        """The prepared method for ``cell`` on test images of ``channels`` channels; a failed
        preparation is remembered, not retried. One instance serves every preparation: cells of
        one method, parameters and task share a training set and channel count in a plan."""
        name, images = self.training_for(cell)
        key = (cell.method, cell.params_json, cell.task, name, channels)
        if key in self._failures:
            raise self._failures[key]
        method = self.instance(cell)
        if key not in self._prepared:
            try:
                self._prepared[key] = self._prepare(method, tasks.get(cell.task), name, images, channels)
            except Exception as exc:
                self._failures[key] = exc
                raise
        return method, self._prepared[key]

    def _prepare(self, method: Method, task: tasks.Task, name: str, images: LazyImages,
                 channels: int | None) -> TrainingReport | None:
        """Train on the instance's training condition: the physics and noise of its ``train_task``
        (the test task ``task`` by default), the training set ``name`` (the cell's)."""
        if method.skip_reason(task) is not None:
            return None
        ctx = TrainingContext(
            images=images, dataset=name, task=tasks.get(method.train_task(task) or task.name), cache_dir=self.cache_dir,
            seed=0, device=self.device, progress=self.progress, channels=channels,
        )
        return method.prepare(ctx)
