"""Executors: how batches of cells run. The local executor runs them one after another in this
process; ``benchmark.run.ray_executor`` ships them to Ray workers. Both get the same ``Work``: plain
data (profile settings, the images by id, the training specification), so a worker needs nothing
from the driver but it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark.run.harness import CellOutcome, pick_device, run_cells
from benchmark.run.plan import Cell
from benchmark.run.pool import MethodPool
from benchmark.run.profiles import PreparedSet, TrainingSpec


@dataclass
class Work:
    """Everything a worker needs to run cells; plain data, so it can be shipped to Ray workers."""

    profile_name: str
    device: str
    trajectory_every: int
    metrics_off: list[str]
    save_reconstructions: bool
    training: TrainingSpec  # the training set, and another per image space where the profile says so
    cache_dir: str
    images: dict[tuple[str, str, str], torch.Tensor]  # (dataset, task, image_id) → image
    progress: bool = False
    #: intra-op threads: CPU results depend on the reduction order, so every worker uses the
    #: driver's count and the same seed gives the same metrics under every executor
    threads: int = field(default_factory=torch.get_num_threads)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def training_images(self, name: str | None = None) -> list[torch.Tensor]:
        """The training set ``name`` (a ``PreparedSet`` name, as the plan gives each cell: the
        split and how it is prepared, e.g. ``embedded[resize=128]``, resized like the test images
        it serves; default: the profile's training set as it is), loaded once per worker
        (checksums are verified on load)."""
        name = name or self.training.dataset
        cache: dict[str, list[torch.Tensor]] = self.__dict__.setdefault("_training_cache", {})
        if name not in cache:
            cache[name] = PreparedSet.from_name(name).load()
        return cache[name]

    def pool(self) -> MethodPool:
        return MethodPool(self.training_images, self.training.dataset, Path(self.cache_dir), pick_device(self.device),
                          self.progress, load_training=self.training_images)

    def image(self, cell: Cell) -> torch.Tensor:
        return self.images[(cell.dataset, cell.task, cell.image_id)]

    def run(self, batch: list[Cell], pool: MethodPool) -> list[CellOutcome]:
        """Run one batch of cells (see ``plan.batches``) and measure each."""
        return run_cells(batch, [self.image(cell) for cell in batch], pool, profile=self.profile_name,
                         trajectory_every=self.trajectory_every, skip_metrics=self.metrics_off,
                         save_reconstruction=self.save_reconstructions)


class LocalExecutor:
    """Runs batches one after another in this process (method instances reused across them)."""

    def __init__(self, pool: MethodPool | None = None) -> None:
        self._pool = pool

    def run(self, batches: list[list[Cell]], work: Work) -> Iterator[CellOutcome]:
        pool = self._pool or work.pool()
        for batch in batches:
            yield from work.run(batch, pool)
