"""Downloads with sha256 checks (datasets and pretrained weights, DPS's DiffUNet included), against
a local HTTP server: a good file is stored, a wrong one is refused and leaves nothing behind, a dead
address says so."""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from benchmark.api import TrainingContext
from benchmark.core.errors import UserError
from benchmark.problems import data, tasks
from methods import _weights, dps
from methods._training import diffusion
from methods._weights import WeightFile

PAYLOAD = b"released weights, version 1\n" * 100


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder it serves) of an HTTP server on 127.0.0.1, stopped after the test."""
    root = tmp_path / "www"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def dead_url() -> str:
    """An address on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/file.bin"


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty cache, no local data or weights folders: everything must come from the server."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIPBENCH_CACHE", str(cache))
    monkeypatch.delenv("DIPBENCH_DATA", raising=False)
    monkeypatch.delenv(_weights.WEIGHTS_ENV, raising=False)
    return cache


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- benchmark.problems.data.download -----------------------------------------------------------------

def test_download_stores_the_verified_file(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    (root / "w.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "w.bin"
    assert data.download(f"{url}/w.bin", dest, sha(PAYLOAD)) == dest
    assert dest.read_bytes() == PAYLOAD
    assert files_under(dest.parent) == [dest]  # no temporary file left


def test_download_refuses_a_wrong_checksum_and_keeps_nothing(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    (root / "w.bin").write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "w.bin"
    with pytest.raises(UserError, match="checksum mismatch.*not kept"):
        data.download(f"{url}/w.bin", dest, sha(b"something else"))
    assert files_under(dest.parent) == []


def test_download_from_an_unreachable_address_is_a_user_error(dead_url: str, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(UserError, match=f"could not download {dead_url}"):
        data.download(dead_url, dest, sha(PAYLOAD), timeout=5)
    assert files_under(dest.parent) == []


def test_download_of_a_missing_file_is_a_user_error(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    with pytest.raises(UserError, match="could not download .*404"):
        data.download(f"{url}/absent.bin", tmp_path / "absent.bin", sha(PAYLOAD))
    assert not (tmp_path / "absent.bin").exists()


# --- pretrained weights (methods._weights) ----------------------------------------------------

def test_weights_are_downloaded_once_into_the_cache(served: tuple[str, Path], isolated: Path) -> None:
    url, root = served
    (root / "w.bin").write_bytes(PAYLOAD)
    spec = WeightFile("toy", "w.bin", f"{url}/w.bin", sha(PAYLOAD))
    path = _weights.locate(spec)
    assert path == isolated / "weights" / "toy" / "w.bin"
    assert path.read_bytes() == PAYLOAD
    (root / "w.bin").unlink()  # the second call must not need the server
    assert _weights.locate(spec) == path


def test_weights_with_a_wrong_checksum_are_refused(served: tuple[str, Path], isolated: Path) -> None:
    url, root = served
    (root / "w.bin").write_bytes(PAYLOAD)
    spec = WeightFile("toy", "w.bin", f"{url}/w.bin", sha(b"the published file"))
    with pytest.raises(UserError, match=f"checksum mismatch.*{_weights.WEIGHTS_ENV}"):
        _weights.locate(spec)
    assert files_under(isolated) == []


def test_weights_unreachable_say_how_to_work_offline(dead_url: str, isolated: Path) -> None:
    spec = WeightFile("toy", "file.bin", dead_url, sha(PAYLOAD))
    with pytest.raises(UserError, match=f"could not download.*set \\${_weights.WEIGHTS_ENV}"):
        _weights.locate(spec)
    with pytest.raises(UserError, match="not found"):
        _weights.locate(spec, download=False)


def test_local_weights_folder_is_used_and_checked(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch, dead_url: str
) -> None:
    folder = tmp_path / "weights"
    (folder / "toy").mkdir(parents=True)
    (folder / "toy" / "w.bin").write_bytes(PAYLOAD)
    monkeypatch.setenv(_weights.WEIGHTS_ENV, str(folder))
    spec = WeightFile("toy", "w.bin", dead_url, sha(PAYLOAD))
    assert _weights.locate(spec) == folder / "toy" / "w.bin"
    (folder / "toy" / "w.bin").write_bytes(PAYLOAD + b"tampered")
    with pytest.raises(UserError, match="checksum mismatch for weights"):
        _weights.locate(spec)


# --- released DiffUNet weights for DPS (methods.dps) -----------------------------------------------

FFHQ = dps.PRETRAINED["ffhq"]


def _diffunet_context(cache: Path) -> TrainingContext:
    return TrainingContext(images=[], dataset="none", task=tasks.get("denoising_s25"), cache_dir=cache, seed=0,
                           device=torch.device("cpu"), progress=False)


def _serve_as_ffhq(monkeypatch: pytest.MonkeyPatch, url: str, sha256: str) -> Path:
    """Point the pinned ``ffhq`` release at the local server; returns where a download lands."""
    monkeypatch.setitem(dps.PRETRAINED, "ffhq", dataclasses.replace(FFHQ, url=f"{url}/{FFHQ.name}", sha256=sha256))
    return _weights.cache_dir() / FFHQ.group / FFHQ.name


def test_dps_downloads_checks_and_loads_released_diffunet_weights(
    served: tuple[str, Path], isolated: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from deepinv.models import DiffUNet

    url, root = served
    # Random weights laid out like the released file: deepinv's small DiffUNet without the
    # schedule buffers, which the released files do not hold.
    state = DiffUNet(in_channels=3, out_channels=6, pretrained=None).state_dict()
    torch.save({k: v for k, v in state.items() if k not in diffusion.DIFFUNET_DERIVED}, root / FFHQ.name)
    del state
    destination = _serve_as_ffhq(monkeypatch, url, data.sha256_of(root / FFHQ.name))
    loads: list[object] = []
    real_load = torch.load

    def spy(*args: object, **kwargs: object) -> object:
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "load", spy)
    method = dps.DPS(pretrained="ffhq", sampling_steps=2)
    report = method.prepare(_diffunet_context(tmp_path / "checkpoints"))
    assert report.cached and report.checkpoint == str(destination)
    assert files_under(isolated) == [destination]
    assert loads == [True]
    (root / FFHQ.name).unlink()  # a second prepare reads the cache, not the server
    again = dps.DPS(pretrained="ffhq").prepare(_diffunet_context(tmp_path / "checkpoints"))
    assert again.checkpoint == str(destination)
    task = tasks.get("denoising_s25")
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 32, 32, generator=generator)
    physics = task.physics((1, 32, 32), torch.device("cpu"), generator)
    result = method.reconstruct(task.measure(x, physics, generator), physics, seed=0)
    assert result.x.shape == x.shape and bool(torch.isfinite(result.x).all()) and result.iterations == 2


def test_dps_refuses_a_download_that_is_not_the_release(
    served: tuple[str, Path], isolated: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, root = served
    (root / FFHQ.name).write_bytes(PAYLOAD)
    _serve_as_ffhq(monkeypatch, url, FFHQ.sha256)  # the real pin, a different file served
    with pytest.raises(UserError, match=f"checksum mismatch for .*{FFHQ.name}.*expected sha256 {FFHQ.sha256}"):
        dps.DPS(pretrained="ffhq").prepare(_diffunet_context(tmp_path / "checkpoints"))
    assert files_under(isolated) == []


def test_dps_release_pins_are_deepinvs_files() -> None:
    for spec in dps.PRETRAINED.values():
        assert spec.url.startswith("https://huggingface.co/deepinv/diffunet/resolve/") and spec.url.endswith(spec.name)
        assert len(spec.sha256) == 64 and set(spec.sha256) <= set("0123456789abcdef")
    assert FFHQ.name == "diffusion_ffhq_10m.pt"


# --- datasets through benchmark.problems.data.load ------------------------------------------------------

@pytest.fixture
def manifest_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private manifest folder; the manifest cache is cleared before and after."""
    folder = tmp_path / "manifests"
    folder.mkdir()
    monkeypatch.setattr(data, "MANIFEST_DIR", folder)
    data.manifests.cache_clear()
    yield folder
    data.manifests.cache_clear()


def _png(path: Path, seed: int) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(12, 16), dtype=np.uint8)
    PILImage.fromarray(pixels, mode="L").save(path)
    return pixels


def _write_manifest(folder: Path, url: str, files: dict[str, str]) -> None:
    lines = [
        "name: toyset", "description: two tiny test images", "mode: gray", "role: test",
        f"url: {url}/{{name}}", "files:", *(f"  {name}: {digest}" for name, digest in files.items()),
    ]
    (folder / "toyset.yaml").write_text("\n".join(lines) + "\n")


def test_dataset_is_downloaded_verified_and_cached(
    served: tuple[str, Path], isolated: Path, manifest_dir: Path
) -> None:
    url, root = served
    pixels = {name: _png(root / name, seed) for seed, name in enumerate(("a.png", "b.png"))}
    _write_manifest(manifest_dir, url, {n: data.sha256_of(root / n) for n in pixels})
    images = data.load("toyset")
    assert [img.id for img in images] == ["a", "b"]
    for img in images:
        assert img.tensor.shape == (1, 12, 16)
        expected = torch.from_numpy(pixels[f"{img.id}.png"].astype(np.float32) / 255.0)
        assert torch.equal(img.tensor[0], expected)
    cached = isolated / "datasets" / "toyset"
    assert files_under(cached) == [cached / "a.png", cached / "b.png"]
    for name in pixels:
        (root / name).unlink()  # a second load reads the cache
    assert len(data.load("toyset", limit=1)) == 1


def test_dataset_with_a_wrong_checksum_is_refused(
    served: tuple[str, Path], isolated: Path, manifest_dir: Path
) -> None:
    url, root = served
    _png(root / "a.png", 0)
    _write_manifest(manifest_dir, url, {"a.png": sha(b"another image")})
    with pytest.raises(UserError, match="checksum mismatch"):
        data.load("toyset")
    assert files_under(isolated) == []


def test_dataset_from_an_unreachable_source_is_a_user_error(
    dead_url: str, isolated: Path, manifest_dir: Path
) -> None:
    _write_manifest(manifest_dir, dead_url.rsplit("/", 1)[0], {"a.png": sha(b"x")})
    with pytest.raises(UserError, match="could not download"):
        data.load("toyset")
