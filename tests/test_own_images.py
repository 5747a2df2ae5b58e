"""Your own images: a folder of image files is a dataset, without a manifest."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from benchmark.cli import main
from benchmark.core.errors import UserError
from benchmark.problems import data
from benchmark.run import profiles


def _picture(seed: int, colour: bool, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    """A smooth test picture (random pixels would make every method look alike)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]] / max(size)
    channels = [np.sin(6 * xx * rng.uniform(0.5, 2) + 4 * yy * rng.uniform(0.5, 2) + k)
                for k in range(3 if colour else 1)]
    return np.round((np.stack(channels, -1).squeeze() + 1) * 127.5).astype(np.uint8)


def _folder(root: Path, count: int = 5, colour: bool = True) -> Path:
    folder = root / "my images"  # a space: the dataset is still named plainly
    folder.mkdir()
    for i in range(count):
        PILImage.fromarray(_picture(i, colour)).save(folder / f"photo_{i}.png")
    return folder


def _cli(args: list[str], root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["run", "--no-progress", "--no-report", "--results", str(root / "res"),
                 "--tracking-uri", f"sqlite:///{root / 'ml.db'}", *args])
    return code, capsys.readouterr().err


@pytest.mark.slow
def test_a_folder_of_5_pngs_runs_on_two_tasks_with_provenance(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path)
    code, err = _cli(["--profile", "smoke", "--methods", "trivial,tv", "--tasks", "denoising_s25,inpainting_random50",
                      "--datasets", str(folder)], tmp_path, capsys)
    assert code == 0, err
    with sqlite3.connect(tmp_path / "res" / "results.sqlite") as conn:
        rows = conn.execute("SELECT dataset, image_id, status FROM records").fetchall()
    assert len(rows) == 5 * 2 * 2
    assert {r[0] for r in rows} == {"my_images"} and {r[2] for r in rows} == {"ok"}
    assert {r[1] for r in rows} == {f"photo_{i}" for i in range(5)}
    provenance = json.loads((tmp_path / "res" / "provenance.json").read_text())["my_images"]
    for i in range(5):
        path = folder / f"photo_{i}.png"
        assert provenance[f"photo_{i}"] == {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    # the MLflow parent run carries the same provenance table
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'ml.db'}")
    parent = [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
              if r.data.tags.get("dipbench.kind") == "benchmark"][0]
    logged = json.loads(Path(mlflow.artifacts.download_artifacts(run_id=parent.info.run_id,
                                                                 artifact_path="provenance.json",
                                                                 tracking_uri=f"sqlite:///{tmp_path / 'ml.db'}",
                                                                 dst_path=str(tmp_path / "dl"))).read_text())
    assert logged["my_images"] == provenance
    # the export for pandas: 5 images x 2 tasks x 2 methods rows per metric
    assert main(["export", "--format", "csv", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "x")]) == 0
    import pandas as pd

    long = pd.read_csv(tmp_path / "x" / "results.csv")
    per_metric = long.groupby("metric").size()
    for name in ("psnr", "ssim", "runtime_s"):
        assert per_metric[name] == 5 * 2 * 2, per_metric
    assert set(long[long.metric == "psnr"].image_id) == {f"photo_{i}" for i in range(5)}


def test_gray_or_colour_is_detected_or_forced(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    gray = _picture(0, colour=False)
    PILImage.fromarray(gray).save(folder / "a.png")
    PILImage.fromarray(np.stack([gray] * 3, -1)).save(folder / "b.png")  # RGB file, gray content
    np.save(folder / "c.npy", gray.astype(np.float32) / 255.0)
    mode, images = data.folder_images(folder)
    assert mode == "gray" and [i.id for i in images] == ["a", "b", "c"]
    assert all(i.tensor.shape == (1, 48, 40) for i in images)
    np.testing.assert_allclose(images[0].tensor[0].numpy(), gray / 255.0, atol=1e-7)
    np.testing.assert_allclose(images[2].tensor.numpy(), images[0].tensor.numpy(), atol=1e-7)
    colour = _picture(1, colour=True)
    PILImage.fromarray(colour).save(folder / "d.png")
    mode, images = data.folder_images(folder)
    assert mode == "rgb" and all(i.tensor.shape == (3, 48, 40) for i in images)
    np.testing.assert_allclose(images[0].tensor.numpy(), np.stack([gray / 255.0] * 3), atol=1e-7)  # gray repeated
    mode, images = data.folder_images(folder, "gray")  # forced: colour becomes ITU-R 601 luma
    luma = colour.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    assert mode == "gray"
    np.testing.assert_allclose(images[3].tensor[0].numpy(), luma, atol=1e-6)


def test_unreadable_files_and_a_symlink_out_are_listed_in_one_error(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path, count=2)
    (folder / "broken.png").write_bytes(b"not a png")
    jpeg = folder / "cut.jpg"
    PILImage.fromarray(_picture(3, colour=True)).save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[:40])  # truncated
    secret = tmp_path / "secret.png"
    secret.write_bytes((folder / "photo_0.png").read_bytes())
    (folder / "escape.png").symlink_to(secret)
    (folder / "notes.txt").write_text("not an image, ignored")
    code, err = _cli(["--profile", "smoke", "--methods", "trivial", "--datasets", str(folder)], tmp_path, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "3 of 5 files refused" in err
    for name in ("broken.png", "cut.jpg", "escape.png"):
        assert name in err
    assert "leads outside" in err and "photo_0" not in err
    assert not (tmp_path / "res").exists() and not (tmp_path / "ml.db").exists()


def test_a_profile_entry_with_a_path_and_its_checks(tmp_path: Path) -> None:
    folder = _folder(tmp_path, count=1)
    spec = profiles.parse({"name": "p", "methods": ["trivial"], "tasks": ["denoising_s25"],
                           "datasets": [{"path": str(folder), "mode": "gray", "crop": 32}]}).datasets[0]
    assert (spec.name, spec.path, spec.mode, spec.crop) == ("my_images", str(folder), "gray", 32)
    images = data.load(spec.name, path=spec.path, mode=spec.mode, crop=spec.crop)
    assert images[0].tensor.shape == (1, 32, 32)
    with pytest.raises(UserError, match="mode must be gray or rgb"):
        profiles.parse({"name": "p", "methods": ["trivial"], "tasks": ["denoising_s25"],
                        "datasets": [{"path": str(folder), "mode": "cmyk"}]})
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no image files"):
        data.folder_images(empty)


def test_a_folder_named_like_a_registered_set_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "set12"
    folder.mkdir()
    PILImage.fromarray(_picture(0, colour=False)).save(folder / "a.png")
    code, err = _cli(["--profile", "smoke", "--methods", "trivial", "--datasets", str(folder)], tmp_path, capsys)
    assert code == 2 and "its name 'set12' is a registered dataset's" in err
