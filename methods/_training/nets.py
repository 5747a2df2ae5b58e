"""Small fully convolutional U-Nets the suite trains itself (CPU-sized by default).

One class serves both trained methods: without a time embedding it is the supervised
restoration net of ``unet``; with one it is the noise predictor of the ``dps`` diffusion prior.
Inputs of any size are padded to a multiple of ``2**depth`` and cropped back, so a net trained
on small patches runs on whatever image size the harness gives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_features(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps, as in DDPM."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


class ResBlock(nn.Module):
    """Two 3×3 convolutions with a skip; the time embedding (when present) shifts the features."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        # GroupNorm keeps the diffusion net stable across noise levels; the plain restoration
        # net trains faster without it (residual learning needs no normalisation).
        self.norm1: nn.Module = nn.GroupNorm(min(8, c_in), c_in) if norm else nn.Identity()
        self.norm2: nn.Module = nn.GroupNorm(min(8, c_out), c_out) if norm else nn.Identity()
        self.emb: nn.Module | None = nn.Linear(emb_dim, c_out) if emb_dim else None
        self.skip: nn.Module = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.emb is not None and emb is not None:
            h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """A U-Net with ``depth`` down-samplings and ``channels * 2**level`` features per level."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        channels: int = 32,
        depth: int = 2,
        time_conditioned: bool = False,
    ) -> None:
        super().__init__()
        if depth < 0 or channels < 8:
            raise ValueError(f"UNet needs depth >= 0 and channels >= 8, got depth={depth}, channels={channels}")
        self.depth = depth
        self.emb_dim = 4 * channels if time_conditioned else 0
        if time_conditioned:
            self.time_mlp: nn.Module | None = nn.Sequential(
                nn.Linear(channels, self.emb_dim), nn.SiLU(), nn.Linear(self.emb_dim, self.emb_dim)
            )
        else:
            self.time_mlp = None
        self.channels = channels
        widths = [channels * 2**level for level in range(depth + 1)]
        norm = time_conditioned
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        for level in range(depth):
            self.down_blocks.append(ResBlock(widths[level], widths[level], self.emb_dim, norm))
            self.downs.append(nn.Conv2d(widths[level], widths[level + 1], 3, stride=2, padding=1))
        self.middle = ResBlock(widths[depth], widths[depth], self.emb_dim, norm)
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
            self.up_blocks.append(ResBlock(2 * widths[level], widths[level], self.emb_dim, norm))
        self.tail = nn.Conv2d(channels, out_channels, 3, padding=1)
        # Start as the identity map of the residual formulation (output 0), which makes the
        # first steps of training harmless and the loss curve start at the input's error.
        nn.init.zeros_(self.tail.weight)
        if self.tail.bias is not None:
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        h_in, w_in = x.shape[-2:]
        multiple = 2**self.depth
        pad_h, pad_w = -h_in % multiple, -w_in % multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < h_in and pad_w < w_in else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        emb = None
        if self.time_mlp is not None:
            if t is None:
                raise ValueError("this UNet is time conditioned: pass the timesteps t")
            emb = self.time_mlp(timestep_features(t.expand(x.shape[0]), self.channels))
        h = self.head(x)
        skips = []
        for block, down in zip(self.down_blocks, self.downs, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.middle(h, emb)
        for up, block in zip(self.ups, self.up_blocks, strict=True):
            h = block(torch.cat([up(h), skips.pop()], dim=1), emb)
        return self.tail(F.silu(h))[..., :h_in, :w_in]
