"""Bayesian DIP by Langevin dynamics (Cheng, Gadelha, Maji, Sheldon, "A Bayesian Perspective on the
Deep Image Prior", CVPR 2019, arXiv 1904.07457).

The network's weights are sampled rather than fitted: after every Adam step (with weight decay
5e-8, the Gaussian weight prior) Gaussian noise of std 2·lr is added to every convolution weight
(biases and batch-norm parameters are left alone), and the reconstruction is the posterior mean,
the average of the outputs every ``thin`` steps after ``burn_in`` steps, with their per-pixel
standard deviation as the reconstruction's uncertainty. The authors' code (github
ZezhouCheng/GP-DIP, ``Image_Denoising.ipynb``: settings cell 6, SGLD cell 15) runs 20000 steps of
the skip net 128/128/4 at lr 0.01 with input perturbation 1/30, burn-in 7000 and a sample every
50 steps (``MCMC_iter``), noise ``param_noise_sigma · lr`` = 2·lr; the per-pixel std over the
same thinned samples is their 1-D toy's (``1D_toy_example.ipynb`` cell 29). No stopping rule:
the paper's point is that the posterior mean needs none (the budget ends the chain).

Where this departs from the authors:

* their roll-back guard (reload the weights of the previous step when PSNR(out, y) falls by more
  than 5 dB) is omitted: the loop keeps no snapshot of a problem's weights, and a copy of every
  weight at every step is not cheap.
* inpainting: the authors' inpainting notebook is not in their repository, so its settings are
  unknown; it takes the suite's DIP inpainting settings (``methods/_dip/common.py``: lr 0.001,
  perturbation 0.03, 11000 steps), noise std 2·lr, burn-in and thinning in the denoising
  proportions (35 %, one sample per 1/400 of the budget: ~260 samples).
* super-resolution, deblurring, MRI and CT are not in the paper: the suite's DIP settings for the
  network's input, lr and perturbation on that task, with the authors' chain (20000 steps,
  burn-in 7000, every 50th).
* the samples are steps ``burn_in + k·thin`` (1-based); the authors' are the 0-based steps past
  the burn-in that are multiples of 50 (one sample fewer).
* quick budget: 800 steps of the 32-channel network (the DIP family's ``common.QUICK_CAP``) at lr
  0.01, in the authors' proportions: burn-in 280, a sample every 2 steps (260 samples); the
  weight noise follows the lr (std 0.02).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.api import Reconstruction
from benchmark.core import seeding
from benchmark.registry import register
from methods._dip import common, loop, streams

#: the authors' chain (``Image_Denoising.ipynb`` cell 6: num_iter, burnin_iter; cell 15: MCMC_iter)
AUTHORS_ITERATIONS, AUTHORS_BURN_IN, AUTHORS_THIN = 20000, 7000, 50


def chain(iterations: int) -> dict[str, int]:
    """A budget of ``iterations`` steps in the authors' proportions: 35 % burn-in, a sample every
    1/400 of the budget (20000 → 7000 and 50)."""
    return {"iterations": iterations, "burn_in": round(iterations * AUTHORS_BURN_IN / AUTHORS_ITERATIONS),
            "thin": max(1, round(iterations * AUTHORS_THIN / AUTHORS_ITERATIONS))}


def _without_ema(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != "ema"}


_AUTHORS_CHAIN = chain(AUTHORS_ITERATIONS)
#: the suite's DIP settings per task (network input, lr, perturbation) without DIP's budget and
#: EMA; inpainting keeps DIP's budget, in the authors' proportions
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    key: {**_without_ema(values), **(chain(int(values["iterations"])) if key.startswith("inpainting")
                                     else _AUTHORS_CHAIN)}
    for key, values in common.PAPER_TASK_DEFAULTS.items()
}


@register
class SgldDIP(common.DipMethod):
    name = "sgld_dip"
    summary = ("Bayesian DIP (Cheng et al. 2019): Langevin noise on the weights after each Adam step, posterior "
               "mean of the outputs after burn-in, per-pixel std as uncertainty.")
    citation = 'Cheng, Gadelha, Maji, Sheldon, "A Bayesian Perspective on the Deep Image Prior", CVPR 2019'
    defaults = {**_without_ema(common.SKIP_DEFAULTS), **_AUTHORS_CHAIN, "lr": 0.01, "reg_noise_std": 1.0 / 30.0,
                "weight_decay": 5e-8, "param_noise_sigma": 2.0}
    task_defaults = TASK_DEFAULTS
    stopping_rule = "fixed budget: the posterior mean after burn-in (no early stopping needed)"
    budgets = {
        "test": {**common.SKIP_TEST_PARAMS, **chain(int(common.SKIP_TEST_PARAMS["iterations"]))},
        "quick": {**common.SKIP_QUICK_PARAMS, **chain(common.QUICK_CAP)},
    }
    budget_task_params = common.SKIP_BUDGET_TASK_PARAMS
    counts = (*common.DipMethod.counts, "thin")
    #: the Langevin noise is part of the fit; methods reading its chain differently (another burn-in
    #: or thinning) share it
    fit_kind = "skip network, measurement loss, Langevin weight noise"
    fit_params = (*common.SKIP_FIT_PARAMS, "param_noise_sigma")

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "weight_decay", params["weight_decay"] >= 0, "a number >= 0")
        cls.require(params, "param_noise_sigma", params["param_noise_sigma"] >= 0, "a number >= 0")
        cls.require(params, "burn_in", params["burn_in"] >= 0, "an integer >= 0")
        cls.require(params, "burn_in", params["burn_in"] + params["thin"] <= params["iterations"],
                    f"at most iterations − thin ({params['iterations']} − {params['thin']}): no sample otherwise")

    def weight_noise_std(self) -> float:
        """The std of the Langevin noise: ``param_noise_sigma`` × lr (the authors' 2 × 0.01)."""
        return float(self.params["param_noise_sigma"]) * float(self.params["lr"])

    def fit(self, y: torch.Tensor, physics: Any, seed: int) -> common.Fit:
        """DIP's fit, plus the weight noise after each step, drawn from the problem's own
        generator (on the CPU, in the solo network's layout: a batch equals alone)."""
        fit = super().fit(y, physics, seed)
        std = self.weight_noise_std()
        generator = seeding.generator(seed, "langevin")

        def langevin(_step: int, _out: torch.Tensor, handle: loop.Handle) -> None:
            handle.add_weight_noise(std, generator)

        fit.hook = langevin if std > 0 else None
        fit.info["weight_noise_std"] = std
        return fit

    def read(self, y: torch.Tensor, physics: Any, seed: int) -> common.Reading:
        burn_in, thin = int(self.params["burn_in"]), common.positive_int(self.params, "thin")
        stream = streams.PosteriorMean(burn_in, thin)

        def finish(result: Reconstruction) -> None:
            result.info["posterior_samples"] = stream.samples

        return common.Reading(stream, info={"burn_in": burn_in, "thin": thin}, finish=finish)
