"""Through the harness: same image, two run seeds: different DIP initialisations; two images,
one run seed: different ones; the same cell again: the same one (issue #12 item 3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmark import registry
from benchmark.api import Method, Reconstruction
from benchmark.problems import data
from benchmark.run.harness import run_cells
from benchmark.run.plan import Cell, canonical_json
from benchmark.run.pool import MethodPool
from methods._dip import common

SMALL_NET = {**common.SKIP_DEFAULTS, "channels": 4, "scales": 2, "skip_channels": 2, "input_channels": 4}


class _InitialisationProbe(Method):
    name = "test_initialisation_probe"
    budgets = {"test": {}, "quick": {}}
    summary = "builds the DIP network and input for the seed it gets, and reports them"

    def reconstruct(self, y, physics, *, seed, callback=None):
        setup = common.skip_setup(SMALL_NET, y, physics, seed)
        weights = torch.cat([p.detach().flatten() for p in setup.network.parameters()])
        # the record keeps scalar info: a fingerprint of the weights and of the fixed input
        return Reconstruction(x=y.clamp(0, 1), info={"weights": float(weights.double().abs().sum()),
                                                     "input": float(setup.z.double().sum())})


@pytest.fixture
def probe() -> Iterator[None]:
    registry.available()
    registry.register(_InitialisationProbe)
    yield
    registry._REGISTRY.pop(_InitialisationProbe.name, None)


def test_each_image_and_each_seed_gets_its_own_initialisation(probe: None, tmp_path: Path) -> None:
    images = data.load("embedded", crop=32, resize=64, limit=2)
    pool = MethodPool(lambda: [], "embedded", tmp_path, torch.device("cpu"), progress=False)

    def initialisation(image: data.Image, seed: int) -> tuple[float, float]:
        cell = Cell(_InitialisationProbe.name, canonical_json({}), "denoising_s25", "embedded", image.id,
                    "resize64-crop32", seed)
        (outcome,) = run_cells([cell], [image.tensor], pool, skip_metrics=("lpips",), save_reconstruction=False)
        assert outcome.record.status == "ok", outcome.record.error
        return outcome.record.info["weights"], outcome.record.info["input"]

    first = initialisation(images[0], 0)
    assert initialisation(images[0], 0) == first  # a rerun starts where it did
    for other in (initialisation(images[0], 1), initialisation(images[1], 0)):
        assert other[0] != first[0] and other[1] != first[1]
