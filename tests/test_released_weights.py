"""Released weights say what they learnt from: their methods declare the training set (as the
authors state it), the records carry its size, the comparison table shows it instead of 0, and
the data-efficiency figure and crossing table place them at that size."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from benchmark import registry
from benchmark.api import RELEASED, ReleasedTraining, TrainingContext, is_released
from benchmark.problems import tasks
from benchmark.results import statistics as stats
from benchmark.results.store import ResultsStore
from benchmark.run import profiles, runner
from methods.dncnn import DnCNN
from methods.dps import DPS
from methods.ffdnet import FFDNet
from methods.pnp_ffdnet import PnPFFDNet
from reports import data_efficiency, plots, tables

CPU = torch.device("cpu")


def _context(task: str, channels: int | None, tmp_path: Path) -> TrainingContext:
    return TrainingContext([], "none", tasks.get(task), tmp_path, seed=0, device=CPU, progress=False,
                           channels=channels)


def test_every_method_with_released_weights_declares_their_training_set() -> None:
    declaring = {name for name, cls in registry.available().items() if cls.released_training}
    assert {"ffdnet", "dncnn", "pnp_ffdnet", "dps"} <= declaring
    for name in declaring:
        for release, training in registry.available()[name].released_training.items():
            assert training.images >= 1 and training.dataset and training.source, (name, release)
            assert is_released(training.description) and f"({training.source})" in training.description
    assert set(DPS.released_training) == {"ffhq", "imagenet"}  # one per ``pretrained`` name
    assert ReleasedTraining("X", 5544, "paper").description == f"{RELEASED}, 5 544 images of X (paper)"
    assert not is_released("suite U-Net, 13 images of embedded, 400 steps")


@pytest.mark.parametrize(("cls", "channels", "images"), [
    (FFDNet, 1, 4744), (FFDNet, 3, 4744), (PnPFFDNet, 2, 4744), (DnCNN, 1, 400), (DnCNN, 3, 432)])
def test_loading_released_weights_reports_their_training_set(cls: type, channels: int, images: int,
                                                             tmp_path: Path) -> None:
    task = "inpainting_random50" if cls is PnPFFDNet else "denoising_s25"
    report = cls().prepare(_context(task, channels, tmp_path))
    assert report.cached and report.images == images
    assert is_released(report.description) and f"{images:,}".replace(",", " ") in report.description


def test_dps_with_released_diffunet_weights_reports_their_training_set(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    monkeypatch.setattr("methods.dps.locate", lambda spec: tmp_path / spec.name)
    monkeypatch.setattr("methods.dps.diffusion.load_diffunet", lambda path: nn.Identity())
    report = DPS(pretrained="ffhq").prepare(_context("inpainting_random50", 3, tmp_path))
    assert report.images == 70000 and report.description.startswith(f"{RELEASED}, 70 000 images of FFHQ")
    own = DPS(pretrained_path=str(tmp_path / "mine.pt")).prepare(_context("inpainting_random50", 3, tmp_path))
    assert own.images is None and not is_released(own.description)  # a user's file: not known here


def test_the_comparison_table_shows_what_ffdnet_learnt_from(tmp_path: Path) -> None:
    """Through the driver: the record carries the count and the description, the table shows them."""
    profile = dataclasses.replace(profiles.load("smoke"), methods=["ffdnet", "trivial"], tasks=["denoising_s25"],
                                  metrics_off=["lpips"], save_reconstructions=False)
    summary = runner.run_benchmark(profile, results_dir=tmp_path / "r", tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
                                   progress=False)
    assert summary.planned == 4 and not summary.failed
    frame = ResultsStore(tmp_path / "r" / "results.sqlite").frame()
    ffdnet = frame[frame.method == "ffdnet"]
    assert (ffdnet.train_images == 4744).all()
    assert all(is_released(info["trained_on"]) for info in ffdnet["info"])
    rows = dict(tables.comparison(frame).rows)
    count, trained_on = rows["ffdnet"][:2]
    assert count.text == "4744" and trained_on.text.startswith(f"{RELEASED}, 4 744 images of the Waterloo")
    assert rows["trivial"][0].text == "0" and rows["trivial"][1].text == "untrained"


def _efficiency_frame() -> pd.DataFrame:
    """U-Net at 1, 4, 16 images (26 → 29 dB), DIP at 28 dB, FFDNet's released weights at 31 dB and
    DnCNN's at 27 dB, on 4 images × 2 seeds, under the quick budget."""
    rng = np.random.default_rng(0)
    rows = []
    ffdnet = "released weights, 4 744 images of the Waterloo Exploration Database (Tassano et al.)"
    dncnn = "released weights, 400 images of Train400 (Zhang et al. 2017)"
    for image in range(4):
        for seed in range(2):
            noise = float(rng.normal(0, 0.05))
            base = dict(task="denoising_s25", dataset="set12", status="ok", image_id=f"i{image}", seed=seed,
                        run_budget="quick")
            for n, psnr in {1: 26.0, 4: 27.0, 16: 29.0}.items():
                rows.append({**base, "method": "unet", "label": f"unet[train_images={n}]", "family": "data-driven",
                             "train_images": n, "psnr": psnr + noise,
                             "info": {"trained_on": f"suite U-Net, {n} images of train400, 400 steps"}})
            rows.append({**base, "method": "dip", "family": "dip", "train_images": 0, "psnr": 28.0 + noise})
            rows.append({**base, "method": "ffdnet", "family": "data-driven", "train_images": 4744,
                         "psnr": 31.0 + noise, "info": {"trained_on": ffdnet}})
            rows.append({**base, "method": "dncnn", "family": "data-driven", "train_images": 400,
                         "psnr": 27.0 + noise, "info": {"trained_on": dncnn}})
    return pd.DataFrame(rows)


def test_released_weights_sit_at_their_training_set_size_in_the_figure_and_the_crossing_table() -> None:
    df = stats.normalize(_efficiency_frame())
    hits = {c.method: c for c in data_efficiency.crossings(df)}
    assert set(hits) == {"unet", "ffdnet", "dncnn"}
    assert hits["ffdnet"].released and hits["ffdnet"].text == "≤ 4744 (released)"  # 31 dB ≥ DIP's 28
    assert hits["dncnn"].released and hits["dncnn"].text == "> 400 (released)"  # 27 dB < 28
    assert not hits["unet"].released and hits["unet"].text.startswith("≈")
    assert hits["ffdnet"].budget == "quick" and hits["ffdnet"].trained_with.startswith(RELEASED)
    assert "suite U-Net, 16 images of train400, 400 steps" in hits["unet"].trained_with

    fig = data_efficiency.figure(df, plots.method_palette(df["method"]))
    assert fig is not None
    (ax,) = [a for a in fig.axes if a.get_visible() and a.get_xlabel()]
    markers = {float(x) for line in ax.get_lines() if line.get_marker() == "D" for x in line.get_xdata()}
    assert markers == {400.0, 4744.0}  # a marker at each released training set, not a band at 0
    assert ax.get_xlim()[1] > 4744 and "released" in {t.get_text() for t in ax.texts}

    table = data_efficiency.crossing_table(df)
    assert table.columns == ["trained method", "trained with", "budget", "best untrained", "crossing (images)"]
    by_method = {cells[0].text: cells for _, cells in table.rows}
    assert by_method["ffdnet"][2].text == "quick" and by_method["ffdnet"][4].text == "≤ 4744 (released)"
