"""Hyperparameters chosen on validation images from the training split, never on test images
(issue 12, item 7).

A method declares what may be tuned (``Method.tunable``: parameter → grid; ``tune_by``: one
choice per task, e.g. per noise level, or per task family; ``budget_parameter``: an iteration
budget, read off one run's PSNR trajectory instead of one run per value). ``benchmark tune``
scores every grid point by the mean primary metric (``metrics.primary()``, PSNR) over validation
images drawn (seeded) from the training
split of the profile's training dataset, through the same harness as the benchmark, and writes
each choice with its record (grid, every score, images, the other parameters, cost, date,
commit, command) to the tuned-values file the profile names (``tuned:``). The plan applies the
choices: defaults ← per-task defaults ← the budget ← tuned ← the profile's ``method_params``,
grids and ``--set``.

A method that learns from the training split (DPS's prior, say) is tuned with its validation
images held out: it trains on the rest of the split (:class:`HeldOut`), so a choice is never
scored on an image the method has seen, as a validation split is meant to be.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from benchmark import registry
from benchmark.core.errors import UserError
from benchmark.core.keys import canonical_json
from benchmark.problems import data, metrics, tasks
from benchmark.results.tracking import git_commit
from benchmark.run import harness
from benchmark.run.grid import MethodSpec, parse_spec
from benchmark.run.harness import pick_device, run_cells
from benchmark.run.plan import (
    Cell,
    MethodInstance,
    batches,
    method_instances,
    resolved_params,
    selected_methods,
    serving_entry,
    training_preparation,
    version_of,
)
from benchmark.run.pool import MethodPool
from benchmark.run.profiles import WITHOUT_VALIDATION, PreparedSet, Profile
from benchmark.run.tuned_values import load


@dataclass(frozen=True)
class HeldOut:
    """The training set of a trained method while it is tuned: the training split of ``dataset``
    (prepared as the benchmark trains on it: resized like the test images it serves) without the
    validation images ``excluded``."""

    dataset: str
    excluded: tuple[str, ...]
    resize: int | None = None
    crop: int | None = None

    @property
    def name(self) -> str:
        """The set's name in cells and reports (and, with its images, in the cache key)."""
        prepared = PreparedSet(self.dataset, self.resize, self.crop).name
        return f"{prepared}{WITHOUT_VALIDATION}{','.join(self.excluded)}"

    def load(self) -> list[torch.Tensor]:
        images = data.load(self.dataset, split="train", resize=self.resize, crop=self.crop)
        kept = [img.tensor for img in images if img.id not in self.excluded]
        if len(kept) != len(images) - len(set(self.excluded)) or not kept:
            raise UserError(f"tune: the validation images {', '.join(self.excluded)} are not all in the training "
                            f"split of {self.dataset!r}, or none is left to train on")
        return kept


#: ``run(method, params, task, images, trajectory_every, held_out)`` → one harness record per
#: image; ``held_out`` is the training set of a trained method (None: it trains on nothing)
Runner = Callable[[str, dict[str, Any], tasks.Task, Sequence[data.Image], int, HeldOut | None], list[Any]]


def fixed_params(profile: Profile, method: str, task: tasks.Task) -> dict[str, Any]:
    """The parameters a tuning run holds fixed: the plan's, without tuned values, grids or ``--set``."""
    given = tuple(sorted(profile.method_params.get(method, {}).items()))
    return resolved_params(profile, MethodInstance(method, given, method), task, tuned=False)


def colour_only(profile: Profile, task_list: Sequence[tasks.Task]) -> bool:
    """Whether every standard set the profile runs these tasks on is colour (and the profile
    names a colour training set): their validation images are then drawn from that set."""
    if not profile.training.rgb:
        return False
    specs = [spec for spec in profile.datasets if any(spec.tasks is None or t.name in spec.tasks for t in task_list)]
    known = data.manifests()
    return bool(specs) and all(spec.name in known and data.channels_of(spec.name, spec.mode) == 3 for spec in specs)


def validation_images(profile: Profile, multiple: int = 1, space: str = "unit",
                      colour: bool = False) -> list[data.Image]:
    """``tune.images`` images drawn (seeded) from the training split, resized and cropped as
    ``tune`` says: only ever the training split. Tasks of another image space (MRI, CT) draw
    from that space's training set, prepared as the profile trains on it; ``colour`` tasks
    (run only on colour sets) from the profile's colour training set (``training: {rgb: …}``)."""
    spec = profile.tune
    training = profile.training.for_space(space)
    if training is profile.training:
        name = profile.training.rgb if colour and profile.training.rgb else training.dataset
        pool = data.load(name, split="train", resize=spec.resize, crop=spec.crop, multiple=multiple)
    else:
        prepared = _space_preparation(profile, space)
        pool = data.load(training.dataset, split="train", resize=prepared.resize, crop=prepared.crop,
                         multiple=multiple)
    if len(pool) < spec.images:
        raise UserError(f"tune: {spec.images} validation images asked for; the training split of "
                        f"{name if training is profile.training else training.dataset!r} has {len(pool)}")
    chosen = sorted(random.Random(spec.seed).sample(range(len(pool)), spec.images))
    return [pool[i] for i in chosen]


def requests(profile: Profile, methods: Sequence[str] | None = None) -> dict[str, dict[str, list[Any]]]:
    """method → grid to search, every name and value checked before any work."""
    for name in profile.tune.grids:
        registry.get(name)
    names = list(methods or profile.tune.methods or [])
    if not names:
        names = [m for m in selected_methods(profile)
                 if registry.get(m).tunable and not registry.get(m).needs_training]
    task_list = [tasks.get(t) for t in profile.tasks]
    out: dict[str, dict[str, list[Any]]] = {}
    for name in names:
        cls = registry.get(name)
        if not cls.tunable:
            raise UserError(f"tune: method {name!r} declares no tunable parameter; tunable methods: "
                            f"{', '.join(m for m, c in registry.available().items() if c.tunable) or '(none)'}")
        grid = {k: list(v) for k, v in profile.tune.grids.get(name, cls.tunable).items()}
        undeclared = sorted(set(grid) - set(cls.tunable))
        if undeclared:
            raise UserError(f"tune: {name}.{undeclared[0]} is not tunable; tunable: {', '.join(sorted(cls.tunable))}")
        pinned = sorted(set(grid) & set(profile.method_params.get(name, {})))
        if pinned:
            raise UserError(f"tune: the profile's method_params set {name}.{pinned[0]}, which would override the "
                            "tuned value; drop it from method_params or from the grid")
        budget = cls.budget_parameter
        for task in task_list:
            base = fixed_params(profile, name, task)
            for key, values in grid.items():
                for value in values:
                    cls.validate({**base, key: value})
            if budget in grid and not all(isinstance(v, int) and not isinstance(v, bool) for v in grid[budget]):
                raise UserError(f"tune: {name}.{budget} grid must hold integers, got {grid[budget]!r}")
        out[name] = grid
    if not out:
        raise UserError("no method to tune: none of the selected methods declares tunable parameters")
    return out


def _space_preparation(profile: Profile, space: str) -> PreparedSet:
    """How the benchmark prepares the training set of image space ``space`` (its own entry's): for
    the test images of the first of the profile's tasks of that space it serves."""
    task = next((t for t in map(tasks.get, profile.tasks) if t.space.name == space), None)
    entry = serving_entry(profile, task) if task is not None else None
    return profile.training.for_space(space).prepared(entry.resize if entry is not None else None)


def held_out_set(profile: Profile, task: tasks.Task, images: Sequence[data.Image], colour: bool) -> HeldOut:
    """What a trained method learns from while it is tuned on ``images``: the training set the
    validation images were drawn from, prepared as the benchmark trains on it (resized like the
    test images of ``task``, unless the profile's ``training: {resize: …}`` says otherwise),
    without them."""
    prepared = training_preparation(profile, 3 if colour else 1, task)
    return HeldOut(prepared.dataset, tuple(img.id for img in images), prepared.resize, prepared.crop)


def targets(method: str, task_list: Sequence[tasks.Task]) -> list[tuple[str, str, list[tasks.Task]]]:
    """(scope, applies_to, tasks scored): each task, or each family with all its tasks."""
    scope = registry.get(method).tune_by
    out: dict[str, list[tasks.Task]] = {}
    for task in task_list:
        out.setdefault(task.name if scope == "task" else task.family, []).append(task)
    return [(scope, key, group) for key, group in out.items()]


def _points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    return list(MethodSpec("", {k: list(v) for k, v in grid.items()}).combinations())


def _at_step(trajectory: Sequence[Mapping[str, float]], step: int, metric: str) -> float:
    for point in trajectory:
        if int(point["step"]) == step:
            return float(point[metric])
    raise RuntimeError(f"no trajectory point at step {step} (the run stopped earlier?)")


def score_grid(method: str, grid: Mapping[str, Sequence[Any]], fixed: Mapping[str, dict[str, Any]],
               task_list: Sequence[tasks.Task], images: Mapping[str, Sequence[data.Image]],
               run: Runner, held_out: Mapping[str, HeldOut] | None = None,
               ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score every point of ``grid`` (the mean primary metric over ``task_list`` × their validation
    images: each entry's ``value``);
    return (the best point, every point with its scores). A budget parameter's values are read
    off one run at the largest budget; ties go to the earlier grid point. ``held_out``: per task,
    the training set of a trained method (its validation images left out)."""
    from math import gcd

    primary = metrics.primary()
    budget = registry.get(method).budget_parameter
    budget = budget if budget in grid else None
    budgets = sorted(int(b) for b in grid[budget]) if budget else []
    every = gcd(*budgets) if budgets else 2**31  # without a budget, only the output is scored
    scored: list[dict[str, Any]] = []
    for point in _points({k: v for k, v in grid.items() if k != budget}):
        per_task: dict[str, list[Any]] = {}
        for task in task_list:
            params = {**fixed[task.name], **point, **({budget: budgets[-1]} if budget else {})}
            records = run(method, params, task, images[task.name], every, (held_out or {}).get(task.name))
            failed = [r for r in records if r.status != "ok"]
            if failed:
                raise RuntimeError(f"tuning {method} on {task.name} failed: {failed[0].error or failed[0].status}")
            per_task[task.name] = records
        steps: list[int | None] = list(budgets) if budgets else [None]
        for b in steps:
            values = {t: [_at_step(r.trajectory, b, primary.name) if b is not None else float(r.metrics[primary.name])
                          for r in recs] for t, recs in per_task.items()}
            entry = {**point, **({budget: b} if budget else {})}
            flat = [v for vs in values.values() for v in vs]
            scored.append({"params": entry, "value": round(float(np.mean(flat)), 4),
                           "per_image": {t: [round(v, 3) for v in vs] for t, vs in values.items()}})
    sign = 1.0 if primary.higher_is_better else -1.0
    best = max(scored, key=lambda s: sign * s["value"])
    return dict(best["params"]), scored


def harness_runner(profile: Profile, device: torch.device) -> Runner:
    """Validation runs through the benchmark's own harness (PSNR only, nothing saved)."""
    sets: dict[str, HeldOut] = {}
    pool = MethodPool(list, profile.training.dataset, harness.checkpoint_dir(), device, progress=False,
                      load_training=lambda name: sets[name].load())
    skip = {m.name for m in metrics.registered()} - {metrics.primary().name}
    prep = f"tune-resize{profile.tune.resize}-crop{profile.tune.crop}"

    def run(method: str, params: dict[str, Any], task: tasks.Task, images: Sequence[data.Image],
            every: int, held_out: HeldOut | None) -> list[Any]:
        by_id = {img.id: img.tensor for img in images}
        training = ""
        if held_out is not None:
            sets[held_out.name], training = held_out, held_out.name
        cells = [Cell(method, canonical_json(params), task.name, f"{profile.training.dataset}:train", img.id, prep,
                      profile.tune.seed, method, training, version=version_of(method)) for img in images]
        out = {}
        for batch in batches(cells, lambda c: tuple(by_id[c.image_id].shape), len(cells)):
            for o in run_cells(batch, [by_id[c.image_id] for c in batch], pool, profile="tune",
                               trajectory_every=every, save_reconstruction=False, skip_metrics=skip):
                out[o.record.image_id] = o.record
        return [out[img.id] for img in images]

    return run


def tune(profile: Profile, *, methods: Sequence[str] | None = None, task_names: Sequence[str] | None = None,
         device: str | None = None, run: Runner | None = None, command: str = "",
         log: Callable[[str], None] = print,
         on_record: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run the grid searches of ``profile`` and return their records; ``on_record`` gets each
    as soon as it is made (the CLI writes it then, so an interrupted tune keeps what it finished)."""
    profile = dataclasses.replace(profile, tuned=None)  # tuning never reads earlier choices
    task_list = [tasks.get(t) for t in (task_names or profile.tasks)]
    grids = requests(profile, methods)
    dev = pick_device(device or profile.device)
    run = run or harness_runner(profile, dev)
    images: dict[tuple[str, int, bool], list[data.Image]] = {}
    records: list[dict[str, Any]] = []
    for method, grid in grids.items():
        for scope, applies_to, group in targets(method, [t for t in task_list if applies(profile, method, t)]):
            colour = colour_only(profile, group)
            for task in group:
                if (task.space.name, task.size_multiple, colour) not in images:
                    images[(task.space.name, task.size_multiple, colour)] = validation_images(
                        profile, task.size_multiple, task.space.name, colour)
            by_task = {t.name: images[(t.space.name, t.size_multiple, colour)] for t in group}
            fixed = {t.name: fixed_params(profile, method, t) for t in group}
            trained = registry.get(method).needs_training
            held_out = {t.name: held_out_set(profile, t, by_task[t.name], colour) for t in group} if trained else {}
            started = time.perf_counter()
            chosen, scored = score_grid(method, grid, fixed, group, by_task, run, held_out)
            cost = time.perf_counter() - started
            edge = [k for k, v in chosen.items() if len(grid[k]) > 1 and v in (grid[k][0], grid[k][-1])]
            log(f"{method} · {applies_to}: {chosen} ({len(scored)} grid points, {cost:.0f} s)"
                + (f"; at the grid's edge: {', '.join(edge)}" if edge else ""))
            held = {k: v for k, v in fixed[group[0].name].items() if k not in grid}
            training = profile.training.for_space(group[0].space.name)
            own_space = training is profile.training  # validation images prepared as ``tune`` says
            if colour and own_space:
                training = dataclasses.replace(training, dataset=str(profile.training.rgb))
            space_prep = _space_preparation(profile, group[0].space.name)
            prepared = ((profile.tune.resize, profile.tune.crop) if own_space
                        else (space_prep.resize, space_prep.crop))
            records.append({
                "method": method, "scope": scope, "applies_to": applies_to, "tasks": [t.name for t in group],
                "chosen": chosen, "metric": metrics.primary().name,
                "scored_by": "the mean over the validation images (and tasks)",
                "grid": {k: list(v) for k, v in grid.items()}, "scores": scored, "fixed": held,
                "validation": {"dataset": training.dataset, "split": "train",
                               "images": [img.id for img in by_task[group[0].name]],
                               "resize": prepared[0], "crop": prepared[1], "seed": profile.tune.seed,
                               **({"held_out": f"left out of {method}'s training set ({held_out[group[0].name].name})"}
                                  if held_out else {})},
                "cost_s": round(cost, 1), "device": str(dev), "threads": torch.get_num_threads(),
                "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"), "commit": git_commit(),
                "command": command or f"python -m benchmark tune --profile {profile.name}",
            })
            if on_record is not None:
                on_record(records[-1])
    return records


def applies(profile: Profile, method: str, task: tasks.Task) -> bool:
    """Whether ``method``, with the parameters the profile gives it there, applies to ``task`` at
    all (no ``skip_reason``: MoDL skips CT): it is neither tuned nor reported untuned where it skips."""
    return registry.get(method)(**fixed_params(profile, method, task)).skip_reason(task) is None


def runs_on(profile: Profile, method: str, task: tasks.Task) -> bool:
    """Whether some dataset of the profile runs ``method`` on ``task``: an entry may name only
    some tasks and only some methods (by name or label); one without a task list runs the tasks
    its images fit (as the plan decides); never where the method skips the task (``applies``)."""
    if not applies(profile, method, task):
        return False
    for spec in profile.datasets:
        if spec.tasks is not None and task.name not in spec.tasks:
            continue
        if spec.methods is not None and not any(parse_spec(m).name == method for m in spec.methods):
            continue
        if spec.tasks is None:
            try:
                channels: int | None = data.channels_of(spec.name, spec.mode)
            except KeyError:  # a folder of the user's images: known once read
                channels = None
            if channels is not None and channels not in task.space.channels:
                continue
        return True
    return False


def report_rows(profile: Profile) -> list[dict[str, Any]]:
    """For the report: each tuned value the profile uses with its record (and the parameters
    it was tuned with that differ now: stale), then each tunable a planned method uses untuned."""
    values = load(profile)
    task_list = [tasks.get(t) for t in profile.tasks]
    names = list(dict.fromkeys(i.name for i in method_instances(profile)))
    rows: list[dict[str, Any]] = []
    for rec in values.records:
        if rec["method"] not in names or not set(rec["tasks"]) & set(profile.tasks):
            continue
        now = {k: v for k, v in fixed_params(profile, rec["method"], tasks.get(rec["tasks"][0])).items()
               if k not in rec["grid"]}
        # a parameter added to the method since the record ran as its default then
        then = {**{k: v for k, v in registry.get(rec["method"]).defaults.items() if k in now}, **rec["fixed"]}
        stale = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
        rows.append({**rec, "stale": stale})
    for method in names:
        cls = registry.get(method)
        for task in task_list:
            if not runs_on(profile, method, task):
                continue
            tuned = values.params_for(method, task)
            for name in sorted(set(cls.tunable) - set(tuned)):
                given = profile.method_params.get(method, {})
                where = ("set in the profile" if name in given else f"budget {profile.budget}"
                         if name in cls.budget_params(profile.budget, task) else "method default")
                rows.append({"method": method, "applies_to": task.name, "untuned": name, "where": where,
                             "value": fixed_params(profile, method, task)[name]})
    return rows
