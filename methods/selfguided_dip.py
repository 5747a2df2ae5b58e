"""Self-Guided DIP (Liang, Bell, Qu, Wang, Ravishankar, IEEE TCI 2025, "Analysis of Deep Image
Prior and Exploiting Self-Guidance for Image Reconstruction", arXiv 2402.04097).

The network's input ``z`` is optimised with the network (by its own Adam, ``input_lr``); each step
averages K = ``draws`` forward passes from ``z + η_j``, η_j uniform on [0, σ·max z) with σ =
``reg_noise_std`` (drawn afresh at every step, from the current z), and minimises

    ‖A x̄ − y‖₂ + α ‖x̄ − z‖₂,     x̄ = (1/K) Σ_j f_θ(z + η_j)        (α = ``ae_weight``)

over θ and z together; the result is the exponential moving average (0.99) of x̄. Settings of the
authors' MRI demo (github sjames40/Self-Guided-DIP, ``self_guided_DIP_demo.ipynb`` at 36ab364,
cells In[8]-In[13]): Adam lr 3e-4 for the network and 1e-1 for the input, K = 3, σ = 1/2
(``noise_max = max(z)/2``), α = 2, 4000 steps, EMA 0.99, z drawn uniform on [0, 1) with the
image's shape (the demo computes A†y, then overwrites it with that noise; ``input: noise`` is
that, ``input: fbp`` starts from A†y instead, as Denker et al.'s DIP handbook code does).

The objective keeps the authors' unsquared 2-norms rather than the suite's mean-squared data term:
α is defined against them. Each norm's gradient has the unit scale of its own residual's direction,
so α weighs the two pulls whatever the residuals' sizes (with squared means the data term's pull
fades as the fit improves and α would have to be re-chosen), and both norms grow with the image's
side alike where A keeps the image's size and norm (the suite's orthonormal MRI, masks, the CT
operator normalised to ‖A‖ = 1). The regulariser acts on the mean output, as the authors' code (the
handbook applies it to each draw). The demo's regulariser compares its real 2-channel input with a
complex output and thereby pulls the imaginary part to zero; here it compares the 2-channel real
images, as the paper writes it.

Where the suite departs: the network is the suite's skip encoder-decoder (``SkipNet``) with as many
input channels as the image, its output layer the image space's (linear for MR images, as the
authors' U-Net; a sigmoid for [0, 1] images and the CT window); the authors use a 5-level BatchNorm
U-Net (64-1024 channels). The authors' EMA starts from zeros; the suite's starts at the first
output. Only the MRI demo is public: the paper's natural-image inpainting and every other task take
the MRI recipe, except α, which a profile may tune per task family on training images (``tunable``,
records in ``benchmark/profiles/tuned/``): on inpainting the data term sees only the kept pixels,
and the authors' α = 2 lets the pull towards the input win. The draws are K separate forward passes
(BatchNorm statistics per draw, as the demo). The quick budget (CPU, 64² natural images, 128² MRI):
a step costs K = 3 forward and backward passes, so 266 steps cost the 800 passes of the DIP
family's cap of 800 one-pass steps; the 32-channel network at the skip family's quick lr (0.01, MRI
0.003): the authors' 3e-4 goes with 4000 steps of a network of tens of millions of weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from benchmark.registry import register
from methods._dip import common, loop
from methods._dip.networks import padded_shape


def norm_loss(physics: Any, y: torch.Tensor) -> loop.Objective:
    """``x ↦ ‖A x − y‖₂`` per problem (the authors' unsquared norm)."""

    def loss(x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm((physics.A(x) - y).flatten(1), dim=1)

    return loss


def self_guidance(weight: float) -> loop.Regulariser:
    """``α ‖x̄ − z‖₂`` per problem, ``z`` the current (optimised) input."""

    def regulariser(out: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return weight * torch.linalg.vector_norm((out - z).flatten(1), dim=1)

    return regulariser


@register
class SelfGuidedDIP(common.DipMethod):
    name = "sg_dip"
    summary = "Self-guided DIP (Liang et al. 2025): input optimised with the network, mean of K noisy passes, EMA."
    citation = (
        'Liang, Bell, Qu, Wang, Ravishankar, "Analysis of Deep Image Prior and Exploiting Self-Guidance for '
        'Image Reconstruction", IEEE TCI 2025'
    )
    defaults = {
        "iterations": 4000,
        "lr": 3e-4,
        "input_lr": 0.1,
        "channels": 128,
        "scales": 5,
        "skip_channels": 4,
        "upsample": "bilinear",
        "reg_noise_std": 0.5,
        "noise_law": "uniform_max",
        "draws": 3,
        "ae_weight": 2.0,
        "ema": 0.99,
        "input": "noise",
    }
    budgets = {
        "test": common.SKIP_TEST_PARAMS,
        "quick": {**common.SKIP_QUICK_PARAMS, "iterations": common.QUICK_CAP // 3},
    }
    #: K = 3 passes a step: a third of the DIP family's quick cap in steps, the same passes
    budget_task_params = common.SKIP_BUDGET_TASK_PARAMS
    #: α per task family, chosen on training crops by ``benchmark tune``: the authors' α = 2 is for
    #: MRI, whose data term covers the whole image; on inpainting it covers the kept half
    tunable = {"ae_weight": [0.1, 0.3, 1.0, 2.0]}
    tune_by = "family"
    counts = (*common.DipMethod.counts, "draws")
    fit_kind = "self-guided DIP: skip network, optimised input, norm objective"
    fit_params = ("channels", "scales", "skip_channels", "upsample", "input", "ae_weight")

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "ae_weight", params["ae_weight"] >= 0, "a number >= 0")
        cls.require(params, "input_lr", params["input_lr"] >= 0, "a number >= 0")
        cls.require(params, "noise_law", params["noise_law"] in loop.NOISE_LAWS, f"one of {', '.join(loop.NOISE_LAWS)}")

    def fit(self, y: torch.Tensor, physics: Any, seed: int) -> common.Fit:
        weight = float(self.params["ae_weight"])
        channels = common.image_shape(y, physics)[0]
        setup = common.skip_setup({**self.params, "input_channels": channels}, y, physics, seed)
        if self.params["input"] == "noise":  # the authors' U[0, 1) (the skip network's own noise input is 0.1 × that)
            setup.z = common._fixed_input(channels, setup.z.shape[-2], setup.z.shape[-1], seed, y, scale=1.0)
        return common.Fit(setup, norm_loss(physics, y), regulariser=self_guidance(weight),
                          info={"ae_weight": weight, "draws": common.positive_int(self.params, "draws")})

    def memory_estimate(self, shape: tuple[int, int, int]) -> int | None:
        """The skip network's estimate with the activations of K forward passes kept for one backward."""
        c, h, w = shape
        saved, weights, probe_pixels = common._probe_memory(self, c)
        ph, pw = padded_shape(h, w, common.positive_int(self.params, "scales"))
        draws = common.positive_int(self.params, "draws")
        return int(draws * saved * ph * pw / probe_pixels + 4 * weights)
