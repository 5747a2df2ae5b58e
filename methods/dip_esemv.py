"""DIP with ES-EMV early stopping (Wang, Li, Zhuang, Chen, Liang, Sun, "Early Stopping for Deep
Image Prior", TMLR 2023; code sun-umn/Early_Stopping_for_DIP, ``ES_EMV.ipynb``).

The exponential-moving-variance sibling of ES-WMV (``dip_eswmv``): instead of the variance of a
window of iterates, the run watches the exponential moving variance of its raw outputs around their
exponential moving average (α = 0.1), which needs no window buffer. The authors' notebook (α 0.1,
patience 1000, 5000 iterations, checks after iteration 100 (0-based), the denoising notebook's network, lr
0.01 and perturbation 1/30) evaluates the EMA at the detected iteration, so this method returns
the EMA 0.9 of the outputs at the variance's minimum: the averaged stream, where ES-WMV returns
the raw iterate. Where it departs: the EMA is not clipped to [0, 1] (a convex combination of sigmoid
outputs stays there; signed MRI parts must not be clipped), the variance is a mean over entries
rather than a sum (the same minimum), and the run stops at ``patience`` steps past the minimum
(the notebook runs on and freezes its choice: the same result).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.api import Reconstruction
from benchmark.registry import register
from methods._dip import common, streams
from methods._dip.stopping import ExponentialVariance


@register
class DipESEMV(common.DipMethod):
    name = "dip_esemv"
    summary = "DIP stopped by the exponential moving variance of its outputs, returning their EMA (ES-EMV)."
    citation = 'Wang, Li, Zhuang, Chen, Liang, Sun, "Early Stopping for Deep Image Prior", TMLR 2023 (ES-EMV)'
    #: the stream is always the authors' EMA (weight 1 − α), from which the rule rebuilds the
    #: variance: the other variants' ``ema`` parameter (and its per-task values) does not apply
    defaults = {**{k: v for k, v in common.SKIP_DEFAULTS.items() if k != "ema"}, "iterations": 5000, "alpha": 0.1,
                "patience": 1000, "start": 102}
    task_defaults = {key: {k: v for k, v in values.items() if k != "ema"}
                     for key, values in common.EARLY_STOPPING_TASK_DEFAULTS.items()}
    budget_task_params = common.SKIP_BUDGET_TASK_PARAMS
    stopping_rule = "exponential moving variance of the outputs (ES-EMV)"
    #: the DIP family's common cap in each budget (the paper budget: at least 5000), so that the
    #: stopping rule decides where the run ends
    budgets = {
        "test": {**common.SKIP_TEST_PARAMS, "patience": 20, "start": 10},
        "quick": {**common.SKIP_QUICK_PARAMS, "patience": 200},
    }

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "alpha", 0 < params["alpha"] < 1, "a number in (0, 1)")
        cls.require(params, "patience", params["patience"] >= 1, "an integer >= 1")
        cls.require(params, "start", params["start"] >= 1, "an integer >= 1")

    def read(self, y: torch.Tensor, physics: Any, seed: int) -> common.Reading:
        alpha = float(self.params["alpha"])
        rule = ExponentialVariance(alpha=alpha, patience=common.positive_int(self.params, "patience"),
                                   start=common.positive_int(self.params, "start"))

        def finish(result: Reconstruction) -> None:
            result.info["min_variance"] = common.finite_or_none(rule.tracker.best_value)

        return common.Reading(streams.Ema(1.0 - alpha), rule=lambda step, x, _loss: rule.update(step, x), finish=finish)
