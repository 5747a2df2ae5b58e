"""The educated warm start: its pretraining is cached and limited to its training images, and its
DIP fit starts from the pretrained network's output on A†y, on every image space."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from benchmark.api import TrainingContext, TrainingReport
from benchmark.core.errors import NotApplicable, UserError
from benchmark.problems import data, spaces, tasks
from methods._dip.networks import crop_output
from methods._dip.objectives import total_variation
from methods._training import checkpoint as ckpt
from methods._training import loop
from methods.dip_warmstart import DipWarmStart, LowestTotalLoss, per_image_statistics
from tests.conftest import requires_shared

pytestmark = pytest.mark.usefixtures("one_thread")

#: the contract tests' budget: a 16-channel, 3-scale network pretrained for 40 steps
TEST = DipWarmStart.resolve_params("denoising", {}, budget="test")


def _blobs(count: int, channels: int = 1, side: int = 48) -> list[torch.Tensor]:
    """Smooth, distinct training images (seeded): no data files needed."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
    images = []
    for _ in range(count):
        cy, cx, width = (torch.rand(3, generator=g) - 0.5).tolist()
        blob = 0.2 + 0.6 * torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.3 + 0.2 * width))
        images.append(blob.expand(channels, side, side).clone())
    return images


def _context(task: str, cache: Path, images: list[torch.Tensor], channels: int | None = None) -> TrainingContext:
    return TrainingContext(images=images, dataset="blobs", task=tasks.get(task), cache_dir=cache, seed=0,
                           device=torch.device("cpu"), progress=False, channels=channels)


def _measure(task_name: str, x: torch.Tensor, seed: int = 0):  # type: ignore[no-untyped-def]
    task = tasks.get(task_name)
    g = tasks.measurement_generator(task_name, "probe", seed, dataset="blobs")
    physics = task.physics(tuple(x.shape[1:]), torch.device("cpu"), g)
    return physics, task.measure(x, physics, g)


Prepared = tuple[DipWarmStart, TrainingReport, Path]


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    cache = tmp_path_factory.mktemp("warmstart-cache")
    method = DipWarmStart(**TEST)
    report = method.prepare(_context("denoising_s25", cache, _blobs(3)))
    return method, report, cache


def test_pretraining_learns_and_is_reported(denoiser: Prepared) -> None:
    _, report, _ = denoiser
    assert not report.cached and report.images == 3 and "3 images of blobs" in report.description
    first, last = report.losses[0], report.losses[-1]
    assert last < 0.5 * first, f"pretraining loss {first:.4g} → {last:.4g}"


def test_a_second_prepare_loads_the_checkpoint_and_the_fit_settings_share_it(
        denoiser: Prepared, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache key holds what decides the weights: another fit budget, lr or γ loads them."""
    method, _, cache = denoiser

    def no_training(*args: object, **kwargs: object) -> list[float]:
        raise AssertionError("a cached pretraining must not train again")

    monkeypatch.setattr(loop, "train_network", no_training)
    again = DipWarmStart(**{**TEST, "iterations": 7, "lr": 3e-4, "tv_weight": 0.1})
    report = again.prepare(_context("denoising_s25", cache, _blobs(3)))
    assert report.cached and report.checkpoint == denoiser[1].checkpoint
    assert again._pretrained is not None and method._pretrained is not None
    for name, tensor in method._pretrained.state.items():
        assert torch.equal(again._pretrained.state[name], tensor)
    with pytest.raises(AssertionError, match="must not train"):  # a pretraining setting trains afresh
        DipWarmStart(**{**TEST, "train_steps": 41}).prepare(_context("denoising_s25", cache, _blobs(3)))


def test_train_images_limits_the_pretraining_to_the_first_images(tmp_path: Path) -> None:
    images = _blobs(3)
    method = DipWarmStart(**{**TEST, "train_steps": 2, "train_images": 1})
    report = method.prepare(_context("denoising_s25", tmp_path, images))
    assert report.images == 1 and "1 image of blobs" in report.description
    stored = ckpt.load(Path(report.checkpoint), Path(report.checkpoint).stem)
    assert stored.meta["description"]["n_images"] == 1
    assert stored.meta["description"]["images_sha256"] == loop.images_fingerprint(images[:1])
    with pytest.raises(UserError, match="train_images must be between 1 and the 3 images"):
        DipWarmStart(**{**TEST, "train_images": 4}).prepare(_context("denoising_s25", tmp_path, images))


def test_the_fit_starts_from_the_pretrained_output_on_the_pseudo_inverse(denoiser: Prepared) -> None:
    """Step 1's iterate is the pretrained network's output on A†y (each image's own BatchNorm
    statistics, as in the pretraining), not a randomly initialised network's."""
    method, _, _ = denoiser
    x = _blobs(1, side=32)[0][None]
    physics, y = _measure("denoising_s25", x)
    first: list[torch.Tensor] = []

    def keep_first(step: int, x_k: torch.Tensor) -> bool:
        if step == 1:
            first.append(x_k.clone())
        return step < 2

    result = method.reconstruct(y, physics, seed=0, callback=keep_first)
    assert result.iterations == 2 and result.info["tv_weight"] == TEST["tv_weight"]
    assert method._pretrained is not None
    pretrained = method.network(1, "sigmoid")
    pretrained.load_state_dict(method._pretrained.state)
    untrained = method.setup(y, physics, seed=0)
    with torch.no_grad(), per_image_statistics(pretrained):
        expected = crop_output(pretrained(untrained.z), 32, 32)
        random_start = crop_output(untrained.network.train()(untrained.z), 32, 32)
    torch.testing.assert_close(first[0], expected, atol=1e-5, rtol=0)
    assert torch.equal(untrained.z, y.clamp(0, 1))  # the input: A†y = y, projected to [0, 1], unpadded at 32²
    assert float((random_start - expected).abs().max()) > 0.05
    # the pretraining taught it something: closer to the clean image than the random start
    assert float(((expected - x) ** 2).mean()) < 0.5 * float(((random_start - x) ** 2).mean())


def test_a_fit_needs_the_pretraining_and_matching_images(denoiser: Prepared) -> None:
    method, _, _ = denoiser
    physics, y = _measure("denoising_s25", _blobs(1, side=32)[0][None])
    with pytest.raises(UserError, match="call prepare"):
        DipWarmStart(**TEST).reconstruct(y, physics, seed=0)
    colour = _blobs(1, channels=3, side=32)[0][None]
    physics, y = _measure("denoising_s25", colour)
    with pytest.raises(UserError, match="pretrained on 1-channel unit images but the measurement is of 3-channel"):
        method.reconstruct(y, physics, seed=0)
    # the plan sizes its memory before any pretraining
    assert (DipWarmStart(**TEST).memory_estimate((1, 64, 64)) or 0) > 0


def test_gray_training_images_for_colour_test_images_are_not_applicable(tmp_path: Path) -> None:
    with pytest.raises(NotApplicable, match="colour"):
        DipWarmStart(**TEST).prepare(_context("denoising_s25", tmp_path, _blobs(2), channels=3))


def test_per_image_statistics_give_each_image_of_a_batch_what_it_gets_alone() -> None:
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 1)).double()
    nn.init.uniform_(net[1].weight, 0.5, 1.5)
    nn.init.uniform_(net[1].bias, -0.5, 0.5)
    batch = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        alone = torch.cat([net(batch[i : i + 1]) for i in range(3)])
        together = net(batch)
        with per_image_statistics(net):
            per_image = net(batch)
        after = net(batch)
    torch.testing.assert_close(per_image, alone, atol=1e-12, rtol=0)
    assert not torch.allclose(together, alone, atol=1e-3)
    torch.testing.assert_close(after, together, atol=0, rtol=0)  # BatchNorm is itself again


def test_the_rule_returns_the_lowest_total_loss_data_plus_tv() -> None:
    """Data losses fall while TV rises (an edge: mean |∇x| = 1/8): the total at γ = 4 is lowest at
    step 2, not at the lowest data loss."""
    flat, edge = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1.0
    rule = LowestTotalLoss(4.0)
    steps = [(torch.tensor([0.5]), flat), (torch.tensor([0.3]), flat), (torch.tensor([0.1]), edge)]
    verdicts = [rule(k, x, loss) for k, (loss, x) in enumerate(steps, start=1)]
    assert [v.best for v in verdicts] == [True, True, False] and not any(v.stop for v in verdicts)
    assert rule.tracker.best_value == pytest.approx(0.3 + 4 * float(total_variation(flat)))
    assert LowestTotalLoss(0.0)(4, edge, torch.tensor([0.05])).best


@pytest.mark.parametrize("task_name", ["mri_x4", "ct_views60"])
def test_medical_spaces_pretrain_and_fit_in_their_own_space(task_name: str, tmp_path: Path) -> None:
    """MRI: two signed channels, a linear output; CT: the window in [0, 1], a sigmoid output, the
    FBP projected there. The pretrained start beats the zero-filled / FBP input's random twin."""
    task = tasks.get(task_name)
    channels = task.space.channels[0]
    side = 32
    images = [torch.cat([b, 0.5 * b.flip(-1)])[:channels] if channels == 2 else b for b in _blobs(3, side=side)]
    method = DipWarmStart(**{**DipWarmStart.resolve_params(task, {}, budget="test"), "iterations": 3})
    report = method.prepare(_context(task_name, tmp_path, images))
    assert report.images == 3
    x = images[0][None]
    physics, y = _measure(task_name, x)
    setup = method.setup(y, physics, seed=0)
    assert setup.network.output_layer == task.space.output_layer
    if task.space is spaces.CT:
        assert 0.0 <= float(setup.z.min()) and float(setup.z.max()) <= 1.0
    result = method.reconstruct(y, physics, seed=0)
    assert result.x.shape == x.shape and torch.isfinite(result.x).all()
    assert result.selected_iteration is not None and 1 <= result.selected_iteration <= 3


@requires_shared
def test_the_pretraining_reads_real_mri_training_slices(tmp_path: Path) -> None:
    """The MRI training set as the profiles hand it (mri_brain_train at 32²): windows of whole
    measured slices, two channels."""
    train = [img.tensor for img in data.load("mri_brain_train", split="train", resize=32, limit=2)]
    method = DipWarmStart(**{**DipWarmStart.resolve_params(tasks.get("mri_x4"), {}, budget="test"),
                             "train_steps": 3})
    report = method.prepare(_context("mri_x4", tmp_path, train))
    assert report.images == 2 and method._pretrained is not None and method._pretrained.channels == 2
