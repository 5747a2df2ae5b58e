"""Deep Decoder (Heckel & Hand, ICLR 2019): an under-parameterised generator fitted to ``y``.

``scales`` + 1 layers of ``channels`` 1×1 filters with bilinear up-sampling, ReLU and channel
normalisation, from a fixed random input that is not perturbed. With fewer weights than the
image has pixels it cannot fit the noise, so it needs no early stopping. As in the authors'
code (``find_best``), it returns the iterate with the lowest training loss, a new best having to
beat the old by 0.5%: Adam at lr 0.01 makes the late iterates jump about. The budget is the
authors' denoising notebook's (1900 iterations, k = 128) for every task. Note that k = 128 is
under-parameterised only for images of about 512² pixels and more; small images want fewer
channels (about 6k² weights for H·W pixels).
"""

from __future__ import annotations

from typing import Any

import torch

from benchmark.api import Reconstruction
from benchmark.registry import register
from methods._dip import common
from methods._dip.objectives import measurement_loss
from methods._dip.stopping import PatientMinimum, Verdict

#: relative margin by which a training loss must beat the best so far (the authors' 1.005)
IMPROVEMENT = 0.005


@register
class DeepDecoderMethod(common.DipMethod):
    name = "deep_decoder"
    summary = "Deep Decoder: under-parameterised 1x1-conv decoder, lowest-training-loss iterate."
    defaults = {
        "iterations": 1900,
        "lr": 0.01,
        "channels": 128,
        "scales": 5,
        "reg_noise_std": 0.0,
        "ema": 0.0,
    }
    stopping_rule = "lowest training loss within the budget"
    test_params = common.TEST_PARAMS
    quick_params = common.QUICK_PARAMS

    def plan(self, y: torch.Tensor, physics: Any, seed: int) -> common.FitPlan:
        best = PatientMinimum(patience=None, min_delta=IMPROVEMENT)

        def keep_best(step: int, x: torch.Tensor, fit_loss: torch.Tensor) -> Verdict:
            return best.update(step, float(fit_loss.sum()))

        def finish(result: Reconstruction) -> None:
            result.info["best_fit_mse"] = common.finite_or_none(best.best_value)

        setup = common.decoder_setup(self.params, y, physics, seed)
        return common.FitPlan(setup, measurement_loss(physics, y), rule=keep_best, finish=finish)
