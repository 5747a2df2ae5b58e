"""The plan: a profile's method instances × tasks × datasets × images × seeds as a list of cells.

A method instance is a method with its parameters (``dip[iterations=500]``); a grid in the
profile or on the command line expands to several (see ``benchmark.run.grid``).

A cell's key is a stable hash of (method, resolved parameters, task, dataset, image, crop,
seed), so a rerun knows what is already done and never duplicates a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from benchmark import registry
from benchmark.api import TRAIN_IMAGES, TRAIN_SET, TRAIN_TASK
from benchmark.core.errors import DataUnavailable, UserError
from benchmark.core.keys import canonical_json
from benchmark.problems import data, spaces, tasks
from benchmark.run import grid, tuned_values
from benchmark.run.profiles import DatasetSpec, PreparedSet, Profile

#: the version of how the harness measures a cell (measurement noise and masks, seeds, metrics,
#: costs): bump it when a change alters the numbers of unchanged methods, so old stores recompute.
#: 2: the DIP family's runtimes from its own cost split (network to its stop + its rule); the
#: frequency-band trajectories; CT noise as photon counts and the FBP's Hann filter; uncertainty metrics
PROTOCOL = 2


def version_of(method: str) -> str:
    """A cell's version: the harness protocol and the method's ``revision``."""
    return f"protocol{PROTOCOL}-rev{registry.get(method).revision}"


@dataclass(frozen=True)
class Cell:
    method: str
    params_json: str
    task: str
    dataset: str
    image_id: str
    crop: str  # the image preparation, e.g. "resize96-crop64"
    seed: int
    #: the method instance as reports show it, e.g. ``dip[iterations=500]`` (not part of the key:
    #: the resolved parameters already are)
    label: str = ""
    #: the training set a trained method learns from for this cell ("" for untrained methods);
    #: part of the key, so the same U-Net trained on Train400 or on CBSD432 are two results
    training: str = ""
    #: the harness protocol and the method's code revision (``version_of``): part of the key, so a
    #: store made before a change in how cells are measured or solved is recomputed, not reused
    version: str = ""

    @cached_property
    def key(self) -> str:
        ident: list[Any] = [self.method, self.params_json, self.task, self.dataset, self.image_id, self.crop, self.seed]
        if self.training:
            ident.append(self.training)
        if self.version:
            ident.append(self.version)
        return hashlib.sha256(canonical_json(ident).encode()).hexdigest()[:24]

    @property
    def params(self) -> dict[str, Any]:
        return json.loads(self.params_json)

    @property
    def group(self) -> tuple[str, str, str]:
        """The (method instance, task, dataset) group: one MLflow child run, one table entry."""
        return (self.label or self.method, self.task, self.dataset)


@dataclass(frozen=True)
class MethodInstance:
    """A method with the parameters a profile gives it (``method_params``, a grid combination,
    ``--set``); the budget and the per-task defaults fill in the rest, per task."""

    name: str
    params: tuple[tuple[str, Any], ...]
    label: str

    @property
    def overrides(self) -> dict[str, Any]:
        return dict(self.params)


def _specs(profile: Profile) -> list[grid.MethodSpec]:
    specs: list[grid.MethodSpec] = []
    for text in profile.methods:
        if text == "all":
            specs.extend(grid.MethodSpec(name) for name in registry.available())
        else:
            spec = grid.parse_spec(text)
            registry.get(spec.name)  # raises a UserError listing the valid names
            specs.append(spec)
    return specs


def check_task_keys(cls: type[Any], budget: str) -> None:
    """A method's per-task tables (``task_defaults``, its budget's ``budget_task_params``) are keyed
    by registered tasks and declared families only: a misspelt key would silently drop the setting."""
    tables = {"task_defaults": cls.task_defaults,
              f"budget_task_params[{budget!r}]": cls.budget_task_params.get(budget, {})}
    for where, table in tables.items():
        for key in table:
            if not tasks.keyable(key):
                raise UserError(f"method {cls.name!r}: {where} key {key!r} is neither a task nor a task family; "
                                f"families: {', '.join(tasks.FAMILIES)}; tasks: {', '.join(tasks.TASKS)}")


def method_instances(profile: Profile) -> list[MethodInstance]:
    """The profile's methods, grids expanded, labelled by their name plus the parameters that
    differ from the method's defaults under the profile's budget (swept ones always shown)."""
    known = registry.available()
    for name in profile.method_params:
        if name not in known:
            raise UserError(f"method_params names unknown method {name!r}; valid: {', '.join(known)}")
    specs = _specs(profile)
    for name in profile.settings:
        if name not in {s.name for s in specs}:
            raise UserError(f"--set names method {name!r}, which this run does not include; "
                            f"methods: {', '.join(dict.fromkeys(s.name for s in specs))}")
    instances: dict[str, MethodInstance] = {}
    tuned = tuned_values.load(profile)
    task_list = [tasks.get(t) for t in profile.tasks]
    for spec in specs:
        cls = known[spec.name]
        check_task_keys(cls, profile.budget)
        sweep = {**spec.grid, **profile.settings.get(spec.name, {})}
        cls.check_names(sweep)
        cls.check_names(profile.method_params.get(spec.name, {}))
        base = {**cls.defaults, **cls.budget_params(profile.budget)}
        for combination in grid.MethodSpec(spec.name, sweep).combinations():
            given = {**profile.method_params.get(spec.name, {}), **combination}
            shown = {k: v for k, v in given.items()
                     if len(sweep.get(k, ())) > 1 or k not in base or canonical_json(v) != canonical_json(base[k])}
            # a value the profile's tuned file chooses (per task): the label says so
            shown.update({k: tuned_values.TUNED for k in tuned.names(spec.name, task_list) - set(given)})
            label = grid.label(spec.name, shown)
            instances.setdefault(label, MethodInstance(spec.name, tuple(sorted(given.items())), label))
    return list(instances.values())


def selected_methods(profile: Profile) -> list[str]:
    """The names of the profile's methods (each once, in the profile's order)."""
    return list(dict.fromkeys(i.name for i in method_instances(profile)))


def resolved_params(profile: Profile, instance: MethodInstance, task: tasks.Task, *,
                    tuned: bool = True) -> dict[str, Any]:
    """Method defaults ← per-task defaults ← the budget ← the profile's tuned values
    (``benchmark.run.tuning``; not with ``tuned=False``) ← the instance's; validated now."""
    cls = registry.get(instance.name)
    chosen = tuned_values.load(profile).params_for(instance.name, task) if tuned else {}
    params = cls.resolve_params(task, {**chosen, **instance.overrides}, profile.budget)
    cls.validate(params)  # a bad value is a UserError before any work
    return params


def training_set_size(name: str) -> int:
    """How many images the training split of dataset ``name`` holds (read from its manifest
    where one lists them, so that no image is loaded to plan)."""
    if name == data.EMBEDDED:
        return len(data.EMBEDDED_TRAIN)
    manifest = data.manifests().get(name)
    if manifest is not None:
        return len(manifest.files)
    return len(data.load(name, split="train"))


def serving_entry(profile: Profile, task: tasks.Task) -> DatasetSpec | None:
    """The first dataset entry of ``profile`` whose images ``task`` runs on: one that lists the
    task, or lists none and holds images of the task's space (None: no entry does)."""
    for spec in profile.datasets:
        if spec.tasks is not None:
            fits = task.name in spec.tasks
        elif spec.path is not None:  # a folder of photos: gray or colour images in [0, 1]
            fits = task.space is spaces.UNIT
        else:  # as make_plan pairs them: the set's channels fit the task's space
            fits = spec.name in data.available() and data.channels_of(spec.name, spec.mode) in task.space.channels
        if fits:
            return spec
    return None


def training_preparation(profile: Profile, channels: int, task: tasks.Task | None = None,
                         entry: DatasetSpec | None = None) -> PreparedSet:
    """The training set of trained methods on test images with ``channels`` channels, prepared:
    the set the profile names for the task's image space (``training: {spaces: {mri: …}}``),
    else its colour set (``training: {rgb: …}``) for colour images where it names one; resized
    like the test images of ``entry`` (default: the first entry the task runs on) unless the
    profile's ``training: {resize: …}`` says otherwise (issue 22 item 3)."""
    spec = profile.training
    if entry is None and task is not None:
        entry = serving_entry(profile, task)
    test_resize = entry.resize if entry is not None else None
    if task is not None and task.space.name in spec.spaces:
        return spec.spaces[task.space.name].prepared(test_resize)
    return spec.prepared(test_resize, spec.rgb if channels == 3 and spec.rgb else None)


def training_set(profile: Profile, channels: int, task: tasks.Task | None = None,
                 entry: DatasetSpec | None = None) -> str:
    """The name of :func:`training_preparation`'s set (``embedded[resize=128]``): a cell's training identity."""
    return training_preparation(profile, channels, task, entry).name


def check_train_task(label: str, params: dict[str, Any], task: tasks.Task) -> None:
    """An instance's ``train_task`` is a registered task of the test task's image space: a network
    trained on images of one space cannot restore another's (MRI's complex parts, CT's window)."""
    name = params.get(TRAIN_TASK)
    if name is None:
        return
    train = tasks.get(name)  # a UserError naming the registered tasks
    if train.space.name != task.space.name:
        raise UserError(f"{label}: train_task {name!r} has {train.space.name!r} images and the test task "
                        f"{task.name!r} has {task.space.name!r} images; a train_task must be of the test task's space")


def cell_training_set(label: str, params: dict[str, Any], default: str, channels: int) -> str:
    """The training set of an instance's cell: its ``train_set``, else ``default`` (the profile's for
    the task's space). A ``train_set`` must be a training split (a set with the role ``train``, or
    the embedded set's) of images with the test images' ``channels``: gray natural images and CT
    slices (1 channel) mix; colour (3) and complex MRI (2) mix with nothing else. It is resized
    and cropped as ``default`` is."""
    name = params.get(TRAIN_SET)
    if name is None:
        return default
    known = data.available()
    if name not in known:
        raise UserError(f"{label}: unknown train_set {name!r}; valid choices: {', '.join(sorted(known))}")
    manifest = data.manifests().get(name)
    if manifest is not None and manifest.role != "train":
        train_sets = sorted([data.EMBEDDED, *(m.name for m in data.manifests().values() if m.role == "train")])
        raise UserError(f"{label}: train_set {name!r} is a test set; training sets: {', '.join(train_sets)}")
    if data.channels_of(name) != channels:
        raise UserError(f"{label}: train_set {name!r} has {data.channels_of(name)}-channel images and the test images "
                        f"have {channels}; a train_set must have the test images' channels")
    # prepared as the default set is (the test images' scale), so that only the images change
    return dataclasses.replace(PreparedSet.from_name(default), dataset=name).name


def check_training_sets(profile: Profile, requested: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Each training set exists and holds every instance's ``train_images``
    ((label, training set) → params)."""
    names = {profile.training.dataset, *([profile.training.rgb] if profile.training.rgb else []),
             *(spec.dataset for spec in profile.training.spaces.values())}
    for name in sorted(names):
        if name not in data.available():
            raise UserError(f"unknown training dataset {name!r}; valid choices: {', '.join(sorted(data.available()))}")
    sizes: dict[str, int] = {}
    for (label, prepared), params in requested.items():
        if params.get(TRAIN_IMAGES) is None:
            continue
        name = PreparedSet.from_name(prepared).dataset
        size = sizes[name] if name in sizes else sizes.setdefault(name, training_set_size(name))
        if params[TRAIN_IMAGES] > size:
            raise UserError(f"{label}: train_images = {params[TRAIN_IMAGES]} is more than the {size} images of "
                            f"the training set {name!r}")


def load_images(spec: DatasetSpec, multiple: int = 1) -> list[data.Image]:
    return data.load(spec.name, split="test", crop=spec.crop, limit=spec.limit, multiple=multiple, resize=spec.resize,
                     path=spec.path, mode=spec.mode)


def _listed(dataset: str, names: list[str], instances: list[MethodInstance]) -> list[MethodInstance]:
    """A dataset entry's ``methods:``: each an instance's label (``unet`` is the default U-Net
    alone), else a method's name (every instance of it). One this run leaves out (``--methods``)
    is passed over; one that names no registered method is refused."""
    out: list[MethodInstance] = []
    known = registry.available()
    for name in names:
        if grid.parse_spec(name).name not in known:
            raise UserError(f"dataset {dataset!r} lists method {name!r}, which is not a registered method; "
                            f"valid: {', '.join(known)}")
        out += [i for i in instances if i.label == name] or [i for i in instances if i.name == name]
    return out


def make_plan(profile: Profile, unavailable: dict[str, str] | None = None
              ) -> tuple[list[Cell], dict[tuple[str, int], list[data.Image]]]:
    """All cells of ``profile`` plus the images they need (validating every name and value first).

    A standard set whose files cannot be had here (``DataUnavailable``) stops the plan, unless
    ``unavailable`` is given: then its name and the reason (with the fix) go there, its cells are
    still planned (image ids from its manifest) and it gets no images; the run skips them."""
    instances = method_instances(profile)
    task_objs = [tasks.get(t) for t in profile.tasks]
    for spec in profile.datasets:
        if spec.path is not None and spec.name in data.available():
            raise UserError(f"dataset folder {spec.path}: its name {spec.name!r} is a registered dataset's; "
                            "give it another (name: in the profile's entry)")
        if spec.path is None and spec.name not in data.available():
            raise UserError(f"unknown dataset {spec.name!r}; valid choices: {', '.join(sorted(data.available()))}; "
                            "or a folder of images (a path on the CLI, path: in a profile)")
    params_by = {(i.label, t.name): resolved_params(profile, i, t) for i in instances for t in task_objs}
    check_training_sets(profile, {})
    trained = {i.label for i in instances if registry.get(i.name).needs_training}
    requested: dict[tuple[str, str], dict[str, Any]] = {}
    images: dict[tuple[str, int], list[data.Image]] = {}
    cells: dict[str, Cell] = {}
    for spec in profile.datasets:
        for name in spec.tasks or []:
            if name not in profile.tasks:
                raise UserError(f"dataset {spec.name!r} lists task {name!r}, which is not among the profile's tasks: "
                                f"{', '.join(profile.tasks)}")
        chosen = None if spec.methods is None else {i.label for i in _listed(spec.name, spec.methods, instances)}
        for task in task_objs:
            if spec.tasks is not None and task.name not in spec.tasks:
                continue
            key = (spec.name, task.size_multiple)
            if key not in images and spec.name not in (unavailable or {}):
                try:
                    images[key] = load_images(spec, task.size_multiple)
                except DataUnavailable as exc:
                    if unavailable is None:
                        raise
                    unavailable[spec.name] = str(exc)
            if spec.name in (unavailable or {}):
                images[key] = []
                ids = data.image_ids(spec.name, limit=spec.limit)
                channels = {data.channels_of(spec.name, spec.mode)}
            else:
                ids = [image.id for image in images[key]]
                channels = {int(image.tensor.shape[0]) for image in images[key]}
            if not channels <= set(task.space.channels):
                if spec.tasks is None:  # a dataset without a task list runs the tasks its images fit
                    continue
                raise UserError(f"dataset {spec.name!r} has {'/'.join(map(str, sorted(channels)))}-channel images; "
                                f"task {task.name!r} needs {task.space.description} "
                                f"({'/'.join(map(str, task.space.channels))} channels): list each dataset's tasks "
                                "(tasks: in its entry)")
            prep = f"resize{spec.resize}-crop{spec.crop}" + (f"-{spec.mode}" if spec.mode else "")
            first = int(images[key][0].tensor.shape[0]) if images[key] else min(channels)
            train = training_set(profile, first, task, spec) if ids else ""
            for instance in instances:
                if chosen is not None and instance.label not in chosen:
                    continue
                params = params_by[(instance.label, task.name)]
                check_train_task(instance.label, params, task)
                training = cell_training_set(instance.label, params, train, first) if instance.label in trained else ""
                if training:
                    requested[(instance.label, training)] = params
                params_json = canonical_json(params)
                for image_id in ids:
                    for seed in profile.seeds:
                        cell = Cell(instance.name, params_json, task.name, spec.name, image_id, prep, seed,
                                    instance.label, training, version_of(instance.name))
                        cells.setdefault(cell.key, cell)  # two instances with equal parameters: one cell
    check_training_sets(profile, requested)
    return list(cells.values()), images


#: a cell's shared fit (``Method.shared_fit_key`` of its instance), None when it shares none
ShareOf = Callable[[Cell], "str | None"]


def batch_group(cell: Cell, shape: tuple[int, ...], shared: str | None = None) -> tuple[object, ...]:
    """What cells solved in one batch share: the shared fit they read (methods that differ only in
    how they read one fit), else method and parameters; and the task and image shape."""
    ident: tuple[object, ...] = (shared,) if shared is not None else (cell.method, cell.params_json)
    return (*ident, cell.task, shape)


def measurement_key(cell: Cell) -> tuple[str, str, str, int]:
    """The measurement a cell reads: (dataset, task, image, seed), the same for every method."""
    return (cell.dataset, cell.task, cell.image_id, cell.seed)


def batches(cells: Sequence[Cell], shape_of: Callable[[Cell], tuple[int, ...]],
            size: int | Callable[[tuple[object, ...]], int], share_of: ShareOf | None = None) -> list[list[Cell]]:
    """Cells grouped for one call of a method: same ``batch_group``, at most ``size`` measurements
    (and the methods' ``max_batch``) per batch, in the plan's order. Cells of methods sharing a fit
    come with every cell of their measurement, so that one fit serves them all. ``size`` may be a
    function of the group's ``batch_group`` key (the calibrated choice of each group)."""
    size_of = size if callable(size) else (lambda _key: size)
    groups: dict[tuple[object, ...], dict[tuple[str, str, str, int], list[Cell]]] = {}
    for cell in cells:
        key = batch_group(cell, shape_of(cell), share_of(cell) if share_of is not None else None)
        groups.setdefault(key, {}).setdefault(measurement_key(cell), []).append(cell)
    order: list[list[Cell]] = []
    for key, by_measurement in groups.items():
        chosen = size_of(key)
        if chosen < 1:
            raise ValueError(f"batch size must be >= 1, got {chosen}")
        members = [c for cells_of in by_measurement.values() for c in cells_of]
        limit = max(1, min(chosen, *(registry.get(c.method).max_batch for c in members)))
        measurements = list(by_measurement.values())
        for start in range(0, len(measurements), limit):
            order.append([c for cells_of in measurements[start : start + limit] for c in cells_of])
    return order
