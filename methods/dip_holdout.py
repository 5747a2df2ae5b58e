"""DIP stopped by the loss on held-out pixels (hold-out validation).

A random, seeded ``holdout`` fraction of the measured locations of ``y`` (all channels of a pixel
together, so that a held-out pixel's colour is not given away by its other channels; on multi-coil
MRI a k-space location across all coils, whose coils share the location's signal) is kept
out of the fit; the network is fitted to the rest, and the loss on the held-out pixels, which the
network never fits, tracks the reconstruction error: it falls while the image is being learned
and rises once the noise is. The run stops when that loss (averaged over ``window`` steps) has
not reached a new minimum for ``patience`` steps, and returns the iterate at the minimum.

The returned image is fitted to the kept entries only: the held-out pixels never enter the fit,
and there is no refit on all of ``y`` after stopping, so the method sees (1 − ``holdout``) of
the data. The iterates are vanilla DIP's for the task (the averaged output for denoising: on
raw iterates the held-out loss is noisier). This is the simpler hold-out cousin of Li et al.'s
self-validation, which ``dip_sv`` implements.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.api import Reconstruction
from benchmark.core import seeding
from benchmark.registry import register
from methods._dip import common, streams
from methods._dip.objectives import held_out_error, measured_entries, measurement_loss, split_pixels
from methods._dip.stopping import HeldOutLoss, Verdict


@register
class DipHoldout(common.DipMethod):
    name = "dip_holdout"
    summary = "DIP fitted to all but a held-out set of pixels, stopped by the loss on those pixels."
    citation = "hold-out validation, the simpler cousin of Li et al.'s self-validation (BMVC 2021)"
    defaults = {**common.SKIP_DEFAULTS, "iterations": 5000, "holdout": 0.1, "patience": 300, "window": 1}
    task_defaults = common.EARLY_STOPPING_TASK_DEFAULTS
    stopping_rule = "loss on held-out pixels (hold-out validation)"
    budget_task_params = common.SKIP_BUDGET_TASK_PARAMS
    fit_kind = "skip network, measurement loss on the kept entries"
    fit_params = (*common.SKIP_FIT_PARAMS, "holdout")
    #: the DIP family's common cap in each budget (the paper budget: at least 5000), so that the
    #: stopping rule decides where the run ends
    budgets = {
        "test": {**common.SKIP_TEST_PARAMS, "patience": 20},
        "quick": {**common.SKIP_QUICK_PARAMS, "patience": 200},
    }

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "holdout", 0.0 < params["holdout"] < 1.0, "a fraction in (0, 1)")
        for key in ("patience", "window"):
            cls.require(params, key, params[key] >= 1, "an integer >= 1")

    def fit(self, y: torch.Tensor, physics: Any, seed: int) -> common.Fit:
        fit_mask, held_mask = holdout_masks(y, physics, float(self.params["holdout"]), seed)
        setup = common.skip_setup(self.params, y, physics, seed)
        return common.Fit(setup, measurement_loss(physics, y, fit_mask),
                          info={"held_out_locations": int(held_mask.flatten(0, -3)[0].sum())})

    def read(self, y: torch.Tensor, physics: Any, seed: int) -> common.Reading:
        _, held_mask = holdout_masks(y, physics, float(self.params["holdout"]), seed)
        error = held_out_error(physics, y, held_mask)
        rule = HeldOutLoss(patience=common.positive_int(self.params, "patience"),
                           window=common.positive_int(self.params, "window"))

        def observe(step: int, x: torch.Tensor, _fit_loss: torch.Tensor) -> Verdict:
            with torch.inference_mode():
                value = float(error(x).sum())
            return rule.update(step, value)

        def finish(result: Reconstruction) -> None:
            result.info["best_held_out_mse"] = common.finite_or_none(rule.tracker.best_value)

        return common.Reading(streams.averaged(float(self.params["ema"])), rule=observe, finish=finish)


def holdout_masks(y: torch.Tensor, physics: Any, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit, held-out) masks of y's dtype over the entries of ``y``, whole pixels, disjoint, drawn from ``seed``."""
    return split_pixels(measured_entries(physics, y), fraction, seeding.generator(seed, "holdout"), y.dtype)
