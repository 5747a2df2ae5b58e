"""Dataset registry: name → images (id, C×H×W tensor in [0, 1]).

Standard sets are declared by the YAML manifests in the top-level ``datasets/`` folder (file
names, sha256, public source). That folder deliberately holds no Python package: a top-level
``datasets`` package would shadow HuggingFace's ``datasets``, which mlflow and deepinv import.
Files are read from ``$DIPBENCH_DATA/<name>/`` when present, otherwise from a download cache
(``$DIPBENCH_CACHE/datasets/<name>/``) filled from the public source with sha256 checks.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image as PILImage

from benchmark.errors import UserError, unknown

MANIFEST_DIR = Path(__file__).resolve().parents[1] / "datasets"
EMBEDDED = "embedded"

#: scikit-image's bundled natural images (no download). The test split is fixed; every other
#: image is for training, so trained methods learn without any download.
EMBEDDED_TEST = ("camera", "astronaut", "coffee", "chelsea")
EMBEDDED_TRAIN = (
    "moon", "coins", "page", "text", "brick", "grass", "gravel", "rocket",
    "clock", "immunohistochemistry", "retina", "cell", "hubble_deep_field",
)


@dataclass(frozen=True)
class Image:
    id: str
    tensor: torch.Tensor  # C×H×W, float32, [0, 1]


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    mode: str  # "gray" | "rgb"
    role: str  # "test" | "train"
    url: str | None
    files: dict[str, str]  # file name → sha256


def data_root() -> Path | None:
    root = os.environ.get("DIPBENCH_DATA")
    return Path(root) if root else None


def cache_root() -> Path:
    return Path(os.environ.get("DIPBENCH_CACHE", Path.home() / ".cache" / "dipbench"))


@cache
def manifests() -> dict[str, Manifest]:
    out: dict[str, Manifest] = {}
    for path in sorted(MANIFEST_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        out[doc["name"]] = Manifest(
            name=doc["name"], description=doc["description"], mode=doc["mode"],
            role=doc["role"], url=doc.get("url"), files=dict(doc["files"]),
        )
    return out


def available() -> dict[str, str]:
    """Every dataset name with a one-line description."""
    names = {EMBEDDED: "scikit-image's bundled images, grayscale (4 test, 13 train); no download."}
    names.update({m.name: m.description for m in manifests().values()})
    return names


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``dest`` atomically, refusing content whose sha256 differs."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        actual = sha256_of(tmp)
        if actual != sha256:
            raise UserError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}; "
                "the file was not kept"
            )
        os.replace(tmp, dest)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise UserError(f"could not download {url}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _resolve_file(manifest: Manifest, file_name: str) -> Path:
    """A verified local path for one file of a standard set (local folder, cache or download)."""
    expected = manifest.files[file_name]
    root = data_root()
    candidates = [root / manifest.name / file_name] if root else []
    candidates.append(cache_root() / "datasets" / manifest.name / file_name)
    for path in candidates:
        if path.exists():
            actual = sha256_of(path)
            if actual != expected:
                raise UserError(
                    f"checksum mismatch for {path}: expected sha256 {expected}, got {actual} "
                    "(corrupt or different file)"
                )
            return path
    if manifest.url is None:
        where = f"{root / manifest.name}" if root else "$DIPBENCH_DATA/" + manifest.name
        raise UserError(
            f"dataset {manifest.name!r}: missing image file {file_name} and no public download; "
            f"place the files in {where}"
        )
    stem = Path(file_name).stem
    url = manifest.url.format(name=file_name, stem=stem)
    return download(url, candidates[-1], expected)


def _read_image(path: Path, mode: str) -> torch.Tensor:
    try:
        with PILImage.open(path) as img:
            img = img.convert("L" if mode == "gray" else "RGB")
            array = np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read image file {path}: {exc}") from exc
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


def _embedded(names: tuple[str, ...]) -> list[Image]:
    import skimage.data
    from skimage.color import rgb2gray

    images = []
    for name in names:
        array = np.asarray(getattr(skimage.data, name)())
        if array.ndim == 3:
            array = rgb2gray(array[..., :3])
        elif array.dtype == bool:
            array = array.astype(np.float32)
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255.0
        elif array.max() > 1.0:
            array = array.astype(np.float32) / float(array.max())
        # Quantise to 8 bits, like every other image in the suite.
        array = np.round(np.clip(array, 0.0, 1.0) * 255.0) / 255.0
        images.append(Image(name, torch.from_numpy(array.astype(np.float32))[None]))
    return images


def resize_short_side(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize (antialiased bicubic, then 8-bit quantised) so that the shorter side is ``size``."""
    if not size:
        return x
    _, h, w = x.shape
    scale = size / min(h, w)
    new = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = torch.nn.functional.interpolate(x[None], size=new, mode="bicubic", antialias=True, align_corners=False)[0]
    return (out.clamp(0, 1) * 255).round() / 255


def center_crop(x: torch.Tensor, size: int | None, multiple: int = 1) -> torch.Tensor:
    """Centre crop to ``size``² (when given), then down to a multiple of ``multiple``."""
    _, h, w = x.shape
    th, tw = (min(size, h), min(size, w)) if size else (h, w)
    th, tw = th - th % multiple, tw - tw % multiple
    top, left = (h - th) // 2, (w - tw) // 2
    return x[:, top : top + th, left : left + tw].contiguous()


def load(
    name: str,
    *,
    split: str = "test",
    crop: int | None = None,
    limit: int | None = None,
    multiple: int = 1,
    resize: int | None = None,
) -> list[Image]:
    """Images of dataset ``name``: ``split`` is "test" or "train" (embedded has both)."""
    if name == EMBEDDED:
        images = _embedded(EMBEDDED_TEST if split == "test" else EMBEDDED_TRAIN)
    else:
        known = manifests()
        if name not in known:
            raise unknown("dataset", name, available())
        manifest = known[name]
        files = sorted(manifest.files)[: limit if limit else None]
        images = [
            Image(Path(f).stem, _read_image(_resolve_file(manifest, f), manifest.mode))
            for f in files
        ]
    images = images[: limit if limit else None]
    return [Image(img.id, center_crop(resize_short_side(img.tensor, resize), crop, multiple)) for img in images]
