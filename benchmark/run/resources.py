"""Will the plan fit? Image sizes and memory checked when the plan is made, before any work.

Each method may declare ``memory_estimate(shape)``: the bytes one problem on a C×H×W image
needs at least (the DIP family measures its network's saved activations on a small probe and
scales them with the pixel count). The plan is refused when a batch's estimate exceeds the
memory available on the device, and when an image is too small for a metric to measure it
(SSIM's 11-tap window, LPIPS's AlexNet), with a message that names the image and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from benchmark.core.errors import UserError
from benchmark.core.memory import GIB, available_bytes, check_device
from benchmark.problems.metrics import MetricContext


def check_measurable(shapes: Mapping[str, tuple[int, int, int]], metrics: Sequence[Any], device: torch.device) -> None:
    """Every metric can measure an image of each shape (``where`` → C×H×W); the smallest height
    and width per channel count (at most 64) are tried once on zero images."""
    smallest: dict[int, tuple[int, int, str]] = {}
    for where, (c, h, w) in shapes.items():
        if h < 1 or w < 1:
            raise UserError(f"{where}: no pixels left ({c}×{h}×{w}) after cropping; use a larger image or crop")
        low = smallest.get(c)
        if low is None or min(h, w) < min(low[0], low[1]):
            smallest[c] = (h, w, where)
    for c, (h, w, where) in smallest.items():
        for metric in metrics:
            # A metric that measures 64×64 measures anything larger: probe at most that.
            problem = _measure_problem(metric, (c, min(h, 64), min(w, 64)), str(device))
            if problem:
                raise UserError(f"{where}: a {h}×{w} image is too small to measure {metric.name} ({problem}); "
                                f"use larger images, or leave the metric out (metrics_off: [{metric.name}])")


_MEASURABLE: dict[tuple[str, tuple[int, int, int], str], str] = {}


def _measure_problem(metric: Any, shape: tuple[int, int, int], device: str) -> str:
    """Why ``metric`` cannot measure a ``shape`` image ("" when it can); remembered per shape."""
    key = (metric.name, shape, device)
    if key not in _MEASURABLE:
        probe = torch.zeros(1, *shape, device=device)
        try:
            metric.fn(probe, probe, MetricContext())
            _MEASURABLE[key] = ""
        except (RuntimeError, ValueError) as exc:
            _MEASURABLE[key] = str(exc).splitlines()[0][:120]
    return _MEASURABLE[key]


def check_memory(
    problems: Mapping[tuple[str, str, tuple[int, int, int]], int],
    make_method: Any,
    batch_size: int,
    device: torch.device,
    where: Mapping[tuple[int, int, int], str],
) -> None:
    """``problems``: (method, params_json, shape) → how many cells; ``make_method(name, params_json)``
    gives an instance. Refuses a batch whose declared estimate exceeds the available memory."""
    free: int | None = None
    for (name, params_json, shape), count in problems.items():
        method = make_method(name, params_json)
        one = method.memory_estimate(shape)
        if not one:
            continue
        free = available_bytes(device) if free is None else free
        batch = max(1, min(batch_size, method.max_batch, count))
        c, h, w = shape
        if one > free:
            raise UserError(f"{where[shape]}: method {name} on a {c}×{h}×{w} image needs at least {one / GIB:.1f} GiB "
                            f"(its memory estimate), more than the {free / GIB:.1f} GiB available on {device}; "
                            "crop or resize the images (crop:/resize: in the profile)")
        if one * batch > free:
            raise UserError(f"{where[shape]}: method {name} on {batch} {c}×{h}×{w} images at once needs at least "
                            f"{one * batch / GIB:.1f} GiB, more than the {free / GIB:.1f} GiB available on {device}; "
                            f"use --batch-size {max(1, free // one)} or smaller images")


def check_plan(cells: Sequence[Any], image_of: Any, metrics_off: Sequence[str], batch_size: int,
               device: torch.device) -> None:
    """Run before any work: every image measurable by every metric, every batch within memory.
    ``image_of(cell)`` is the cell's C×H×W image."""
    import json
    from collections import Counter

    from benchmark import registry
    from benchmark.problems import metrics, tasks

    shapes: dict[str, dict[str, tuple[int, int, int]]] = {}  # task → where → what its metrics compare
    where: dict[tuple[int, int, int], str] = {}
    problems: Counter[tuple[str, str, tuple[int, int, int]]] = Counter()
    for cell in cells:
        c, h, w = (int(s) for s in image_of(cell).shape)
        shape = (c, h, w)
        label = f"image {cell.image_id!r} of dataset {cell.dataset!r} for task {cell.task}"
        if label not in shapes.setdefault(cell.task, {}):
            # metrics compare the task's view of an image (the magnitude of a complex MR image)
            viewed = tasks.get(cell.task).space.view(torch.zeros(1, *shape)).shape[1:]
            shapes[cell.task][label] = (int(viewed[0]), int(viewed[1]), int(viewed[2]))
        where.setdefault(shape, label)
        problems[(cell.method, cell.params_json, shape)] += 1
    check_device(device)
    skip = tuple(metrics_off)
    for task, task_shapes in shapes.items():  # each task's own metrics (no LPIPS on MRI or CT)
        check_measurable(task_shapes, metrics.applicable(tasks.get(task), skip), device)
    check_memory(problems, lambda name, params: registry.get(name)(**json.loads(params)), batch_size, device, where)
