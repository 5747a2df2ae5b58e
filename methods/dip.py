"""Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018).

Fits the paper's skip encoder-decoder ``f_θ`` so that ``A f_θ(z)`` matches ``y`` (MSE, Adam),
with a fixed random input ``z`` perturbed at every step. Each task gets its official notebook's
network, learning rate, perturbation, budget and output (the exponential moving average of the
outputs for denoising, the raw output for inpainting and super-resolution); see
``methods/_dip/common.py``. DIP has no stopping rule of its own: the budget plays that role.
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark.registry import register
from methods._dip import common
from methods._dip.objectives import measurement_loss

#: DIP on MRI (task family "mri"): Adam's lr 0.003 instead of the denoising notebook's 0.01, chosen
#: on 4 mri_brain_train slices at 4× (never test slices), by the mean PSNR after a fixed budget:
#: 64², 1500 iterations of the quick network: 21.96 dB against 21.78 (zero-filled 20.49); 128²,
#: 1000 iterations: 23.74 against 23.53 (zero-filled 22.38). Darestani & Heckel (IEEE TCI 2021,
#: github MLI-lab/ConvDecoder) fit DIP to k-space with lr 0.008 and no input perturbation; without
#: the perturbation (and its EMA) DIP fell below zero-filled on those slices (19.99 dB at 3000
#: iterations), so the perturbation and EMA stay. It was chosen with the quick network, so it
#: also holds under the quick budget (whose lr 0.01 undoes the inpainting notebook's 0.001).
MRI_DEFAULTS: dict[str, Any] = {"lr": 0.003}

#: Iteration budgets ``benchmark tune`` tries where no paper gives one (other image sizes,
#: e.g. the quick profile's 64×64 crops); all read off one run's PSNR trajectory.
BUDGET_GRID: list[int] = [250, 500, 1000, 1500, 2000, 3000, 4000, 6000]


@register
class DeepImagePrior(common.DipMethod):
    name = "dip"
    summary = "Deep Image Prior: skip encoder-decoder fitted to y, the notebooks' settings and budget per task."
    defaults = dict(common.SKIP_DEFAULTS)
    task_defaults = {**common.PAPER_TASK_DEFAULTS, "mri": MRI_DEFAULTS}
    stopping_rule = "fixed budget (the paper's, per task)"
    test_params = common.SKIP_TEST_PARAMS
    quick_params = common.SKIP_QUICK_PARAMS
    budget_task_params = {"quick": {"mri": MRI_DEFAULTS}}
    #: the budget per task, where no paper gives one, by ``benchmark tune`` (a profile's
    #: ``tune.grids`` narrows the grid)
    tunable = {"iterations": BUDGET_GRID}
    budget_parameter = "iterations"

    def plan(self, y: torch.Tensor, physics: Any, seed: int) -> common.FitPlan:
        return common.FitPlan(common.skip_setup(self.params, y, physics, seed), measurement_loss(physics, y))
