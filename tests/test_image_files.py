"""Images users really have: each is read with the right pixel values, or refused with a clear
message before any work starts. Every test image is generated here (no binary fixtures)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image as PILImage

from benchmark import registry
from benchmark.core.errors import UserError
from benchmark.problems import imagefiles
from benchmark.run import profiles, resources, runner


def png_bytes(array: np.ndarray, bit_depth: int = 16, size: tuple[int, int] | None = None) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour): gray, gray+alpha, RGB or RGBA.
    ``size`` overrides the declared width × height (for a header that promises too much)."""
    channels = 1 if array.ndim == 2 else array.shape[2]
    height, width = size or array.shape[:2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + array[row].astype(dtype).tobytes() for row in range(array.shape[0]))

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def ramp16(shape: tuple[int, ...]) -> np.ndarray:
    return (np.arange(int(np.prod(shape))).reshape(shape) * 4099 % 65536).astype(np.uint16)


def test_16_bit_gray_png_is_scaled_by_65535_at_full_precision(tmp_path: Path) -> None:
    values = ramp16((6, 7))
    path = tmp_path / "g16.png"
    path.write_bytes(png_bytes(values))
    x = imagefiles.read_image(path, "gray")
    assert x.shape == (1, 6, 7)
    np.testing.assert_allclose(x[0].numpy(), values / 65535.0, rtol=0, atol=1e-7)


def test_16_bit_colour_png_is_scaled_by_65535(tmp_path: Path) -> None:
    values = ramp16((5, 4, 3))
    path = tmp_path / "rgb16.png"
    path.write_bytes(png_bytes(values))
    x = imagefiles.read_image(path, "rgb")
    assert x.shape == (3, 5, 4)
    # Pillow reads 16-bit colour PNGs at 8-bit precision: within one 8-bit step of v / 65535.
    np.testing.assert_allclose(x.numpy().transpose(1, 2, 0), values / 65535.0, rtol=0, atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("shape", [(6, 7), (6, 7, 3)])
def test_16_bit_tiff_is_scaled_by_65535_at_full_precision(tmp_path: Path, shape: tuple[int, ...]) -> None:
    values = ramp16(shape)
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, values, photometric="rgb" if len(shape) == 3 else "minisblack")
    mode = "rgb" if len(shape) == 3 else "gray"
    x = imagefiles.read_image(path, mode)
    expected = values / 65535.0
    np.testing.assert_allclose(x.numpy(), expected.transpose(2, 0, 1) if len(shape) == 3 else expected[None],
                               rtol=0, atol=1e-7)


def test_palette_png_gives_its_palette_colours(tmp_path: Path) -> None:
    index = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    img = PILImage.fromarray(index, mode="P")
    img.putpalette([255, 0, 0, 0, 128, 255, 10, 20, 30] + [0] * (256 * 3 - 9))
    img.save(tmp_path / "p.png")
    x = imagefiles.read_image(tmp_path / "p.png", "rgb")
    assert x[:, 0, 0].tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(x[:, 0, 1].numpy(), [0.0, 128 / 255, 1.0], atol=1e-7)
    np.testing.assert_allclose(x[:, 1, 0].numpy(), [10 / 255, 20 / 255, 30 / 255], atol=1e-7)


def test_gray_plus_alpha_drops_the_alpha_and_keeps_the_stored_values(tmp_path: Path) -> None:
    gray = np.array([[10, 200], [90, 255]], dtype=np.uint8)
    alpha = np.array([[0, 255], [128, 0]], dtype=np.uint8)  # a transparent pixel keeps its value
    PILImage.fromarray(np.stack([gray, alpha], -1), mode="LA").save(tmp_path / "la.png")
    x = imagefiles.read_image(tmp_path / "la.png", "gray")
    np.testing.assert_allclose(x[0].numpy(), gray / 255.0, atol=1e-7)
    # 16-bit gray + alpha (Pillow reads it at 8-bit precision), alpha dropped as well
    values = ramp16((3, 3))
    (tmp_path / "la16.png").write_bytes(png_bytes(np.stack([values, values[::-1]], -1)))
    x16 = imagefiles.read_image(tmp_path / "la16.png", "gray")
    np.testing.assert_allclose(x16[0].numpy(), values / 65535.0, atol=1 / 255 + 1e-6)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    cmyk = np.zeros((32, 48, 4), dtype=np.uint8)
    cmyk[:, :16, 0] = 255  # pure cyan
    cmyk[:, 16:32, 3] = 255  # black (K)
    # the last third: no ink, white
    PILImage.fromarray(cmyk, mode="CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    with PILImage.open(tmp_path / "cmyk.jpg") as img:
        assert img.mode == "CMYK"
    x = imagefiles.read_image(tmp_path / "cmyk.jpg", "rgb")
    centre = lambda left: x[:, 16, left + 8].numpy()  # noqa: E731 - one pixel per block
    np.testing.assert_allclose(centre(0), [0.0, 1.0, 1.0], atol=0.03)
    np.testing.assert_allclose(centre(16), [0.0, 0.0, 0.0], atol=0.03)
    np.testing.assert_allclose(centre(32), [1.0, 1.0, 1.0], atol=0.03)


def test_exif_rotated_jpeg_is_turned_upright(tmp_path: Path) -> None:
    stored = np.zeros((32, 48), dtype=np.uint8)
    stored[:16, :16] = 255  # bright block at the stored top-left corner
    exif = PILImage.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; display rotated 90° clockwise
    PILImage.fromarray(stored).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    x = imagefiles.read_image(tmp_path / "rot.jpg", "gray")[0]
    assert x.shape == (48, 32)  # transposed
    assert float(x[:16, 16:].mean()) > 0.95  # the block is now at the top right
    assert float(x[:16, :16].mean()) < 0.05


def test_a_1x1_image_loads_and_is_refused_before_any_work(tmp_path: Path) -> None:
    PILImage.fromarray(np.full((1, 1), 77, dtype=np.uint8)).save(tmp_path / "dot.png")
    x = imagefiles.read_image(tmp_path / "dot.png", "gray")
    assert x.shape == (1, 1, 1) and abs(float(x) - 77 / 255) < 1e-7
    profile = profiles.parse({"name": "p", "methods": ["trivial"], "tasks": ["denoising_s25"],
                              "datasets": [{"path": str(tmp_path)}], "metrics_off": ["lpips"]})
    with pytest.raises(UserError, match=r"image 'dot' .* a 1×1 image is too small to measure ssim"):
        runner.run_benchmark(profile, results_dir=tmp_path / "res", tracking_uri=f"sqlite:///{tmp_path / 'ml.db'}",
                             progress=False)
    assert not (tmp_path / "res").exists() and not (tmp_path / "ml.db").exists()


def test_an_image_smaller_than_the_dip_downsampling_is_padded_inside_the_network() -> None:
    """DIP's skip network halves the image 5 times (needs 32 px); a 20×20 image is padded to
    64×64 inside the network and the reconstruction has the image's own size."""
    from benchmark.problems import tasks

    method = registry.get("dip")(iterations=2, channels=4, scales=5)
    x = torch.rand(1, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    task = tasks.get("denoising_s25")
    physics = task.physics((1, 20, 20), torch.device("cpu"), torch.Generator().manual_seed(1))
    result = method.reconstruct(task.measure(x, physics, torch.Generator().manual_seed(2)), physics, seed=0)
    assert result.x.shape == (1, 1, 20, 20) and bool(torch.isfinite(result.x).all())


def test_a_header_promising_a_huge_image_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(np.zeros((1, 1), dtype=np.uint8), bit_depth=8, size=(30000, 30000)))
    with pytest.raises(UserError, match=r"cannot read image file .*bomb.png"):
        imagefiles.read(path)


def test_an_image_too_large_for_memory_is_refused_at_plan_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "big"
    folder.mkdir()
    PILImage.fromarray(np.zeros((1024, 1536), dtype=np.uint8)).save(folder / "big.png")
    dip = registry.get("dip")()
    needed = dip.memory_estimate((1, 1024, 1536))
    assert needed is not None and needed > 2 * dip.memory_estimate((1, 512, 768))  # grows with the pixels
    monkeypatch.setattr(resources, "available_bytes", lambda device="cpu": needed // 2)
    profile = profiles.parse({"name": "p", "methods": ["dip"], "tasks": ["denoising_s25"],
                              "datasets": [{"path": str(folder)}], "metrics_off": ["lpips"]})
    with pytest.raises(UserError, match=r"image 'big' .* method dip on a 1×1024×1536 image needs at least "
                                        r"[0-9.]+ GiB .* crop or resize"):
        runner.run_benchmark(profile, results_dir=tmp_path / "res", tracking_uri=f"sqlite:///{tmp_path / 'ml.db'}",
                             progress=False)
    assert not (tmp_path / "res").exists() and not (tmp_path / "ml.db").exists()
    # One fits, eight at once do not: the message says which batch size would.
    monkeypatch.setattr(resources, "available_bytes", lambda device="cpu": needed * 3)
    profile = profiles.parse({"name": "p", "methods": ["dip"], "tasks": ["denoising_s25"], "seeds": [0, 1, 2, 3],
                              "datasets": [{"path": str(folder)}], "metrics_off": ["lpips"], "batch_size": 4})
    with pytest.raises(UserError, match=r"on 4 1×1024×1536 images at once .* use --batch-size 3"):
        runner.run_benchmark(profile, results_dir=tmp_path / "res", tracking_uri=f"sqlite:///{tmp_path / 'ml.db'}",
                             progress=False)
