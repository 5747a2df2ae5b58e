"""Dataset registry: name → images (id, C×H×W tensor in [0, 1]).

Standard sets are declared by the YAML manifests in the top-level ``datasets/`` folder (file
names, sha256, public source). That folder deliberately holds no Python package: a top-level
``datasets`` package would shadow HuggingFace's ``datasets``, which mlflow and deepinv import.
Files are read from ``$DIPBENCH_DATA/<name>/`` when present, otherwise from a download cache
(``$DIPBENCH_CACHE/datasets/<name>/``) filled from the public source with sha256 checks.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from benchmark.core import memory
from benchmark.core.errors import DataUnavailable, UserError, one_line, unknown
from benchmark.problems import imagefiles
from benchmark.problems.pinned import Unavailable, locate, sha256_of
from benchmark.problems.pinned import download as download  # re-exported: data.download is the public name

MANIFEST_DIR = Path(__file__).resolve().parents[2] / "datasets"
EMBEDDED = "embedded"
#: plain-http addresses a manifest may use: this machine only (a local mirror, the tests' server)
LOOPBACK_HTTP = ("http://127.0.0.1:", "http://127.0.0.1/", "http://localhost:", "http://localhost/", "http://[::1]")

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
    tensor: torch.Tensor  # C×H×W, float32, [0, 1] (MRI: 2×H×W real/imaginary, magnitude ≤ 1)
    #: where the pixels came from, for provenance: the file's sha256 ("" for built-in images)
    sha256: str = ""
    file: str = ""


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    mode: str  # "gray" | "rgb" | "mri" (2×H×W real/imaginary) | "ct" (1×H×W, fixed HU window)
    role: str  # "test" | "train"
    url: str | None
    files: dict[str, str]  # file name → sha256


#: Dataset and file names: a plain name inside its folder (no separator, no leading dot, no "..").
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\Z")
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_MANIFEST_KEYS = {"name", "description", "mode", "role", "url", "files"}


def plain_name(where: str, kind: str, value: Any) -> str:
    """``value`` if it names something inside one folder; a path (``../x``, ``a/b``) is refused."""
    if not isinstance(value, str) or not _PLAIN.match(value) or ".." in value:
        raise UserError(f"{where}: {kind} {value!r} is not a plain name (letters, digits, '_', '-', '+', '.'; "
                        "no path separator, no leading dot, no '..')")
    return value


def inside(path: Path, folder: Path, where: str) -> Path:
    """``path`` resolved, refused when it (or a symlink on the way) leads outside ``folder``."""
    real, base = path.resolve(), folder.resolve()
    if not real.is_relative_to(base):
        raise UserError(f"{where}: refused {path}: it leads outside {folder} (to {real})")
    return real


def data_root() -> Path | None:
    root = os.environ.get("DIPBENCH_DATA")
    return Path(root) if root else None


def cache_root() -> Path:
    return Path(os.environ.get("DIPBENCH_CACHE", Path.home() / ".cache" / "dipbench"))


def _manifest(path: Path) -> Manifest:
    where = f"dataset manifest {path}"
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{where}: not readable YAML ({one_line(exc)})") from exc
    if not isinstance(doc, dict):
        raise UserError(f"{where}: expected a mapping with keys {', '.join(sorted(_MANIFEST_KEYS))}")
    extra = sorted(map(str, set(doc) - _MANIFEST_KEYS))
    missing = sorted(_MANIFEST_KEYS - {"url"} - set(doc))
    if extra or missing:
        raise UserError(f"{where}: {'unknown key ' + repr(extra[0]) if extra else 'missing key ' + repr(missing[0])}; "
                        f"valid keys: {', '.join(sorted(_MANIFEST_KEYS))}")
    name = plain_name(where, "dataset name", doc["name"])
    if name == EMBEDDED:
        raise UserError(f"{where}: the name {EMBEDDED!r} is the built-in dataset's")
    if not isinstance(doc["description"], str):
        raise UserError(f"{where}: description must be text")
    modes = imagefiles.MODES + imagefiles.MEDICAL_MODES
    if doc["mode"] not in modes or doc["role"] not in ("test", "train"):
        raise UserError(f"{where}: mode must be one of {', '.join(modes)} and role test or train")
    url = doc.get("url")
    if url is not None:
        try:
            # https, or plain http to this machine only (a local mirror; the sha256 still decides)
            ok = (isinstance(url, str) and url.startswith(("https://", *LOOPBACK_HTTP))
                  and bool(url.format(name="a", stem="a")))
        except (KeyError, IndexError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise UserError(f"{where}: url must be null or an https:// (or loopback http://) address with {{name}} "
                            f"or {{stem}}, got {url!r}")
    files = doc["files"]
    if not isinstance(files, dict) or not files:
        raise UserError(f"{where}: files must map file names to sha256 digests")
    for file_name, digest in files.items():
        plain_name(where, "file name", file_name)
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise UserError(f"{where}: file {file_name}: expected a sha256 (64 lowercase hex digits), got {digest!r}")
    return Manifest(name=name, description=doc["description"], mode=doc["mode"], role=doc["role"], url=url,
                    files=dict(files))


@cache
def manifests() -> dict[str, Manifest]:
    """The standard sets; a malformed manifest is a ``UserError`` naming the file and the key."""
    out: dict[str, Manifest] = {}
    for path in sorted(MANIFEST_DIR.glob("*.yaml")):
        manifest = _manifest(path)
        if manifest.name in out:
            raise UserError(f"dataset manifest {path}: a second dataset named {manifest.name!r}")
        out[manifest.name] = manifest
    return out


def available() -> dict[str, str]:
    """Every dataset name with a one-line description."""
    names = {EMBEDDED: "scikit-image's bundled images, grayscale (4 test, 13 train); no download."}
    names.update({m.name: m.description for m in manifests().values()})
    return names


def _resolve_file(manifest: Manifest, file_name: str) -> Path:
    """A verified local path for one file of a standard set (local folder, cache or download).

    A file that is a symlink leading out of its dataset folder is refused, whatever its content.
    """
    expected = manifest.files[file_name]
    root = data_root()
    candidates = [root / manifest.name / file_name] if root else []
    candidates.append(cache_root() / "datasets" / manifest.name / file_name)
    for path in candidates:
        if path.is_file():
            inside(path, path.parent, f"dataset {manifest.name!r}")
    url = manifest.url.format(name=file_name, stem=Path(file_name).stem) if manifest.url else None
    try:
        return locate(f"image file {file_name} of dataset {manifest.name!r}", expected, candidates, url)
    except Unavailable as exc:  # a corrupt file is a ChecksumMismatch and stops the run instead
        raise unavailable(manifest.name, f"missing image file {file_name} and no public download" if url is None
                          else one_line(exc)) from exc


def unavailable(name: str, why: str) -> DataUnavailable:
    """The error of a standard set that cannot be had here, with the fix: the variable to set, or
    the internet (the harness skips the set's cells with this message)."""
    root = data_root()
    where = (f"put its files in {root / name} (DIPBENCH_DATA={root})" if root else
             f"set DIPBENCH_DATA to a folder holding {name}/ (e.g. DIPBENCH_DATA=../shared/datasets)")
    return DataUnavailable(name, f"dataset {name!r} unavailable here ({why}): {where}, or run where its pinned "
                                 "source can be downloaded (internet)")


def image_ids(name: str, *, limit: int | None = None) -> list[str]:
    """The ids of the first ``limit`` test images of standard set ``name``, read off its
    manifest (no file is needed: the cells of a set that cannot be had are still named)."""
    files = sorted(manifests()[name].files)[: limit if limit else None]
    return [Path(f).stem for f in files]


def channels_of(name: str, mode: str | None = None) -> int:
    """Channels of the images of standard set ``name`` read as ``mode`` (default: its manifest's):
    1 for gray and CT, 3 for colour, 2 for complex MRI (real, imaginary); the embedded set is gray."""
    return {"gray": 1, "rgb": 3, "mri": 2, "ct": 1}[mode or ("gray" if name == EMBEDDED else manifests()[name].mode)]


def folder_images(folder: str | Path, mode: str | None = None) -> tuple[str, list[Image]]:
    """A folder of image files as a dataset: (mode, images sorted by file name).

    Every file with an image suffix is read and hashed; files that cannot be read, symlinks
    leading out of the folder and two files with one stem are all listed in one error.
    """
    path = Path(folder)
    where = f"dataset folder {folder}"
    if mode is not None and mode not in imagefiles.MODES:
        raise UserError(f"{where}: mode must be one of {', '.join(imagefiles.MODES)}, got {mode!r}")
    try:
        if not path.is_dir():
            raise UserError(f"{where}: not a folder")
        entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    except (OSError, ValueError) as exc:
        raise UserError(f"{where}: cannot list it ({exc})") from exc
    files = [p for p in entries if p.suffix.lower() in imagefiles.SUFFIXES]
    if not files:
        raise UserError(f"{where}: no image files ({', '.join(imagefiles.SUFFIXES)})")
    problems: list[str] = []
    arrays: list[tuple[Path, np.ndarray, str]] = []
    stems: dict[str, str] = {}
    for file in files:
        try:
            real = inside(file, path, where)
            if not real.is_file():
                raise UserError(f"{file.name}: not a file")
            if file.stem in stems:
                raise UserError(f"{file.name}: same image id {file.stem!r} as {stems[file.stem]}")
            stems[file.stem] = file.name
            arrays.append((file, imagefiles.read(real), sha256_of(real)))
        except UserError as exc:
            problems.append(str(exc))
        except OSError as exc:
            problems.append(f"cannot read image file {file}: {exc}")
    if problems:
        raise UserError(f"{where}: {len(problems)} of {len(files)} files refused: " + "; ".join(problems))
    if mode is None:
        mode = "gray" if all(imagefiles.is_gray(array) for _, array, _ in arrays) else "rgb"
    return mode, [Image(file.stem, imagefiles.to_mode(array, mode), digest, str(file))
                  for file, array, digest in arrays]


@cache
def _embedded(names: tuple[str, ...]) -> tuple[Image, ...]:
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
    return tuple(images)


def resize_short_side(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize (antialiased bicubic, then 8-bit quantised) so that the shorter side is ``size``."""
    if not size:
        return x
    c, h, w = x.shape
    scale = size / min(h, w)
    new = (max(1, round(h * scale)), max(1, round(w * scale)))
    memory.check_fits(f"resizing a {h}×{w} image to {new[0]}×{new[1]}", 3 * 4 * c * new[0] * new[1])
    out = torch.nn.functional.interpolate(x[None], size=new, mode="bicubic", antialias=True, align_corners=False)[0]
    return (out.clamp(0, 1) * 255).round() / 255


def center_crop(x: torch.Tensor, size: int | None, multiple: int = 1) -> torch.Tensor:
    """Centre crop to ``size``² (when given), then down to a multiple of ``multiple``."""
    _, h, w = x.shape
    th, tw = (min(size, h), min(size, w)) if size else (h, w)
    th, tw = th - th % multiple, tw - tw % multiple
    top, left = (h - th) // 2, (w - tw) // 2
    return x[:, top : top + th, left : left + tw].clone()


def load(
    name: str,
    *,
    split: str = "test",
    crop: int | None = None,
    limit: int | None = None,
    multiple: int = 1,
    resize: int | None = None,
    path: str | None = None,
    mode: str | None = None,
) -> list[Image]:
    """Images of dataset ``name``: ``split`` is "test" or "train" (embedded has both); with
    ``path``, the image files of that folder (``mode`` forces gray or rgb, else detected)."""
    images: list[Image] | tuple[Image, ...]
    if path is not None:
        images = folder_images(path, mode)[1]
    elif name == EMBEDDED:
        images = _embedded(EMBEDDED_TEST if split == "test" else EMBEDDED_TRAIN)
    else:
        known = manifests()
        if name not in known:
            raise unknown("dataset", name, available())
        manifest = known[name]
        files = sorted(manifest.files)[: limit if limit else None]
        if manifest.mode in imagefiles.MEDICAL_MODES:
            if mode and mode != manifest.mode:
                raise UserError(f"dataset {name!r}: its {manifest.mode.upper()} slices are read as they are "
                                "(no mode option applies)")
            images = [Image(Path(f).stem, imagefiles.read_medical(_resolve_file(manifest, f), manifest.mode),
                            manifest.files[f], f) for f in files]
            if resize:  # medical slices are resampled in their own space, never clipped or quantised
                images = [dataclasses.replace(img, tensor=imagefiles.resize_medical(img.tensor, manifest.mode, resize))
                          for img in images]
                resize = None
        else:
            images = [
                Image(Path(f).stem, imagefiles.read_image(_resolve_file(manifest, f), mode or manifest.mode),
                      manifest.files[f], f)
                for f in files
            ]
    images = images[: limit if limit else None]
    return [dataclasses.replace(img, tensor=center_crop(resize_short_side(img.tensor, resize), crop, multiple))
            for img in images]
