"""The self-validation autoencoder of Li, Zhuang, Liang, Peng, Wang, Sun (BMVC 2021).

An autoencoder is trained online on the most recent DIP iterates; its reconstruction error on the
newest iterate is the validation signal. While the DIP output is still gaining image structure
the autoencoder, which has a 16-number bottleneck, keeps up with it and the error falls; once the
DIP network starts to fit the noise the new iterates carry detail the bottleneck cannot hold and
the error turns up. The run stops when the error has not reached a new minimum for ``patience``
steps, and the iterate at the minimum is returned.

Written from the paper and the authors' code (sun-umn/Self-Validation, ``DIP+AE``):

* Encoder: stride-2 3×3 convolutions (no bias) with BatchNorm and ReLU, widths 32, 64, 128, 128,
  128, 128 and 1, from the image down to a 1×4×4 code; four bias-free 16×16 linear layers; a
  decoder of bilinear ×2 up-sampling, 3×3 convolution, BatchNorm and ReLU back to the image, a
  BatchNorm and a sigmoid at the end. The authors' images are 512×512 (7 levels); here the
  iterate is resized to the power-of-two side ``S`` nearest to its geometric mean side and the
  network has log2(S/4) levels (the first widths of the authors' list, then 1).
* The error is the Frobenius norm of ``x - AE(x)`` for the newest iterate (clipped to [0, 1]),
  with the autoencoder in eval mode (running BatchNorm statistics), as in their ``get_L2``.
* After each check that does not stop the run, one epoch of Adam (lr 1e-3, a new optimiser each
  time, as their code re-creates it) over the window of the last ``window`` iterates, shuffled,
  in minibatches of ``batch``; checks start when the window is full.
* Early stopping: a new minimum when ``error < best`` (their ``min_delta`` = 0); stop after
  ``patience`` checks without one.

``every`` > 1 checks and trains every ``every`` steps instead of every step (the authors'
``print_step`` = 1), a CPU budget; ``patience`` stays counted in DIP steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core import seeding
from methods._dip.stopping import PatientMinimum, Verdict

#: the authors' encoder widths for a 512×512 image (seven levels), the last one being the code's
WIDTHS = (32, 64, 128, 128, 128, 128)
CODE_SIDE = 4


def side_for(height: int, width: int) -> int:
    """The power-of-two side the autoencoder works at: nearest to sqrt(H·W), at least 8."""
    return max(8, 2 ** round(math.log2(math.sqrt(height * width))))


class ValidationAutoencoder(nn.Module):
    """Li et al.'s detection autoencoder for ``channels``-channel images of side ``side``."""

    def __init__(self, channels: int, side: int) -> None:
        super().__init__()
        levels = int(round(math.log2(side / CODE_SIDE)))
        if levels < 1 or CODE_SIDE * 2**levels != side:
            raise ValueError(f"side must be 4·2^k with k >= 1, got {side}")
        widths = [channels, *[WIDTHS[min(i, len(WIDTHS) - 1)] for i in range(levels - 1)], 1]
        down: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            down += [nn.Conv2d(a, b, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]
        self.encoder = nn.Sequential(*down)
        self.linear = nn.Sequential(*[nn.Linear(CODE_SIDE**2, CODE_SIDE**2, bias=False) for _ in range(4)])
        back = widths[::-1]
        up: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(back[:-1], back[1:], strict=True)):
            up += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                   nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b)]
            up.append(nn.Sigmoid() if i == len(back) - 2 else nn.ReLU())
        self.decoder = nn.Sequential(*up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        code = self.linear(self.encoder(x).flatten(1))
        return self.decoder(code.view(-1, 1, CODE_SIDE, CODE_SIDE))


#: the training of the autoencoder: ``stride`` (keep one iterate every so many DIP steps), ``every``
#: (check every so many steps, a multiple of the stride), ``batch`` (minibatch) and ``rate`` (Adam
#: steps per DIP step; each check trains ``ceil(every · rate)`` steps). The authors' code keeps every
#: iterate and trains one epoch over the 256-iterate window per step (256 / 32 = 8 Adam steps); the
#: CPU setting keeps the window's 256-step span with one iterate every 8 steps (32 iterates), checks
#: every 8 steps and trains one Adam step of 8 per DIP step (1/32 of the authors' sample visits).
AE_SETTINGS: dict[str, dict[str, float]] = {
    "authors": {"stride": 1, "every": 1, "batch": 32, "rate": 8.0},
    "cpu": {"stride": 8, "every": 8, "batch": 8, "rate": 1.0},
}


class AutoencoderValidation:
    """Self-validation as a stopping rule of the DIP loop: feed it every iterate (``update``).

    ``window`` is the span of the trajectory the autoencoder learns from, in DIP steps (256);
    ``to_unit`` maps an iterate into [0, 1] (the image space's values; the autoencoder ends in a
    sigmoid)."""

    def __init__(self, *, channels: int, height: int, width: int, seed: int, window: int = 256, batch: int = 32,
                 lr: float = 1e-3, patience: int = 500, every: int = 1, stride: int = 1, rate: float = 8.0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 to_unit: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if min(window, batch, every, patience, stride) < 1 or rate <= 0:
            raise ValueError("window, batch, every, patience and stride must be >= 1, rate > 0")
        if every % stride or window % stride:
            raise ValueError(f"every ({every}) and window ({window}) must be multiples of stride ({stride})")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.side = side_for(height, width)
        self.height, self.width = height, width
        self.slots, self.stride = window // stride, stride
        self.batch, self.lr, self.every = batch, lr, every
        self.steps_per_check = math.ceil(every * rate)
        self.to_unit = to_unit or (lambda x: x)
        self.network = seeding.seeded_build(lambda: ValidationAutoencoder(channels, self.side), seed, "autoencoder")
        self.network.to(device=device, dtype=dtype)  # the iterates' dtype (float64 in the exactness tests)
        self._shuffle = seeding.generator(seed, "autoencoder-shuffle")
        #: ``patience`` is in DIP steps: ceil(patience / every) checks
        self.tracker = PatientMinimum(-(-patience // every))
        self._buffer: torch.Tensor | None = None
        self._seen = 0
        self._queue: list[int] = []
        self._trained = False
        self.history: list[tuple[int, float]] = []

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The iterate in [0, 1] at the autoencoder's S×S: scaled so that its longer side is S,
        the shorter one padded (replicated), never stretched."""
        x = self.to_unit(x.detach()).clamp(0, 1)
        if x.shape[-2:] == (self.side, self.side):
            return x
        scale = self.side / max(self.height, self.width)
        size = (max(1, round(self.height * scale)), max(1, round(self.width * scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        top, left = (self.side - size[0]) // 2, (self.side - size[1]) // 2
        pad = (left, self.side - size[1] - left, top, self.side - size[0] - top)
        return F.pad(x, pad, mode="replicate") if any(pad) else x

    def error(self, x: torch.Tensor) -> float:
        """||x − AE(x)||_F for a 1×C×S×S iterate, the autoencoder in eval mode."""
        self.network.eval()
        with torch.no_grad():
            return float(torch.linalg.vector_norm(x - self.network(x)))

    def _next_batch(self, count: int) -> list[int]:
        """The next minibatch of window slots: successive chunks of shuffled passes over the window
        (a pass that runs out is followed by a fresh shuffle, as epochs are)."""
        while len(self._queue) < min(self.batch, count):
            self._queue += torch.randperm(count, generator=self._shuffle).tolist()
        chosen, self._queue = self._queue[: self.batch], self._queue[self.batch :]
        return chosen

    def train(self) -> None:
        """``steps_per_check`` Adam steps on minibatches of the window, a fresh Adam (as the
        authors' code creates one per call); with their setting, exactly one shuffled epoch."""
        assert self._buffer is not None
        count = min(self._seen, self.slots)
        data = self._buffer[:count]
        optimiser = torch.optim.Adam(self.network.parameters(), lr=self.lr)
        self.network.train()
        self._queue = []
        with torch.enable_grad():
            for _ in range(self.steps_per_check):
                chunk = data[torch.tensor(self._next_batch(count), device=data.device)]
                if chunk.shape[0] < 2:
                    continue  # BatchNorm needs two samples
                optimiser.zero_grad(set_to_none=True)
                F.mse_loss(self.network(chunk), chunk).backward()
                optimiser.step()

    def update(self, step: int, x: torch.Tensor) -> Verdict:
        """Keep iterate ``x`` (1×C×H×W) every ``stride`` steps; every ``every`` steps once the
        window is full, score it and, unless the rule stops, train the autoencoder. The first check
        only trains: scored by an untrained autoencoder, the smoothest early iterate wins (the
        authors' first check is untrained too, but their per-step training soon beats it)."""
        if step % self.stride:
            return Verdict()
        sample = self._prepare(x)
        if self._buffer is None:
            self._buffer = torch.empty((self.slots, *sample.shape[1:]), dtype=sample.dtype, device=sample.device)
        self._buffer[self._seen % self.slots].copy_(sample[0])
        self._seen += 1
        if self._seen < self.slots or step % self.every:
            return Verdict()
        if not self._trained:  # an untrained autoencoder validates nothing: the first check only trains
            self.train()
            self._trained = True
            return Verdict()
        value = self.error(sample)
        self.history.append((step, value))
        verdict = self.tracker.update(step, value)
        if not verdict.stop:
            self.train()
        return verdict
