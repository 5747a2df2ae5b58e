"""Compressed sensing: ℓ1-wavelet regularised reconstruction, the classical reference for MRI.

Solves min_x ½‖Ax − y‖² + λ‖Ψ_d x‖₁, Ψ_d the detail coefficients of a Daubechies wavelet
transform (the approximation band is not penalised), with FISTA (deepinv's ``FISTA`` on its
``WaveletPrior``; the momentum of Chambolle & Dossal 2015), step 1 since ‖A‖ ≤ 1 for the suite's
MRI, starting from Aᴴy, 200 iterations (enough for the iterates to settle at the suite's sizes).
This is the sparse-MRI model of Lustig, Donoho & Pauly (MRM 2007) without its TV term, in the form
of sigpy's ``L1WaveletRecon`` (Ong & Lustig): Daubechies-4 with zero padding on as many levels as
the image allows (``pywt.dwtn_max_level``), a transform that keeps the energy (ΨᵀΨ = I) whose
soft-thresholded coefficients serve as the proximal step. Departures: deepinv transforms and
thresholds the real and imaginary parts separately (Lustig thresholds complex magnitudes), and no
TV term is added. λ is chosen per task by ``benchmark tune`` on training slices (``tunable``).

deepinv's ``WaveletPrior.prox`` thresholds at ``ths · γ`` with a default ``ths`` of 0.1, and FISTA
passes γ = λ·step, so through it the effective weight would be 0.1·λ; the prior below thresholds at
γ itself, so ``weight`` is the λ of the objective above.

It runs on the MRI tasks only: in sparse-view CT the classical compressed-sensing reference is TV
(Sidky & Pan 2008), which the suite runs, and wavelet sparsity would add a 512² CT tuning the CPU
cannot afford; on the restoration tasks TV and BM3D are the classical references.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import deepinv as dinv
import pywt
import torch

from benchmark.api import Callback, Method, Reconstruction
from benchmark.registry import register


class L1WaveletPrior(dinv.optim.WaveletPrior):
    """deepinv's wavelet prior whose proximal step thresholds at γ (deepinv's at 0.1·γ), so that
    ``prox`` is the proximal operator of γ‖Ψ_d ·‖₁ and ``fn`` the penalty it goes with."""

    def prox(self, x: torch.Tensor, *args: Any, gamma: float = 1.0, **kwargs: Any) -> torch.Tensor:
        return super().prox(x, ths=1.0, gamma=gamma)


def solver(weight: float, iterations: int, wavelet: str, levels: int) -> dinv.optim.FISTA:
    """FISTA on ½‖Ax − y‖² + weight·‖Ψ_d x‖₁ (``levels`` of ``wavelet``), step 1 (‖A‖ ≤ 1)."""
    prior = L1WaveletPrior(level=levels, wv=wavelet, p=1, mode="zero")
    return dinv.optim.FISTA(data_fidelity=dinv.optim.L2(), prior=prior, lambda_reg=weight, stepsize=1.0,
                            max_iter=iterations)


def objective(model: dinv.optim.FISTA, x: torch.Tensor, y: torch.Tensor, physics: Any, weight: float) -> float:
    """½‖Ax − y‖² + weight·‖Ψ_d x‖₁ (summed over the batch)."""
    fidelity = model.data_fidelity[0].fn(x, y, physics)
    return float((fidelity + weight * model.prior[0].fn(x)).sum())


@register
class CSWavelet(Method):
    name = "cs_wavelet"
    family = "baseline"
    summary = "Compressed sensing: ℓ1-wavelet (Daubechies-4) regularised least squares by FISTA (MRI)."
    citation = (
        'Lustig, Donoho, Pauly, "Sparse MRI", MRM 2007; solved by FISTA (Beck & Teboulle, SIAM J. Imaging '
        'Sci. 2009)'
    )
    #: levels 0: as many as the image allows (sigpy's default)
    defaults = {"weight": 0.001, "iterations": 200, "wavelet": "db4", "levels": 0}
    budgets = {"test": {"iterations": 30}, "quick": {"iterations": 100}}
    #: the weight trades aliasing and noise for detail: chosen per task by ``benchmark tune`` on
    #: validation slices drawn from the training split
    tunable = {"weight": [0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.015]}
    tune_by = "task"

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        cls.require(params, "weight", params["weight"] >= 0, "a number >= 0")
        cls.require(params, "iterations", params["iterations"] >= 1, "an integer >= 1")
        cls.require(params, "levels", params["levels"] >= 0, "an integer >= 0 (0: as many as the image allows)")
        cls.require(params, "wavelet", params["wavelet"] in pywt.wavelist(kind="discrete"),
                    "a discrete wavelet name of PyWavelets (e.g. db4, haar, sym8)")

    def skip_reason(self, task: Any, channels: int | None = None) -> str | None:
        if task.family != "mri":
            return (f"ℓ1-wavelet compressed sensing is the classical MRI reference; on the {task.family} task "
                    f"{task.name!r} the suite's classical reference is TV (tv)")
        return None

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> Reconstruction:
        budget, wavelet = int(self.params["iterations"]), str(self.params["wavelet"])
        step = 0
        with torch.no_grad():
            start = physics.A_adjoint(y)
            levels = int(self.params["levels"]) or max(1, pywt.dwtn_max_level(tuple(start.shape[-2:]), wavelet))
            model = solver(float(self.params["weight"]), budget, wavelet, levels)
            # deepinv's loop one iteration at a time, so that the harness's callback sees each iterate
            state = model.init_iterate_fn(y, physics, init=(start, start.clone()))
            for step in range(1, budget + 1):
                state = model.fixed_point.single_iteration(state, step - 1, y, physics)
                if callback is not None and not callback(step, model.get_output(state)):
                    break
        return Reconstruction(x=model.get_output(state), iterations=step, budget=budget)
