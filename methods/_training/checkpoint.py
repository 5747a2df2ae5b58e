"""The checkpoint cache of the suite-trained methods.

A checkpoint is keyed by a sha256 of everything that determines the trained weights (method,
task and its parameters, training set and how many images of it, the training parameters and the
seed), so a second ``prepare`` with the same configuration loads instead of training, and a
change to any of those trains afresh. Files are plain dicts of tensors and JSON text, written
atomically and read back with ``torch.load(weights_only=True)``: a file that carries arbitrary
Python objects, or whose stored key or content digest differs from what was asked for, is
refused with an error naming the file rather than silently giving different numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.core.errors import UserError

#: bump when the file layout or a training recipe changes, so old checkpoints are not reused
FORMAT_VERSION = 1


class CheckpointError(UserError):
    """A checkpoint file that must not be used (wrong key, corrupt, or not plain tensors)."""


def cache_key(description: dict[str, Any]) -> str:
    """sha256 of a canonical JSON rendering of ``description`` (the full training config)."""
    canonical = json.dumps({"format": FORMAT_VERSION, **description}, sort_keys=True, separators=(",", ":"),
                           default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of the tensors (detects a damaged file)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")  # 0-d too
    return digest.hexdigest()


@dataclass
class Checkpoint:
    """What a cache file holds: weights, the loss curve, and JSON-able metadata."""

    key: str
    state: dict[str, torch.Tensor]
    losses: list[float] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


def checkpoint_path(cache_dir: Path, method: str, key: str) -> Path:
    return Path(cache_dir) / "checkpoints" / method / f"{key}.pt"


def save(path: Path, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` atomically (temp file in the same folder, then ``os.replace``)."""
    state = {name: tensor.detach().to("cpu").clone() for name, tensor in checkpoint.state.items()}
    payload = {
        "format": FORMAT_VERSION,
        "key": checkpoint.key,
        "digest": state_digest(state),
        "state": state,
        "losses": torch.tensor(checkpoint.losses, dtype=torch.float64),
        "meta": json.dumps(checkpoint.meta, sort_keys=True, default=str),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_weights(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` with errors that say what is wrong with the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found is None:
            raise CheckpointError(
                f"cannot read checkpoint {path}: corrupt or not a torch file; delete it to retrain"
            ) from exc
        raise CheckpointError(
            f"refusing checkpoint {path}: it holds Python objects other than tensors and plain "
            f"data ({found.group(1)}), and only weights are loaded (torch.load weights_only=True); "
            "delete the file to retrain"
        ) from exc
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}; delete the file to retrain") from exc


def load(path: Path, expected_key: str) -> Checkpoint:
    """Read a checkpoint, refusing pickled objects, a different key or damaged weights."""
    payload = read_weights(path)
    if not isinstance(payload, dict) or not {"key", "digest", "state"} <= payload.keys():
        raise CheckpointError(f"refusing checkpoint {path}: not a dipbench checkpoint (missing key/digest/state)")
    if payload.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"refusing checkpoint {path}: format {payload.get('format')!r}, this version reads {FORMAT_VERSION}"
        )
    if payload["key"] != expected_key:
        raise CheckpointError(
            f"refusing checkpoint {path}: it stores key {str(payload['key'])[:16]}… but this "
            f"configuration hashes to {expected_key[:16]}… (a renamed or foreign file); delete it to retrain"
        )
    state = payload["state"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"refusing checkpoint {path}: its state is not a dict of tensors")
    actual = state_digest(state)
    if actual != payload["digest"]:
        raise CheckpointError(
            f"refusing checkpoint {path}: its weights hash to {actual[:16]}… but it records "
            f"{str(payload['digest'])[:16]}… (damaged or edited); delete it to retrain"
        )
    losses = payload.get("losses")
    meta = payload.get("meta", "{}")
    return Checkpoint(
        key=expected_key,
        state=state,
        losses=[float(v) for v in losses.tolist()] if isinstance(losses, torch.Tensor) else [],
        meta=json.loads(meta) if isinstance(meta, str) else {},
    )
