"""Each metric against an independent reference: scikit-image for PSNR/SSIM, the published
LPIPS values for the reference pairs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmark.core.errors import UserError
from benchmark.problems import metrics
from benchmark.problems.lpips_offline import NumpyOnlyUnpickler, alexnet_state, load_numpy_pickle
from tests.conftest import SHARED

LPIPS_DIR = SHARED / "lpips_reference"
LPIPS_PUBLISHED = {"I03": 0.7237, "I04": 0.2572, "I06": 0.0508, "I08": 0.0520, "I19": 0.4253}


def _pair(channels: int, size: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(channels, size, size + 5, generator=g)
    x_hat = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x_hat, x


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_matches_skimage(channels: int) -> None:
    x_hat, x = _pair(channels)
    expected = peak_signal_noise_ratio(x.numpy(), x_hat.numpy(), data_range=1.0)
    assert metrics.psnr(x_hat, x) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_skimage(channels: int, seed: int) -> None:
    x_hat, x = _pair(channels, seed=seed)
    expected = structural_similarity(
        x.numpy(), x_hat.numpy(), data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, channel_axis=0,
    )
    assert metrics.ssim(x_hat, x) == pytest.approx(expected, abs=1e-4)


def test_identical_images_are_perfect() -> None:
    _, x = _pair(1)
    assert metrics.psnr(x, x) == float("inf")
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-9)
    assert metrics.lpips_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def _load(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


@pytest.mark.skipif(not LPIPS_DIR.is_dir(), reason="needs ../shared/lpips_reference")
@pytest.mark.parametrize("pair", sorted(LPIPS_PUBLISHED))
def test_lpips_matches_published_values(pair: str) -> None:
    ref, dist = _load(LPIPS_DIR / "ref" / f"{pair}.png"), _load(LPIPS_DIR / "dist" / f"{pair}.png")
    assert metrics.lpips_distance(dist, ref) == pytest.approx(LPIPS_PUBLISHED[pair], abs=5e-4)


def test_lpips_is_symmetric_and_orders_distortions() -> None:
    x_hat, x = _pair(3, size=64)
    worse = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    assert metrics.lpips_distance(x_hat, x) == pytest.approx(metrics.lpips_distance(x, x_hat), abs=1e-5)
    assert metrics.lpips_distance(worse, x) > metrics.lpips_distance(x_hat, x)


class _Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("pwned",))


def test_weights_unpickler_refuses_code(tmp_path: Path) -> None:
    payload = tmp_path / "evil.ckpt"
    payload.write_bytes(pickle.dumps({"w": _Exploit()}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_numpy_pickle(payload)
    arrays = tmp_path / "ok.ckpt"
    arrays.write_bytes(pickle.dumps({"w": np.arange(3.0)}))
    assert np.array_equal(NumpyOnlyUnpickler(arrays.open("rb")).load()["w"], np.arange(3.0))


def test_alexnet_checkpoint_with_wrong_checksum_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "alexnet.ckpt"
    fake.write_bytes(pickle.dumps({"AlexNet_0": {}}))
    with pytest.raises(UserError, match="checksum mismatch"):
        alexnet_state(fake)
