"""How far the DIP step is from the hardware: achieved GFLOP/s of one fitting step (FLOPs counted
with torch.utils.flop_counter) next to the machine's measured peak for a large matmul.

Run with `make perf`; printed, never asserted against a time.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from methods._dip.networks import SkipNet

RESULTS: dict[str, float] = {}


def _step_fn(size: int):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    net = SkipNet(32, 1, 128, 4, 5)
    z = torch.rand(1, 32, size, size) * 0.1
    y = torch.rand(1, 1, size, size)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(net(z + torch.randn_like(z) / 30), y)
        loss.backward()
        opt.step()

    return step


def _flops(step) -> float:  # type: ignore[no-untyped-def]
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


@pytest.mark.parametrize("size", [64, 128])
def test_dip_step_gflops(benchmark, size: int) -> None:  # type: ignore[no-untyped-def]
    step = _step_fn(size)
    flops = _flops(step)
    benchmark.pedantic(step, rounds=5, iterations=2, warmup_rounds=1)
    seconds = benchmark.stats.stats.min
    RESULTS[f"dip{size}"] = flops / seconds / 1e9
    print(f"\nDIP step {size}x{size}: {flops / 1e9:.2f} GFLOP per step, {seconds * 1e3:.1f} ms, "
          f"{RESULTS[f'dip{size}']:.1f} GFLOP/s achieved")


def test_matmul_peak_and_ratio(benchmark) -> None:  # type: ignore[no-untyped-def]
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    benchmark.pedantic(lambda: a @ b, rounds=5, iterations=2, warmup_rounds=1)
    peak = 2 * n**3 / benchmark.stats.stats.min / 1e9
    print(f"\nmatmul {n}x{n} float32 peak: {peak:.1f} GFLOP/s on {torch.get_num_threads()} threads")
    for name, achieved in sorted(RESULTS.items()):
        print(f"  {name}: {achieved:.1f} GFLOP/s = {achieved / peak:.1%} of the matmul peak")
