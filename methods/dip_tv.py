"""DIP-TV (Liu, Sun, Xu, Kamilov, ICASSP 2019): Deep Image Prior plus a total-variation penalty.

The objective is ``MSE(A f_θ(z), y) + λ·TV(f_θ(z))`` with isotropic TV averaged over pixels;
network, input, perturbation, averaging and budgets are vanilla DIP's. The paper tunes λ per
image (on the test image); here λ, with the budget where no paper gives one, is chosen per task
family by ``benchmark tune`` on validation images from the training split. The default λ = 0.01
is an untuned starting point, and the report says so wherever a profile uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.registry import register
from methods._dip import common
from methods._dip.objectives import measurement_loss, weighted_tv
from methods.dip import BUDGET_GRID


@register
class DipTV(common.DipMethod):
    name = "dip_tv"
    summary = "DIP with a total-variation penalty on the output (Liu et al. 2019)."
    citation = (
        'Liu, Sun, Xu, Kamilov, "Image restoration using total variation regularized deep image prior", '
        'ICASSP 2019'
    )
    defaults = {**common.SKIP_DEFAULTS, "tv_weight": 0.01}
    task_defaults = common.PAPER_TASK_DEFAULTS
    stopping_rule = "fixed budget (DIP's, per task)"
    budgets = {"test": common.SKIP_TEST_PARAMS, "quick": common.SKIP_QUICK_PARAMS}
    budget_task_params = common.SKIP_BUDGET_TASK_PARAMS
    tunable = {"tv_weight": [0.001, 0.003, 0.01, 0.03, 0.1], "iterations": BUDGET_GRID}
    tune_by = "family"
    fit_kind = "skip network, measurement loss + TV"
    fit_params = (*common.SKIP_FIT_PARAMS, "tv_weight")
    budget_parameter = "iterations"

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "tv_weight", params["tv_weight"] >= 0, "a number >= 0")

    def fit(self, y: torch.Tensor, physics: Any, seed: int) -> common.Fit:
        weight = float(self.params["tv_weight"])
        setup = common.skip_setup(self.params, y, physics, seed)
        return common.Fit(setup, measurement_loss(physics, y), regulariser=weighted_tv(weight),
                          info={"tv_weight": weight})
