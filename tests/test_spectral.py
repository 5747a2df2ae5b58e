"""PSNR per radial frequency band (the dynamics view of DIP): the registry's band metrics against an
independent band-pass computation in numpy, on errors whose spectrum is known, and measured along
the iterations of a DIP run in the task's image space."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.problems import data, metrics, spectral, tasks
from benchmark.results.export import long_curves
from benchmark.results.store import records_frame
from benchmark.run.clock import Stopwatch
from benchmark.run.harness import run_cells
from benchmark.run.plan import Cell, canonical_json
from benchmark.run.pool import MethodPool
from benchmark.run.recording import TrajectoryRecorder

BANDS = spectral.BANDS
NAMES = [b.metric for b in BANDS]


def reference_band_psnr(x_hat: np.ndarray, x: np.ndarray, low: float, high: float, data_range: float) -> float:
    """The definition, computed the long way: band-pass the error in numpy (FFT, zero the other
    frequencies, inverse FFT), then 10 log10(R² · share / mean(e_b²))."""
    error = x_hat.astype(np.float64) - x.astype(np.float64)
    h, w = error.shape[-2:]
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    keep = (radius >= low) & (radius < high)
    passed = np.fft.ifft2(np.fft.fft2(error, axes=(-2, -1)) * keep, axes=(-2, -1))
    energy = np.mean(np.abs(passed) ** 2)
    return math.inf if energy == 0 else 10 * math.log10(data_range**2 * keep.mean() / energy)


def _metric(name: str) -> metrics.Metric:
    return next(m for m in metrics.registered() if m.name == name)


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (1, 3, 24, 40), (1, 1, 33, 17)])
def test_band_psnr_is_the_band_passed_errors_psnr(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    x = rng.uniform(0, 1, shape)
    # an error with structure at every scale: a smooth ramp, an edge and white noise
    x_hat = x + 0.2 * np.linspace(0, 1, shape[-1]) + 0.05 * rng.normal(size=shape)
    x_hat[..., : shape[-2] // 2, :] += 0.1
    ctx = metrics.MetricContext(task=tasks.get("denoising_s25"), data_range=0.8)
    for band in BANDS:
        got = _metric(band.metric).fn(torch.from_numpy(x_hat).float(), torch.from_numpy(x).float(), ctx)
        want = reference_band_psnr(x_hat.astype(np.float32), x.astype(np.float32), band.low, band.high, 0.8)
        assert got == pytest.approx(want, abs=1e-6)


def test_the_bands_split_the_error_and_white_noise_scores_alike_in_each() -> None:
    """The bands' MSEs weighted by their shares add up to the image's MSE (Parseval), and a white
    error has about the image's PSNR in every band (the normalisation's purpose)."""
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(1, 1, 128, 128, generator=gen, dtype=torch.float64)
    x_hat = x + 0.1 * torch.randn(1, 1, 128, 128, generator=gen, dtype=torch.float64)
    whole = metrics.psnr(x_hat, x)
    shares = [spectral.share(b, 128) for b in BANDS]
    assert sum(shares) == pytest.approx(1.0)
    mses = [10 ** (-spectral.band_psnr(x_hat, x, b) / 10) for b in BANDS]
    assert sum(s * m for s, m in zip(shares, mses, strict=True)) == pytest.approx(10 ** (-whole / 10), rel=1e-9)
    for band in BANDS:  # ≥ 800 frequencies per band: within a few % of the mean power
        assert spectral.band_psnr(x_hat, x, band) == pytest.approx(whole, abs=0.5)
    # the high band holds most of the frequencies, hence most of a white noise's energy
    assert shares[-1] == pytest.approx(1 - math.pi / 16, abs=0.01) and shares[-1] > 0.75


def test_an_error_in_one_band_leaves_the_others_clean() -> None:
    """A slow cosine (2 cycles over the image) is all low band; a checkerboard (1/2 cycle per pixel
    on both axes) all high band, with a PSNR that follows from its share alone."""
    n, amplitude = 64, 0.1
    yy, xx = np.mgrid[0:n, 0:n]
    x = torch.full((1, 1, n, n), 0.5, dtype=torch.float64)
    slow = x + amplitude * torch.from_numpy(np.cos(2 * np.pi * 2 * xx / n))
    low, mid, high = (spectral.band_psnr(slow, x, b) for b in BANDS)
    assert low < 40 and mid > 200 and high > 200  # exact zero up to rounding
    checker = x + amplitude * torch.from_numpy((-1.0) ** (xx + yy))
    low, mid, high = (spectral.band_psnr(checker, x, b) for b in BANDS)
    assert low > 200 and mid > 200
    share = spectral.share(BANDS[-1], n)
    assert high == pytest.approx(10 * math.log10(share / amplitude**2), abs=1e-9)
    # all of the error's energy on the band's share of the frequencies: below the image's PSNR by the share
    assert high == pytest.approx(metrics.psnr(checker, x) + 10 * math.log10(share), abs=1e-9)


def test_no_error_is_infinite_and_a_band_too_small_for_the_image_is_refused() -> None:
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert all(spectral.band_psnr(x, x, b) == math.inf for b in BANDS)
    tiny = torch.rand(1, 1, 4, 4)  # frequencies 0, 1/4, 1/2 per axis: none in [1/8, 1/4)
    with pytest.raises(ValueError, match="mid band"):
        spectral.band_psnr(tiny, tiny + 0.1, BANDS[1])


def test_band_metrics_are_trajectory_metrics_of_every_task_but_no_table_column() -> None:
    for name in NAMES:
        m = _metric(name)
        assert m.trajectory and not m.table and m.higher_is_better and m.unit == "dB"
        assert name not in metrics.table_columns()
    for task in ("denoising_s25", "inpainting_random50", "sr_x4", "mri_x4", "ct_views60"):
        assert set(NAMES) <= {m.name for m in metrics.applicable(tasks.get(task))}


def test_the_recorder_measures_the_bands_on_mr_magnitudes() -> None:
    """On MRI the bands compare magnitudes (``space.view``) with the reference's range, as PSNR."""
    task = tasks.get("mri_x4")
    gen = torch.Generator().manual_seed(1)
    truth = torch.randn(1, 2, 32, 32, generator=gen)
    iterate = truth + 0.1 * torch.randn(1, 2, 32, 32, generator=gen)
    magnitude = task.space.view(truth)
    ctx = metrics.MetricContext(task, task.space.data_range(truth))
    measured = [m for m in metrics.applicable(task) if m.trajectory]
    recorder = TrajectoryRecorder(truth, Stopwatch(torch.device("cpu")), 1, ctx, measured, task.space)
    recorder(1, iterate)
    (point,) = recorder.points
    for band in BANDS:
        want = reference_band_psnr(task.space.view(iterate).numpy(), magnitude.numpy(), band.low, band.high,
                                   float(magnitude.max()))
        assert point[band.metric] == pytest.approx(want, abs=1e-5)


def test_a_dip_run_has_per_band_rows_in_the_exported_curves(tmp_path: Path, one_thread: None) -> None:
    """A short DIP fit through the harness: every trajectory point carries the three bands, the
    export's curves table has a row per (point, band), and the record has the output's bands."""
    image = data.load("embedded", split="test", crop=32, limit=1, resize=64)[0]
    params = {"channels": 8, "scales": 2, "skip_channels": 2, "input_channels": 8, "iterations": 30,
              "lr": 0.01, "reg_noise_std": 0.0}
    cell = Cell("dip", canonical_json(params), "denoising_s25", "embedded", image.id, "resize64-crop32", 0)
    pool = MethodPool(lambda: [], "embedded", tmp_path, torch.device("cpu"), progress=False)
    (outcome,) = run_cells([cell], [image.tensor], pool, trajectory_every=10, skip_metrics=("lpips",),
                           save_reconstruction=False)
    record = outcome.record
    assert record.status == "ok", record.error
    assert [p["step"] for p in record.trajectory] == [10, 20, 30]
    assert all(set(NAMES) <= set(p) and all(math.isfinite(p[n]) for n in NAMES) for p in record.trajectory)
    assert set(NAMES) <= set(record.metrics)
    curves = long_curves(records_frame([record]))
    bands = curves[curves.metric.isin(NAMES)]
    assert len(bands) == 3 * len(record.trajectory)
    assert set(bands.method) == {"dip"} and sorted(set(bands.step)) == [10, 20, 30]
    last = bands[bands.step == 30].set_index("metric").value
    assert last.to_dict() == pytest.approx({n: record.trajectory[-1][n] for n in NAMES})


@pytest.mark.slow
def test_dip_fits_the_low_band_before_the_high_band(tmp_path: Path, one_thread: None) -> None:
    """Spectral bias, as the dynamics section's caption states it: along a DIP denoising fit the
    low band has gained most of its PSNR halfway through, the high band well under that."""
    image = next(i for i in data.load("embedded", split="test", resize=128, crop=64) if i.id == "camera")
    params = {"channels": 16, "input_channels": 16, "scales": 3, "skip_channels": 4, "iterations": 400,
              "lr": 0.01, "reg_noise_std": 1 / 30, "ema": 0.0}
    cell = Cell("dip", canonical_json(params), "denoising_s25", "embedded", image.id, "resize128-crop64", 0)
    pool = MethodPool(lambda: [], "embedded", tmp_path, torch.device("cpu"), progress=False)
    (outcome,) = run_cells([cell], [image.tensor], pool, trajectory_every=20, skip_metrics=("lpips",),
                           save_reconstruction=False)
    points = outcome.record.trajectory
    assert outcome.record.status == "ok" and len(points) == 20

    def gained_by_halfway(name: str) -> float:
        first, half, last = points[0][name], points[len(points) // 2 - 1][name], points[-1][name]
        assert last > first  # every band improves on the network's first outputs
        return (half - first) / (last - first)

    low, high = gained_by_halfway("psnr_low"), gained_by_halfway("psnr_high")
    assert low > 0.6 and low > high + 0.2
