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
mode on the unperturbed input; images that are not 512×512 are scaled (never stretched: the
shorter side is padded) to a power-of-two side for the autoencoder; iterates of signed images (MRI
parts) are mapped into [0, 1] by their space's value range. ``ae_setting: cpu`` (the quick
profile's, shown in its label) keeps the authors' 256-step window with one iterate every 8 steps,
checks every 8 steps and trains one Adam step of 8 iterates per DIP step, 1/32 of the authors'
training (``methods._dip.autoencoder.AE_SETTINGS``). That is too little on small CPU problems:
on a 64² denoising crop (σ 25, 16 channels) whose best iterate is at step ~245, the CPU
autoencoder's error still falls at a 900-step cap (27.4 at step 264, 13.2 at step 888), with
one Adam step per DIP step or four, so the run ends on its budget and returns its last check.
Under a 2000-step cap it does stop on its rule (camera, 64², quick network: at step 1568,
returning step 1264, 1.04 dB under the run's best iterate at step 585). Against the authors'
setting on 2 embedded 32² crops under the same cap, its mean ES gap was 2.14 dB against their
2.19, at 1/15 of their runtime; at that size neither stops reliably, the autoencoder's error
still falling at the cap (``tests/perf/test_sv_gap.py``, ``DIPBENCH_SV_GAP=1``; the authors'
setting takes over 30 minutes per 64² crop on 2 CPU cores, a GPU's run).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.api import Reconstruction
from benchmark.problems import spaces
from benchmark.registry import register
from methods._dip import common, streams
from methods._dip.autoencoder import AE_SETTINGS, AutoencoderValidation
from methods._dip.stopping import Verdict


@register
class DipSelfValidation(common.DipMethod):
    name = "dip_sv"
    summary = "DIP stopped by an online autoencoder's error on its iterates (Li et al.'s self-validation)."
    citation = (
        'Li, Zhuang, Liang, Peng, Wang, Sun, "Self-Validation: Early Stopping for Single-Instance Deep '
        'Generative Priors", BMVC 2021'
    )
    defaults = {**common.SKIP_DEFAULTS, "iterations": 5000, "ema": 0.0, "patience": 500, "ae_window": 256,
                "ae_setting": "authors", "ae_lr": 1e-3}
    task_defaults = common.EARLY_STOPPING_TASK_DEFAULTS
    budget_task_params = common.SKIP_BUDGET_TASK_PARAMS
    stopping_rule = "online autoencoder's error on the iterates (self-validation)"
    #: the common cap of the DIP family in a budget, so that the stopping rule decides where the run
    #: ends; the CPU setting of the autoencoder (``AE_SETTINGS["cpu"]``) is the quick profile's,
    #: named in its label (``dip_sv[ae_setting=cpu]``)
    budgets = {
        "test": {**common.SKIP_TEST_PARAMS, "patience": 20, "ae_window": 16, "ae_setting": "cpu"},
        "quick": {**common.SKIP_QUICK_PARAMS, "patience": 300},
    }

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "patience", params["patience"] >= 1, "an integer >= 1")
        cls.require(params, "ae_setting", params["ae_setting"] in AE_SETTINGS, f"one of {', '.join(AE_SETTINGS)}")
        stride = int(AE_SETTINGS[params["ae_setting"]]["stride"])
        cls.require(params, "ae_window", params["ae_window"] >= stride and params["ae_window"] % stride == 0,
                    f"a multiple of the setting's stride ({stride})")
        cls.require(params, "ae_lr", params["ae_lr"] > 0, "a number > 0")

    def read(self, y: torch.Tensor, physics: Any, seed: int) -> common.Reading:
        c, h, w = common.image_shape(y, physics)
        setting = AE_SETTINGS[self.params["ae_setting"]]
        space = spaces.of(physics)
        validator = AutoencoderValidation(
            channels=c, height=h, width=w, seed=seed, window=common.positive_int(self.params, "ae_window"),
            batch=int(setting["batch"]), lr=float(self.params["ae_lr"]), rate=float(setting["rate"]),
            patience=common.positive_int(self.params, "patience"), every=int(setting["every"]),
            stride=int(setting["stride"]), device=y.device, dtype=y.dtype, to_unit=space.to_unit)

        def observe(step: int, x: torch.Tensor, _fit_loss: torch.Tensor) -> Verdict:
            return validator.update(step, x)

        def finish(result: Reconstruction) -> None:
            result.info["best_ae_error"] = common.finite_or_none(validator.tracker.best_value)
            result.info["ae_checks"] = len(validator.history)

        return common.Reading(streams.averaged(float(self.params["ema"])), rule=observe, finish=finish,
                              info={"ae_side": validator.side})
