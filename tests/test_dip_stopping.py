"""The DIP stopping rules, on synthetic trajectories whose right answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from methods._dip.stopping import HeldOutLoss, PatientMinimum, WindowedVariance


def run_rule(update, observations):
    """Feed observations (step from 1) until the rule stops; return (stop step, best step)."""
    best = None
    for step, value in enumerate(observations, start=1):
        verdict = update(step, value)
        if verdict.best:
            best = step
        if verdict.stop:
            return step, best
    return None, best


def test_patient_minimum_stops_patience_steps_after_the_minimum():
    values = [5.0, 4.0, 3.0, 2.0, 2.5, 3.0, 3.5, 4.0, 1.0]
    stop, best = run_rule(PatientMinimum(patience=3).update, values)
    assert (stop, best) == (7, 4)  # minimum at step 4, three steps without a better one


def test_patient_minimum_resets_its_patience_on_a_new_minimum():
    values = [3.0, 4.0, 4.0, 1.0, 2.0, 2.0, 2.0]
    stop, best = run_rule(PatientMinimum(patience=3).update, values)
    assert (stop, best) == (7, 4)


def test_patient_minimum_min_delta_ignores_tiny_improvements():
    values = [1.0, 0.999, 0.998, 0.997]
    stop, best = run_rule(PatientMinimum(patience=3, min_delta=0.01).update, values)
    assert (stop, best) == (4, 1)


def test_patient_minimum_without_patience_only_tracks_the_minimum():
    values = [3.0, 1.0] + [2.0] * 100 + [math.nan]
    stop, best = run_rule(PatientMinimum(patience=None).update, values)
    assert (stop, best) == (None, 2)


def test_held_out_loss_stops_after_the_valley_of_a_noisy_u_curve():
    g = torch.Generator().manual_seed(0)
    steps = torch.arange(1, 401, dtype=torch.float64)
    # The held-out error of DIP: falls while the image is learned, rises as noise is fitted.
    curve = 0.01 + 1e-6 * (steps - 150.0) ** 2 + 2e-5 * torch.randn(400, generator=g, dtype=torch.float64)
    rule = HeldOutLoss(patience=50, window=5)
    stop, best = run_rule(rule.update, curve.tolist())
    assert best is not None and abs(best - 150) <= 20
    assert stop == best + 50
    assert rule.best_step == best


def test_held_out_loss_waits_for_a_full_window():
    rule = HeldOutLoss(patience=2, window=3)
    assert not rule.update(1, 1.0).best
    assert not rule.update(2, 1.0).best
    assert rule.update(3, 1.0).best


def _iterates(amplitudes: torch.Tensor, seed: int = 0) -> list[torch.Tensor]:
    """Iterates scattered around a fixed image with a per-step spread ``amplitudes[t]``."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand((1, 1, 16, 16), generator=g)
    return [image + a * torch.randn(image.shape, generator=g) for a in amplitudes.tolist()]


def test_windowed_variance_finds_the_calmest_window_and_waits_patience():
    steps = torch.arange(1, 301, dtype=torch.float32)
    amplitudes = 0.01 + 0.1 * ((steps - 120.0) / 120.0).abs()  # calmest around step 120
    rule = WindowedVariance(window=20, patience=60)
    stop, best = run_rule(rule.update, _iterates(amplitudes))
    # The window ending at step t covers t-19..t, so the calmest window ends ~10 steps later.
    assert best is not None and 115 <= best <= 145
    assert stop == best + 60
    assert len(rule.history) == stop - 19


def test_windowed_variance_equals_the_direct_formula():
    xs = _iterates(torch.full((6,), 0.3), seed=1)
    rule = WindowedVariance(window=4, patience=10)
    for step, x in enumerate(xs, start=1):
        rule.update(step, x)
    last = torch.stack(xs[-4:])
    expected = ((last - last.mean(0)) ** 2).mean()
    assert rule.history[-1] == pytest.approx(float(expected), rel=1e-5)
    assert len(rule.history) == 3


def test_windowed_variance_is_silent_until_the_window_is_full():
    rule = WindowedVariance(window=3, patience=1)
    x = torch.zeros(1, 1, 4, 4)
    assert not rule.update(1, x).best
    assert not rule.update(2, x).best
    verdict = rule.update(3, x)
    assert verdict.best and not verdict.stop


@pytest.mark.parametrize(
    "make",
    [
        lambda: PatientMinimum(patience=0),
        lambda: PatientMinimum(patience=1, min_delta=-0.1),
        lambda: HeldOutLoss(patience=1, window=0),
        lambda: WindowedVariance(window=1, patience=1),
    ],
)
def test_rules_refuse_meaningless_settings(make):
    with pytest.raises(ValueError):
        make()
