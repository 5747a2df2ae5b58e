"""Statistics that do not pseudo-replicate: the image is the unit, seeds are nested in it.

Simulated runs with a known between-image spread and seed noise show that the cluster-bootstrap
interval covers the true mean about as often as it says, where treating every (image, seed) run
as independent does not; a run of 4 images × 2 seeds gives no p below what 4 images can give,
and its table says that it is too small to test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import reports
from benchmark.results import inference
from benchmark.results import statistics as stats
from benchmark.results.store import Record, records_frame
from reports import tables

TRUE_MEAN = 30.0


def _simulated(rng: np.random.Generator, images: int, seeds: int, image_sd: float = 1.0,
               seed_sd: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(values, image ids) of one run: image effects N(0, image_sd²), seed noise N(0, seed_sd²)."""
    effects = rng.normal(0.0, image_sd, size=images)
    values = TRUE_MEAN + effects[:, None] + rng.normal(0.0, seed_sd, size=(images, seeds))
    ids = np.repeat([f"img{i}" for i in range(images)], seeds)
    return values.ravel(), ids


def test_the_cluster_interval_covers_the_true_mean_as_often_as_it_says() -> None:
    """400 simulated runs of 8 images × 3 seeds (image effects N(0, 1), seed noise N(0, 0.5²)).

    The cluster bootstrap's 95% interval must cover the true mean in 88-99% of them (400 runs
    give a binomial s.d. of about 1.1 points at 95%); the old scheme, a percentile bootstrap over
    the 24 (image, seed) runs as if independent, covers it in well under 85%: its interval is
    about 0.6 times as wide as it should be.
    """
    rng = np.random.default_rng(2024)
    covered_cluster = covered_pairs = 0
    replications = 400
    for _ in range(replications):
        values, ids = _simulated(rng, images=8, seeds=3)
        _, low, high = stats.cluster_bootstrap_ci(values, ids, n_resamples=2000)
        covered_cluster += low <= TRUE_MEAN <= high
        idx = np.random.default_rng(0).integers(0, values.size, size=(2000, values.size))
        pair_low, pair_high = np.quantile(values[idx].mean(axis=1), [0.025, 0.975])
        covered_pairs += pair_low <= TRUE_MEAN <= pair_high
    assert 0.88 <= covered_cluster / replications <= 0.99
    assert covered_pairs / replications < 0.85


def test_the_interval_weighs_every_image_the_same_and_ignores_row_order() -> None:
    # image a: two seeds at 10 and 12 (mean 11); image b: one seed at 20 (its other failed)
    values, ids = np.array([10.0, 12.0, 20.0]), np.array(["a", "a", "b"])
    mean, low, high = stats.cluster_bootstrap_ci(values, ids)
    assert mean == pytest.approx(15.5)  # (11 + 20) / 2, not (10 + 12 + 20) / 3
    assert low == pytest.approx(11.0) and high == pytest.approx(20.0)  # two images: their range
    assert stats.cluster_bootstrap_ci(values[::-1], ids[::-1]) == (mean, low, high)


@pytest.mark.parametrize("n_pairs", range(1, 9))
def test_the_smallest_p_of_n_pairs_and_the_minimum_number_of_images(n_pairs: int) -> None:
    """Every difference of one sign is the most extreme outcome: scipy's exact p is 2 / 2ⁿ, and 6
    is the first n where it falls below 0.05 (MIN_IMAGES_FOR_TEST)."""
    extreme = sps.wilcoxon(np.arange(1.0, n_pairs + 1.0)).pvalue
    assert extreme == pytest.approx(inference.smallest_p(n_pairs))
    assert (extreme < 0.05) == (n_pairs >= stats.MIN_IMAGES_FOR_TEST)


def test_holm_adjusts_step_down_and_keeps_the_order() -> None:
    raw = {"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005, "e": None}
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, then made monotone
    assert stats.holm(raw) == pytest.approx({"d": 0.02, "a": 0.03, "c": 0.06, "b": 0.06, "e": None})
    assert stats.holm({"a": 0.6, "b": 0.7}) == {"a": 1.0, "b": 1.0}  # capped at 1
    assert stats.holm({}) == {}


def _run(images: int, seeds: int) -> pd.DataFrame:
    """Three methods; ``good`` beats ``fair`` by 1 dB and ``poor`` by 3 dB on every image and seed."""
    rng = np.random.default_rng(images)
    records = []
    for i in range(images):
        difficulty = rng.normal(0.0, 2.0)
        for s in range(seeds):
            for method, offset in (("good", 0.0), ("fair", -1.0), ("poor", -3.0)):
                psnr = 28.0 + difficulty + offset + float(rng.normal(0.0, 0.1))
                records.append(Record(cell_key=f"{method}-{i}-{s}", method=method, task="denoising_s25",
                                      dataset="embedded", image_id=f"img{i}", seed=s, family="baseline",
                                      metrics={"psnr": psnr}, runtime_s=1.0, run_budget="quick"))
    return records_frame(records)


def test_four_images_and_two_seeds_give_no_p_below_what_four_images_can_give() -> None:
    frame = _run(images=4, seeds=2)
    summary = stats.summarize(frame)
    tested = summary[summary.p_raw.notna()]
    assert len(tested) and (tested.p_raw >= inference.smallest_p(4)).all()  # 0.125, not 0.0078 of 8 pairs
    assert tested.too_few.all() and (tested.pair_images == 4).all()
    md = reports.comparison_table(frame)
    rows = [line for line in md.splitlines() if line.startswith(("| fair |", "| poor |")) and "±" in line]
    assert rows and all(tables.TOO_FEW in line and "p=" not in line for line in rows)
    assert "denoising_s25 · embedded (4 images)" in md  # the block says how many images it has
    assert "fewer than 6 images shared" in md and "embedded (4)" in md  # the caption says why


def test_eight_images_are_tested_with_holms_correction() -> None:
    frame = _run(images=8, seeds=2)
    summary = stats.summarize(frame)
    psnr = summary[(summary.metric == "psnr") & ~summary.best].set_index("method")
    assert not psnr.too_few.any() and (psnr.pair_images == 8).all()
    # each loses on every image: the exact p of 8 pairs, times 2 (smallest) and 1 under Holm
    assert psnr.p_raw.to_dict() == pytest.approx({"fair": inference.smallest_p(8), "poor": inference.smallest_p(8)})
    assert psnr.p_value.to_dict() == pytest.approx({"fair": 2 * inference.smallest_p(8),
                                                    "poor": 2 * inference.smallest_p(8)})
    md = reports.comparison_table(frame)
    assert tables.format_p(2 * inference.smallest_p(8)) in md and tables.TOO_FEW not in md


def test_the_seed_table_caption_is_about_seeds_and_the_others_about_images() -> None:
    frame = _run(images=4, seeds=2)
    spread = tables.seed_spread(frame).caption
    assert "across the run seeds" in spread and "not the uncertainty of a mean" in spread
    assert "over images" in tables.comparison(frame).caption
