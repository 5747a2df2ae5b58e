"""The metric registry: every per-image quality metric is declared here once, and the harness,
the results store, the statistics, the tables, the plots, the export and MLflow iterate it.

A metric is a function ``(x_hat, x, ctx) → float``; ``ctx`` carries the task and the data range
(images in [0, 1] have range 1; a magnitude image is compared with range = the reference's
maximum), and the reconstruction's per-pixel uncertainty where the method gives one: a metric that
needs it (``needs_uncertainty``, the calibration metrics) is computed only there. PSNR and SSIM
follow scikit-image's definitions (SSIM: Gaussian window σ = 1.5, 11 taps, population covariance,
the default K1/K2; Wang et al., IEEE TIP 2004), so they can be checked against it; LPIPS is the
original AlexNet v0.1 model of Zhang et al. (CVPR 2018), with weights that work offline. Adding a
metric is one ``register(Metric(...))``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.problems import spectral


@dataclass(frozen=True)
class MetricContext:
    """What a metric may need besides the two images: the task (a ``tasks.Task``), the range, and
    the reconstruction's per-pixel standard deviation in the compared view (``ImageSpace.view_std``;
    None when the method gives none)."""

    task: Any = None
    data_range: float = 1.0
    uncertainty: torch.Tensor | None = None

    def with_uncertainty(self, std: torch.Tensor | None) -> MetricContext:
        return dataclasses.replace(self, uncertainty=std)


def _everywhere(task: Any) -> bool:
    return True


@dataclass(frozen=True)
class Metric:
    """A per-image quality metric; ``applies(task)`` limits it to some tasks (e.g. SR only)."""

    name: str
    fn: Callable[[torch.Tensor, torch.Tensor, MetricContext], float]
    higher_is_better: bool
    label: str = ""  # table header without unit; the name when empty
    unit: str = ""
    #: also measured along the iterations of an iterative method (keep these cheap)
    trajectory: bool = False
    applies: Callable[[Any], bool] = field(default=_everywhere, compare=False)
    decimals: int | None = 3  # table precision; None: three significant digits
    table: bool = True  # a column of the comparison table
    #: needs the reconstruction's per-pixel uncertainty (``ctx.uncertainty``): computed only for
    #: methods that return one (``Reconstruction.uncertainty``), absent elsewhere
    needs_uncertainty: bool = False
    #: the suite's one primary metric: the oracle of early stopping, the ES gap, tuning, the
    #: leaderboard's order and the data-efficiency figure read it (``primary()``)
    primary: bool = False
    #: the metric as a function of (mean squared error, data range), where it is one: the harness
    #: then reads the primary metric off every iterate's queued error, not only the sampled ones
    from_mse: Callable[[float, float], float] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Cost:
    """A cost every record carries (not an image comparison), with its direction."""

    name: str
    label: str
    unit: str = ""
    higher_is_better: bool = False
    decimals: int | None = None
    table: bool = False


COSTS: dict[str, Cost] = {
    c.name: c
    for c in (
        Cost("runtime_s", "runtime", "s", table=True),
        Cost("peak_mem_mb", "peak memory", "MB", decimals=1),
        Cost("throughput", "throughput", "img/s", higher_is_better=True, table=True),
        Cost("train_s", "training time", "s"),
    )
}

#: Record fields summarised (MLflow) and exported beside the metrics and the costs.
SUMMARIES = ("oracle_value", "es_gap", "iterations", "iterations_saved")

_REGISTRY: dict[str, Metric] = {}


#: names a metric may not take: the costs, the long tables' columns, and (``reserve``) the
#: results layer's record fields
_RESERVED: set[str] = {*COSTS, "metric", "value", "step"}


def reserve(names: Iterable[str]) -> None:
    """Keep ``names`` from metrics (the results layer reserves its record fields, which it stores
    beside the metrics); a metric registered earlier under one of them is refused now."""
    added = set(names)
    taken = sorted(added & set(_REGISTRY))
    if taken:
        raise ValueError(f"metric name {taken[0]!r} is a reserved name")
    _RESERVED.update(added)


def register(metric: Metric) -> Metric:
    """Declare a metric; its name must not collide with a record field or a cost, and there is
    one primary metric."""
    if metric.name in _RESERVED or not metric.name.isidentifier():
        raise ValueError(f"metric name {metric.name!r} is taken or not an identifier")
    first = next((m for m in _REGISTRY.values() if m.primary and m.name != metric.name), None)
    if metric.primary and first is not None:
        raise ValueError(f"metric {metric.name!r} cannot be primary: {first.name!r} is")
    _REGISTRY[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def primary() -> Metric:
    """The primary metric (PSNR), declared once with ``primary=True``."""
    found = [m for m in _REGISTRY.values() if m.primary]
    if len(found) != 1:
        raise RuntimeError(f"exactly one metric must be primary, found {[m.name for m in found]}")
    return found[0]


def registered() -> list[Metric]:
    """Every metric, in declaration order."""
    return list(_REGISTRY.values())


def applicable(task: Any, skip: Collection[str] = (), *, uncertainty: bool = False) -> list[Metric]:
    """The metrics the harness computes for a cell of ``task`` (``skip``: switched off); those
    that need an uncertainty only where the reconstruction has one (``uncertainty``)."""
    return [m for m in _REGISTRY.values()
            if m.name not in skip and m.applies(task) and (uncertainty or not m.needs_uncertainty)]


def describe(name: str) -> Metric | Cost | None:
    return _REGISTRY.get(name) or COSTS.get(name)


def higher_is_better(name: str) -> bool:
    found = describe(name)
    if found is None:
        raise KeyError(f"no metric or cost named {name!r}")
    return found.higher_is_better


def header(name: str) -> str:
    """The column header: label and unit, e.g. ``PSNR [dB]``."""
    found = describe(name)
    if found is None:
        return name
    label = found.label or found.name
    return f"{label} [{found.unit}]" if found.unit else label


def decimals(name: str, value: float) -> int:
    """Decimals to print ``value`` with: the declared ones, else three significant digits."""
    found = describe(name)
    if found is not None and found.decimals is not None:
        return found.decimals
    if not math.isfinite(value) or value == 0:
        return 2
    return int(min(6, max(0, 2 - math.floor(math.log10(abs(value))))))


def table_columns() -> list[str]:
    """The comparison table's candidate columns: metrics first, then the costs shown there."""
    return [m.name for m in _REGISTRY.values() if m.table] + [c.name for c in COSTS.values() if c.table]


_UNIT = MetricContext()


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    return x if x.dim() == 4 else x.unsqueeze(0)


@torch.inference_mode()
def psnr(x_hat: torch.Tensor, x: torch.Tensor, ctx: MetricContext = _UNIT) -> float:
    """PSNR in dB over the data range (1 for images in [0, 1], clipped by the harness)."""
    mse = torch.mean((x_hat.double() - x.double()) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * math.log10(ctx.data_range**2 / mse)


def _gaussian_window(sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


@torch.inference_mode()
def ssim(x_hat: torch.Tensor, x: torch.Tensor, ctx: MetricContext = _UNIT) -> float:
    """Mean SSIM over channels, as ``skimage.metrics.structural_similarity(gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=ctx.data_range)`` (valid region only)."""
    a, b = _as_batch(x_hat).double(), _as_batch(x).double()
    # The five local means in one pass, with the separable Gaussian as two 1-D convolutions: the
    # same window, ~5× fewer operations than the 11×11 one (SSIM runs at every trajectory point).
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    channels = stack.shape[1]
    g = _gaussian_window().to(a.device)
    blurred = F.conv2d(stack, g.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    blurred = F.conv2d(blurred, g.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    mu_a, mu_b, aa, bb, ab = blurred.chunk(5, dim=1)

    c1, c2 = (0.01 * ctx.data_range) ** 2, (0.03 * ctx.data_range) ** 2
    var_a = aa - mu_a**2
    var_b = bb - mu_b**2
    cov = ab - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean().item())


@torch.inference_mode()
def lpips_distance(x_hat: torch.Tensor, x: torch.Tensor, ctx: MetricContext = _UNIT) -> float:
    """LPIPS (AlexNet, v0.1) on images scaled to [-1, 1] by the data range; grayscale images
    are repeated to three channels."""
    from benchmark.problems.lpips_offline import lpips_model

    a, b = _as_batch(x_hat).float() / ctx.data_range, _as_batch(x).float() / ctx.data_range
    if a.shape[1] == 1:
        a, b = a.repeat(1, 3, 1, 1), b.repeat(1, 3, 1, 1)
    model = lpips_model(a.device)
    return float(model(a * 2 - 1, b * 2 - 1).mean().item())


def psnr_from_mse(mse: float, data_range: float) -> float:
    """PSNR in dB of a mean squared error over ``data_range`` (∞ for an exact image)."""
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


PSNR = register(Metric("psnr", psnr, higher_is_better=True, label="PSNR", unit="dB", trajectory=True, decimals=2,
                       primary=True, from_mse=psnr_from_mse))
SSIM = register(Metric("ssim", ssim, higher_is_better=True, label="SSIM", trajectory=True))
def _photographic(task: Any) -> bool:
    """A metric learnt on photographs only where the task's images are photographs (not MRI, CT)."""
    space = getattr(task, "space", None)
    return bool(getattr(space, "photographic", True))


LPIPS = register(Metric("lpips", lpips_distance, higher_is_better=False, label="LPIPS", applies=_photographic))


def _band_psnr(x_hat: torch.Tensor, x: torch.Tensor, ctx: MetricContext = _UNIT, *, band: spectral.Band) -> float:
    return spectral.band_psnr(x_hat, x, band, ctx.data_range)


# PSNR per radial frequency band (``benchmark.problems.spectral``): the dynamics view of DIP, along
# the iterations of every iterative method; not a column of the comparison table.
for _band in spectral.BANDS:
    register(Metric(_band.metric, partial(_band_psnr, band=_band), higher_is_better=True,
                    label=f"PSNR {_band.label} band", unit="dB", trajectory=True, decimals=2, table=False))


#: MATLAB ``rgb2ycbcr``'s luma row for inputs in [0, 1] (ITU-R BT.601, output in [16, 235]/255)
_LUMA = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)


def luma(x: torch.Tensor) -> torch.Tensor:
    """The Y channel (1×1×H×W, float64) of an RGB image in [0, 1]; a one-channel image is its own
    Y, as in the SR literature's evaluation scripts (they convert only 3-channel images)."""
    a = _as_batch(x).double()
    if a.shape[1] == 1:
        return a
    if a.shape[1] != 3:
        raise ValueError(f"luma needs 1 or 3 channels, got {a.shape[1]}")
    weights = torch.tensor(_LUMA, dtype=torch.float64, device=a.device).view(1, 3, 1, 1)
    return 16.0 / 255.0 + (a * weights).sum(dim=1, keepdim=True)


def shave(x: torch.Tensor, border: int) -> torch.Tensor:
    """``x`` without a border of ``border`` pixels on each side."""
    if border <= 0:
        return x
    if min(x.shape[-2:]) <= 2 * border:
        raise ValueError(f"an image of {tuple(x.shape[-2:])} pixels has nothing left inside a {border}-pixel border")
    return x[..., border:-border, border:-border]


def _is_super_resolution(task: Any) -> bool:
    return getattr(task, "family", None) == "super-resolution"


def _sr_border(ctx: MetricContext) -> int:
    """The SR literature shaves as many pixels as the scale factor."""
    return int(ctx.task.params.get("factor", 0)) if ctx.task is not None else 0


def psnr_y(x_hat: torch.Tensor, x: torch.Tensor, ctx: MetricContext = _UNIT) -> float:
    """PSNR on the BT.601 luma (data range 1, i.e. 255 on 8-bit Y), ``factor`` pixels shaved
    (Timofte et al. 2014; Kim et al. 2016)."""
    border = _sr_border(ctx)
    return psnr(shave(luma(x_hat), border), shave(luma(x), border))


def ssim_y(x_hat: torch.Tensor, x: torch.Tensor, ctx: MetricContext = _UNIT) -> float:
    """SSIM on the BT.601 luma, ``factor`` pixels shaved (MATLAB ``ssim``'s Gaussian window)."""
    border = _sr_border(ctx)
    return ssim(shave(luma(x_hat), border), shave(luma(x), border))


register(Metric("psnr_y", psnr_y, higher_is_better=True, label="PSNR-Y", unit="dB", decimals=2,
                applies=_is_super_resolution))
register(Metric("ssim_y", ssim_y, higher_is_better=True, label="SSIM-Y", applies=_is_super_resolution))


# Calibration of a per-pixel uncertainty (issue 24 item 5): does the method's standard deviation
# say where and how much it errs? Computed only where a reconstruction carries one (DPS with K
# samples, a Bayesian DIP), in the compared view of the task's image space.


def _uncertainty_of(x: torch.Tensor, ctx: MetricContext) -> torch.Tensor:
    if ctx.uncertainty is None:
        raise ValueError("this metric needs the reconstruction's uncertainty (MetricContext.uncertainty)")
    std = ctx.uncertainty.double()
    if std.shape != x.shape:
        raise ValueError(f"uncertainty has shape {tuple(std.shape)}, the compared images {tuple(x.shape)}")
    return std


@torch.inference_mode()
def coverage_2sd(x_hat: torch.Tensor, x: torch.Tensor, ctx: MetricContext = _UNIT) -> float:
    """The share of pixels whose error lies within two standard deviations, |x̂ − x| ≤ 2σ: 0.954
    for a calibrated Gaussian posterior, below it for an over-confident one, above for a timid one."""
    std = _uncertainty_of(x, ctx)
    error = (x_hat.double() - x.double()).abs()
    return float((error <= 2 * std).double().mean())


@torch.inference_mode()
def sd_error_corr(x_hat: torch.Tensor, x: torch.Tensor, ctx: MetricContext = _UNIT) -> float:
    """Pearson's correlation over pixels of the standard deviation with the absolute error: does
    the uncertainty point at the pixels that are wrong (1), or say nothing about them (0)? NaN
    where either map is constant (no correlation is defined)."""
    std = _uncertainty_of(x, ctx).flatten()
    error = (x_hat.double() - x.double()).abs().flatten()
    if any(float(v.max() - v.min()) <= 1e-9 * float(v.abs().max()) for v in (std, error)):
        return float("nan")  # a constant map (to rounding): no correlation is defined
    a, b = std - std.mean(), error - error.mean()
    return float((a * b).sum()) / float(a.norm() * b.norm())


# Neither is a column of the comparison table, which bolds a best per column: a coverage above
# 0.954 is timid, not better. The report's uncertainty section shows both beside the maps.
register(Metric("coverage_2sd", coverage_2sd, higher_is_better=True, label="coverage ±2σ", decimals=3,
                table=False, needs_uncertainty=True))
register(Metric("sd_error_corr", sd_error_corr, higher_is_better=True, label="corr(σ, |error|)", decimals=3,
                table=False, needs_uncertainty=True))
