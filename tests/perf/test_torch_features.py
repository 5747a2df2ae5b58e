"""What PyTorch's speed features buy the DIP step on this machine, measured side by side.

* channels-last memory (the loop's default) against contiguous NCHW, at B = 1 and B = 8;
* ``torch.compile`` (inductor) of the grouped network: compile time and time per step;
* ``torch.inference_mode`` against ``torch.no_grad`` for the harness's per-step metrics.

The quick profile's network (32 channels) at 64². Printed, never asserted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import torch

from benchmark.core import seeding
from benchmark.problems import metrics
from methods._dip import stacking
from methods._dip.networks import SkipNet

pytestmark = pytest.mark.perf
SIDE, CHANNELS = 64, 32


def _best(fn: Callable[[], None], repeats: int = 5, inner: int = 10) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def _step(batch: int, channels_last: bool, compiled: bool = False) -> Callable[[], None]:
    nets = [seeding.seeded_build(lambda: SkipNet(32, 1, CHANNELS, 4, 5), b, "network") for b in range(batch)]
    net = stacking.group(nets)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net.to(memory_format=layout)
    z = stacking.to_grouped(torch.rand(batch, 32, SIDE, SIDE) * 0.1).contiguous(memory_format=layout)
    y = torch.rand(batch, 1, SIDE, SIDE)
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01, fused=True)
    forward = torch.compile(net) if compiled else net

    def step() -> None:
        out = stacking.from_grouped(forward(z), batch)
        loss = (out - y).square().flatten(1).mean(1).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return step


def test_channels_last_and_compile(capsys) -> None:  # type: ignore[no-untyped-def]
    lines = []
    for batch in (1, 8):
        nchw = _best(_step(batch, channels_last=False))
        last = _best(_step(batch, channels_last=True))
        lines.append(f"B={batch}: NCHW {nchw * 1e3:.1f} ms/step, channels-last {last * 1e3:.1f} ms/step "
                     f"({nchw / last:.2f}x)")
    step = _step(1, channels_last=True, compiled=True)
    start = time.perf_counter()
    step()
    compile_s = time.perf_counter() - start
    compiled = _best(step)
    eager = _best(_step(1, channels_last=True))
    payoff = f"pays off after {compile_s / (eager - compiled):.0f} steps" if compiled < eager else "never pays off"
    lines.append(f"torch.compile B=1: {compile_s:.0f} s to compile (less when inductor's cache is warm), "
                 f"{compiled * 1e3:.1f} ms/step vs eager {eager * 1e3:.1f} ({eager / compiled:.2f}x): {payoff}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_inference_mode_for_metrics(capsys) -> None:  # type: ignore[no-untyped-def]
    x = torch.rand(1, 1, SIDE, SIDE, requires_grad=True) * 1.0
    truth = torch.rand(1, 1, SIDE, SIDE)

    def measured(context: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            with context():  # type: ignore[attr-defined]
                metrics.psnr(x.clamp(0, 1), truth)
                metrics.ssim(x.clamp(0, 1), truth)

        return run

    no_grad = _best(measured(torch.no_grad), inner=50)
    inference = _best(measured(torch.inference_mode), inner=50)
    with capsys.disabled():
        print(f"\nPSNR+SSIM of one 64² iterate: no_grad {no_grad * 1e3:.2f} ms, inference_mode "
              f"{inference * 1e3:.2f} ms ({no_grad / inference:.2f}x)")
