"""DIP stopped by the loss on held-out pixels (hold-out validation).

A random, seeded ``holdout`` fraction of the measured pixels of ``y`` (all channels of a pixel
together, so that a held-out pixel's colour is not given away by its other channels) is kept
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
from methods._dip import common
from methods._dip.objectives import held_out_error, measured_entries, measurement_loss, split_pixels
from methods._dip.stopping import HeldOutLoss, Verdict


@register
class DipHoldout(common.DipMethod):
    name = "dip_holdout"
    summary = "DIP fitted to all but a held-out set of pixels, stopped by the loss on those pixels."
    defaults = {**common.SKIP_DEFAULTS, "iterations": 5000, "holdout": 0.1, "patience": 300, "window": 1}
    task_defaults = common.EARLY_STOPPING_TASK_DEFAULTS
    stopping_rule = "loss on held-out pixels (hold-out validation)"
    #: a larger cap than DIP's, so that the stopping rule decides where the run ends
    test_params = {**common.SKIP_TEST_PARAMS, "patience": 20}
    quick_params = {**common.SKIP_QUICK_PARAMS, "iterations": 1000, "patience": 200}

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "holdout", 0.0 < params["holdout"] < 1.0, "a fraction in (0, 1)")
        for key in ("patience", "window"):
            cls.require(params, key, params[key] >= 1, "an integer >= 1")

    def plan(self, y: torch.Tensor, physics: Any, seed: int) -> common.FitPlan:
        fraction = self.params["holdout"]
        patience = common.positive_int(self.params, "patience")
        window = common.positive_int(self.params, "window")
        fit_mask, held_mask = holdout_masks(y, physics, float(fraction), seed)
        error = held_out_error(physics, y, held_mask)
        rule = HeldOutLoss(patience=patience, window=window)

        def observe(step: int, x: torch.Tensor, _fit_loss: torch.Tensor) -> Verdict:
            with torch.inference_mode():
                value = float(error(x).sum())
            return rule.update(step, value)

        def finish(result: Reconstruction) -> None:
            result.info["best_held_out_mse"] = common.finite_or_none(rule.tracker.best_value)

        setup = common.skip_setup(self.params, y, physics, seed)
        return common.FitPlan(setup, measurement_loss(physics, y, fit_mask), rule=observe, finish=finish,
                              info={"held_out_pixels": int(held_mask[:, :1].sum())})


def holdout_masks(y: torch.Tensor, physics: Any, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit, held-out) masks of y's dtype over the entries of ``y``, whole pixels, disjoint, drawn from ``seed``."""
    return split_pixels(measured_entries(physics, y), fraction, seeding.generator(seed, "holdout"), y.dtype)
