"""What a profile will cost before it runs (``benchmark plan``): its cells and, per method, the
estimated time on this machine and on a GPU.

Nothing of the profile is run. Each (method instance, task) is probed once on a small synthetic
problem of the task's image space (``PROBE_SIDE``² pixels): a few timed steps of its
reconstruction (through the callback every iterative method calls once per step; a one-shot
method is timed whole), and for a trained method a few timed steps of its training (its
``training_steps_parameter`` set small). A cell's estimate is the time per step × the method's
own budget (the ``budget`` its reconstruction reports) × the cell's pixels over the probe's;
training is the time per step × its steps, once per (instance, task, training set).

The GPU column scales everything by one measured ratio: the paper DIP network's step on this CPU
(probed, scaled to 512² colour) against its recorded step on a lent GPU (``GPU_FIGURES``, from
``make gpu-check``). It assumes every method gains what DIP's network gains there, which TV,
BM3D and FFT-based operators do not: an order of magnitude, to decide where to run a profile.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark import registry
from benchmark.api import Method, TrainingContext, as_reconstruction
from benchmark.problems import tasks
from benchmark.run.plan import Cell, make_plan
from benchmark.run.profiles import Profile

PROBE_SIDE = 64
#: reconstruction steps timed after one warm-up step; training steps are timed as the difference
#: between a short and a longer training
PROBE_STEPS = 4
TRAIN_PROBE_STEPS = (2, 6)
#: the recorded GPU figure behind the GPU column: the paper DIP network (128 channels, 5 scales),
#: float32, one 512² colour image at a time (README, "On a GPU"; ``benchmark/gpu_check.py``)
GPU_FIGURES: dict[str, Any] = {"card": "NVIDIA H200", "date": "2026-11-27", "dip_paper_step_ms_512_rgb": 16.9}


@dataclass
class Estimate:
    """One (method instance, task, dataset, image shape) group of the plan."""

    label: str
    method: str
    task: str
    dataset: str
    shape: tuple[int, ...]
    cells: int
    steps: int | None = None  # the method's budget per cell (None: one-shot)
    cell_s: float | None = None  # seconds per cell on this machine
    train_s: float = 0.0  # training (once per instance and task) on this machine
    note: str = ""

    @property
    def total_s(self) -> float | None:
        return None if self.cell_s is None else self.cells * self.cell_s + self.train_s


@dataclass(frozen=True)
class Probe:
    step_s: float  # seconds per step (or per call, one-shot) at the probe size
    steps: int | None  # the method's budget
    train_step_s: float | None
    train_steps: int | None


def _probe_image(task: tasks.Task, channels: int, side: int = PROBE_SIDE) -> torch.Tensor:
    """A smooth synthetic image of the task's space (seeded): what the probe measures."""
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand((1, channels, side, side), generator=g), 5, 1, 2)
    return (x * 2 - 1 if not task.space.bounded else x)[0]


def _timed_reconstruction(method: Method, task: tasks.Task, image: torch.Tensor) -> tuple[float, int | None]:
    """(seconds per step, or per call for a one-shot method; the budget it reports)."""
    g = tasks.measurement_generator(task.name, "probe", 0, dataset="probe")
    physics = task.physics(tuple(image.shape), torch.device("cpu"), g)  # type: ignore[arg-type]
    y = task.measure(image[None], physics, g)
    marks: list[float] = []

    def tick(step: int, _x: torch.Tensor) -> bool:
        marks.append(time.perf_counter())
        return step <= PROBE_STEPS

    started = time.perf_counter()
    result = as_reconstruction(method.reconstruct(y, physics, seed=0, callback=tick))
    total = time.perf_counter() - started
    if len(marks) >= 2:
        return (marks[-1] - marks[0]) / (len(marks) - 1), result.budget
    return total, None


def _training_step_s(cls: type[Method], params: dict[str, Any], task: tasks.Task, image: torch.Tensor,
                     channels: int) -> float | None:
    """Seconds per training step: two short trainings on copies of the probe image, timed."""
    key = cls.training_steps_parameter
    if key is None:
        return None
    seconds = []
    with tempfile.TemporaryDirectory() as cache:
        for steps in TRAIN_PROBE_STEPS:
            method = cls(**{**params, key: steps})
            side = max(2 * PROBE_SIDE, int(params.get("train_patch", 0) or 0), int(params.get("prior_patch", 0) or 0))
            images = [_probe_image(task, channels, side) for _ in range(2)]
            ctx = TrainingContext(images, "probe", task, Path(cache), seed=0, device=torch.device("cpu"),
                                  progress=False, channels=channels)
            started = time.perf_counter()
            method.prepare(ctx)
            seconds.append(time.perf_counter() - started)
    return max(seconds[1] - seconds[0], 0.0) / (TRAIN_PROBE_STEPS[1] - TRAIN_PROBE_STEPS[0])


def probe(method: str, params: dict[str, Any], task: tasks.Task, channels: int) -> Probe:
    """Time one method instance on a small synthetic problem of ``task`` (see the module doc)."""
    cls = registry.get(method)
    image = _probe_image(task, channels)
    train_step = None
    train_steps = None
    run_params = dict(params)
    if "train_images" in params:  # the probe's two images stand for the training set
        params = run_params = {**params, "train_images": None}
    if cls.needs_training:
        train_step = _training_step_s(cls, params, task, image, channels)
        key = cls.training_steps_parameter
        train_steps = int(params[key]) if key is not None else None
        if key is not None:  # reconstruct with a network trained a few steps: the time is the same
            run_params[key] = TRAIN_PROBE_STEPS[0]
    instance = cls(**run_params)
    if cls.needs_training:
        with tempfile.TemporaryDirectory() as cache:
            instance.prepare(TrainingContext([_probe_image(task, channels, 2 * PROBE_SIDE)] * 2, "probe", task,
                                             Path(cache), seed=0, device=torch.device("cpu"), progress=False,
                                             channels=channels))
    step_s, steps = _timed_reconstruction(instance, task, image)
    return Probe(step_s, steps, train_step, train_steps)


def estimate(profile: Profile, log: Callable[[str], None] | None = None) -> list[Estimate]:
    """Every group of ``profile``'s plan with its estimated cost here (see the module doc)."""
    unavailable: dict[str, str] = {}
    cells, images = make_plan(profile, unavailable)
    shapes: dict[tuple[str, str, str], tuple[int, ...]] = {}
    for (dataset, multiple), imgs in images.items():
        for task_name in profile.tasks:
            if tasks.get(task_name).size_multiple == multiple:
                shapes.update({(dataset, task_name, img.id): tuple(img.tensor.shape) for img in imgs})
    groups: dict[tuple[str, str, str, tuple[int, ...]], list[Cell]] = {}
    for cell in cells:
        shape = shapes.get((cell.dataset, cell.task, cell.image_id), ())
        groups.setdefault((cell.label or cell.method, cell.task, cell.dataset, shape), []).append(cell)
    probes: dict[tuple[str, str, str, int], Probe | str] = {}
    trained: set[tuple[str, str, str]] = set()
    out = []
    for (label, task_name, dataset, shape), members in groups.items():
        cell, task = members[0], tasks.get(task_name)
        found = Estimate(label, cell.method, task_name, dataset, shape, len(members))
        out.append(found)
        if not shape:
            found.note = f"dataset unavailable here ({unavailable.get(dataset, 'no images')})"[:120]
            continue
        cls = registry.get(cell.method)
        reason = cls(**cell.params).skip_reason(task, channels=int(shape[0]))
        if reason is not None:
            found.cells, found.note = 0, f"skipped on {task_name}"
            continue
        key = (cell.method, cell.params_json, task_name, int(shape[0]))
        if key not in probes:
            if log is not None:
                log(f"probing {label} on {task_name} ({shape[0]} channel(s), {PROBE_SIDE}²)")
            try:
                probes[key] = probe(cell.method, cell.params, task, int(shape[0]))
            except Exception as exc:  # noqa: BLE001 - a method that cannot be probed is reported, not fatal
                probes[key] = f"not estimated: {type(exc).__name__}: {exc}"[:120]
        measured = probes[key]
        if isinstance(measured, str):
            found.note = measured
            continue
        scale = math.prod(shape[-2:]) / PROBE_SIDE**2
        found.steps = measured.steps
        found.cell_s = measured.step_s * (measured.steps or 1) * scale
        if measured.train_step_s is not None and measured.train_steps is not None:
            once = (label, task_name, cell.training)
            if once not in trained:
                trained.add(once)
                found.train_s = measured.train_step_s * measured.train_steps
    return out


def gpu_speedup(log: Callable[[str], None] | None = None) -> float:
    """This CPU's time for the paper DIP network's step at 512² colour (probed at 64², scaled) over
    the recorded GPU step (``GPU_FIGURES``)."""
    task = tasks.get("denoising_s25")
    cls = registry.get("dip")
    params = cls.resolve_params(task, {}, budget="paper")
    if log is not None:
        log("probing the paper DIP network for the GPU ratio")
    measured = probe("dip", params, task, 3)
    cpu_ms = measured.step_s * (512 * 512) / PROBE_SIDE**2 * 1000
    return max(cpu_ms / float(GPU_FIGURES["dip_paper_step_ms_512_rgb"]), 1.0)


def summary(estimates: list[Estimate], speedup: float) -> list[dict[str, Any]]:
    """Per method instance: cells, estimated hours here and on the GPU, and notes."""
    rows: dict[str, dict[str, Any]] = {}
    for e in estimates:
        row = rows.setdefault(e.label, {"method": e.label, "cells": 0, "cpu_s": 0.0, "notes": set()})
        row["cells"] += e.cells
        if e.total_s is not None:
            row["cpu_s"] += e.total_s
        elif e.note:
            row["notes"].add(e.note)
    for row in rows.values():
        row["gpu_s"] = row["cpu_s"] / speedup
        row["notes"] = "; ".join(sorted(row["notes"]))
    return sorted(rows.values(), key=lambda r: -r["cpu_s"])


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def render(profile: Profile, groups: list[Estimate], speedup: float, *, show_groups: bool = False) -> str:
    """The plan as text: its size, per method the cells and the estimated time here and on a GPU
    (with ``show_groups``, one line per group first), and how the estimate was made."""
    cells = sum(g.cells for g in groups)
    lines = [f"plan of profile {profile.name!r} (budget {profile.budget}): {cells} cells in {len(groups)} groups "
             f"(method instance × task × dataset × image size), {len(profile.seeds)} seed(s)"]
    if show_groups:
        lines += ["", f"{'method':<34} {'task':<20} {'dataset':<12} {'image':<12} {'cells':>6} {'steps':>7} "
                      f"{'s/cell':>9}"]
        for g in groups:
            per = "" if g.cell_s is None else f"{g.cell_s:.1f}"
            shape = "x".join(map(str, g.shape)) or "-"
            note = f"  ({g.note})" if g.note else ""
            lines.append(f"{g.label:<34} {g.task:<20} {g.dataset:<12} {shape:<12} {g.cells:>6} {g.steps or '':>7} "
                         f"{per:>9}{note}")
    rows = summary(groups, speedup)
    lines += ["", f"{'method':<34} {'cells':>6} {'here':>10} {'on a GPU':>10}  notes"]
    for row in rows:
        lines.append(f"{row['method']:<34} {row['cells']:>6} {_hours(row['cpu_s']):>10} "
                     f"{_hours(row['gpu_s']):>10}  {row['notes']}")
    here = sum(r["cpu_s"] for r in rows)
    lines.append(f"{'total':<34} {cells:>6} {_hours(here):>10} {_hours(here / speedup):>10}")
    figure = GPU_FIGURES
    lines += ["", f"Here: {torch.get_num_threads()} thread(s) of this CPU; each method probed on a {PROBE_SIDE}² "
                  "synthetic problem and scaled by pixels and its budget, training included. On a GPU: divided by "
                  f"{speedup:.0f}, the paper DIP network's step here against its "
                  f"{figure['dip_paper_step_ms_512_rgb']} ms at 512² colour on an {figure['card']} ({figure['date']}, "
                  "make gpu-check): an order of magnitude (TV, BM3D and the MRI and CT operators gain less on a GPU "
                  "than a convolutional network)."]
    return "\n".join(lines)
