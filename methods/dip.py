"""Deep Image Prior (Ulyanov, Vedaldi, Lempitsky, CVPR 2018).

Fits the paper's skip encoder-decoder ``f_θ`` so that ``A f_θ(z)`` matches ``y`` (MSE, Adam),
with a fixed random input ``z`` perturbed at every step. Each task gets its official notebook's
network, learning rate, perturbation, budget and output (the exponential moving average of the
outputs for denoising, the raw output for inpainting and super-resolution); see
``methods/_dip/common.py``. DIP has no stopping rule of its own: the budget plays that role.
"""

from __future__ import annotations

from benchmark.registry import register
from methods._dip import common

#: Iteration budgets ``benchmark tune`` tries where no paper gives one (other image sizes,
#: e.g. the quick profile's 64×64 crops); all read off one run's PSNR trajectory.
BUDGET_GRID: list[int] = [250, 500, 1000, 1500, 2000, 3000, 4000, 6000]


@register
class DeepImagePrior(common.DipMethod):
    name = "dip"
    summary = "Deep Image Prior: skip encoder-decoder fitted to y, the notebooks' settings and budget per task."
    citation = 'Ulyanov, Vedaldi, Lempitsky, "Deep Image Prior", CVPR 2018'
    defaults = dict(common.SKIP_DEFAULTS)
    task_defaults = common.PAPER_TASK_DEFAULTS
    stopping_rule = "fixed budget (the paper's, per task)"
    budgets = {"test": common.SKIP_TEST_PARAMS, "quick": common.SKIP_QUICK_PARAMS}
    budget_task_params = common.SKIP_BUDGET_TASK_PARAMS
    #: the budget per task, where no paper gives one, by ``benchmark tune`` (a profile's
    #: ``tune.grids`` narrows the grid)
    tunable = {"iterations": BUDGET_GRID}
    budget_parameter = "iterations"
