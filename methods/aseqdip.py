"""aSeqDIP: autoencoding sequential Deep Image Prior (Alkhouri, Liang, Wang, Qu, Ravishankar,
NeurIPS 2024, "Image Reconstruction via Autoencoding Sequential Deep Image Prior").

The network's input starts at the measurement's pseudo-inverse ``z_0 = A†y`` and is updated
sequentially, ``z_k = f_θ(z_{k−1})``: for each input, ``inner_steps`` (N) Adam steps on

    mean((A f_θ(z) − y)²) + λ · mean((f_θ(z) − z)²)        (λ = ``ae_weight``)

then ``z ← f_θ(z)`` detached, from the forward pass of the N-th step (the weights before its
Adam step), as the authors' denoising, deblurring, CT and MRI scripts do (github sjames40/Aseq_DIP
at HEAD f6d4a66: ``Aseq_DIP_denoising.py`` l.120-133, ``Aseq_DIP_CT.py`` l.112-124). One network,
never re-initialised, and one Adam state carry through every update; there is no input
perturbation; the returned image is the last output, as the scripts return it (they also log the
best PSNR against the ground truth, an oracle the suite reports separately). ``iterations`` counts
Adam steps, N·K for K input updates.

Per task, the authors' HEAD scripts: denoising (``Aseq_DIP_denoising.py`` l.104-128: lr 1e-4,
N = 2, K = 2000, λ = 1, z_0 = y), inpainting (``Aseq_DIP_inpainting.py`` l.135-137, 174: lr 3e-4,
N = 2, K = 200, λ = 1), deblurring (``Aseq_DIP_Deblurring.py`` l.137-143: lr 1e-4, N = 2,
K = 5000, λ = 5), sparse-view CT (``Aseq_DIP_CT.py`` l.88, 94-95, 112-113: lr 2e-4, N = 10,
K = 2000, λ = 1, z_0 the FBP). Super-resolution has no script: it takes the denoising settings.
MRI takes the paper's algorithm with the CT/MRI N = 10 and the MRI script's lr 1e-4 and K = 6000
(``Aseq_DIP_MRI.py`` l.132-134), not that script's loss: in its 2024 versions the autoencoding
term sits on a separate line and never enters the loss, and at HEAD it compares a real 2-channel
input with a complex output at a different scale (l.91-98, 144); here both terms act on the
2-channel real image at one scale.

Where the suite departs: both terms are mean-squared, as the authors' restoration scripts write
them (``nn.MSELoss``); their CT and MRI scripts use unsquared 2-norms, which weigh the two terms
otherwise for the same λ. The network is the suite's skip encoder-decoder (``SkipNet``, a U-Net-like
encoder-decoder with skip connections) with as many input channels as the image: the authors'
inpainting uses this architecture (128 channels × 5 scales, 4 skip channels, sigmoid), their other
scripts a shallow BatchNorm U-Net (2 levels, 64-128 channels) or a 3-level one (CT, MRI), both
with a linear output. The output layer is the image space's (a sigmoid for [0, 1] images and the CT
window, linear for MR images), and A†y is projected into that space (the CT FBP clipped to the
window). Inpainting's A†y is zero in the holes (the authors fill them with 0.4). The input is
padded to the network's size by repeating its border, at the start and at every update. The quick
budget (CPU, 64² natural images, 128² MRI) keeps N per task, takes N·K = the DIP family's cap of
800 steps of the 32-channel network, and an lr per task family chosen by ``benchmark tune`` on
training images (``tunable``; the authors' lr 1e-4-3e-4 goes with 4000-60000 steps of networks of
millions of weights); until a family has a record, the skip family's quick lr (0.01; MRI 0.003,
chosen for DIP on training slices with the same network: tuning aSeqDIP's at 128² costs hours of
a 2-core CPU).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.registry import register
from methods._dip import common, loop
from methods._dip.objectives import measurement_loss

#: the authors' per-task settings (see the module docstring); defaults are denoising's
RESTORATION = {"iterations": 4000, "lr": 1e-4, "inner_steps": 2, "ae_weight": 1.0}
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "denoising": dict(RESTORATION),
    "super-resolution": dict(RESTORATION),
    "inpainting": {"iterations": 400, "lr": 3e-4, "inner_steps": 2, "ae_weight": 1.0},
    "deblurring": {"iterations": 10000, "lr": 1e-4, "inner_steps": 2, "ae_weight": 5.0},
    "ct": {"iterations": 20000, "lr": 2e-4, "inner_steps": 10, "ae_weight": 1.0},
    "mri": {"iterations": 60000, "lr": 1e-4, "inner_steps": 10, "ae_weight": 1.0},
}


def pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``x`` (1×C×H×W) centred in ``height``×``width`` by repeating its border, as the first input
    ``A†y`` is padded (``common.skip_setup`` with ``input: fbp``)."""
    top, left = (height - x.shape[-2]) // 2, (width - x.shape[-1]) // 2
    pad = (left, width - x.shape[-1] - left, top, height - x.shape[-2] - top)
    return F.pad(x, pad, mode="replicate") if any(pad) else x.clone()


def autoencoding(weight: float) -> loop.Regulariser:
    """``λ · mean((f(z) − z)²)`` per problem, with ``z`` the problem's current input."""

    def regulariser(out: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return weight * (out - z).square().flatten(1).mean(dim=1)

    return regulariser


def sequential_update(inner_steps: int) -> loop.Hook:
    """Every ``inner_steps`` steps the input becomes this step's output, padded; the network's
    weights and Adam's state carry on."""

    def hook(step: int, out: torch.Tensor, handle: loop.Handle) -> None:
        if step % inner_steps == 0:
            current = handle.input()
            handle.set_input(pad_to(out, current.shape[-2], current.shape[-1]))

    return hook


@register
class AutoencodingSequentialDIP(common.DipMethod):
    name = "aseqdip"
    summary = "aSeqDIP (Alkhouri, Liang et al. 2024): input updated as z ← f(z) from A†y, autoencoding term."
    citation = (
        'Alkhouri, Liang et al., "Image Reconstruction via Autoencoding Sequential Deep '
        'Image Prior", NeurIPS 2024'
    )
    defaults = {
        **{k: v for k, v in common.SKIP_DEFAULTS.items() if k not in ("input", "input_channels", "ema")},
        **RESTORATION,
        "reg_noise_std": 0.0,
    }
    task_defaults = TASK_DEFAULTS
    budgets = {"test": common.SKIP_TEST_PARAMS, "quick": common.SKIP_QUICK_PARAMS}
    #: N·K = the DIP family's quick cap; N per task; the skip family's quick lr (MRI: DIP's 0.003)
    #: where ``benchmark tune`` has not chosen one for the task family on training images
    budget_task_params = common.SKIP_BUDGET_TASK_PARAMS
    #: lr per task family on training images; the budget is read off the same runs (the iterate
    #: at step k is what a budget of k returns: K is never used but as the end)
    tunable = {"lr": [0.001, 0.003, 0.01], "iterations": [200, 400, 600, 800]}
    tune_by = "family"
    budget_parameter = "iterations"
    counts = (*common.DipMethod.counts, "inner_steps")
    fit_kind = "aSeqDIP: skip network from A†y, sequential input, autoencoding term"
    fit_params = (*common.SKIP_FIT_PARAMS, "inner_steps", "ae_weight")

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "ae_weight", params["ae_weight"] >= 0, "a number >= 0")

    def fit(self, y: torch.Tensor, physics: Any, seed: int) -> common.Fit:
        weight = float(self.params["ae_weight"])
        inner = common.positive_int(self.params, "inner_steps")
        setup = common.skip_setup({**self.params, "input": "fbp", "input_channels": 1}, y, physics, seed)
        return common.Fit(setup, measurement_loss(physics, y), regulariser=autoencoding(weight),
                          hook=sequential_update(inner), info={"inner_steps": inner, "ae_weight": weight})
