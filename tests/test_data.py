"""Datasets: the embedded default, the standard sets by name, crops, and bad files."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from benchmark.core.errors import UserError
from benchmark.problems import data
from tests.conftest import requires_shared


def test_embedded_default_needs_no_download_and_has_both_splits() -> None:
    test = data.load("embedded", crop=64)
    train = data.load("embedded", split="train", crop=64)
    assert [i.id for i in test] == list(data.EMBEDDED_TEST)
    assert len(train) == len(data.EMBEDDED_TRAIN) and not {i.id for i in train} & {i.id for i in test}
    for image in test + train:
        assert image.tensor.shape == (1, 64, 64) and image.tensor.dtype == torch.float32
        assert 0.0 <= float(image.tensor.min()) and float(image.tensor.max()) <= 1.0
        # 8-bit quantised like every other image
        assert torch.allclose(image.tensor * 255, (image.tensor * 255).round(), atol=1e-4)


def test_resize_then_crop_and_size_multiple() -> None:
    image = data.load("embedded", resize=96, crop=70, multiple=4, limit=1)[0]
    assert image.tensor.shape == (1, 68, 68)


def test_unknown_dataset_names_valid_choices() -> None:
    with pytest.raises(UserError, match=r"unknown dataset 'nope'.*bsd68.*embedded.*set12"):
        data.load("nope")


@requires_shared
@pytest.mark.parametrize(("name", "count", "channels"),
                         [("set12", 12, 1), ("set5", 5, 3), ("dip9", 9, 3), ("kodak24", 24, 3)])
def test_standard_sets_read_from_local_folder(name: str, count: int, channels: int) -> None:
    images = data.load(name)
    assert len(images) == count
    assert all(i.tensor.shape[0] == channels for i in images)


@requires_shared
def test_manifests_pin_every_shared_file() -> None:
    root = Path(data.data_root())  # type: ignore[arg-type]
    for manifest in data.manifests().values():
        sums = (root / manifest.name / "SHA256SUMS").read_text().splitlines()
        listed = {line.split()[1] for line in sums if line.strip()}
        assert listed == set(manifest.files), manifest.name


def _fake_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payload: bytes, sha: str) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "tiny.yaml").write_text(yaml.safe_dump(
        {"name": "tiny", "description": "t", "mode": "gray", "role": "test", "url": None, "files": {"a.png": sha}}))
    (tmp_path / "data" / "tiny").mkdir(parents=True)
    (tmp_path / "data" / "tiny" / "a.png").write_bytes(payload)
    monkeypatch.setattr(data, "MANIFEST_DIR", manifests)
    monkeypatch.setenv("DIPBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    data.manifests.cache_clear()


@pytest.fixture(autouse=True)
def _clear_manifest_cache():  # type: ignore[no-untyped-def]
    yield
    data.manifests.cache_clear()


def test_checksum_mismatch_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_set(tmp_path, monkeypatch, b"not the pinned file", "0" * 64)
    with pytest.raises(UserError, match="checksum mismatch .*a.png"):
        data.load("tiny")


def test_corrupt_image_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"garbage, not a PNG"
    _fake_set(tmp_path, monkeypatch, payload, hashlib.sha256(payload).hexdigest())
    with pytest.raises(UserError, match="cannot read image file .*a.png"):
        data.load("tiny")


def test_missing_file_without_download_says_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_set(tmp_path, monkeypatch, b"x", "0" * 64)
    (tmp_path / "data" / "tiny" / "a.png").unlink()
    with pytest.raises(UserError, match="missing image file a.png"):
        data.load("tiny")


def _python(code: str, cwd: Path, extra_path: Path | None = None) -> str:
    env = {**os.environ}
    if extra_path is not None:  # after the repo root (cwd comes first on sys.path)
        env["PYTHONPATH"] = str(extra_path)
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def test_datasets_folder_cannot_shadow_huggingface_datasets(tmp_path: Path) -> None:
    """Run from the repo root (the worst case: the root is first on sys.path).

    ``datasets/`` holds YAML only, no ``__init__.py``; at most it is a namespace portion, and
    Python prefers any regular ``datasets`` package on the path (HuggingFace's) over it.
    """
    root = Path(__file__).resolve().parents[1]
    assert not (root / "datasets" / "__init__.py").exists()
    assert not list((root / "datasets").glob("*.py"))
    fake_site = tmp_path / "site"
    (fake_site / "datasets").mkdir(parents=True)
    (fake_site / "datasets" / "__init__.py").write_text("load_dataset = 'huggingface'\n")
    out = _python("import deepinv, mlflow, benchmark.problems.data, datasets; print(datasets.load_dataset)",
                  root, fake_site)
    assert out.endswith("huggingface")
    # Without HuggingFace installed, importing from it fails the way deepinv and mlflow expect.
    code = ("import deepinv, mlflow\ntry:\n from datasets import load_dataset\n"
            "except ImportError:\n print('ImportError')")
    assert _python(code, root) == "ImportError"


def test_a_manifest_file_name_with_a_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_set(tmp_path, monkeypatch, b"x", "0" * 64)
    (tmp_path / "manifests" / "tiny.yaml").write_text(yaml.safe_dump(
        {"name": "tiny", "description": "t", "mode": "gray", "role": "test", "url": None,
         "files": {"../../etc/passwd": "0" * 64}}))
    with pytest.raises(UserError, match=r"tiny.yaml: file name '../../etc/passwd' is not a plain name"):
        data.load("tiny")


def test_a_symlink_out_of_the_data_folder_is_refused_even_with_the_right_checksum(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"the pinned content"
    _fake_set(tmp_path, monkeypatch, payload, hashlib.sha256(payload).hexdigest())
    outside = tmp_path / "outside.png"
    outside.write_bytes(payload)
    link = tmp_path / "data" / "tiny" / "a.png"
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(UserError, match=r"refused .*a.png: it leads outside"):
        data.load("tiny")


def test_a_malformed_manifest_names_its_file_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_set(tmp_path, monkeypatch, b"x", "0" * 64)
    (tmp_path / "manifests" / "tiny.yaml").write_text("name: tiny\ndescription: t\nmode: grey\nrole: test\nfiles: {}\n")
    with pytest.raises(UserError, match=r"tiny.yaml: mode must be one of gray, rgb"):
        data.available()
