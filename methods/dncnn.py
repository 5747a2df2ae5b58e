"""DnCNN-S (Zhang et al., "Beyond a Gaussian Denoiser", IEEE TIP 2017) with the authors' weights.

The released MatConvNet models (one per noise level) are the data-driven reference of the suite,
and reproducing their published PSNR is the proof that the suite's noise, data and metrics are
right. The network predicts the noise: x̂ = y − net(y), on images in [0, 1].

Weights: the grayscale models for σ = 15, 25, 50 (17 conv layers) and the colour model for
σ = 25 (CDnCNN-S, 20 conv layers), read from ``$DIPBENCH_WEIGHTS/dncnn/`` when that folder is
set (tests and CI), else from the download cache, else downloaded from the cszn/DnCNN
repository at a pinned commit; each file is checked against its sha256 (see ``methods._weights``).

The model is chosen from the physics' noise level (``physics.noise_model.sigma``, images in
[0, 1]) and the image's channel count, unless ``model_sigma`` names one (e.g. to study a
mismatched noise level).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from benchmark.api import Callback, Method, Reconstruction, ReleasedTraining, TrainingContext, TrainingReport
from benchmark.core.errors import UserError, WeightsUnavailable
from benchmark.problems import tasks
from benchmark.registry import register
from methods._noise import denoising_skip_reason, noise_sigma, require_denoising, validate_model_sigma
from methods._weights import WeightFile, locate

#: The cszn/DnCNN commit the weights are downloaded from (master at the time of pinning).
REPO_COMMIT = "e93b27812d3ff523a3a79d19e5e50d233d7a8d0a"
_BASE = f"https://raw.githubusercontent.com/cszn/DnCNN/{REPO_COMMIT}/model/"
FEATURES = 64
#: what the released models learnt from (Zhang et al. 2017, Sec. IV-A): DnCNN-S, 400 gray images
#: of 180×180 (following Chen & Pock's TNRD); CDnCNN-S, the 432 colour images of the Berkeley
#: segmentation dataset left when CBSD68 is held out for testing
RELEASED_TRAINING = {
    "gray": ReleasedTraining("Train400 (gray, 180×180)", 400, "Zhang et al. 2017, Sec. IV-A"),
    "rgb": ReleasedTraining("CBSD432 (BSD500 without CBSD68)", 432, "Zhang et al. 2017, Sec. IV-A"),
}
#: |σ·255 − model σ| up to which a task's noise level counts as the model's own.
SIGMA_TOLERANCE_255 = 0.5


@dataclass(frozen=True)
class Release:
    """One released model: the noise level (on the 0–255 scale) and image kind it was trained for."""

    sigma255: int
    channels: int
    depth: int  # conv layers
    file: WeightFile


def _release(sigma255: int, channels: int, depth: int, name: str, path: str, sha256: str) -> Release:
    return Release(sigma255, channels, depth, WeightFile("dncnn", name, _BASE + path, sha256))


RELEASES: dict[tuple[int, int], Release] = {
    (r.sigma255, r.channels): r
    for r in (
        _release(15, 1, 17, "dncnn_gray_sigma15.mat", "specifics/sigma=15.mat",
                 "657d5115fa05d371dbf0df1f0a931eff274dae29d08a9cc0824a28caf2460e21"),
        _release(25, 1, 17, "dncnn_gray_sigma25.mat", "specifics/sigma=25.mat",
                 "5a5404c9e3ef14e353760e14b885439408a654618e14f13b2e97b99b9835020b"),
        _release(50, 1, 17, "dncnn_gray_sigma50.mat", "specifics/sigma=50.mat",
                 "517dc0b55a8da2c129704ed7921b8557aac40cf3aae9f700dc41a9e25cad0983"),
        _release(25, 3, 20, "cdncnn_color_sigma25.mat", "specifics_color/color_sigma=25.mat",
                 "99ac1aaaa4f851a48e5a686d13de05cf8dd8863606b477d1a917e8004e9e42cf"),
    )
}


def _offered() -> str:
    gray = ", ".join(str(s) for s, c in RELEASES if c == 1)
    colour = ", ".join(str(s) for s, c in RELEASES if c == 3)
    return f"grayscale σ = {gray}/255, colour σ = {colour}/255"


class DnCNNNet(nn.Module):
    """conv+ReLU, (depth − 2) × conv+ReLU, conv; 3×3 kernels, zero padding 1, batch norm folded."""

    def __init__(self, channels: int, depth: int = 17, features: int = FEATURES) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            c_in = channels if i == 0 else features
            c_out = channels if i == depth - 1 else features
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=True))
            if i < depth - 1:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """The estimated noise (the residual), not the clean image."""
        return self.body(y)


def _text(dataset: h5py.Dataset) -> str:
    """A MATLAB char array (stored as uint16 codes) as a Python string."""
    return "".join(chr(int(c)) for c in np.asarray(dataset).ravel())


def _to_torch_kernel(w: np.ndarray, c_out: int) -> np.ndarray:
    """MatConvNet's [kh, kw, in, out] seen through HDF5 (reversed: [out, in, kw, kh]) → torch's
    [out, in, kh, kw]. MATLAB drops a trailing singleton, so a one-output layer reads [in, kw, kh]."""
    if w.ndim == 3 and c_out == 1:
        w = w[None]
    if w.ndim != 4:
        raise ValueError(f"kernel of {w.ndim} dimensions")
    return np.ascontiguousarray(w.transpose(0, 1, 3, 2))


def read_matconvnet(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (kernel, bias) of each conv layer of a MatConvNet simple network saved as MATLAB v7.3,
    kernels in the HDF5 layout. Refuses anything but conv layers separated by plain ReLUs."""
    convs: list[tuple[np.ndarray, np.ndarray]] = []
    kinds: list[str] = []
    try:
        with h5py.File(path, "r") as f:
            for ref in np.asarray(f["net/layers"]).ravel():
                layer = f[ref]
                kind = _text(layer["type"])
                kinds.append(kind)
                if kind == "relu":
                    if "leak" in layer and float(np.asarray(layer["leak"]).ravel()[0]) != 0.0:
                        raise UserError(f"{path}: leaky ReLU layers are not DnCNN's")
                    continue
                if kind != "conv":
                    raise UserError(f"{path}: unexpected layer type {kind!r} (DnCNN has conv and relu)")
                pad = np.asarray(layer["pad"]).ravel()
                stride = np.asarray(layer["stride"]).ravel()
                if not (np.all(pad == 1) and np.all(stride == 1)):
                    raise UserError(f"{path}: conv layer with pad {pad.tolist()}, stride {stride.tolist()} "
                                    "(expected 1, 1)")
                w_ref, b_ref = np.asarray(layer["weights"]).ravel()
                convs.append((np.asarray(f[w_ref], dtype=np.float32), np.asarray(f[b_ref], dtype=np.float32).ravel()))
    except (OSError, KeyError, ValueError) as exc:
        raise UserError(f"cannot read MatConvNet weights {path}: {exc}") from exc
    expected = ["conv", "relu"] * (len(convs) - 1) + ["conv"]
    if kinds != expected:
        raise UserError(f"{path}: layers {kinds} are not conv/relu alternating, ending in conv")
    return convs


def convert(
    convs: list[tuple[np.ndarray, np.ndarray]], channels: int, depth: int, source: str = "weights"
) -> dict[str, torch.Tensor]:
    """A ``DnCNNNet`` state dict from MatConvNet layers, refusing a wrong layer count or shape."""
    if len(convs) != depth:
        raise UserError(f"{source}: {len(convs)} conv layers, expected {depth} for this model")
    target = DnCNNNet(channels, depth).state_dict()
    state: dict[str, torch.Tensor] = {}
    conv_names = sorted({k.rsplit(".", 1)[0] for k in target}, key=lambda k: int(k.split(".")[1]))
    for i, (name, (w, b)) in enumerate(zip(conv_names, convs, strict=True)):
        want_w, want_b = target[f"{name}.weight"].shape, target[f"{name}.bias"].shape
        try:
            kernel = _to_torch_kernel(w, want_w[0])
        except ValueError as exc:
            raise UserError(f"{source}: conv layer {i + 1}: {exc}") from exc
        if kernel.shape != tuple(want_w) or b.shape != tuple(want_b):
            raise UserError(
                f"{source}: conv layer {i + 1} has kernel {tuple(kernel.shape)} and bias {tuple(b.shape)}, "
                f"expected {tuple(want_w)} and {tuple(want_b)}"
            )
        state[f"{name}.weight"] = torch.from_numpy(kernel)
        state[f"{name}.bias"] = torch.from_numpy(b.copy())
    return state


@cache
def _state_dict(sigma255: int, channels: int) -> dict[str, torch.Tensor]:
    """Read once per process: every cell of a benchmark reuses the same weights."""
    release = RELEASES[(sigma255, channels)]
    path = locate(release.file)
    return convert(read_matconvnet(path), channels, release.depth, str(path))


def load_network(sigma255: int, channels: int) -> DnCNNNet:
    """The released DnCNN-S for ``sigma255`` (0–255 scale) and 1 or 3 channels, in eval mode."""
    if (sigma255, channels) not in RELEASES:
        raise UserError(f"no released DnCNN-S model for σ = {sigma255}/255 and {channels} channel(s); "
                        f"offered: {_offered()}")
    release = RELEASES[(sigma255, channels)]
    net = DnCNNNet(channels, release.depth)
    net.load_state_dict(_state_dict(sigma255, channels))
    return net.eval().requires_grad_(False)


@register
class DnCNN(Method):
    name = "dncnn"
    family = "data-driven"
    summary = "DnCNN-S (Zhang et al. 2017), the authors' released weights for one noise level; x̂ = y − net(y)."
    citation = (
        'Zhang, Zuo, Chen, Meng, Zhang, "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for Image '
        'Denoising", IEEE TIP 2017'
    )
    budgets = {"test": {}, "quick": {}}
    released_training = RELEASED_TRAINING
    #: model_sigma: "auto" matches the task's noise level, or a released level (15, 25, 50) on the 0–255 scale
    defaults = {"model_sigma": "auto"}
    #: a fixed model_sigma chooses the noise level the weights learnt, not how they denoise: on
    #: another σ, ``dncnn[model_sigma=25]`` is the noise-shifted twin of ``dncnn`` (its own σ's model)
    condition_params = ("model_sigma",)

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        released = {s for s, _ in RELEASES}
        validate_model_sigma(cls, params, lambda s: type(s) is int and s in released,
                             f"one of the released levels ({_offered()})")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._nets: dict[tuple[int, int, str], DnCNNNet] = {}

    def _pick(self, sigma: float, channels: int | None) -> tuple[int | None, str | None]:
        """(model σ on the 0–255 scale, None) or (None, why no model applies)."""
        kinds = [c for c in (1, 3) if channels in (None, c)]
        fixed = self.params["model_sigma"]
        if fixed != "auto":
            if any((fixed, c) in RELEASES for c in kinds):
                return int(fixed), None
            return None, (f"no released DnCNN-S model for σ = {fixed}/255 with {channels} channel(s); "
                          f"offered: {_offered()}")
        for s, c in RELEASES:
            if c in kinds and abs(sigma * 255.0 - s) <= SIGMA_TOLERANCE_255:
                return s, None
        what = f" and {channels} channel(s)" if channels else ""
        return None, f"no released DnCNN-S model for noise σ = {sigma * 255.0:.4g}/255{what}; offered: {_offered()}"

    def train_task(self, task: Any) -> str | None:
        """The denoising task at the noise level of the model this instance applies to ``task``:
        ``task`` itself with ``model_sigma`` "auto", the registered task of the model's σ with a
        fixed ``model_sigma`` (``dncnn[model_sigma=25]`` on σ = 50 learnt from σ = 25: a noise shift).
        None where no model applies or no registered task has the model's σ."""
        if denoising_skip_reason(task, "DnCNN-S") is not None:
            return None
        sigma255 = self._pick(float(task.noise_sigma), None)[0]
        if sigma255 is None:
            return None
        same = [t for t in (task, *tasks.TASKS.values()) if t.family == task.family]
        return next((t.name for t in same if abs(t.noise_sigma * 255.0 - sigma255) <= SIGMA_TOLERANCE_255), None)

    def skip_reason(self, task: Any, channels: int | None = None) -> str | None:
        reason = denoising_skip_reason(task, "DnCNN-S")
        return reason if reason is not None else self._pick(float(task.noise_sigma), channels)[1]

    def _network(self, sigma255: int, channels: int, device: torch.device) -> DnCNNNet:
        key = (sigma255, channels, str(device))
        if key not in self._nets:
            self._nets[key] = load_network(sigma255, channels).to(device)
        return self._nets[key]

    def prepare(self, ctx: TrainingContext) -> TrainingReport:
        """Nothing to train: fetch and convert, before any timing, the released weights of every
        image kind (gray and colour) the task's noise level has a model for, so that the first
        colour cell of a run does not pay for loading the colour model inside its runtime."""
        start = time.perf_counter()
        channels = ctx.channels if ctx.channels is not None else (int(ctx.images[0].shape[0]) if ctx.images else 1)
        loaded: list[str] = []
        missing: list[UserError] = []
        for kind in (1, 3):
            sigma255, reason = self._pick(float(ctx.task.noise_sigma), kind)
            if sigma255 is None:
                missing.append(UserError(f"dncnn: {reason}"))
                continue
            try:
                self._network(sigma255, kind, ctx.device)
            except WeightsUnavailable as exc:  # the other kind's cells may still run
                missing.append(exc)
                continue
            loaded.append(RELEASES[(sigma255, kind)].file.describe())
        if not loaded:
            raise next((e for e in missing if isinstance(e, WeightsUnavailable)), missing[0])
        release = RELEASED_TRAINING["rgb" if channels == 3 else "gray"]
        return release.report(time.perf_counter() - start, ", ".join(loaded))

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> Reconstruction:
        require_denoising(physics, "DnCNN-S")
        channels = int(y.shape[1])
        sigma255, reason = self._pick(noise_sigma(physics, "DnCNN-S"), channels)
        if sigma255 is None:
            raise UserError(f"dncnn: {reason}")
        net = self._network(sigma255, channels, y.device)
        with torch.inference_mode():
            x = y - net(y.float()).to(y.dtype)
        return Reconstruction(x=x.clamp(0.0, 1.0), info={"model_sigma": sigma255})
