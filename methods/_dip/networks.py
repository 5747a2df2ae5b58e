"""The generators of the DIP family, written from the papers' descriptions.

* :class:`SkipNet` — the encoder-decoder with skip connections of Ulyanov et al. (CVPR 2018),
  the "skip" network of their denoising / super-resolution experiments: ``scales`` levels, each
  with a stride-2 3×3 convolution and a 3×3 convolution going down, a 1×1 convolution to
  ``skip_channels`` on the skip branch, bilinear ×2 up-sampling, then a 3×3 and a 1×1 convolution
  going up; reflection padding, BatchNorm and LeakyReLU(0.2) throughout, a sigmoid at the end.
* :class:`DeepDecoder` — the under-parameterised decoder of Heckel & Hand (ICLR 2019): 1×1
  convolutions without bias, bilinear ×2 up-sampling, ReLU and channel normalisation, a 1×1
  convolution to the image channels and a sigmoid.
* :class:`ConvDecoder` — Darestani & Heckel's decoder for MRI (IEEE TCI 2021): from a small
  input, blocks of nearest-neighbour up-sampling to sizes growing geometrically up to the image
  size, a 3×3 convolution without bias, ReLU and BatchNorm; one more such block at the image
  size, then a 1×1 convolution to the output channels, no sigmoid.

SkipNet and DeepDecoder need input sides that are a multiple of ``2**scales``; :func:`padded_shape` gives the size
the DIP loop generates before cropping back to the image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from methods._dip.stacking import ChannelConcat, OutputScale


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, bias: bool = True) -> nn.Sequential:
    """Convolution preceded by reflection padding, so borders do not pull the output to zero."""
    pad = (kernel - 1) // 2
    layers: list[nn.Module] = [nn.ReflectionPad2d(pad)] if pad else []
    layers.append(nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=0, bias=bias))
    return nn.Sequential(*layers)


def _conv_bn_act(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(in_ch, out_ch, kernel, stride), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2))


#: up-sampling modes of the skip network (the notebooks use bilinear, and nearest for text inpainting)
UPSAMPLE_MODES = ("bilinear", "nearest")


def _upsample(x: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    if mode == "nearest":
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class _Level(nn.Module):
    """One scale of the skip network; ``inner`` is the next (coarser) scale, or None at the bottom."""

    def __init__(self, in_ch: int, channels: int, skip_channels: int, inner: _Level | None,
                 upsample: str = "bilinear") -> None:
        super().__init__()
        self.upsample = upsample
        self.skip = _conv_bn_act(in_ch, skip_channels, 1) if skip_channels else None
        self.down = nn.Sequential(_conv_bn_act(in_ch, channels, 3, stride=2), _conv_bn_act(channels, channels, 3))
        self.inner = inner
        merged = skip_channels + channels
        self.merge_norm = nn.BatchNorm2d(merged)
        self.up = nn.Sequential(_conv_bn_act(merged, channels, 3), _conv_bn_act(channels, channels, 1))
        self.concat = ChannelConcat()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.down(x)
        if self.inner is not None:
            deep = self.inner(deep)
        deep = _upsample(deep, self.upsample)
        merged = deep if self.skip is None else self.concat(self.skip(x), deep)
        return self.up(self.merge_norm(merged))


def finish(out: torch.Tensor, output_layer: str) -> torch.Tensor:
    """The last layer the image space asks for (``ImageSpace.output_layer``): a sigmoid for
    images in [0, 1], nothing for the signed real and imaginary parts of an MR image."""
    return torch.sigmoid(out) if output_layer == "sigmoid" else out


def start_at_zero(head: nn.Conv2d, output_layer: str) -> None:
    """A linear output starts at the zero image (the head's weights zero), as a sigmoid output
    starts near mid-grey: a random linear head would start far from any MR image."""
    if output_layer != "sigmoid":
        nn.init.zeros_(head.weight)
        if head.bias is not None:
            nn.init.zeros_(head.bias)


class SkipNet(nn.Module):
    """DIP's skip encoder-decoder with the same width at every scale (the paper's 128/128/4)."""

    def __init__(
        self,
        in_channels: int = 32,
        out_channels: int = 3,
        channels: int = 128,
        skip_channels: int = 4,
        scales: int = 5,
        upsample: str = "bilinear",
        output_layer: str = "sigmoid",
    ) -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be >= 1, got {scales}")
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {upsample!r}")
        self.scales = scales
        self.output_layer = output_layer
        level: _Level | None = None
        for depth in reversed(range(scales)):
            level = _Level(in_channels if depth == 0 else channels, channels, skip_channels, level, upsample)
        assert level is not None
        self.body = level
        self.head = nn.Conv2d(channels, out_channels, 1)
        start_at_zero(self.head, output_layer)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return finish(self.head(self.body(z)), self.output_layer)


class DeepDecoder(nn.Module):
    """Heckel & Hand's deep decoder: ``scales + 1`` layers of ``channels`` 1×1 filters.

    The input has ``channels`` channels at 1/2**scales of the output size; each of the first
    ``scales`` layers doubles the resolution (convolution, up-sampling, ReLU, normalisation).
    """

    def __init__(self, out_channels: int = 3, channels: int = 128, scales: int = 5,
                 output_layer: str = "sigmoid") -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be >= 1, got {scales}")
        self.scales = scales
        self.output_layer = output_layer
        self.in_channels = channels
        self.layers = nn.ModuleList(nn.Conv2d(channels, channels, 1, bias=False) for _ in range(scales + 1))
        self.norms = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(scales + 1))
        self.head = nn.Conv2d(channels, out_channels, 1, bias=False)
        start_at_zero(self.head, output_layer)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for i, (conv, norm) in enumerate(zip(self.layers, self.norms, strict=True)):
            h = conv(h)
            if i < self.scales:
                h = _upsample(h)
            h = norm(F.relu(h))
        return finish(self.head(h), self.output_layer)


def conv_decoder_sizes(input_size: tuple[int, int], output_size: tuple[int, int], blocks: int) -> list[tuple[int, int]]:
    """The sizes the ``blocks`` up-sampling blocks reach: ``ceil(input · r**n)`` per side with
    ``r = (output / input)**(1 / blocks)``, the last one exactly the output size (the authors'
    ``hidden_size``)."""
    (ih, iw), (oh, ow) = input_size, output_size
    ry, rx = (oh / ih) ** (1.0 / blocks), (ow / iw) ** (1.0 / blocks)
    sizes = [(math.ceil(ih * ry**n), math.ceil(iw * rx**n)) for n in range(1, blocks)]
    return [*sizes, (oh, ow)]


class ConvDecoder(nn.Module):
    """Darestani & Heckel's ConvDecoder (github MLI-lab/ConvDecoder, ``convdecoder`` with
    ``need_last``): ``layers - 1`` blocks (nearest up-sampling to the next size, 3×3 convolution,
    ReLU, BatchNorm), a last 3×3 block at the output size, a 1×1 head, and a fixed output scale.
    Zero padding and no biases, as in the authors' comparison notebook."""

    def __init__(self, out_channels: int, channels: int, layers: int, input_size: tuple[int, int],
                 output_size: tuple[int, int], output_layer: str = "linear", kernel: int = 3) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"layers must be >= 2, got {layers}")
        self.output_layer = output_layer
        self.sizes = conv_decoder_sizes(input_size, output_size, layers - 1)

        def block() -> nn.Sequential:
            conv = nn.Conv2d(channels, channels, kernel, padding=(kernel - 1) // 2, bias=False)
            return nn.Sequential(conv, nn.ReLU(), nn.BatchNorm2d(channels))

        self.blocks = nn.ModuleList(block() for _ in self.sizes)
        self.last = block()
        self.head = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.scale = OutputScale(out_channels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for size, layer in zip(self.sizes, self.blocks, strict=True):
            h = layer(F.interpolate(h, size=size, mode="nearest"))
        return finish(self.scale(self.head(self.last(h))), self.output_layer)


def decoder_parameter_count(channels: int, scales: int, out_channels: int) -> int:
    """Weights of :class:`DeepDecoder`: ``scales + 1`` k×k 1×1 convolutions, as many affine
    BatchNorms (2k each) and the k×C head: ``(scales+1)(k² + 2k) + kC``."""
    return (scales + 1) * (channels**2 + 2 * channels) + channels * out_channels


def decoder_width_for(ratio: float, channels: int, height: int, width: int, scales: int) -> int:
    """The largest k (at least 1) whose deep decoder has at most ``ratio`` weights per image value
    (H·W·C): Heckel & Hand's under-parameterisation, whatever the image size."""
    budget = ratio * channels * height * width
    k = 1
    while decoder_parameter_count(k + 1, scales, channels) <= budget:
        k += 1
    return k


def padded_side(side: int, scales: int) -> int:
    """Smallest side >= ``side`` that survives ``scales`` halvings with at least 2 pixels left.

    Two pixels at the coarsest scale keep reflection padding and batch statistics defined.
    """
    multiple = 2**scales
    return max(-(-side // multiple) * multiple, 2 * multiple)


def padded_shape(height: int, width: int, scales: int) -> tuple[int, int]:
    return padded_side(height, scales), padded_side(width, scales)


def crop_output(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The central ``height``×``width`` window of a B×C×H'×W' tensor (a view, no copy)."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
