"""Measuring a method the way a benchmark does: the harness's own cells, measurements and PSNR."""

from __future__ import annotations

from typing import Any

import torch

from benchmark.problems import data
from benchmark.run import harness
from benchmark.run.plan import Cell, canonical_json
from benchmark.run.pool import MethodPool


def harness_psnr(method: str, params: dict[str, Any], task: str, dataset: str, images: list[data.Image],
                 seed: int = 0) -> list[float]:
    """Each image's PSNR as ``run_cells`` records it (run seed ``seed``, CPU, no training set).
    ``params`` are used as given, as a cell's: pass what the plan resolves
    (``Method.resolve_params(task, overrides, budget)``), else per-task defaults are missed."""
    pool = MethodPool(lambda: [], "none", data.cache_root() / "reference", torch.device("cpu"), progress=False)
    psnrs = []
    for image in images:
        cell = Cell(method, canonical_json(params), task, dataset, image.id, "full", seed)
        (outcome,) = harness.run_cells([cell], [image.tensor], pool, skip_metrics=("lpips",), save_reconstruction=False)
        assert outcome.record.status == "ok", outcome.record.error
        assert outcome.record.metrics.get("psnr") is not None
        psnrs.append(float(outcome.record.metrics["psnr"]))
    return psnrs


def harness_psnr_trained(method: str, params: dict[str, Any], task: str, dataset: str, images: list[data.Image],
                         training: list[torch.Tensor], training_name: str) -> list[float]:
    """As :func:`harness_psnr`, for a method that learns from ``training`` (named ``training_name``)."""
    pool = MethodPool(list, "none", data.cache_root() / "reference", torch.device("cpu"), progress=False,
                              load_training=lambda name: training)
    psnrs = []
    for image in images:
        cell = Cell(method, canonical_json(params), task, dataset, image.id, "full", 0, method, training_name)
        (outcome,) = harness.run_cells([cell], [image.tensor], pool, skip_metrics=("lpips",), save_reconstruction=False)
        assert outcome.record.status == "ok", outcome.record.error
        psnrs.append(float(outcome.record.metrics["psnr"]))
    return psnrs
