"""Li et al.'s self-validation: an autoencoder trained online on the iterates, whose error on the
newest iterate turns up once the iterates fit noise, and stops the run after that turn."""

from __future__ import annotations

import pytest
import torch

from benchmark.problems import spaces
from methods._dip.autoencoder import AE_SETTINGS, AutoencoderValidation, ValidationAutoencoder, side_for

SIDE = 16
TURN = 150  # the iterates are clean up to here, then fit more and more noise


def _smooth_image() -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, SIDE), torch.linspace(0, 1, SIDE), indexing="ij")
    return torch.stack([0.5 + 0.3 * torch.sin(6 * xx) * torch.cos(4 * yy), 0.4 + 0.3 * xx, 0.6 - 0.3 * yy])[None]


def _iterate(step: int, clean: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Clean-then-noisy: a little jitter while the image is learned, then noise growing as √(k − TURN)."""
    amplitude = 0.01 if step <= TURN else 0.01 + 0.01 * (step - TURN) ** 0.5
    return clean + amplitude * torch.randn(clean.shape, generator=g)


def test_the_autoencoder_error_turns_up_when_noise_is_fitted_and_the_rule_fires_after_the_turn(one_thread) -> None:
    clean, g = _smooth_image(), torch.Generator().manual_seed(1)
    rule = AutoencoderValidation(channels=3, height=SIDE, width=SIDE, seed=0, window=16, batch=8, patience=30,
                                 rate=2.0)  # one epoch per step
    stopped = None
    for step in range(1, 600):
        if rule.update(step, _iterate(step, clean, g)).stop:
            stopped = step
            break
    assert stopped is not None, "the rule never fired"
    best = rule.tracker.best_step
    assert best is not None and TURN - 40 <= best <= TURN + 10  # the minimum sits at the turn
    assert TURN < stopped <= best + 30  # fires after the turn, patience steps after the minimum
    errors = dict(rule.history)
    assert errors[best] < errors[17]  # the error fell while the clean image was learned ...
    assert errors[stopped] > errors[best] * 1.2  # ... and rose once noise was fitted


def test_checks_start_with_a_full_window_and_respect_every_and_patience_in_steps() -> None:
    rule = AutoencoderValidation(channels=1, height=SIDE, width=SIDE, seed=0, window=4, batch=4, patience=10, every=5,
                                 rate=0.2)
    x = torch.rand(1, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(0))
    for step in range(1, 21):
        rule.update(step, x)
    assert [s for s, _ in rule.history] == [10, 15, 20]  # the first check only trains
    assert rule.tracker.patience == 2  # 10 steps = 2 checks


def test_the_authors_network_shape_and_seeded_initialisation() -> None:
    assert side_for(512, 512) == 512 and side_for(64, 64) == 64 and side_for(321, 481) == 512
    net = ValidationAutoencoder(3, 512)  # the authors' 7 levels down to a 1x4x4 code
    assert net.encoder(torch.zeros(2, 3, 512, 512)).shape == (2, 1, 4, 4)
    assert net(torch.zeros(2, 3, 512, 512)).shape == (2, 3, 512, 512)
    convs = [m for m in net.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 128, 128, 128, 1]
    a = AutoencoderValidation(channels=1, height=SIDE, width=SIDE, seed=3)
    b = AutoencoderValidation(channels=1, height=SIDE, width=SIDE, seed=3)
    c = AutoencoderValidation(channels=1, height=SIDE, width=SIDE, seed=4)
    first = next(a.network.parameters())
    assert torch.equal(first, next(b.network.parameters())) and not torch.equal(first, next(c.network.parameters()))
    with pytest.raises(ValueError):
        AutoencoderValidation(channels=1, height=SIDE, width=SIDE, seed=0, window=0)


def test_the_cpu_setting_spans_the_authors_window_with_a_stride_and_trains_in_proportion() -> None:
    """AE_SETTINGS["cpu"]: one iterate every 8 steps over the authors' 256-step window (32 slots),
    a check every 8 steps, and ceil(8 × 1) Adam steps per check; the authors' setting trains one
    epoch (256 / 32 = 8 steps) every step."""
    cpu, authors = AE_SETTINGS["cpu"], AE_SETTINGS["authors"]
    rule = AutoencoderValidation(channels=1, height=SIDE, width=SIDE, seed=0, window=256, patience=500,
                                 stride=int(cpu["stride"]), every=int(cpu["every"]), batch=int(cpu["batch"]),
                                 rate=cpu["rate"])
    assert rule.slots == 32 and rule.steps_per_check == 8
    kept = []
    original = rule._prepare

    def spy(x: torch.Tensor) -> torch.Tensor:
        kept.append(float(x.mean()))
        return original(x)

    rule._prepare = spy  # type: ignore[method-assign]
    trained = []
    rule.train = lambda: trained.append(len(kept))  # type: ignore[method-assign]
    for step in range(1, 301):
        rule.update(step, torch.full((1, 1, SIDE, SIDE), step / 1000))
    assert kept == pytest.approx([s / 1000 for s in range(8, 301, 8)])  # every 8th iterate, nothing between
    assert trained[0] == 32  # the first check comes with a full window: 256 steps of trajectory
    assert [s for s, _ in rule.history] == list(range(264, 301, 8))
    full = AutoencoderValidation(channels=1, height=SIDE, width=SIDE, seed=0, window=256, **{
        "stride": int(authors["stride"]), "every": int(authors["every"]), "batch": int(authors["batch"]),
        "rate": authors["rate"]})
    assert full.slots == 256 and full.steps_per_check == 8  # one shuffled epoch of 32-iterate batches


def test_a_non_square_iterate_is_scaled_and_padded_never_stretched() -> None:
    """A 16×32 iterate at the autoencoder's 16×16: scaled by 1/2 to 8×16 and padded by replicating
    its edge rows, so its rows keep their aspect (stretched, the 16 rows would stay 16 rows)."""
    rule = AutoencoderValidation(channels=1, height=16, width=32, seed=0, window=4, batch=2)
    assert rule.side == 16  # the power of two nearest to sqrt(16 · 32)
    x = torch.linspace(0, 1, 16).view(1, 1, 16, 1).expand(1, 1, 16, 32).contiguous()  # rows 0 → 1
    seen = rule._prepare(x)
    assert seen.shape == (1, 1, 16, 16)
    column = seen[0, 0, :, 5]
    assert torch.equal(column[:4], column[4].expand(4)) and torch.equal(column[12:], column[11].expand(4))
    assert column[4] < column[11] and bool((column[4:12].diff() > 0).all())  # the 8 image rows, in order


def test_signed_mri_parts_are_mapped_into_the_unit_interval_not_clipped() -> None:
    rule = AutoencoderValidation(channels=2, height=SIDE, width=SIDE, seed=0, window=4, batch=2,
                                 to_unit=spaces.MRI.to_unit)
    x = torch.full((1, 2, SIDE, SIDE), -0.5)
    assert torch.allclose(rule._prepare(x), torch.full((1, 2, SIDE, SIDE), 0.25))
