"""A synthetic per-image table with every kind of row, for tests and for previewing the report.

It has baselines, two DIP variants with trajectories (a fixed budget and an early-stopping rule;
PSNR, SSIM and PSNR per frequency band), a trained method that skips inpainting, and a method that
fails on one image, over two tasks, four images and two seeds. Optionally it writes the
reconstruction PNGs the harness would save.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.problems import metrics
from benchmark.results.store import Record, records_frame

TASKS = ("denoising_s25", "inpainting_random50")
IMAGES = ("astronaut", "camera", "coins", "moon")
SEEDS = (0, 1)
#: method → (family, PSNR offset against identity, runtime per image in seconds)
METHODS = {
    "identity": ("baseline", 0.0, 0.002),
    "tv": ("baseline", 6.0, 0.8),
    "dip": ("dip", 7.5, 40.0),
    "dip_es": ("dip", 7.9, 15.0),
    "dncnn": ("data-driven", 8.6, 0.05),
    "flaky": ("baseline", 3.0, 0.3),
}
BUDGET = 200
EVERY = 10
#: the demo frame's metrics: the primary one (PSNR) and SSIM, by their registered names
PSNR, SSIM = metrics.PSNR.name, metrics.SSIM.name


#: per frequency band (``benchmark.problems.spectral``): (its level against the peak PSNR, how far
#: below that it starts, its rise's time scale as a share of the peak step, how fast it falls past it)
BAND_CURVES = {"psnr_low": (-3.0, 20.0, 1 / 6, 0.0), "psnr_mid": (-1.0, 10.0, 1 / 2, 0.00005),
               "psnr_high": (2.0, 3.0, 1.0, 0.0003)}


def _trajectory(peak_psnr: float, peak_step: int, last: int) -> list[dict[str, float]]:
    """A DIP-like curve: rises to its peak, then falls as the network fits the noise; per band,
    the low frequencies are fitted first and the high band, where the noise lives, falls."""
    out = []
    for step in range(EVERY, last + 1, EVERY):
        rise = peak_psnr - 10.0 * np.exp(-step / (peak_step / 3.0))
        fall = 0.00012 * max(0, step - peak_step) ** 2
        point = {"step": float(step), PSNR: float(rise - fall), SSIM: float(min(0.99, 0.5 + rise / 80.0))}
        for name, (level, depth, scale, falls) in BAND_CURVES.items():
            band = peak_psnr + level - depth * np.exp(-step / (scale * peak_step))
            point[name] = float(band - falls * max(0, step - peak_step) ** 2)
        out.append(point)
    return out


def _image(rng: np.random.Generator, size: int = 24) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    f1, f2 = rng.uniform(1, 4, size=2)
    return np.clip(0.5 + 0.35 * np.sin(2 * np.pi * f1 * xx) * np.cos(2 * np.pi * f2 * yy), 0, 1)


def demo_frame(recon_root: Path | None = None, seed: int = 0) -> pd.DataFrame:
    """The synthetic table; with ``recon_root``, also the truth/measurement/reconstruction PNGs."""
    rng = np.random.default_rng(seed)
    records = []
    for task in TASKS:
        for image_index, image in enumerate(IMAGES):
            for s in SEEDS:
                base = 20.0 + image_index + 0.3 * s + (0.0 if task == "denoising_s25" else -8.0)
                truth = _image(np.random.default_rng([image_index, s]))
                measurement = np.clip(truth + rng.normal(0, 0.1, truth.shape), 0, 1)
                if recon_root is not None:
                    _save(recon_root / "embedded" / task / f"{image}_seed{s}_truth.png", truth)
                    _save(recon_root / "embedded" / task / f"{image}_seed{s}_measurement.png", measurement)
                for method, (family, offset, runtime) in METHODS.items():
                    rec = Record(cell_key=f"{method}-{task}-{image}-{s}", method=method, task=task,
                                 dataset="embedded", image_id=image, seed=s, family=family, profile="synthetic",
                                 device="cpu", finished_at=1.7e9)
                    if method == "dncnn" and task != "denoising_s25":
                        rec.status, rec.error = "skipped", "DnCNN is trained for denoising only"
                    elif method == "flaky" and image == "coins" and s == 1:
                        rec.status, rec.error = "failed", "Traceback ...\nRuntimeError: singular matrix"
                    else:
                        psnr = base + offset + float(rng.normal(0, 0.4))
                        rec.metrics = {PSNR: psnr, SSIM: float(min(0.99, 0.3 + psnr / 50.0)),
                                       metrics.LPIPS.name: float(max(0.01, 0.6 - psnr / 60.0))}
                        rec.runtime_s = runtime * float(rng.uniform(0.9, 1.1))
                        rec.measurement_value = base
                        rec.train_s = 120.0 if family == "data-driven" else None
                        if family == "dip":
                            _dip_fields(rec, rng, early=method == "dip_es")
                        if recon_root is not None:
                            rec.recon_path = f"embedded/{task}/{image}_seed{s}_{method}.png"
                            blend = 0.3 * offset / 8.6
                            _save(recon_root / rec.recon_path, np.clip((1 - blend) * measurement + blend * truth, 0, 1))
                    records.append(rec)
    return records_frame(records)


def _dip_fields(rec: Record, rng: np.random.Generator, *, early: bool) -> None:
    peak_step = int(rng.integers(6, 12)) * EVERY
    peak = rec.metrics[PSNR] + 1.2
    last = min(BUDGET, peak_step + 5 * EVERY) if early else BUDGET
    traj = _trajectory(peak, peak_step, last)
    best = max(traj, key=lambda p: p[PSNR])
    selected = min(last, peak_step + EVERY) if early else BUDGET
    own = next(p for p in traj if p["step"] == selected)
    rec.trajectory = traj
    rec.stopping_rule = "moving variance" if early else "fixed budget"
    rec.iterations, rec.budget, rec.selected_iteration = last, BUDGET, selected
    rec.iterations_saved = BUDGET - last
    rec.metrics.update({name: own[name] for name in (PSNR, *BAND_CURVES)})
    rec.oracle_value, rec.oracle_iteration = best[PSNR], int(best["step"])
    rec.es_gap = best[PSNR] - own[PSNR]
    rec.info["oracle_stream"] = "raw outputs" if early else "EMA 0.99 of outputs"


def _save(path: Path, img: np.ndarray) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, img, cmap="gray", vmin=0, vmax=1)


@dataclass(frozen=True)
class ShiftMethod:
    """A method instance of the shift frame: what it is, its PSNR offset and what it learnt from."""

    name: str
    params: dict[str, object]
    family: str
    offset: float  # PSNR offset on σ = 50
    train_task: str | None = None  # None: learns nothing; "": the test task
    train_set: str = ""
    condition: tuple[str, ...] = ()


#: the shift frame's test tasks and its method instances by label
SHIFT_TASKS = ("denoising_s25", "denoising_s50")
_UNET = ("train_task", "train_set")
SHIFT_METHODS = {
    "tv": ShiftMethod("tv", {}, "baseline", 5.0),
    "dip": ShiftMethod("dip", {}, "dip", 6.0),
    "unet": ShiftMethod("unet", {"train_task": None}, "data-driven", 8.0, "", "embedded", _UNET),
    "unet[train_task=denoising_s25]": ShiftMethod("unet", {"train_task": "denoising_s25"}, "data-driven", 3.0,
                                                  "denoising_s25", "embedded", _UNET),
    "dncnn": ShiftMethod("dncnn", {"model_sigma": "auto"}, "data-driven", 8.5, "", "", ("model_sigma",)),
    "dncnn[model_sigma=25]": ShiftMethod("dncnn", {"model_sigma": 25}, "data-driven", 2.0, "denoising_s25", "",
                                         ("model_sigma",)),
}


def shift_frame(seed: int = 0) -> pd.DataFrame:
    """A synthetic table with shift cells: on σ = 50, a U-Net and DnCNN-S trained at σ = 25 beside
    their twins trained at σ = 50 (which fall from above DIP to below it), and DIP and TV; on σ = 25
    every method in distribution. Four images, two seeds."""
    rng = np.random.default_rng(seed)
    records = []
    for task in SHIFT_TASKS:
        for image_index, image in enumerate(IMAGES):
            for s in SEEDS:
                for label, m in SHIFT_METHODS.items():
                    if task == "denoising_s25" and m.train_task:
                        continue  # trained at σ = 25 and tested there: its twin already is
                    rec = Record(cell_key=f"{label}-{task}-{image}-{s}", method=m.name, task=task, dataset="embedded",
                                 image_id=image, seed=s, params=dict(m.params), family=m.family, profile="synthetic",
                                 device="cpu", finished_at=1.7e9, label=label, run_budget="quick")
                    if m.train_task is not None:
                        learnt = {"train_task": m.train_task or task, "train_set": m.train_set}
                        rec.info = {**{k: v for k, v in learnt.items() if v}, "condition_params": list(m.condition)}
                    psnr = 20.0 + image_index + 0.2 * s + m.offset + float(rng.normal(0, 0.3))
                    rec.metrics = {PSNR: psnr, SSIM: float(min(0.99, 0.3 + psnr / 50.0))}
                    rec.runtime_s = 1.0
                    records.append(rec)
    return records_frame(records)
