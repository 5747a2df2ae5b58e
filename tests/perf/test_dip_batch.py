"""Per-image DIP throughput when B problems are fitted at once, against deepinv, side by side.

For the paper's skip network (128 channels) and the quick profile's (32 channels), at 64² and
128², the suite's loop fits B = 1 and B = 8 grey σ = 25 denoising problems (input perturbation
and output averaging on, as vanilla DIP runs), and B = 1 without them ("bare": exactly the work
of deepinv's ``DeepImagePrior``, which fits one image per call, so its per-image rate is the same
at any B). Ratios are printed at the end; nothing is
asserted against a time.
"""

from __future__ import annotations

import time

import deepinv
import pytest
import torch
from perf_problems import denoising_problems

from benchmark.core import seeding
from methods._dip import loop, streams
from methods._dip.networks import SkipNet
from methods._dip.objectives import measurement_loss

pytestmark = pytest.mark.perf

INPUT_CHANNELS = 32
NETWORKS = {"paper": 128, "quick": 32}
RATES: dict[tuple[str, int, str], float] = {}  # (network, side, impl) → image-iterations per second


def _network(channels: int, seed: int) -> SkipNet:
    return seeding.seeded_build(lambda: SkipNet(INPUT_CHANNELS, 1, channels, 4, 5), seed, "network")


def _ours(channels: int, side: int, batch: int, iterations: int, bare: bool = False) -> float:
    problems = [
        loop.FitProblem(_network(channels, b),
                        torch.rand((1, INPUT_CHANNELS, side, side), generator=seeding.generator(b, "input")) * 0.1,
                        measurement_loss(physics, y), (side, side),
                        [loop.Watcher(iterations, streams.Raw() if bare else streams.Ema(0.99))],
                        seeding.generator(b, "perturbation"))
        for b, (physics, y) in enumerate((p.physics, p.y) for p in denoising_problems(side, batch))
    ]
    settings = loop.LoopSettings(0.01) if bare else loop.LoopSettings(0.01, reg_noise_std=1.0 / 30.0)
    start = time.perf_counter()
    loop.fit_many(problems, settings)
    return batch * iterations / (time.perf_counter() - start)


def _theirs(channels: int, side: int, iterations: int) -> float:
    (problem,) = denoising_problems(side, 1)
    physics, y = problem.physics, problem.y
    model = deepinv.models.DeepImagePrior(_network(channels, 0), img_size=(INPUT_CHANNELS, side, side),
                                          iterations=iterations, learning_rate=0.01)
    start = time.perf_counter()
    model(y, physics)
    return iterations / (time.perf_counter() - start)


IMPLS = ("deepinv", "bare B=1", "B=1", "B=8")
CASES = [(net, side, impl) for net in NETWORKS for side in (64, 128) for impl in IMPLS]


@pytest.mark.parametrize("network,side,impl", CASES)
def test_per_image_throughput(benchmark, network: str, side: int, impl: str, capsys) -> None:  # type: ignore[no-untyped-def]
    channels = NETWORKS[network]
    iterations = max(3, int(24 * (32 / channels) * (64 / side) ** 2))

    def run() -> float:
        if impl == "deepinv":
            return _theirs(channels, side, iterations)
        return _ours(channels, side, int(impl[-1]), iterations, bare=impl.startswith("bare"))

    benchmark.group = f"dip-batch-{network}-{side}px"
    benchmark.extra_info["iterations"] = iterations
    rates: list[float] = []
    benchmark.pedantic(lambda: rates.append(run()), rounds=2, warmup_rounds=1, iterations=1)
    RATES[(network, side, impl)] = max(rates)
    benchmark.extra_info["image_iterations_per_s"] = RATES[(network, side, impl)]
    if len(RATES) == len(CASES):
        with capsys.disabled():
            print(f"\nper-image DIP iterations/s ({torch.get_num_threads()} threads); ratios side by side:")
            for net in NETWORKS:
                for sz in (64, 128):
                    theirs, bare, one, eight = (RATES[(net, sz, i)] for i in IMPLS)
                    print(f"  {net:5s} net ({NETWORKS[net]} ch) {sz}²: deepinv {theirs:6.1f} | same work as "
                          f"deepinv, B=1 {bare:6.1f} ({bare / theirs:.2f}×) | as DIP runs: B=1 {one:6.1f}, "
                          f"B=8 {eight:6.1f} ({eight / one:.2f}× B=1)")
