"""DIP with self-validation early stopping (after Li, Zhuang, Mao, Dong, BMVC 2021).

A random, seeded ``holdout`` fraction of the measured entries of ``y`` is kept out of the fit;
the network is fitted to the rest, and the loss on the held-out entries, which the network
never fits, tracks the reconstruction error: it falls while the image is being learned and
rises once the noise is. The run stops when that loss (averaged over ``window`` steps) has not
reached a new minimum for ``patience`` steps, and returns the iterate at the minimum.

Li et al. validate with an autoencoder trained online on the iterates; validating on held-out
measurements, as here, is the simpler hold-out form of the same idea (the issue's
specification). The output is the averaged iterate, as in vanilla DIP: on raw iterates the
held-out loss is noisier and the selection lands about 1 dB lower in our 64×64 runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark import seeding
from benchmark.api import Reconstruction
from benchmark.registry import register
from methods._dip import common
from methods._dip.objectives import held_out_error, measured_entries, measurement_loss, split_measurements
from methods._dip.stopping import HeldOutLoss, Verdict


@register
class DipSelfValidation(common.DipMethod):
    name = "dip_sv"
    summary = "DIP stopped by the loss on held-out measurements (self-validation), best held-out iterate."
    defaults = {**common.SKIP_DEFAULTS, "iterations": 5000, "holdout": 0.1, "patience": 300, "window": 1}
    task_defaults = common.EARLY_STOPPING_TASK_DEFAULTS
    stopping_rule = "held-out measurement loss (self-validation)"
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
                              info={"held_out_entries": int(held_mask.sum())})


def holdout_masks(y: torch.Tensor, physics: Any, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit, held-out) float masks over the entries of ``y``, disjoint, drawn from ``seed``."""
    return split_measurements(measured_entries(physics, y), fraction, seeding.generator(seed, "holdout"), y.dtype)
