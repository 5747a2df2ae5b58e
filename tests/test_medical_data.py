"""Medical sets (issue 14): SIAT brain MRI (.mat, complex) and TCGA chest CT (DICOM, HU window).

Loaded pixels are checked against scipy / pydicom read directly, and broken files get one line
and exit 2 through the command line, with nothing written."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import scipy.io
import torch
import yaml

from benchmark.cli import main
from benchmark.core.errors import UserError
from benchmark.problems import data, imagefiles
from tests.conftest import requires_shared

SHARED = Path(str(data.data_root())) if data.data_root() else Path("/nonexistent")
CT_FILE = "ID_0002_AGE_0074_CONTRAST_1_CT.dcm"


@pytest.fixture(autouse=True)
def _clear_manifest_cache() -> Iterator[None]:
    data.manifests.cache_clear()
    yield
    data.manifests.cache_clear()


@requires_shared
def test_mri_slice_is_the_cropped_complex_image_scaled_to_magnitude_one() -> None:
    images = data.load("mri_brain", limit=2)
    assert [i.id for i in images] == ["lsq1", "lsq10"]  # sorted by file name
    for image in images:
        raw = scipy.io.loadmat(SHARED / "mri_brain" / f"{image.id}.mat")["Img"][7:263]
        expected = raw / np.abs(raw).max()
        x = image.tensor
        assert x.dtype.is_floating_point and x.dtype.itemsize == 4 and tuple(x.shape) == (2, 256, 256)
        got = x.double().numpy()
        np.testing.assert_allclose(got[0], expected.real, rtol=0, atol=1e-7)
        np.testing.assert_allclose(got[1], expected.imag, rtol=0, atol=1e-7)
        magnitude = np.hypot(got[0], got[1])
        assert abs(magnitude.max() - 1.0) < 1e-6
        # The phase is kept: the imaginary part is far from zero.
        assert np.abs(got[1]).max() > 0.05
        assert image.sha256 == data.manifests()["mri_brain"].files[f"{image.id}.mat"]


@requires_shared
def test_ct_slices_are_hounsfield_units_through_the_fixed_window() -> None:
    images = data.load("ct_chest")
    assert len(images) == 20 and all(tuple(i.tensor.shape) == (1, 512, 512) for i in images)
    image = next(i for i in images if i.file == CT_FILE)
    ds = pydicom.dcmread(SHARED / "ct_chest" / CT_FILE)
    hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.clip((hu + 1024.0) / 2048.0, 0.0, 1.0)
    assert imagefiles.CT_WINDOW_HU == (-1024.0, 1024.0)
    np.testing.assert_allclose(image.tensor[0].double().numpy(), expected, rtol=0, atol=1e-7)
    # Air outside the body is at the bottom of the window, the body around water (0.5).
    assert float(image.tensor.min()) == 0.0 and 0.3 < float(image.tensor.mean()) < 0.6


@requires_shared
@pytest.mark.parametrize(("name", "count", "channels", "role"),
                         [("mri_brain", 20, 2, "test"), ("mri_brain_train", 40, 2, "train"),
                          ("ct_chest", 20, 1, "test"), ("ct_chest_train", 80, 1, "train")])
def test_medical_manifests_pin_every_file(name: str, count: int, channels: int, role: str) -> None:
    manifest = data.manifests()[name]
    assert manifest.role == role and len(manifest.files) == count
    assert manifest.url is not None and manifest.url.startswith("https://raw.githubusercontent.com/")
    assert data.load(name, limit=1)[0].tensor.shape[0] == channels


@requires_shared
def test_test_and_training_slices_are_disjoint() -> None:
    known = data.manifests()
    for test, train in (("mri_brain", "mri_brain_train"), ("ct_chest", "ct_chest_train")):
        assert not set(known[test].files.values()) & set(known[train].files.values())


def _bad_mat(path: Path) -> None:
    scipy.io.savemat(path, {"X": np.ones((270, 256), dtype=np.complex128)})


def _dicom_without_rescale(path: Path) -> None:
    ds = pydicom.dcmread(SHARED / "ct_chest" / CT_FILE)
    del ds.RescaleSlope
    del ds.RescaleIntercept
    ds.save_as(path)


def _non_square_dicom(path: Path) -> None:
    ds = pydicom.dcmread(SHARED / "ct_chest" / CT_FILE)
    pixels = np.ascontiguousarray(ds.pixel_array[:, :256])
    ds.Columns = 256
    ds.PixelData = pixels.tobytes()
    ds.save_as(path)


BAD = {
    "mat_without_img": ("mri", "a.mat", _bad_mat, r"no variable 'Img' \(variables found: X\)"),
    "dicom_without_rescale": ("ct", "a.dcm", _dicom_without_rescale, "no RescaleSlope or RescaleIntercept tag"),
    "non_square_ct": ("ct", "a.dcm", _non_square_dicom, r"expected one square slice, got shape \(512, 256\)"),
}


def _bad_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> str:
    """The real manifests plus one set ``bad`` holding a broken file with its right sha256."""
    mode, file_name, write, _ = BAD[case]
    manifests = tmp_path / "manifests"
    shutil.copytree(data.MANIFEST_DIR, manifests)
    folder = tmp_path / "data" / "bad"
    folder.mkdir(parents=True)
    write(folder / file_name)
    (manifests / "bad.yaml").write_text(yaml.safe_dump(
        {"name": "bad", "description": "broken", "mode": mode, "role": "test", "url": None,
         "files": {file_name: data.sha256_of(folder / file_name)}}))
    monkeypatch.setattr(data, "MANIFEST_DIR", manifests)
    monkeypatch.setenv("DIPBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DIPBENCH_CACHE", str(tmp_path / "cache"))
    data.manifests.cache_clear()
    return str(folder / file_name)


@requires_shared
@pytest.mark.parametrize("case", sorted(BAD))
def test_broken_medical_file_is_one_line(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _bad_set(tmp_path, monkeypatch, case)
    with pytest.raises(UserError, match=BAD[case][3]) as info:
        data.load("bad")
    assert "\n" not in str(info.value) and path in str(info.value)


@requires_shared
@pytest.mark.parametrize("case", sorted(BAD))
def test_broken_medical_file_exits_2_and_writes_nothing(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    _bad_set(tmp_path, monkeypatch, case)
    code = main(["run", "--no-progress", "--no-report", "--profile", "smoke", "--methods", "trivial",
                 "--datasets", "bad", "--results", str(tmp_path / "res"),
                 "--tracking-uri", f"sqlite:///{tmp_path / 'ml.db'}"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and pytest.importorskip("re").search(BAD[case][3], lines[0]), err
    db = tmp_path / "ml.db"
    if db.exists():
        with sqlite3.connect(db) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            assert "runs" not in tables or conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    assert not list((tmp_path / "res").rglob("*.png")) and not (tmp_path / "res" / "results.sqlite").exists()


@requires_shared
def test_medical_sets_refuse_a_forced_mode() -> None:
    with pytest.raises(UserError, match="read as they are"):
        data.load("mri_brain", limit=1, mode="gray")


@requires_shared
def test_medical_slices_are_resized_in_their_own_space() -> None:
    """CT by area averaging (values stay in the window, never quantised); MRI by cropping k-space
    (the magnitude keeps its scale and the phase its shape)."""
    full = data.load("ct_chest", limit=1)[0].tensor
    half = data.load("ct_chest", limit=1, resize=256)[0].tensor
    assert half.shape == (1, 256, 256) and 0 <= float(half.min()) and float(half.max()) <= 1
    torch.testing.assert_close(half, full.reshape(1, 256, 2, 256, 2).mean(dim=(2, 4)), atol=1e-6, rtol=0)
    assert len(torch.unique(half)) > 256  # not quantised to 8 bits
    mri = data.load("mri_brain", limit=1)[0].tensor
    small = data.load("mri_brain", limit=1, resize=128)[0].tensor
    assert small.shape == (2, 128, 128)
    magnitude = small.square().sum(0).sqrt()
    assert 0.8 < float(magnitude.max()) < 1.2
    blurred = torch.nn.functional.avg_pool2d(mri.square().sum(0).sqrt()[None], 2)[0]
    with pytest.raises(UserError, match="only resized down"):
        data.load("ct_chest", limit=1, resize=1024)
    correlation = torch.corrcoef(torch.stack([magnitude.ravel(), blurred.ravel()]))[0, 1]
    assert float(correlation) > 0.97
