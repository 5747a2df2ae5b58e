"""DIP with self-validation early stopping (Li, Zhuang, Liang, Peng, Wang, Sun, BMVC 2021,
"Self-Validation: Early Stopping for Single-Instance Deep Generative Priors").

DIP as in the authors' code (sun-umn/Self-Validation, ``DIP+AE``: the skip net 128/128/4, lr
0.01, input perturbation 1/30, raw outputs), watched by an autoencoder trained online on the
last ``ae_window`` iterates (256): its reconstruction error of the newest iterate falls while
the DIP output gains image structure and turns up once it fits the noise. The run stops when the
error has not reached a new minimum for ``patience`` steps (500) and returns the iterate at the
minimum. See ``methods/_dip/autoencoder.py`` for the autoencoder and its training.

Where this departs from the authors: the budget caps the run (they run up to 100,000 steps);
the returned iterate is the raw output of the best step, where they re-run the network in eval
mode on the unperturbed input; images that are not 512×512 are resized to a power-of-two side for
the autoencoder; and ``ae_every`` > 1 (check and train every few steps) and smaller
``ae_window`` / ``ae_batch`` are CPU budgets the quick and smoke profiles use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.api import Reconstruction
from benchmark.registry import register
from methods._dip import common
from methods._dip.autoencoder import AutoencoderValidation
from methods._dip.objectives import measurement_loss
from methods._dip.stopping import Verdict


@register
class DipSelfValidation(common.DipMethod):
    name = "dip_sv"
    summary = "DIP stopped by an online autoencoder's error on its iterates (Li et al.'s self-validation)."
    defaults = {**common.SKIP_DEFAULTS, "iterations": 5000, "ema": 0.0, "patience": 500, "ae_window": 256,
                "ae_batch": 32, "ae_lr": 1e-3, "ae_every": 1}
    task_defaults = common.EARLY_STOPPING_TASK_DEFAULTS
    stopping_rule = "online autoencoder's error on the iterates (self-validation)"
    #: a larger cap than DIP's, so that the stopping rule decides where the run ends; the
    #: autoencoder checks every few steps on a short window of iterates (a CPU budget). Quick:
    #: four Adam steps (minibatches of 4) every 25 steps; one step every 50, as before, left it
    #: untrained, so its first check was its minimum (ES gap 4.8 dB on the quick images).
    test_params = {**common.SKIP_TEST_PARAMS, "patience": 20, "ae_window": 8, "ae_batch": 8, "ae_every": 5}
    quick_params = {**common.SKIP_QUICK_PARAMS, "iterations": 1000, "patience": 300, "ae_window": 16,
                    "ae_batch": 4, "ae_every": 25}

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        for key in ("patience", "ae_window", "ae_batch", "ae_every"):
            cls.require(params, key, params[key] >= 1, "an integer >= 1")
        cls.require(params, "ae_lr", params["ae_lr"] > 0, "a number > 0")

    def plan(self, y: torch.Tensor, physics: Any, seed: int) -> common.FitPlan:
        c, h, w = common.image_shape(y, physics)
        validator = AutoencoderValidation(
            channels=c, height=h, width=w, seed=seed, window=common.positive_int(self.params, "ae_window"),
            batch=common.positive_int(self.params, "ae_batch"), lr=float(self.params["ae_lr"]),
            patience=common.positive_int(self.params, "patience"), every=common.positive_int(self.params, "ae_every"),
            device=y.device, dtype=y.dtype)

        def observe(step: int, x: torch.Tensor, _fit_loss: torch.Tensor) -> Verdict:
            return validator.update(step, x)

        def finish(result: Reconstruction) -> None:
            result.info["best_ae_error"] = common.finite_or_none(validator.tracker.best_value)
            result.info["ae_checks"] = len(validator.history)

        setup = common.skip_setup(self.params, y, physics, seed)
        return common.FitPlan(setup, measurement_loss(physics, y), rule=observe, finish=finish,
                              info={"ae_side": validator.side})
