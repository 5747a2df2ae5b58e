"""The problems the speed benchmarks fit: grey σ = 25 denoising of embedded crops, each its own
measurement (a different noise draw per index, so a batch is B distinct problems)."""

from __future__ import annotations

import torch

from benchmark.api import Problem
from benchmark.problems import data, tasks


def denoising_problems(side: int, count: int) -> list[Problem]:
    """``count`` problems on ``side``² crops of the embedded images (cycled), seeds 0..count-1."""
    images = data.load("embedded", resize=2 * side, crop=side, limit=4)
    task = tasks.get("denoising_s25")
    out = []
    for i in range(count):
        image = images[i % len(images)]
        g = tasks.measurement_generator(task.name, image.id, i, dataset="embedded")
        physics = task.physics(tuple(image.tensor.shape), torch.device("cpu"), g)
        out.append(Problem(task.measure(image.tensor[None], physics, g), physics, i))
    return out
