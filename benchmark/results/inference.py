"""Intervals and tests over images: the image is the unit of replication, its seeds are nested in it.

Runs of one method on one image under several seeds share that image's difficulty, so they are
not independent draws of the method's quality. Treating every (image, seed) pair as a sample
halves the uncertainty of a 4-image × 2-seed run and lets a paired test reach p = 0.008, a
claim 4 images cannot support. Everything here therefore averages the seeds within an image
first and then works on the per-image means:

- **Intervals**: a cluster bootstrap that resamples images (Davison & Hinkley 1997, *Bootstrap
  Methods and their Application*, Sec. 3.8: for hierarchical data resample the top-level units
  and keep each unit's own data; resampling the seeds as well would count the seed noise twice,
  since it is already in each image's mean). With every image run under the same seeds, this is
  the bootstrap of the per-image means; with a seed missing, each image still weighs the same.
  The interval is Hesterberg's *expanded percentile* interval (Hesterberg 2015, "What teachers
  should know about the bootstrap", The American Statistician 69(4)): the plain percentile
  interval is too narrow for the handful of images a run has (it under-covers at 8 images;
  ``tests/test_statistics.py`` shows both), and widening its tail probability to
  Φ(−√(n/(n−1)) · t_{α/2, n−1}) brings it to about the t interval's coverage while staying a
  bootstrap interval.
- **Paired tests**: a method against the best of its block on the images both have, the
  difference of their per-image means (over the seeds both have), by scipy's two-sided Wilcoxon
  signed-rank test (exact null distribution at these sizes), Holm-corrected over the methods
  compared in the block (Holm 1979, Scand. J. Statist. 6(2)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

N_RESAMPLES = 4000
CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0
#: The fewest images a paired test is shown for. A two-sided exact Wilcoxon signed-rank test on n
#: pairs cannot give p below 2 / 2ⁿ: 0.125 for 4 images, 0.0625 for 5, 0.03125 for 6, so 6 is the
#: smallest n at which it can reach p < 0.05 at all; below that the table says so instead of a p.
MIN_IMAGES_FOR_TEST = 6


def smallest_p(n_pairs: int) -> float:
    """The smallest two-sided p an exact Wilcoxon signed-rank test on ``n_pairs`` pairs can give."""
    return min(1.0, 2.0 / 2.0**n_pairs)


def per_image_means(values: Sequence[float] | np.ndarray | pd.Series, images: Sequence[str] | pd.Series) -> pd.Series:
    """The mean of each image's finite values (its seeds), indexed by image id in sorted order (so
    the result does not depend on the order of the rows); images without a finite value are left
    out (an exact reconstruction has PSNR = inf)."""
    x = pd.Series(np.asarray(values, dtype=float), index=pd.Index(np.asarray(images, dtype=str), name="image_id"))
    x = x[np.isfinite(x.to_numpy())]
    return x.sort_index(kind="stable").groupby(level=0, sort=True).mean()


def expanded_tail(n: int, confidence: float = CONFIDENCE) -> float:
    """The lower tail probability of Hesterberg's expanded percentile interval for ``n`` units."""
    if n < 2:
        return (1.0 - confidence) / 2.0
    t = float(stats.t.ppf(1.0 - (1.0 - confidence) / 2.0, n - 1))
    return float(stats.norm.cdf(-math.sqrt(n / (n - 1)) * t))


def bootstrap_ci(
    units: Sequence[float] | np.ndarray | pd.Series,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """(mean, low, high): the expanded percentile bootstrap interval of the mean of independent
    ``units`` (per-image means; see the module docstring).

    Resampling indices come from ``numpy.random.default_rng(seed).integers(0, n, (n_resamples,
    n))``, so the interval is reproducible. Non-finite values are left out. One unit gives a mean
    without an interval (low = high = NaN): one image says nothing about the spread over images.
    """
    x = np.asarray(units, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size == 1:
        return (mean, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    tail = expanded_tail(x.size, confidence)
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (mean, float(low), float(high))


def cluster_bootstrap_ci(
    values: Sequence[float] | np.ndarray | pd.Series,
    images: Sequence[str] | pd.Series,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
    """(mean, low, high) over images: seeds averaged within each image, then ``bootstrap_ci`` of
    the per-image means (the mean is the mean of the per-image means)."""
    return bootstrap_ci(per_image_means(values, images).to_numpy(), n_resamples=n_resamples,
                        confidence=confidence, seed=seed)


def paired_test(a: pd.Series, b: pd.Series) -> tuple[float | None, int]:
    """(two-sided Wilcoxon signed-rank p, images compared) of ``a`` against ``b``, both indexed
    by (image_id, seed): on the (image, seed) pairs both have, the difference is averaged over
    the seeds of each image and the per-image differences are tested. p is None with fewer than
    two images or when every difference is zero."""
    da = a[np.isfinite(a.to_numpy(dtype=float))]
    db = b[np.isfinite(b.to_numpy(dtype=float))]
    shared = da.index.intersection(db.index)
    if not len(shared):
        return None, 0
    diff = (da.loc[shared].astype(float) - db.loc[shared].astype(float)).sort_index()
    per_image = diff.groupby(level="image_id", sort=True).mean().to_numpy()
    if per_image.size < 2 or np.all(per_image == 0):
        return None, int(per_image.size)
    try:
        p = float(stats.wilcoxon(per_image).pvalue)
    except ValueError:
        return None, int(per_image.size)
    return (None if math.isnan(p) else p), int(per_image.size)


def holm(p_values: Mapping[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down adjustment of a family of p-values (Holm 1979): the k-th smallest of m
    becomes max over j ≤ k of min(1, (m − j + 1) · p_(j)). None (no test) stays None and is not
    counted in m."""
    tested = sorted(((p, name) for name, p in p_values.items() if p is not None), key=lambda t: (t[0], t[1]))
    m = len(tested)
    adjusted: dict[str, float | None] = {name: None for name, p in p_values.items() if p is None}
    running = 0.0
    for k, (p, name) in enumerate(tested):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[name] = running
    return adjusted
