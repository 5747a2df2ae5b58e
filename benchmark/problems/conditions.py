"""Training conditions and distribution shift: what a trained instance learnt from against what it is tested on.

A trained method learns from a task (its physics and noise) and a training set (or its released
weights did, on images of a declared kind); a cell tests it on a task and a test set. Where the two
differ the cell is a *shift cell* (Darestani, Chaudhari & Heckel, "Measuring robustness in deep
learning based compressive sensing", ICML 2021, measured such shifts for MRI: across datasets and
anatomies, trained networks and un-trained ones whose hyperparameters were tuned on the first
distribution lost about equally). The shift is described from declarations
only, never from names: the two tasks' declared parameters (``Task.params``: the noise level, the
acceleration, the mask, the views) and the kind of content of the images (a set's manifest
``mode``, released weights' ``ReleasedTraining.content``: natural images, CT slices, MR slices).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmark.problems import data, tasks


@dataclass(frozen=True)
class ConditionParam:
    """How a declared task parameter reads in a shift's description: ``noise σ 25 → 50``."""

    label: str
    unit: str = ""
    #: the value of a task that does not declare the parameter (the MRI tasks without ``mask`` draw
    #: fastMRI's random lines: ``benchmark.problems.medical.fastmri_mask``)
    absent: Any = None

    def text(self, value: Any) -> str:
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        return f"{shown}{self.unit}"


#: the task parameters a shift names, in this order; any other differing parameter is named by its key
CONDITION_PARAMS: dict[str, ConditionParam] = {
    "sigma255": ConditionParam("noise σ"),
    "acceleration": ConditionParam("acceleration", "×"),
    "mask": ConditionParam("mask", absent="random"),
    "center_fraction": ConditionParam("centre fraction"),
    "views": ConditionParam("views"),
    "coils": ConditionParam("coils", absent=1),
    "missing": ConditionParam("missing"),
    "factor": ConditionParam("factor", "×"),
    "blur_sigma": ConditionParam("blur σ"),
}

#: a record's ``info`` key: the kind of images (natural, CT, MRI) its instance learnt from
TRAIN_CONTENT = "train_content"
#: a manifest's mode → the kind of content its images show
CONTENT = {"gray": "natural", "rgb": "natural", "ct": "CT", "mri": "MRI"}


def content_of(dataset: str) -> str:
    """The kind of content of a registered set (natural, CT, MRI); "" for a folder of the user's
    own images or an unknown name (its kind is not declared)."""
    if dataset == data.EMBEDDED:
        return CONTENT["gray"]
    manifest = data.manifests().get(dataset)
    return CONTENT.get(manifest.mode, "") if manifest is not None else ""


def _value(task: tasks.Task, key: str) -> Any:
    return task.params.get(key, CONDITION_PARAMS[key].absent if key in CONDITION_PARAMS else None)


def task_shift(train: str, test: str) -> str:
    """How the test task departs from the training task ("" when they are one task): the declared
    parameters that differ (``acceleration 4× → 8×, centre fraction 0.08 → 0.04``), else the noise
    level, else the families; the names where a task is not registered here."""
    if not train or not test or train == test:
        return ""
    if train not in tasks.TASKS or test not in tasks.TASKS:
        return f"task {train} → {test}"
    a, b = tasks.get(train), tasks.get(test)
    if a.family != b.family:
        return f"task {a.family} → {b.family}"
    keys = [k for k in CONDITION_PARAMS if k in a.params or k in b.params]
    keys += sorted(k for k in {*a.params, *b.params} if k not in CONDITION_PARAMS)
    parts = []
    for key in keys:
        before, after = _value(a, key), _value(b, key)
        if before != after:
            param = CONDITION_PARAMS.get(key, ConditionParam(key))
            parts.append(f"{param.label} {param.text(before)} → {param.text(after)}")
    if not parts and a.noise_sigma != b.noise_sigma:
        parts.append(f"noise σ {a.noise_sigma:g} → {b.noise_sigma:g}")
    return ", ".join(parts) or f"task {train} → {test}"


def content_shift(train_content: str, test_content: str) -> str:
    """``content natural → CT`` where the images an instance learnt from are of another kind than the
    test images (kinds: :data:`CONTENT`); "" where they are of one kind or a kind is not declared."""
    if not train_content or not test_content or train_content == test_content:
        return ""
    return f"content {train_content} → {test_content}"


def describe(train_task: str, test_task: str, train_content: str, test_set: str) -> str:
    """The shift of a cell tested on (``test_task``, ``test_set``) by an instance that learnt from
    ``train_task`` and images of kind ``train_content`` ("" for either where it does not apply:
    untrained, or a training that does not depend on the task): "" in distribution."""
    parts = (task_shift(train_task, test_task), content_shift(train_content, content_of(test_set)))
    return "; ".join(p for p in parts if p)
