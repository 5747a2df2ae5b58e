"""Profiles: small YAML files that say what a benchmark runs (methods × tasks × datasets × seeds).

A malformed profile is a ``UserError`` naming the bad key and the valid ones, caught before any
work starts or any run is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from benchmark.api import PAPER_BUDGET
from benchmark.core.errors import UserError, one_line, unknown
from benchmark.problems import data, metrics
from benchmark.problems.data import plain_name
from benchmark.run import grid

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    crop: int | None = None  # centre crop to crop² (None: full resolution)
    resize: int | None = None  # first resize so the shorter side is this (None: keep)
    limit: int | None = None  # first N images (None: all)
    tasks: list[str] | None = None  # only these of the profile's tasks (None: all of them)
    #: only these of the profile's methods, by name or label (None: all of them): e.g. a costly
    #: image size where only a few methods fit a CPU budget
    methods: list[str] | None = None
    path: str | None = None  # a folder of the user's own image files (no manifest needed)
    mode: str | None = None  # "gray" | "rgb": force it (None: the set's own, detected for a folder)


#: ``training: {resize: test}`` (the default): training images are resized like the test images
#: they serve (their dataset entry's ``resize``), so a network learns at the scale it is tested on
FOLLOW_TEST = "test"
#: ``training: {resize: native}``: training images are never resized
NATIVE = "native"
#: how a tuning run names a trained method's training set without its validation images
#: (``embedded[resize=64] without validation images moon,brick``)
WITHOUT_VALIDATION = " without validation images "


@dataclass(frozen=True)
class PreparedSet:
    """A training set as trained methods get it: the training split of ``dataset``, its shorter
    side resized to ``resize`` and centre-cropped to ``crop``² (None: not). Its :attr:`name`
    (``embedded[resize=128]``) is a cell's training identity (part of the cell's key), the name
    a trained method caches its weights under, and what a worker reads back to load the set."""

    dataset: str
    resize: int | None = None
    crop: int | None = None

    @property
    def name(self) -> str:
        given = [f"{key}={value}" for key, value in (("crop", self.crop), ("resize", self.resize)) if value is not None]
        return f"{self.dataset}[{','.join(given)}]" if given else self.dataset

    @classmethod
    def from_name(cls, name: str) -> PreparedSet:
        """The set a :attr:`name` names (a bare dataset name: the split as it is)."""
        found = re.fullmatch(r"([^\[\]]+)(?:\[((?:crop|resize)=\d+(?:,(?:crop|resize)=\d+)?)\])?", name)
        if found is None:
            raise UserError(f"not a training set name: {name!r} (expected dataset or dataset[crop=N,resize=N])")
        given = dict(item.split("=") for item in found.group(2).split(",")) if found.group(2) else {}
        return cls(found.group(1), *(int(given[k]) if k in given else None for k in ("resize", "crop")))

    def load(self) -> list[torch.Tensor]:
        return [img.tensor for img in data.load(self.dataset, split="train", resize=self.resize, crop=self.crop)]


def training_dataset(name: str) -> str:
    """The dataset a cell's training set (a :attr:`PreparedSet.name`, or a tuning run's set
    without its validation images) comes from, its preparation aside."""
    return PreparedSet.from_name(name.split(WITHOUT_VALIDATION)[0]).dataset


@dataclass(frozen=True)
class TrainingSpec:
    dataset: str = "embedded"
    #: the training set of trained methods on colour test sets (e.g. cbsd432); None: ``dataset``.
    #: A method trained on gray images never restores colour ones channel by channel.
    rgb: str | None = None
    crop: int | None = None
    #: the shorter side of the training images: :data:`FOLLOW_TEST` (the default) that of the test
    #: images they serve, :data:`NATIVE` as they are, or a number of pixels
    resize: int | str = FOLLOW_TEST
    #: another training set per image space (``benchmark.problems.spaces``): the tasks of that space learn
    #: from it, e.g. ``spaces: {mri: {dataset: mri_brain_train}}``
    spaces: dict[str, TrainingSpec] = field(default_factory=dict)

    def for_space(self, space: str) -> TrainingSpec:
        """The training set of the tasks of image space ``space``."""
        return self.spaces.get(space, self)

    def all(self) -> list[TrainingSpec]:
        return [self, *self.spaces.values()]

    def prepared(self, test_resize: int | None, dataset: str | None = None) -> PreparedSet:
        """This set (or ``dataset``, e.g. the colour set) prepared for test images resized to
        ``test_resize``: resized like them unless the spec says otherwise, cropped as it says."""
        resize = test_resize if self.resize == FOLLOW_TEST else (None if self.resize == NATIVE else self.resize)
        return PreparedSet(dataset or self.dataset, resize if isinstance(resize, int) else None, self.crop)


@dataclass(frozen=True)
class TuneSpec:
    """How ``benchmark tune`` chooses hyperparameters: on ``images`` validation images drawn
    (seeded) from the training split of ``training.dataset``, prepared with ``resize``/``crop``;
    never on test images. ``grids``: method → {parameter: values}, replacing the method's
    declared grid (only declared tunables); ``methods``: which to tune (None: every selected
    method that declares tunables and needs no training: a trained one, named here or with
    ``--methods``, trains again without the validation images)."""

    images: int = 4
    resize: int | None = None
    crop: int | None = None
    seed: int = 0
    methods: list[str] | None = None
    grids: dict[str, dict[str, list[Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    #: method specs: names, grids (``dip[iterations=500,2000]``) or "all"
    methods: list[str]
    tasks: list[str]
    datasets: list[DatasetSpec]
    seeds: list[int] = field(default_factory=lambda: [0])
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    device: str = "auto"
    trajectory_every: int = 10
    #: metrics this profile does not measure (registered names, e.g. ``[lpips]``: it needs
    #: images of at least 32×32 and costs a network pass per iterate)
    metrics_off: list[str] = field(default_factory=list)
    save_reconstructions: bool = True
    #: cells of one method, task and image size handed to a method at once (DIP fits them in
    #: one step); "auto": the fastest measured per image (``benchmark.run.calibration``). An
    #: execution setting, not part of a cell's identity
    batch_size: int | str = "auto"
    #: which budget every method runs with: its ``budgets[budget]`` over its defaults, or its
    #: defaults alone ("paper"); every method of the profile declares it (checked by the plan);
    #: ``method_params`` and grids override it
    budget: str = "paper"
    #: ``--set METHOD.PARAM=VALUE[,VALUE...]`` from the command line: method → param → values
    settings: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    tune: TuneSpec = field(default_factory=TuneSpec)
    #: the tuned-values file ``benchmark tune`` writes and the plan applies (relative to the
    #: profile's folder); None: no tuned values
    tuned: str | None = None
    source: str = ""


_TOP_KEYS = {f for f in Profile.__dataclass_fields__ if f not in ("source", "settings")}


def available() -> dict[str, Path]:
    return {p.stem: p for p in sorted(PROFILE_DIR.glob("*.yaml"))}


def _check_keys(where: str, given: dict[str, Any], valid: set[str]) -> None:
    extra = sorted(map(repr, set(given) - valid))
    if extra:
        raise UserError(f"{where}: unknown key {extra[0]}; valid keys: {', '.join(sorted(valid))}")


def _as_list(where: str, value: Any, kind: type | tuple[type, ...]) -> list[Any]:
    if isinstance(value, kind):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        kinds = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise UserError(f"{where}: expected a list of {kinds}, got {value!r}")
    return value


def positive(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where}: expected an integer >= 1, got {value!r}")
    return value


def _optional_positive(where: str, value: Any) -> int | None:
    return None if value is None else positive(where, value)


def _flag(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{where}: expected true or false, got {value!r}")
    return value


def _text(where: str, value: Any, *, plain: bool = False) -> str:
    """Text; ``plain``: a name that becomes a folder name (results/<profile>/), so no path."""
    if plain:
        return plain_name(where, "name", value)
    if not isinstance(value, str):
        raise UserError(f"{where}: expected text, got {value!r}")
    return value


def _names(where: str, value: Any) -> list[str]:
    names = _as_list(where, value, str)
    if not names:
        raise UserError(f"{where}: empty list")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"{where}: {repeated[0]!r} is listed twice")
    return names


def _metric_names(where: str, value: Any) -> list[str]:
    """Registered metric names, none twice; the primary metric cannot be left out (it ranks)."""
    names = _as_list(where, value, str)
    known = {m.name for m in metrics.registered()}
    for name in names:
        if name not in known:
            raise unknown("metric", name, sorted(known))
        if name == metrics.primary().name:
            raise UserError(f"{where}: {name} is the primary metric (it ranks methods and picks the oracle); "
                            "it cannot be left out")
    if len(set(names)) != len(names):
        raise UserError(f"{where}: a metric is listed twice")
    return names


def check_seeds(where: str, value: Any) -> list[int]:
    """A non-empty list of distinct seeds in [0, 2**63)."""
    seeds = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(seeds, list) or not seeds:
        raise UserError(f"{where}: expected a non-empty list of integers, got {value!r}")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise UserError(f"{where}: expected integers in [0, 2**63), got {seed!r}")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where}: a seed is listed twice")
    return seeds


def _device(where: str, value: Any) -> str:
    text = _text(where, value)
    if text != "auto":
        try:
            kind = torch.device(text).type
        except (RuntimeError, ValueError):
            kind = ""
        if kind not in ("cpu", "cuda", "mps"):
            raise UserError(f"{where}: expected auto, cpu, cuda, cuda:N or mps, got {value!r}")
    return text


def _mapping(where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: expected a mapping, got {value!r}")
    return value


def training_entry(where: str, entry: dict[str, Any], nested: bool = False) -> TrainingSpec:
    """The ``training`` mapping: dataset, crop, resize, and per image space another such mapping."""
    from benchmark.problems.spaces import SPACES

    _check_keys(where, entry, set(TrainingSpec.__dataclass_fields__) - ({"spaces", "rgb"} if nested else set()))
    by_space = _mapping(f"{where}: spaces", entry.get("spaces"))
    for space in by_space:
        if space not in SPACES:
            raise unknown("image space", space, SPACES)
    return TrainingSpec(
        dataset=_text(f"{where}: dataset", entry.get("dataset", "embedded"), plain=True),
        rgb=None if entry.get("rgb") is None else _text(f"{where}: rgb", entry.get("rgb"), plain=True),
        crop=_optional_positive(f"{where}: crop", entry.get("crop")),
        resize=_training_resize(f"{where}: resize", entry.get("resize", FOLLOW_TEST)),
        spaces={space: training_entry(f"{where}: spaces: {space}", _mapping(f"{where}: spaces: {space}", sub),
                                      nested=True)
                for space, sub in by_space.items()},
    )


def _training_resize(where: str, value: Any) -> int | str:
    """``test`` (like the test images served), ``native`` (never resized), or a side in pixels."""
    if value in (FOLLOW_TEST, NATIVE):
        return str(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where}: expected {FOLLOW_TEST} (like the test images), {NATIVE} (never resized) or an "
                        f"integer >= 1, got {value!r}")
    return value


def dataset_entry(where: str, entry: Any) -> DatasetSpec:
    """One ``datasets`` entry: a name, or a mapping with ``name`` or ``path`` (a folder)."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict):
        raise UserError(f"{where}: expected a dataset name or a mapping, got {entry!r}")
    _check_keys(where, entry, set(DatasetSpec.__dataclass_fields__))
    path = entry.get("path")
    if path is not None:
        path = _text(f"{where}: path", path)
        if not path or "\x00" in path:
            raise UserError(f"{where}: path must name a folder, got {path!r}")
        # The folder's own name, made plain (it names the dataset in tables and in the store).
        name = entry.get("name", re.sub(r"[^A-Za-z0-9_.+-]", "_", Path(path).resolve().name).lstrip(".") or "images")
    elif "name" in entry:
        name = entry["name"]
    else:
        raise UserError(f"{where}: a dataset entry needs a name or a path")
    mode = entry.get("mode")
    if mode is not None and mode not in ("gray", "rgb"):
        raise UserError(f"{where}: mode must be gray or rgb, got {mode!r}")
    tasks, methods = entry.get("tasks"), entry.get("methods")
    return DatasetSpec(
        name=_text(f"{where}: name", name, plain=True),
        crop=_optional_positive(f"{where}: crop", entry.get("crop")),
        resize=_optional_positive(f"{where}: resize", entry.get("resize")),
        limit=_optional_positive(f"{where}: limit", entry.get("limit")),
        tasks=None if tasks is None else _names(f"{where}: tasks", tasks),
        methods=None if methods is None else _names(f"{where}: methods", methods),
        path=path,
        mode=mode,
    )


def batch_size(where: str, value: Any) -> int | str:
    """``"auto"`` (measure per method and shape, ``benchmark.run.calibration``) or an integer >= 1."""
    return "auto" if value == "auto" else positive(where, value)


def tune_spec(where: str, value: Any) -> TuneSpec:
    """The ``tune:`` section; a bad key, count, list or grid is a one-line ``UserError``."""
    doc = _mapping(where, value)
    _check_keys(where, doc, set(TuneSpec.__dataclass_fields__))
    seed = doc.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise UserError(f"{where}: seed: expected an integer in [0, 2**63), got {seed!r}")
    methods = doc.get("methods")
    grids = _mapping(f"{where}: grids", doc.get("grids"))
    for method, table in grids.items():
        if not isinstance(method, str) or not isinstance(table, dict) or not table:
            raise UserError(f"{where}: grids: expected method: {{parameter: [values]}}, got {method!r}: {table!r}")
        for key, values in table.items():
            if not isinstance(key, str) or not isinstance(values, list) or not values:
                raise UserError(f"{where}: grids: {method}.{key}: expected a non-empty list of values, got {values!r}")
            if len({repr(v) for v in values}) != len(values):
                raise UserError(f"{where}: grids: {method}.{key}: a value is listed twice")
    return TuneSpec(
        images=positive(f"{where}: images", doc.get("images", 4)),
        resize=_optional_positive(f"{where}: resize", doc.get("resize")),
        crop=_optional_positive(f"{where}: crop", doc.get("crop")),
        seed=seed,
        methods=None if methods is None else _names(f"{where}: methods", methods),
        grids=grids,
    )


def parse(doc: Any, source: str = "<profile>") -> Profile:
    """Validate a profile document (already parsed YAML) into a ``Profile``."""
    if not isinstance(doc, dict):
        raise UserError(f"malformed profile {source}: expected a mapping at the top level")
    where = f"profile {source}"
    _check_keys(where, doc, _TOP_KEYS)
    for required in ("name", "methods", "tasks", "datasets"):
        if required not in doc:
            raise UserError(f"{where}: missing required key {required!r}")
    datasets = [dataset_entry(f"{where}: dataset entry", entry)
                for entry in _as_list(f"{where}: datasets", doc["datasets"], (str, dict))]
    if not datasets:
        raise UserError(f"{where}: datasets: empty list")
    training = _mapping(f"{where}: training", doc.get("training"))
    method_params = doc.get("method_params") or {}
    if not isinstance(method_params, dict) or not all(isinstance(v, dict) for v in method_params.values()):
        raise UserError(f"{where}: method_params must map method names to parameter mappings")
    methods = doc["methods"]
    methods = ["all"] if methods == "all" else _names(f"{where}: methods", methods)
    for spec in methods:
        if spec != "all":
            grid.parse_spec(spec)  # a malformed grid is refused with the profile, before any work
    budget = _text(f"{where}: budget", doc.get("budget", PAPER_BUDGET), plain=True)
    return Profile(
        name=_text(f"{where}: name", doc["name"], plain=True),
        description=_text(f"{where}: description", doc.get("description", "")),
        methods=methods,
        tasks=_names(f"{where}: tasks", doc["tasks"]),
        datasets=datasets,
        seeds=check_seeds(f"{where}: seeds", doc.get("seeds", [0])),
        method_params=method_params,
        training=training_entry(f"{where}: training", training),
        device=_device(f"{where}: device", doc.get("device", "auto")),
        trajectory_every=positive(f"{where}: trajectory_every", doc.get("trajectory_every", 10)),
        metrics_off=_metric_names(f"{where}: metrics_off", doc.get("metrics_off", [])),
        save_reconstructions=_flag(f"{where}: save_reconstructions", doc.get("save_reconstructions", True)),
        batch_size=batch_size(f"{where}: batch_size", doc.get("batch_size", "auto")),
        budget=budget,
        tune=tune_spec(f"{where}: tune", doc.get("tune")),
        tuned=None if doc.get("tuned") is None else _text(f"{where}: tuned", doc["tuned"]),
        source=source,
    )


def load(name_or_path: str) -> Profile:
    """A profile by registered name (``benchmark/profiles/<name>.yaml``) or by file path."""
    path = Path(name_or_path)
    if not (path.suffix in {".yaml", ".yml"} and path.exists()):
        known = available()
        if name_or_path not in known:
            raise unknown("profile", name_or_path, known)
        path = known[name_or_path]
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"malformed profile {path}: {one_line(exc)}") from exc
    return parse(doc, str(path))
