"""The data-efficiency figure: trained methods as lines over training-set sizes, untrained ones
as bands, and the crossing point found where a line reaches the best band."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.results import statistics as stats
from reports import build_report, data_efficiency, plots


def _frame(with_column: bool) -> pd.DataFrame:
    """U-Net at 1, 4, 16, 64 images rising 26 → 31 dB; DIP at 28, TV at 27, FFDNet (released) at 31.5."""
    rng = np.random.default_rng(0)
    rows = []
    curve = {1: 26.0, 4: 27.0, 16: 29.0, 64: 31.0}
    for _image in range(4):
        noise = float(rng.normal(0, 0.05))
        for n, psnr in curve.items():
            rows.append(dict(method="unet", family="data-driven", params={"train_images": n}, psnr=psnr + noise))
        rows.append(dict(method="dip", family="dip", params={"iterations": 500}, psnr=28.0 + noise))
        rows.append(dict(method="tv", family="baseline", params={}, psnr=27.0 + noise))
        rows.append(dict(method="ffdnet", family="data-driven", params={}, psnr=31.5 + noise))
    df = pd.DataFrame(rows)
    df["task"], df["dataset"], df["status"], df["image_id"], df["seed"] = "denoising_s25", "cbsd68", "ok", "i", 0
    if with_column:
        df["train_images"] = [r["params"].get("train_images", 0) for r in rows]
    return df


@pytest.mark.parametrize("with_column", [True, False])
def test_the_crossing_is_where_the_line_reaches_the_best_untrained(with_column: bool) -> None:
    (hit,) = data_efficiency.crossings(_frame(with_column))
    assert (hit.method, hit.reference) == ("unet", "dip")
    assert hit.reference_psnr == pytest.approx(28.0, abs=0.05)
    # halfway between 4 (27 dB) and 16 (29 dB) on a log axis: 8 images
    assert hit.n_images == pytest.approx(8.0, rel=0.05) and hit.text.startswith("≈")


def test_lines_that_never_or_always_cross_say_so() -> None:
    points = pd.DataFrame({"n_train": [1.0, 4.0], "mean": [26.0, 27.0]})
    assert data_efficiency.crossing(points, 30.0) == (None, "> 4")
    assert data_efficiency.crossing(points, 20.0) == (1.0, "≤ 1")


def test_the_report_has_the_figure_and_the_table(tmp_path: Path) -> None:
    df = stats.normalize(_frame(True))
    assert data_efficiency.figure(df, plots.method_palette(df["method"])) is not None
    index = build_report(_frame(True), tmp_path, title="t")
    html = index.read_text()
    assert "How much training data beats DIP?" in html and "crossing (images)" in html and "≈ 8" in html
    assert (tmp_path / "figures" / "data-efficiency.png").exists()
    empty = build_report(_frame(True).query("method != 'unet'"), tmp_path / "none", title="t").read_text()
    assert "No trained method with a training-set size" in empty


@pytest.mark.parametrize(
    ("label", "line"),
    [("unet[train_images=4]", "unet"), ("unet[train_images=1,train_steps=2]", "unet[train_steps=2]"),
     ("dps[prior_steps=5,train_images=16]", "dps[prior_steps=5]"), ("dps[train_images=16,zeta=0.1]", "dps[zeta=0.1]"),
     ("unet", "unet")],
)
def test_instances_that_differ_only_in_train_images_are_one_line(label: str, line: str) -> None:
    assert data_efficiency.line_label(label) == line


def test_a_swept_method_is_one_line_through_its_sizes(tmp_path: Path) -> None:
    """As a run stores it: labels unet[train_images=1], … and the whole set as plain ``unet``."""
    df = _frame(True)
    trained = df["method"] == "unet"
    df["label"] = [f"unet[train_images={n}]" if t and n < 64 else m
                   for t, n, m in zip(trained, df["train_images"], df["method"], strict=True)]
    (hit,) = data_efficiency.crossings(df)
    assert hit.method == "unet" and hit.n_images == pytest.approx(8.0, rel=0.05)
    normal = stats.normalize(df)
    assert data_efficiency.figure(normal, plots.method_palette(normal["method"])) is not None


def test_a_dip_fit_from_pretrained_weights_is_a_line_and_plain_dip_stays_a_band(tmp_path: Path) -> None:
    """The educated warm start is of the DIP family but learns from training images: its records
    carry a training-set size, so it is a line (27.5 → 29.5 dB over 1, 4, 16 images) crossing
    DIP's band (28 dB) at 2 images, while DIP stays the band."""
    df = _frame(True)
    warm = pd.DataFrame([dict(method="dip_warmstart", family="dip", params={"train_images": n}, psnr=psnr,
                              train_images=n, task="denoising_s25", dataset="cbsd68", status="ok", image_id=f"i{i}",
                              seed=0)
                         for i in range(4) for n, psnr in ((1, 27.5), (4, 28.5), (16, 29.5))])
    df = pd.concat([df, warm], ignore_index=True)
    df["label"] = [f"{m}[train_images={n}]" if m == "dip_warmstart" and n < 16 else m
                   for m, n in zip(df["method"], df["train_images"], strict=True)]
    hits = {c.method: c for c in data_efficiency.crossings(df)}
    assert set(hits) == {"unet", "dip_warmstart"} and hits["dip_warmstart"].reference == "dip"
    assert hits["dip_warmstart"].n_images == pytest.approx(2.0, rel=0.05)
    normal = stats.normalize(df)
    curves = data_efficiency._curves(normal, "psnr")
    assert set(curves.untrained["method"]) == {"dip", "tv"}
    assert sorted(curves.trained.loc[curves.trained["method"] == "dip_warmstart", "n_train"]) == [1.0, 4.0, 16.0]
    assert data_efficiency.figure(normal, plots.method_palette(normal["method"])) is not None
