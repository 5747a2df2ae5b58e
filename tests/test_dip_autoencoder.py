"""Li et al.'s self-validation: an autoencoder trained online on the iterates, whose error on the
newest iterate turns up once the iterates fit noise, and stops the run after that turn."""

from __future__ import annotations

import pytest
import torch

from methods._dip.autoencoder import AutoencoderValidation, ValidationAutoencoder, side_for

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
    rule = AutoencoderValidation(channels=3, height=SIDE, width=SIDE, seed=0, window=16, batch=8, patience=30)
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
    rule = AutoencoderValidation(channels=1, height=SIDE, width=SIDE, seed=0, window=4, batch=4, patience=10, every=5)
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
