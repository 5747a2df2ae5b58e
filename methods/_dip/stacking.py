"""Turn B networks of one architecture into one "grouped" network that runs them side by side.

DIP fits one network per image. To fit B images in one optimiser step, problem b's activations
occupy channels ``[b·C, (b+1)·C)`` of a single image (channels-last, so each pixel holds the B
problems' channels next to each other), every ``Conv2d`` becomes one convolution with B times
the groups, and every ``BatchNorm2d`` one normalisation over B times the channels: problem b
is computed with its own weights and its own batch statistics, so it follows the arithmetic of
its own network up to the kernels' reduction order. Padding, activations and up-sampling act on
each channel alone and stay as they are; concatenation along channels must go through
:class:`ChannelConcat`, which concatenates within each problem's block, and a fixed factor per
output channel through :class:`OutputScale`, which keeps each problem's factors.

Each problem is a single image (a batch of one), as in DIP. A layer with parameters of a type
not listed here is refused rather than silently shared between problems.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import nn


class ChannelConcat(nn.Module):
    """``torch.cat(dim=1)`` that keeps each of ``groups`` problems' channels together."""

    def __init__(self) -> None:
        super().__init__()
        self.groups = 1

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return torch.cat(parts, dim=1)
        n, _, h, w = parts[0].shape
        # Channels-last views: (N, H, W, groups, C_i) blocks concatenated on their last axis.
        blocks = [p.permute(0, 2, 3, 1).reshape(n, h, w, self.groups, -1) for p in parts]
        merged = torch.cat(blocks, dim=-1)
        return merged.reshape(n, h, w, -1).permute(0, 3, 1, 2)


class OutputScale(nn.Module):
    """A fixed factor per output channel (not trained): ConvDecoder's output scaling, one factor
    per problem, so a batch of grouped networks keeps each problem's own factor."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.factor = nn.Parameter(torch.ones(channels), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor.view(1, -1, 1, 1)


def _grouped_conv(convs: Sequence[nn.Conv2d]) -> nn.Conv2d:
    first = convs[0]
    b = len(convs)
    grouped = nn.Conv2d(
        first.in_channels * b, first.out_channels * b, cast("tuple[int, int]", first.kernel_size),
        stride=cast("tuple[int, int]", first.stride), padding=cast("str | tuple[int, int]", first.padding),
        dilation=cast("tuple[int, int]", first.dilation), groups=first.groups * b, bias=first.bias is not None,
        padding_mode=first.padding_mode, device=first.weight.device, dtype=first.weight.dtype,
    )
    with torch.no_grad():
        grouped.weight.copy_(torch.cat([c.weight for c in convs]))
        if grouped.bias is not None:
            grouped.bias.copy_(torch.cat([c.bias for c in convs]))  # type: ignore[misc]
    return grouped


def _grouped_norm(norms: Sequence[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    """Batch statistics only: DIP fits in training mode throughout, running averages are unused."""
    first = norms[0]
    grouped = nn.BatchNorm2d(first.num_features * len(norms), eps=first.eps, affine=first.affine,
                             track_running_stats=False, device=first.weight.device, dtype=first.weight.dtype)
    if first.affine:
        with torch.no_grad():
            grouped.weight.copy_(torch.cat([n.weight for n in norms]))
            grouped.bias.copy_(torch.cat([n.bias for n in norms]))
    return grouped


def _grouped_scale(scales: Sequence[OutputScale]) -> OutputScale:
    """Each problem's fixed output factors, side by side."""
    grouped = OutputScale(scales[0].factor.numel() * len(scales)).to(scales[0].factor)
    with torch.no_grad():
        grouped.factor.copy_(torch.cat([s.factor for s in scales]))
    return grouped


_GROUPERS: dict[type[nn.Module], Callable[[Any], nn.Module]] = {nn.Conv2d: _grouped_conv,
                                                                 nn.BatchNorm2d: _grouped_norm,
                                                                 OutputScale: _grouped_scale}


def group(networks: Sequence[nn.Module]) -> nn.Module:
    """One module computing every ``networks[b]`` on its block of channels (see the module doc).

    Feed it ``to_grouped(inputs)`` and read its output with ``from_grouped(output, B)``. The
    networks must share one architecture; their own weights are left untouched, except that a
    single network is returned as it is (it is its own group).
    """
    if not networks:
        raise ValueError("nothing to group")
    if len(networks) == 1:
        return networks[0]
    template = copy.deepcopy(networks[0])
    for name, module in list(template.named_modules()):
        kind = type(module)
        if kind in _GROUPERS:
            originals = [net.get_submodule(name) for net in networks]
            if len({tuple(tuple(p.shape) for p in m.parameters()) for m in originals}) != 1:
                raise ValueError(f"cannot group layer {name!r}: the networks' shapes differ")
            parent, _, leaf = name.rpartition(".")
            setattr(template.get_submodule(parent) if parent else template, leaf, _GROUPERS[kind](originals))
        elif isinstance(module, ChannelConcat):
            module.groups = len(networks)
        elif any(True for _ in module.parameters(recurse=False)):
            raise TypeError(f"cannot group layer {name!r} ({kind.__name__}): it has parameters of its own")
    return template


def to_grouped(x: torch.Tensor) -> torch.Tensor:
    """B×C×H×W (one problem per batch element) → 1×(B·C)×H×W channels-last."""
    b, c, h, w = x.shape
    return x.permute(2, 3, 0, 1).reshape(1, h, w, b * c).permute(0, 3, 1, 2)


def from_grouped(x: torch.Tensor, problems: int) -> torch.Tensor:
    """1×(B·C)×H×W → B×C×H×W, problem b in batch element b (a view where the layout allows)."""
    _, bc, h, w = x.shape
    return x.reshape(problems, bc // problems, h, w)


def take(value: torch.Tensor, problems: int, positions: Sequence[int]) -> torch.Tensor:
    """The blocks of ``positions`` out of a tensor whose first axis holds ``problems`` blocks
    (a grouped layer's weights or their optimiser state), in the same memory format."""
    blocks = value.reshape(problems, -1, *value.shape[1:])[list(positions)]
    out = blocks.reshape(-1, *value.shape[1:])
    if value.dim() == 4 and value.is_contiguous(memory_format=torch.channels_last):
        return out.contiguous(memory_format=torch.channels_last)
    return out.contiguous()


def keep(network: nn.Module, problems: int, positions: Sequence[int]) -> dict[nn.Parameter, nn.Parameter]:
    """Cut a network grouped over ``problems`` down to the problems at ``positions``, in place.

    Returns each old parameter's replacement, so that optimiser state can follow.
    """
    count = len(positions)
    replaced: dict[nn.Parameter, nn.Parameter] = {}
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            module.in_channels = module.in_channels // problems * count
            module.out_channels = module.out_channels // problems * count
            module.groups = module.groups // problems * count
        elif isinstance(module, nn.BatchNorm2d):
            module.num_features = module.num_features // problems * count
        elif isinstance(module, ChannelConcat):
            module.groups = count
        for name, param in list(module.named_parameters(recurse=False)):
            new = nn.Parameter(take(param.detach(), problems, positions), requires_grad=param.requires_grad)
            setattr(module, name, new)
            replaced[param] = new
    return replaced
