"""Reading the image files users really have into C×H×W float32 tensors in [0, 1].

Every reader scales by the file's own integer range (8-bit by 255, 16-bit by 65535), applies
the EXIF orientation of JPEGs, converts palette and CMYK images to RGB, and drops the alpha
channel (the stored colour values are the image; nothing is composited). 16-bit grayscale PNGs
and 16-bit TIFFs keep their full precision; Pillow reads 16-bit colour PNGs at 8-bit precision
(the high byte), which is still scaled correctly. ``.npy`` arrays are taken as they are:
integers by their type's range, floats must already lie in [0, 1].
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageOps

from benchmark.core.errors import UserError, one_line

#: File types a folder dataset may hold (case-insensitive).
SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".npy")
MODES = ("gray", "rgb")
#: Modes of the medical sets' manifests, read by :func:`read_medical` (not for folders of photos).
MEDICAL_MODES = ("mri", "ct")

#: CT: Hounsfield units in this fixed window map linearly to [0, 1] (air -1000 HU lands at 0.012,
#: water at 0.5, dense bone and contrast clip at 1); the same for every slice, so that PSNR is
#: comparable between slices (a per-slice range would make it depend on each slice's extremes).
CT_WINDOW_HU = (-1024.0, 1024.0)
#: MRI: the SIAT ``Img`` arrays are 270×256; the usual recipe keeps rows 7-262 (0-based, inclusive).
MRI_SHAPE = (270, 256)
MRI_ROWS = slice(7, 263)

#: Pillow refuses images over this many pixels (decompression bombs); so do we, with a message.
MAX_PIXELS = 1 << 28

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)  # ITU-R 601, as Pillow's "L"


def _scaled(array: np.ndarray, path: Path) -> np.ndarray:
    """An integer, boolean or float array as float64 in [0, 1]."""
    if array.dtype == bool:
        return array.astype(np.float64)
    if np.issubdtype(array.dtype, np.unsignedinteger) and array.dtype.itemsize <= 2:
        return array.astype(np.float64) / float(np.iinfo(array.dtype).max)
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        if not np.isfinite(values).all() or values.min(initial=0.0) < 0.0 or values.max(initial=0.0) > 1.0:
            raise UserError(f"cannot read image file {path}: float values must be finite and within [0, 1]")
        return values
    if np.issubdtype(array.dtype, np.integer):
        # 32-bit integer images ("I" mode, e.g. some 16-bit PNGs): a 16-bit range.
        if array.min(initial=0) < 0 or array.max(initial=0) > 65535:
            raise UserError(f"cannot read image file {path}: integer values outside 0..65535")
        return array.astype(np.float64) / 65535.0
    raise UserError(f"cannot read image file {path}: unsupported pixel type {array.dtype}")


def _channels_last(array: np.ndarray, path: Path) -> np.ndarray:
    """H×W, H×W×C or C×H×W (C of 1 to 4) as H×W×C."""
    if array.ndim == 2:
        return array[..., None]
    if array.ndim == 3:
        if array.shape[-1] in (1, 2, 3, 4):
            return array
        if array.shape[0] in (1, 2, 3, 4):
            return np.moveaxis(array, 0, -1)
    raise UserError(f"cannot read image file {path}: expected an H×W or H×W×C array (C of 1 to 4), "
                    f"got shape {tuple(array.shape)}")


def _from_pil(img: PILImage.Image, path: Path) -> np.ndarray:
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(img)
        if img.mode.startswith("I;16"):
            array = array.astype(np.uint16)
        return _scaled(array, path)[..., None]
    if img.mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.float64)[..., None] / 255.0
    if img.mode == "LA":
        return np.asarray(img.convert("L"), dtype=np.float64)[..., None] / 255.0
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    return np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0


def _read_array(path: Path) -> np.ndarray:
    """H×W×C float64 in [0, 1], C of 1 to 4 (alpha still present for arrays and TIFFs)."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _scaled(_channels_last(np.load(path, allow_pickle=False), path), path)
    if suffix in (".tif", ".tiff"):
        import tifffile

        return _scaled(_channels_last(tifffile.imread(path), path), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        with PILImage.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise UserError(f"cannot read image file {path}: {img.width}×{img.height} pixels is more than "
                                f"the {MAX_PIXELS} this suite reads")
            return _from_pil(img, path)


def is_gray(array: np.ndarray) -> bool:
    """One channel (plus alpha), or three equal ones."""
    colour = array[..., :3] if array.shape[-1] >= 3 else array[..., :1]
    return colour.shape[-1] == 1 or bool(np.array_equal(colour[..., 0], colour[..., 1])
                                         and np.array_equal(colour[..., 0], colour[..., 2]))


def read(path: Path) -> np.ndarray:
    """The file's pixels as H×W×C float64 in [0, 1], alpha dropped (C is 1 or 3)."""
    try:
        array = _read_array(path)
    except UserError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, PILImage.DecompressionBombError,
            PILImage.DecompressionBombWarning) as exc:
        raise UserError(f"cannot read image file {path}: {exc}") from exc
    if array.shape[-1] in (2, 4):
        array = array[..., :-1]
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise UserError(f"cannot read image file {path}: it has no pixels")
    return array


def to_mode(array: np.ndarray, mode: str) -> torch.Tensor:
    """H×W×C → C×H×W float32 tensor with 1 (gray: ITU-R 601 luma) or 3 channels (gray repeated)."""
    if mode == "gray" and array.shape[-1] == 3:
        array = (array @ _LUMA)[..., None]
    elif mode == "rgb" and array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(np.clip(array, 0.0, 1.0).transpose(2, 0, 1), dtype=np.float32))


def read_image(path: Path, mode: str) -> torch.Tensor:
    """A file as a C×H×W tensor in ``mode`` ("gray" or "rgb").

    8-bit files go through Pillow's own conversion (bit-identical to earlier releases); others
    through :func:`to_mode`.
    """
    if path.suffix.lower() not in (".npy", ".tif", ".tiff"):
        try:
            with PILImage.open(path) as img:
                if img.mode in ("L", "RGB") and img.width * img.height <= MAX_PIXELS:
                    upright = ImageOps.exif_transpose(img)
                    array = np.asarray(upright.convert("L" if mode == "gray" else "RGB"), dtype=np.float32) / 255.0
                    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
                    return torch.from_numpy(np.ascontiguousarray(array))
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise UserError(f"cannot read image file {path}: {exc}") from exc
    return to_mode(read(path), mode)


def read_mri(path: Path) -> torch.Tensor:
    """A SIAT ``.mat`` slice as 2×256×256 float32: real and imaginary parts (deepinv's MRI layout).

    ``Img`` (complex, 270×256) is cropped to rows 7-262 and divided by its largest magnitude, so
    the magnitude lies in [0, 1] and the phase is kept (the raw values are ~1e-6, in scanner units).
    """
    import scipy.io

    try:
        doc = scipy.io.loadmat(path)
    except (OSError, ValueError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as exc:
        raise UserError(f"cannot read MRI file {path}: not a readable MATLAB .mat file ({exc})") from exc
    if "Img" not in doc:
        found = ", ".join(sorted(k for k in doc if not k.startswith("__"))) or "none"
        raise UserError(f"cannot read MRI file {path}: no variable 'Img' (variables found: {found})")
    img = np.asarray(doc["Img"])
    if not np.iscomplexobj(img) or img.shape != MRI_SHAPE:
        raise UserError(f"cannot read MRI file {path}: 'Img' must be a complex {MRI_SHAPE[0]}×{MRI_SHAPE[1]} "
                        f"array, got {img.dtype} of shape {tuple(img.shape)}")
    crop = img[MRI_ROWS].astype(np.complex128)
    peak = float(np.abs(crop).max()) if np.isfinite(crop).all() else 0.0
    if not peak > 0.0:
        raise UserError(f"cannot read MRI file {path}: 'Img' is all zero or not finite")
    crop = crop / peak
    return torch.from_numpy(np.stack([crop.real, crop.imag]).astype(np.float32))


def read_ct(path: Path) -> torch.Tensor:
    """A square DICOM CT slice as 1×H×W float32: HU = stored value × RescaleSlope + RescaleIntercept,
    then the fixed window :data:`CT_WINDOW_HU` mapped to [0, 1] (values outside it clipped)."""
    import pydicom
    import pydicom.errors

    try:
        ds = pydicom.dcmread(path)
    except (OSError, ValueError, TypeError, pydicom.errors.InvalidDicomError) as exc:
        raise UserError(f"cannot read CT file {path}: not a readable DICOM file ({one_line(exc)})") from exc
    missing = [tag for tag in ("RescaleSlope", "RescaleIntercept") if tag not in ds]
    if missing:
        raise UserError(f"cannot read CT file {path}: no {' or '.join(missing)} tag, so its values cannot be "
                        "converted to Hounsfield units")
    try:
        stored = np.asarray(ds.pixel_array, dtype=np.float64)
    except (AttributeError, ValueError, TypeError, RuntimeError, NotImplementedError) as exc:
        raise UserError(f"cannot read CT file {path}: no readable pixel data ({one_line(exc)})") from exc
    if stored.ndim != 2 or stored.shape[0] != stored.shape[1] or stored.size == 0:
        raise UserError(f"cannot read CT file {path}: expected one square slice, got shape {tuple(stored.shape)}")
    hu = stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    low, high = CT_WINDOW_HU
    return torch.from_numpy(np.clip((hu - low) / (high - low), 0.0, 1.0).astype(np.float32)[None])


def read_medical(path: Path, mode: str) -> torch.Tensor:
    """A file of a medical set in its manifest's ``mode`` ("mri" or "ct")."""
    return read_mri(path) if mode == "mri" else read_ct(path)


def resize_medical(x: torch.Tensor, mode: str, size: int) -> torch.Tensor:
    """A medical slice at ``size``×``size`` without clipping or quantising it. MRI (2×H×W real and
    imaginary parts): the centre ``size``² of its orthonormal k-space, scaled by size/H so that
    magnitudes keep their scale (what a scanner acquiring a smaller matrix sees). CT: area
    averaging (for a whole factor, the mean of each block), which keeps values in [0, 1]."""
    _, h, w = x.shape
    if (h, w) == (size, size):
        return x
    if size > min(h, w) or size < 1:
        raise UserError(f"a {mode.upper()} slice of {h}×{w} is only resized down (to at most {min(h, w)}), "
                        f"not to {size}×{size}")
    if mode == "mri":
        k = torch.fft.fftshift(torch.fft.fft2(torch.complex(x[0].double(), x[1].double()), norm="ortho"))
        top, left = (h - size) // 2, (w - size) // 2
        k = k[top : top + size, left : left + size] * (size / math.sqrt(h * w))
        img = torch.fft.ifft2(torch.fft.ifftshift(k), norm="ortho")
        return torch.stack([img.real, img.imag]).float()
    return torch.nn.functional.interpolate(x[None].double(), size=(size, size), mode="area")[0].float()
