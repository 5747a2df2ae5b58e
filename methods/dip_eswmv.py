"""DIP with ES-WMV early stopping (Wang, Li, Zhuang, Chen, Liang, Sun; arXiv 2112.06074).

Plain DIP, but the run watches the variance of its last ``window`` iterates around their mean:
it falls while the image is learned and rises once the network starts fitting noise. The run
stops when that variance has not reached a new minimum for ``patience`` steps and returns the
iterate at the minimum. As in the authors' code (sun-umn/Early_Stopping_for_DIP: window 100,
patience 1000, 5000 iterations) the iterates are the raw outputs, without averaging.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.api import Reconstruction
from benchmark.registry import register
from methods._dip import common, streams
from methods._dip.stopping import WindowedVariance


@register
class DipESWMV(common.DipMethod):
    name = "dip_eswmv"
    summary = "DIP stopped by the windowed moving variance of its iterates (ES-WMV)."
    citation = 'Wang, Li, Zhuang, Chen, Liang, Sun, "Early Stopping for Deep Image Prior", TMLR 2023 (ES-WMV)'
    defaults = {**common.SKIP_DEFAULTS, "iterations": 5000, "ema": 0.0, "window": 100, "patience": 1000}
    task_defaults = common.EARLY_STOPPING_TASK_DEFAULTS
    budget_task_params = common.SKIP_BUDGET_TASK_PARAMS
    stopping_rule = "windowed moving variance of the iterates (ES-WMV)"
    #: the DIP family's common cap in each budget (the paper budget: at least 5000), so that the
    #: stopping rule decides where the run ends
    budgets = {
        "test": {**common.SKIP_TEST_PARAMS, "window": 10, "patience": 20},
        "quick": {**common.SKIP_QUICK_PARAMS, "patience": 200},
    }

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "window", params["window"] >= 2, "an integer >= 2")
        cls.require(params, "patience", params["patience"] >= 1, "an integer >= 1")

    def read(self, y: torch.Tensor, physics: Any, seed: int) -> common.Reading:
        window = common.positive_int(self.params, "window", minimum=2)
        patience = common.positive_int(self.params, "patience")
        rule = WindowedVariance(window=window, patience=patience)

        def finish(result: Reconstruction) -> None:
            result.info["min_variance"] = common.finite_or_none(rule.tracker.best_value)

        return common.Reading(streams.averaged(float(self.params["ema"])),
                              rule=lambda step, x, _loss: rule.update(step, x), finish=finish)
