"""PnP-FFDNet against the whole untrained DIP family, each DIP variant credited with its best
iterate (an oracle), on one 64² Set5 crop per task: opt-in, about 15 minutes per task on 2
cores (``DIPBENCH_PNP_BAR=1``)."""

from __future__ import annotations

import pytest
import torch

from benchmark import registry
from benchmark.api import as_reconstruction
from benchmark.problems import data, metrics, tasks
from methods.pnp_ffdnet import PnPFFDNet
from methods.tv import TotalVariation
from tests.conftest import cpu_bar
from tests.test_pnp_ffdnet import method, problem

pytestmark = cpu_bar("DIPBENCH_PNP_BAR", "30 minutes")


@pytest.mark.parametrize("task_name", ["inpainting_random50", "sr_x4_bicubic"])
def test_beats_tv_and_the_best_dip_variant_even_with_an_oracle_on_a_set5_crop(
        task_name: str, record_property: pytest.RecordProperty) -> None:
    """One 64² Set5 crop; every untrained method of the DIP family with the quick profile's
    budget and network, each credited with its best iterate in hindsight (an oracle no stopping
    rule can beat), and TV; PnP-FFDNet must beat them all. The educated warm start, which
    learns from a training set, is left out: the quick report compares it."""
    x = data.load("set5", limit=1, crop=64)[0].tensor
    y, physics = problem(task_name, x)
    truth = x[None]
    pnp = metrics.psnr(method(PnPFFDNet, task_name).reconstruct(y, physics, seed=0).x, truth)
    tv = method(TotalVariation, task_name).reconstruct(y, physics, seed=0).x
    scores = {"tv": metrics.psnr(tv.clamp(0, 1), truth)}
    task = tasks.get(task_name)
    for name, cls in sorted(registry.available().items()):
        if cls.family != "dip" or cls.needs_training or cls(**cls.resolve_params(task.family, {}, "quick")).skip_reason(
                task, 3):
            continue
        best: list[float] = []

        def oracle(step: int, x_k: torch.Tensor, best: list[float] = best) -> bool:
            best.append(metrics.psnr(x_k.detach().clamp(0, 1), truth))
            return True

        fit = cls(**cls.resolve_params(task.family, {}, "quick")).reconstruct(y, physics, seed=0, callback=oracle)
        scores[name] = max([metrics.psnr(as_reconstruction(fit).x.detach().clamp(0, 1), truth), *best])
    assert {"dip", "tv"} <= set(scores)
    figures = ", ".join(f"{k} {v:.2f}" for k, v in sorted(scores.items(), key=lambda kv: -kv[1]))
    record_property("figures", f"{task_name} (set5 crop 64², dB): pnp_ffdnet {pnp:.2f}; {figures}")
    assert pnp > max(scores.values()), (pnp, scores)
