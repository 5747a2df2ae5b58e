"""ConvDecoder (Darestani & Heckel, "Accelerated MRI with un-trained neural networks", IEEE TCI
2021): the MRI form of the Deep Decoder, an untrained convolutional generator fitted to the
undersampled k-space.

The network (``methods._dip.networks.ConvDecoder``) grows a small fixed random input (uniform in
[0, 1), ``input_size`` pixels on the longer side) to the image size through ``layers - 1`` blocks
of nearest-neighbour up-sampling, 3×3 convolution, ReLU and BatchNorm, one more block at the image
size and a 1×1 convolution to the real and imaginary parts, without a sigmoid. Its output is
scaled once, before fitting, so that the untrained network's image has the norm of the
zero-filled image (the authors' scaling); then the 1×1 head is zeroed, so the fit starts at the
zero image. It is fitted with Adam to ``MSE(A f(z), y)``; the result is the iterate with
the lowest training loss (a new best must beat the old by 0.5%), then the measured k-space lines
are put back (data consistency): ``x + A*(y − A x)``, which is replacing the measured lines of
each coil's k-space and combining the coils with their conjugate sensitivities (Σ|S|² = 1).

Settings of the authors' comparison notebook (github MLI-lab/ConvDecoder,
``ConvDecoder_vs_DIP_vs_DD_multicoil.ipynb``, fastMRI knees at 640×368): 8 layers of 160
channels, an 8×4 input, lr 0.008, 20000 iterations, no input perturbation. Where the suite
departs: the task gives the coil sensitivities, so for multi-coil MRI the network outputs the
coil-combined complex image (2 channels) and A applies the sensitivities (the authors, without
sensitivities, output 2 channels per coil and combine their magnitudes by root-sum-of-squares,
which loses the phase the metrics here keep); the input is 8×8 for a square image; the scale
uses the zero-filled image, as the authors' demo notebook (their comparison uses the fully
sampled k-space, which a method here never sees); the head starts at zero, as every
linear-output network of the suite: with the authors' random head, the random image's energy on
the unsampled lines is never corrected by the fit, and at the small sizes a CPU affords (a 32²
smooth phantom, 4×) it left the result 11 dB below the zero-filled image (19.1 against 30.8 dB;
26.6 with the zeroed head). The quick budget (CPU) is 32 channels and 500 iterations, the test
budget 16 channels, 4 layers, 60 iterations.

On a CPU budget ConvDecoder does not beat zero-filled on the real slices: one mri_brain_train
slice at 128² (32 channels, 7 layers, lr 0.008), zero-filled 22.32 dB, ConvDecoder 22.49 dB at
its best iterate (step 250) and 22.19 dB for the lowest-loss one of 500 steps; at 64² it
fits the noise within ~300 steps. The authors' gains are at 640×368 with 20000 iterations.

Deep Decoder (``deep_decoder``) is the method for natural images; ConvDecoder applies to MRI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.api import Reconstruction
from benchmark.registry import register
from methods._dip import common, streams
from methods._dip.objectives import measurement_loss
from methods._dip.stopping import LowestTrainingLoss


@register
class ConvDecoderMethod(common.DipMethod):
    name = "conv_decoder"
    summary = "ConvDecoder (Darestani & Heckel 2021): untrained conv decoder for MRI, lowest-loss iterate, DC."
    citation = 'Darestani & Heckel, "Accelerated MRI with un-trained neural networks", IEEE TCI 2021'
    defaults = {
        "iterations": 20000,
        "lr": 0.008,
        "channels": 160,
        "layers": 8,
        "input_size": 8,
        "reg_noise_std": 0.0,
        "ema": 0.0,
        "data_consistency": True,
    }
    stopping_rule = "lowest training loss within the budget"
    budgets = {
        "test": {"iterations": 60, "channels": 16, "layers": 4},
        "quick": {"iterations": common.QUICK_CAP, "channels": 32},
    }
    counts = ("iterations", "channels", "input_size")
    fit_kind = "ConvDecoder, measurement loss"
    fit_params = ("channels", "layers", "input_size")

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "layers", params["layers"] >= 2, "an integer >= 2")

    def skip_reason(self, task: Any, channels: int | None = None) -> str | None:
        if task.space.complex:
            return None
        return (f"ConvDecoder is Darestani & Heckel's method for MRI (complex images); {task.name!r} has "
                f"{task.space.name!r} images, which Deep Decoder (deep_decoder) covers")

    def fit(self, y: torch.Tensor, physics: Any, seed: int) -> common.Fit:
        setup, factor = common.conv_decoder_setup(self.params, y, physics, seed)
        return common.Fit(setup, measurement_loss(physics, y), info={"output_scale": factor})

    def read(self, y: torch.Tensor, physics: Any, seed: int) -> common.Reading:
        best = LowestTrainingLoss()

        def finish(result: Reconstruction) -> None:
            result.info["best_fit_mse"] = common.finite_or_none(best.best_value)
            if self.params["data_consistency"]:
                with torch.no_grad():
                    result.x = result.x + physics.A_adjoint(y - physics.A(result.x))

        return common.Reading(streams.averaged(float(self.params["ema"])), rule=best, finish=finish)
