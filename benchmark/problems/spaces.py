"""Image spaces: what the numbers of an image mean, declared once and read by everyone.

A task declares the space its images live in; the harness, the reports and the methods ask the
space (never the task's name) how to clip an image, what a metric compares, with which data
range, what a PNG shows, whether LPIPS means anything there and which output layer a network
needs. Three spaces:

- ``unit``: real gray or colour images in [0, 1] (natural images).
- ``mri``: complex MR images in deepinv's layout, 2×H×W real and imaginary parts, scaled to a
  largest magnitude of 1 when read. Metrics compare magnitudes with the data range = the
  reference slice's own largest magnitude, slice by slice (fastMRI's ``evaluate.py``, Zbontar et
  al. 2018, takes the largest magnitude of the whole volume and one PSNR per volume; the suite's
  test sets are single slices); nothing is clipped (the
  parts are signed); a network ends linearly (no sigmoid); the parts lie in [-1, 1], where a
  diffusion prior works as it is (resized slices reach 1.03 at most).
- ``ct``: attenuation through the fixed window [-1024, 1024] HU mapped to [0, 1] (see
  ``benchmark.problems.imagefiles.CT_WINDOW_HU``); metrics on the window, range 1.

LPIPS is an AlexNet feature distance learnt on natural photographs (Zhang et al. 2018); on MR
magnitudes and CT windows it has no validated meaning, so it is not computed there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ImageSpace:
    name: str
    description: str
    #: channel counts an image of this space may have
    channels: tuple[int, ...]
    #: values live in [0, 1] (clipped there); False: signed parts, nothing clipped
    bounded: bool = True
    #: metrics compare the magnitude of (real, imaginary) channel pairs
    complex: bool = False
    #: its images are photographs: a metric learnt on photographs (LPIPS) means something on them
    photographic: bool = True
    #: what a network's last layer must be to produce images of this space
    output_layer: str = "sigmoid"  # "sigmoid" | "linear"
    #: the interval every value of an image lies in: [0, 1], or [-1, 1] for the real and
    #: imaginary parts of a complex image of largest magnitude 1; a generative prior working on
    #: [-1, 1] (DPS's DDPM) maps it there with :meth:`to_signed` and clips its x̂0 there
    value_range: tuple[float, float] = (0.0, 1.0)

    @property
    def signed_scale(self) -> float:
        """How much :meth:`to_signed` stretches a difference of values (2 / the range's width)."""
        low, high = self.value_range
        return 2 / (high - low)

    def to_signed(self, x: torch.Tensor) -> torch.Tensor:
        """The affine map of :attr:`value_range` onto [-1, 1] (a diffusion model's range): x ↦ 2x − 1
        on [0, 1], exactly the identity on [-1, 1]."""
        low = self.value_range[0]
        return x * self.signed_scale - (1 + low * self.signed_scale)

    def from_signed(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_signed`."""
        low = self.value_range[0]
        return (z + (1 + low * self.signed_scale)) / self.signed_scale

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """The affine map of :attr:`value_range` onto [0, 1] (for a network that ends in a sigmoid,
        such as self-validation's autoencoder): the identity on [0, 1] images."""
        low, high = self.value_range
        return (x - low) / (high - low)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The nearest image of the space (clipped to [0, 1] where bounded)."""
        return x.clamp(0, 1) if self.bounded else x

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """What metrics compare: the magnitude (B×C/2×H×W) of a complex image, else the image
        projected into the space."""
        if self.complex:
            parts = x.reshape(x.shape[0], -1, 2, *x.shape[-2:])
            return torch.sqrt(parts.square().sum(dim=2))
        return self.project(x)

    def view_std(self, std: torch.Tensor) -> torch.Tensor:
        """A per-pixel standard deviation of an image, in the compared view: as it is for real
        images (no clipping), and for a complex image √(σ_re² + σ_im²) per pixel, the standard
        deviation of the complex value, which bounds the magnitude's to first order (|Δ|z|| ≤ |Δz|)."""
        if self.complex:
            parts = std.reshape(std.shape[0], -1, 2, *std.shape[-2:])
            return torch.sqrt(parts.square().sum(dim=2))
        return std

    def data_range(self, reference: torch.Tensor) -> float:
        """The metrics' data range: the reference's own largest magnitude (complex: per slice), else 1."""
        return float(self.view(reference).max()) if self.complex else 1.0

    def display(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """An image in [0, 1] for a PNG: the view divided by the reference's data range."""
        scale = self.data_range(reference) or 1.0
        return (self.view(x) / scale).clamp(0, 1)

    def as_real_images(self, x: torch.Tensor) -> torch.Tensor:
        """B×C×H×W → (B·C)×1×H×W: each part as a real image, for a real-valued denoiser applied
        to the real and imaginary parts separately (complex), else ``x`` itself."""
        return x.reshape(-1, 1, *x.shape[-2:]) if self.complex else x

    def from_real_images(self, parts: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`as_real_images`."""
        return parts.reshape(like.shape) if self.complex else parts


UNIT = ImageSpace("unit", "real gray or colour images in [0, 1]", channels=(1, 3))
MRI = ImageSpace("mri", "complex MR image, 2 channels (real, imaginary), largest magnitude 1; metrics on the "
                 "magnitude, data range = each reference slice's own largest magnitude", channels=(2,),
                 bounded=False, complex=True, photographic=False, output_layer="linear", value_range=(-1.0, 1.0))
CT = ImageSpace("ct", "CT attenuation, the window [-1024, 1024] HU mapped linearly to [0, 1]; metrics on the window",
                channels=(1,), photographic=False)

SPACES: dict[str, ImageSpace] = {s.name: s for s in (UNIT, MRI, CT)}


def of(obj: Any) -> ImageSpace:
    """The space of a task, or of a physics built by a task (``Task.physics`` attaches it)."""
    space = getattr(obj, "image_space", None) or getattr(obj, "space", None)
    return space if isinstance(space, ImageSpace) else UNIT
