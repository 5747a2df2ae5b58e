"""The method contract every reconstructor follows (see methods/README section in README.md).

A method gets the measurement ``y``, the deepinv ``physics``, a ``seed`` and an optional
per-iteration ``callback``; it never sees the ground truth. The harness measures everything.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from benchmark.core.errors import UserError

#: ``callback(step, x_k) -> keep_going``. Iterative methods call it once per iteration with the
#: iterate they would return if stopped now; the harness decides when to measure it.
Callback = Callable[[int, torch.Tensor], bool]

#: ``Reconstruction.info`` key naming the stream of iterates the callback gets (e.g. "EMA 0.99 of
#: outputs" or "raw outputs"): the oracle, the best of them in hindsight, is over that stream.
ORACLE_STREAM = "oracle_stream"


@dataclass
class SoloCost:
    """What a reconstruction cost a user solving its problem alone, as the method measured it:
    seconds of the work it shared (a DIP network's steps) keyed by how many problems shared that
    work at the time (its group size), and seconds of its own work (a stopping rule's). The harness
    scales the shared seconds by the calibrated solo/batch rate of each group size and adds the
    method's own as they are."""

    network_s: dict[int, float] = field(default_factory=dict)
    own_s: float = 0.0

    @property
    def network_total(self) -> float:
        return sum(self.network_s.values())


@dataclass
class Reconstruction:
    """What a method may return instead of a bare tensor, to report how it got there."""

    x: torch.Tensor
    #: iterations actually run (None for one-shot methods)
    iterations: int | None = None
    #: the iteration whose iterate is returned (an early-stopping rule's choice)
    selected_iteration: int | None = None
    #: the iteration budget the method was given (iterations saved = budget - iterations)
    budget: int | None = None
    #: anything else worth logging (numbers or short strings)
    info: dict[str, Any] = field(default_factory=dict)
    #: per-pixel posterior standard deviation, the shape of ``x`` (None: the method gives none);
    #: metrics that need it (calibration) are computed where it exists
    uncertainty: torch.Tensor | None = None
    #: the method's own split of its cost (None: the harness times the call and shares it out)
    cost: SoloCost | None = None


@dataclass(frozen=True)
class Problem:
    """One reconstruction problem as a method sees it: never the ground truth."""

    y: torch.Tensor
    physics: Any
    seed: int
    callback: Callback | None = None


@dataclass(frozen=True)
class TrainingContext:
    """Everything a trained method needs to fit itself, and where to cache the result."""

    images: Sequence[torch.Tensor]  # training split, each C×H×W in [0, 1], loaded on first access
    dataset: str  # name of the training set (part of the cache key)
    task: Any  # benchmark.problems.tasks.Task
    cache_dir: Path
    seed: int
    device: torch.device
    progress: bool = True
    #: channels of the test images the method will restore (None: not known); a method whose
    #: training images have other channels raises ``NotApplicable`` (its cells are skipped)
    channels: int | None = None


@dataclass
class TrainingReport:
    """What training cost; reported apart from reconstruction time."""

    seconds: float
    cached: bool
    checkpoint: str = ""
    losses: list[float] = field(default_factory=list)
    #: training images behind the weights (None when unknown, e.g. released weights)
    images: int | None = None
    #: what the weights are, as tables label them: "suite prior, 13 images of embedded, 800
    #: steps" or "ffhq weights" (empty: not said)
    description: str = ""


#: how the description of released weights begins (``ReleasedTraining.description``): reports
#: tell released weights from the suite's own training by it
RELEASED = "released weights"


@dataclass(frozen=True)
class ReleasedTraining:
    """What a method's released weights learnt from, as their authors state it, so that a table
    shows their training set instead of "0 training images" and the data-efficiency figure places
    them at its size. ``source`` says where the figure comes from (paper and section)."""

    dataset: str
    images: int
    source: str
    #: the kind of images they learnt from (``benchmark.problems.conditions.CONTENT``: natural, CT,
    #: MRI): weights learnt on photographs applied to CT slices are a content shift
    content: str = "natural"

    @property
    def description(self) -> str:
        """"released weights, 4 744 images of <dataset> (<source>)": the record's ``trained_on``."""
        count = f"{self.images:,}".replace(",", " ")
        return f"{RELEASED}, {count} images of {self.dataset} ({self.source})"

    def report(self, seconds: float, checkpoint: str = "") -> TrainingReport:
        """The training report of loading these weights: nothing trained, their training set said."""
        return TrainingReport(seconds=seconds, cached=True, checkpoint=checkpoint, images=self.images,
                              description=self.description)


def is_released(trained_on: str) -> bool:
    """Whether a record's ``info["trained_on"]`` describes released weights."""
    return str(trained_on).startswith(RELEASED)


#: the parameter of every trained method that says how many training images it learns from
TRAIN_IMAGES = "train_images"

#: the parameter of a trained method that learns a task-specific model: the registered task whose
#: physics and noise it trains on (None: the test task). Where it differs from the cell's task the
#: cell is a shift cell (``benchmark.problems.conditions``): a network trained on one condition
#: may fail on another, where DIP, fitted afresh to each measurement, has nothing learnt to mislead it
TRAIN_TASK = "train_task"
#: the parameter of a trained method naming its training set (None: the profile's training set for
#: the test task's image space): a content shift where its images are of another kind than the test
#: images (natural, CT, MRI; ``benchmark.problems.conditions``)
TRAIN_SET = "train_set"

#: the budget of a method's own defaults (the papers' settings), which every method has; any other
#: budget a profile names (``budget:`` in its YAML) is an entry of the methods' ``budgets``
PAPER_BUDGET = "paper"


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    return type(default).__name__


def _same_kind(value: Any, default: Any) -> bool:
    """Does ``value`` have the type of ``default`` (an int counts as a float, a bool as neither)?"""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, type(default))


def _entries_for(table: Mapping[str, Mapping[str, Any]], task: Any) -> dict[str, Any]:
    """A per-task table's values for ``task``: its family's entry, then its name's (which wins);
    for a family name (tools without a task), the family's entry alone; none for ``None``."""
    if task is None:
        return {}
    if isinstance(task, str):
        return dict(table.get(task, {}))
    return {**table.get(task.family, {}), **table.get(task.name, {})}


class Method:
    """Base class of every registered method. Subclass it in one file under ``methods/``.

    Class attributes declare the method; ``defaults`` lists every accepted parameter with its
    default value (the papers' settings), ``task_defaults`` overrides them per task: a table
    keyed by task family and by task name (the name's entry wins, e.g. DIP's input perturbation
    at σ = 50); defaults computed from the task (``task.params``, ``task.noise_sigma``) override
    :meth:`defaults_for`. ``budgets`` are the other budgets a profile may select: the tests'
    ("test"), the CPU-sized quick profile's ("quick"), the ``*_cpu`` profiles' ("cpu"), ….
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "baseline"  # "baseline" | "dip" | "data-driven"
    summary: ClassVar[str] = ""
    #: the paper (authors, title, venue, year) the method and its defaults come from, as the
    #: reference pages and the report cite it; a baseline without one says what it is
    citation: ClassVar[str] = ""
    defaults: ClassVar[Mapping[str, Any]] = {}
    task_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: per budget a profile may select, the parameters it sets over the defaults (``{}``: the
    #: defaults run under it): "test" (the conformance tests and the smoke profile: seconds per
    #: cell), "quick" (the quick profile: a CPU-sized run of the whole suite), "cpu" (the ``*_cpu``
    #: profiles), or any other a profile names; "paper" is the defaults themselves. A profile's
    #: methods must all declare its budget (checked when the plan is made)
    budgets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: per budget, what a task family (or task name, which wins) keeps over that budget's
    #: parameters: a per-task default chosen for that budget's sizes, e.g. DIP's MRI learning
    #: rate, chosen with the quick network, survives the quick budget's lr
    budget_task_params: ClassVar[Mapping[str, Mapping[str, Mapping[str, Any]]]] = {}
    #: how the method treats the measurement y, in a few words: every method here uses it as the
    #: task measured it (noise, quantisation), never clipped to [0, 1] first; a method that clips
    #: or otherwise edits it says so (the reference pages show it)
    uses_y: ClassVar[str] = "as measured, not clipped"
    #: how the method decides when to stop and which iterate to return, in a few words (e.g.
    #: "windowed moving variance"); methods that have one appear in the early-stopping table
    stopping_rule: ClassVar[str] = ""
    #: what the method's released weights learnt from, by release (e.g. "gray" and "rgb", or the
    #: names a ``pretrained`` parameter takes); empty for methods without released weights
    released_training: ClassVar[Mapping[str, ReleasedTraining]] = {}
    #: methods that learn from a training split implement ``prepare`` and take the parameter
    #: ``train_images`` (the first N images of the training split; None: all of them)
    needs_training: ClassVar[bool] = False
    #: the parameter counting a trained method's optimiser steps (``benchmark plan`` times a few
    #: of them to estimate the training's cost); None: not declared
    training_steps_parameter: ClassVar[str | None] = None
    #: how many problems of one task and image size ``reconstruct_batch`` may get at once; more
    #: than 1 only where solving them together is faster than one by one (e.g. DIP fits B
    #: networks in one step)
    max_batch: ClassVar[int] = 1
    #: parameters ``benchmark tune`` may choose on validation images drawn from the training
    #: split (never test images), each with its default grid (``benchmark.run.tuning``)
    tunable: ClassVar[Mapping[str, Sequence[Any]]] = {}
    #: one tuned choice per ``"task"`` (e.g. per noise level) or per task ``"family"``
    tune_by: ClassVar[str] = "task"
    #: a tunable that only says when to stop (the iterate at step k is what a budget of k
    #: returns): its grid is read off one run's PSNR trajectory instead of one run per value
    budget_parameter: ClassVar[str | None] = None
    #: the version of the method's code: bump it when a change alters its results under the same
    #: parameters, so that a results store recomputes its cells instead of reusing stale ones
    revision: ClassVar[int] = 1
    #: parameters besides ``train_task`` and ``train_set`` that choose what the instance learnt from
    #: and not how it reconstructs (released weights trained at one condition: DnCNN-S's
    #: ``model_sigma``): a shift cell and its in-distribution twin differ in these only
    #: (:meth:`condition_parameters`)
    condition_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **params: Any) -> None:
        self.check_names(params)
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.validate(self.params)

    @classmethod
    def check_names(cls, params: Mapping[str, Any]) -> None:
        """Unknown parameter names are a ``UserError`` naming the valid ones."""
        extra = sorted((k for k in params if k not in cls.defaults), key=str)
        if extra:
            valid = ", ".join(sorted(cls.defaults)) or "(none)"
            raise UserError(
                f"method {cls.name!r} has no parameter {', '.join(map(repr, extra))}; "
                f"valid parameters: {valid}"
            )

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        """Refuse bad values with a ``UserError`` when the plan is made, before any work.

        By default every value must have its default's type; a method adds its own ranges
        (a positive iteration count, a fraction in (0, 1)) by extending this."""
        cls.check_names(params)
        for key, value in params.items():
            default = cls.defaults[key]
            if not _same_kind(value, default):
                raise UserError(f"method {cls.name!r}: parameter {key!r} must be {_type_name(default)}, "
                                f"got {value!r}")
        if TRAIN_IMAGES in params:
            count = params[TRAIN_IMAGES]
            cls.require(params, TRAIN_IMAGES, count is None or (type(count) is int and count >= 1),
                        "an integer >= 1 (or null: the whole training set)")
        for key, what in ((TRAIN_TASK, "a registered task's name"), (TRAIN_SET, "a training set's name")):
            if key in params:
                value = params[key]
                cls.require(params, key, value is None or (isinstance(value, str) and bool(value.strip())),
                            f"{what} (or null: the {'test task' if key == TRAIN_TASK else 'profile training set'})")

    @classmethod
    def require(cls, params: Mapping[str, Any], key: str, ok: bool, expected: str) -> None:
        """For ``validate``: a ``UserError`` saying what ``key`` must be unless ``ok``."""
        if not ok:
            raise UserError(f"method {cls.name!r}: parameter {key!r} must be {expected}, got {params[key]!r}")

    @classmethod
    def has_budget(cls, budget: str) -> bool:
        return budget == PAPER_BUDGET or budget in cls.budgets

    @classmethod
    def budget_params(cls, budget: str, task: Any = None) -> dict[str, Any]:
        """The parameters a budget sets (none for "paper"), for ``task`` (a
        ``benchmark.problems.tasks.Task`` or a family name) with its ``budget_task_params`` on top; a
        budget the method does not declare is a ``UserError`` naming the ones it has."""
        if not cls.has_budget(budget):
            declared = ", ".join([PAPER_BUDGET, *cls.budgets])
            raise UserError(f"method {cls.name!r} has no {budget!r} budget (it has: {declared}); declare "
                            f"budgets[{budget!r}] on it ({{}} runs its defaults under that budget)")
        base = {} if budget == PAPER_BUDGET else cls.budgets[budget]
        return {**base, **_entries_for(cls.budget_task_params.get(budget, {}), task)}

    @classmethod
    def defaults_for(cls, task: Any) -> dict[str, Any]:
        """The per-task defaults for ``task`` (a ``benchmark.problems.tasks.Task``): the ``task_defaults``
        entry of its family, updated by the entry of its name (a method may compute them)."""
        return _entries_for(cls.task_defaults, task)

    @classmethod
    def resolve_params(cls, task: Any, overrides: Mapping[str, Any], budget: str = "paper") -> dict[str, Any]:
        """Defaults, then the per-task defaults, then the budget's, then the overrides. ``task`` is a
        ``benchmark.problems.tasks.Task``, or a family name for tools that have none (family entries only)."""
        per_task = _entries_for(cls.task_defaults, task) if isinstance(task, str) else cls.defaults_for(task)
        return {**cls.defaults, **per_task, **cls.budget_params(budget, task), **overrides}

    @classmethod
    def condition_parameters(cls) -> tuple[str, ...]:
        """The parameters that say what the instance learnt from: ``train_task`` and ``train_set``
        where the method takes them, and its own ``condition_params``."""
        return tuple(k for k in (TRAIN_TASK, TRAIN_SET) if k in cls.defaults) + tuple(cls.condition_params)

    def train_task(self, task: Any) -> str | None:
        """The name of the task whose physics and noise this instance learnt from, for a test on
        ``task`` (a ``benchmark.problems.tasks.Task``): its ``train_task`` (None there: ``task``
        itself) where the method takes one; None where what it learnt does not depend on the task
        (untrained methods, a task-independent prior, a network that takes σ as input). Released
        weights trained at one condition override it (DnCNN-S: the task of its model's σ)."""
        if TRAIN_TASK not in self.defaults:
            return None
        return self.params.get(TRAIN_TASK) or task.name

    def released_content(self) -> str:
        """The kind of images (natural, CT, MRI) the released weights this instance uses learnt
        from; "" where it uses none (untrained, or trained by the suite: its training set says)."""
        if self.needs_training or not self.released_training:
            return ""
        kinds = {release.content for release in self.released_training.values()}
        return kinds.pop() if len(kinds) == 1 else ""

    def skip_reason(self, task: Any, channels: int | None = None) -> str | None:
        """Why this method does not apply to ``task`` (on images of ``channels`` channels, when
        known); None when it does. The harness records such cells as skipped, with the reason."""
        return None

    def memory_estimate(self, shape: tuple[int, int, int]) -> int | None:
        """Bytes that solving one problem on a C×H×W image needs at least (None: not declared).
        The plan refuses, before any work, a batch whose estimate exceeds the device's memory."""
        return None

    def prepare(self, ctx: TrainingContext) -> TrainingReport | None:
        """Train, load a cached checkpoint or load weights, once per (task, training set), before
        any reconstruction and outside its timing. Return a report when something was trained."""
        return None

    def reconstruct(
        self,
        y: torch.Tensor,
        physics: Any,
        *,
        seed: int,
        callback: Callback | None = None,
    ) -> torch.Tensor | Reconstruction:
        raise NotImplementedError

    def reconstruct_batch(self, problems: Sequence[Problem]) -> Sequence[torch.Tensor | Reconstruction]:
        """Solve several problems of one task and image size; each result must be what
        ``reconstruct`` gives for that problem alone (to float tolerance). By default, one by one."""
        return [self.reconstruct(p.y, p.physics, seed=p.seed, callback=p.callback) for p in problems]

    def shared_fit_key(self) -> str | None:
        """Methods whose instances give equal keys compute one trajectory for a problem and differ
        only in how they read it (when to stop, which stream of iterates): the harness hands their
        cells of one measurement to :meth:`solve_shared` together. None (the default): never shared."""
        return None

    @classmethod
    def solve_shared(cls, groups: Sequence[Sequence[tuple[Method, Problem]]]
                     ) -> Sequence[Sequence[torch.Tensor | Reconstruction]]:
        """Each group: the methods (sharing one ``shared_fit_key``) reading one problem; one result
        per method, each what it gives alone. By default, each method alone."""
        return [[m.reconstruct(p.y, p.physics, seed=p.seed, callback=p.callback) for m, p in group]
                for group in groups]


def as_reconstruction(result: torch.Tensor | Reconstruction) -> Reconstruction:
    """Normalise a method's return value."""
    if isinstance(result, Reconstruction):
        return result
    return Reconstruction(x=result)


def params_dict(obj: Any) -> dict[str, Any]:
    """Parameters of a dataclass or mapping as a plain dict (for hashing and logging)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return dict(obj)
