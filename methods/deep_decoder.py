"""Deep Decoder (Heckel & Hand, ICLR 2019): an under-parameterised generator fitted to ``y``.

``scales`` + 1 layers of k 1×1 filters with bilinear up-sampling, ReLU and channel
normalisation, from a fixed random input. It regularises by having fewer weights than the image
has values, so k is sized from the image (``channels`` 0, the default): the largest k with at
most ``param_ratio`` weights per image value (H·W·C). The ratios are the authors' own
configurations (github reinhardh/supplement_deep_decoder): their denoising notebook's k = 128 on
the 512×512 RGB astronaut is 100,224 weights for 786,432 values, 0.127; their inpainting
notebook's k = 256 on the 512×512 RGBA poster is 397,312 for 1,048,576, 0.379. A fixed k would
not do: k = 128 has more weights than a 256×256 gray image has pixels.

Denoising follows the denoising notebook (lr 0.01, 1900 iterations, no input perturbation),
inpainting the inpainting notebook (lr 0.0025, 40000 iterations, input perturbation 0.005
multiplied by 0.7 every 500 steps). As in the authors' ``fit(find_best=True)`` the result is the
iterate with the lowest training loss, a new best having to beat the old by 0.5%; the authors
return that network's output for the unperturbed input, here it is the iterate of that step.
Other tasks use the denoising settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.api import Reconstruction
from benchmark.registry import register
from methods._dip import common, streams
from methods._dip.networks import decoder_parameter_count, parameter_count
from methods._dip.objectives import measurement_loss
from methods._dip.stopping import LowestTrainingLoss

#: weights per image value of the authors' configurations (see the module docstring)
DENOISING_RATIO = decoder_parameter_count(128, 5, 3) / (512 * 512 * 3)
INPAINTING_RATIO = decoder_parameter_count(256, 5, 4) / (512 * 512 * 4)


@register
class DeepDecoderMethod(common.DipMethod):
    name = "deep_decoder"
    summary = "Deep Decoder: 1x1-conv decoder sized under the image's value count, lowest-training-loss iterate."
    citation = (
        'Heckel & Hand, "Deep Decoder: concise image representations from untrained non-convolutional '
        'networks", ICLR 2019'
    )
    defaults = {
        "iterations": 1900,
        "lr": 0.01,
        "channels": 0,
        "param_ratio": round(DENOISING_RATIO, 4),
        "scales": 5,
        "reg_noise_std": 0.0,
        "reg_noise_decay": 0.7,
        "reg_noise_decay_every": 0,
        "ema": 0.0,
    }
    stopping_rule = "lowest training loss within the budget"
    task_defaults = {
        "inpainting": {"iterations": 40000, "lr": 0.0025, "reg_noise_std": 0.005, "reg_noise_decay_every": 500,
                       "param_ratio": round(INPAINTING_RATIO, 4)},
    }
    #: lr 0.01 for every task (the inpainting recipe's 0.0025 goes with its 40000 iterations); the
    #: quick budget keeps the width sized from the image.
    budgets = {"test": {**common.TEST_PARAMS, "lr": 0.01},
               "quick": {"iterations": common.QUICK_CAP, "lr": 0.01}}
    counts = ("iterations", "scales")  # channels 0: sized from the image
    #: the width k per task family, on training images at the test size: the authors' ratio rule
    #: (0) gives k = 8 on a 64² gray image, where a wider decoder may fit better; the grid keeps
    #: the rule as a choice, so a tuned value departs from it only where it scores lower (on the
    #: quick profile's 64² crops, 64 won at the end of a grid that stopped there, so 128 is in it;
    #: with 1-channel 64² crops k = 64 has 6× as many weights as pixels, 128 about 24×: under 800
    #: steps the decoder has not yet fitted the noise, its under-parameterisation no longer decides)
    tunable = {"channels": [0, 16, 32, 64, 128]}
    tune_by = "family"
    fit_kind = "deep decoder, measurement loss"
    fit_params = ("channels", "param_ratio", "scales")

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "channels", params["channels"] >= 0, "an integer >= 0 (0: sized from the image)")
        cls.require(params, "param_ratio", params["param_ratio"] > 0, "a number > 0")
        cls.require(params, "reg_noise_decay", 0 < params["reg_noise_decay"] <= 1, "a number in (0, 1]")
        cls.require(params, "reg_noise_decay_every", params["reg_noise_decay_every"] >= 0, "an integer >= 0")

    def fit(self, y: torch.Tensor, physics: Any, seed: int) -> common.Fit:
        setup = common.decoder_setup(self.params, y, physics, seed)
        c, h, w = common.image_shape(y, physics)
        info = {"channels_k": int(setup.z.shape[1]),
                "parameters_per_value": parameter_count(setup.network) / (c * h * w)}
        return common.Fit(setup, measurement_loss(physics, y), info=info)

    def read(self, y: torch.Tensor, physics: Any, seed: int) -> common.Reading:
        best = LowestTrainingLoss()

        def finish(result: Reconstruction) -> None:
            result.info["best_fit_mse"] = common.finite_or_none(best.best_value)

        return common.Reading(streams.averaged(float(self.params["ema"])), rule=best, finish=finish)
