"""The checkpoint cache of trained methods: keys, atomic files, and refusing bad files."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from methods._training import checkpoint as ckpt
from methods._training import loop


@dataclass
class NotATensor:
    """An arbitrary Python object: a checkpoint carrying one must not be unpickled."""

    command: str = "anything"


def _checkpoint(key: str = "k" * 64) -> ckpt.Checkpoint:
    state = nn.Linear(3, 2).state_dict()
    return ckpt.Checkpoint(key=key, state=state, losses=[1.0, 0.5], meta={"note": "test"})


def test_key_is_stable_and_changes_with_any_training_setting() -> None:
    base = {"method": "unet", "task": {"name": "denoising_s25"}, "dataset": "embedded", "n_images": 13,
            "params": {"steps": 10, "lr": 1e-3}}
    assert ckpt.cache_key(base) == ckpt.cache_key(dict(reversed(list(base.items()))))
    assert len(ckpt.cache_key(base)) == 64
    variants = [
        {**base, "n_images": 5},
        {**base, "dataset": "train400"},
        {**base, "task": {"name": "inpainting_random50"}},
        {**base, "params": {"steps": 11, "lr": 1e-3}},
    ]
    assert len({ckpt.cache_key(v) for v in variants} | {ckpt.cache_key(base)}) == 5


def test_round_trip_keeps_weights_losses_and_metadata(tmp_path: Path) -> None:
    original = _checkpoint()
    path = ckpt.save(tmp_path / "a" / "c.pt", original)
    loaded = ckpt.load(path, original.key)
    assert loaded.losses == [1.0, 0.5] and loaded.meta == {"note": "test"}
    for name, tensor in original.state.items():
        assert torch.equal(loaded.state[name], tensor)
    # Atomic write: only the final file remains, no temporary left behind.
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]


def test_a_batchnorm_network_round_trips_and_its_digest_sees_the_0d_counter(tmp_path: Path) -> None:
    """BatchNorm keeps a 0-d integer buffer (num_batches_tracked): it is stored and checked too."""
    state = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)).state_dict()
    path = ckpt.save(tmp_path / "bn.pt", ckpt.Checkpoint(key="k" * 64, state=state))
    loaded = ckpt.load(path, "k" * 64)
    assert all(torch.equal(loaded.state[name], tensor) for name, tensor in state.items())
    edited = {**state, "1.num_batches_tracked": torch.tensor(7)}
    assert ckpt.state_digest(edited) != ckpt.state_digest(state)
    # a tensor of more than 0 dimensions hashes its bytes as before the counter could be hashed
    digest = ckpt.hashlib.sha256()
    digest.update(b"w|torch.float32|(2, 3)|")
    digest.update(torch.arange(6.0).reshape(2, 3).view(torch.uint8).numpy().tobytes())
    assert ckpt.state_digest({"w": torch.arange(6.0).reshape(2, 3)}) == digest.hexdigest()


def test_checkpoint_with_a_different_key_is_refused(tmp_path: Path) -> None:
    path = ckpt.save(tmp_path / "c.pt", _checkpoint(key="a" * 64))
    with pytest.raises(ckpt.CheckpointError, match="stores key aaaaaaaa.*hashes to bbbbbbbb"):
        ckpt.load(path, "b" * 64)


def test_checkpoint_with_edited_weights_is_refused(tmp_path: Path) -> None:
    path = ckpt.save(tmp_path / "c.pt", _checkpoint())
    payload = torch.load(path, weights_only=True)
    payload["state"]["weight"] += 1.0
    torch.save(payload, path)
    with pytest.raises(ckpt.CheckpointError, match="damaged or edited"):
        ckpt.load(path, "k" * 64)


def test_checkpoint_holding_a_python_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    payload = {"format": ckpt.FORMAT_VERSION, "key": "k" * 64, "digest": "", "state": {}, "extra": NotATensor()}
    torch.save(payload, path)
    with pytest.raises(ckpt.CheckpointError, match="Python objects other than tensors.*weights_only=True"):
        ckpt.load(path, "k" * 64)


def test_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ckpt.CheckpointError, match="cannot read checkpoint"):
        ckpt.load(garbage, "k" * 64)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(ckpt.CheckpointError, match="not a dipbench checkpoint"):
        ckpt.load(foreign, "k" * 64)


def test_load_or_train_trains_once_then_loads(tmp_path: Path) -> None:
    calls = []

    def train() -> tuple[list[float], dict[str, torch.Tensor]]:
        calls.append(1)
        trained = nn.Linear(3, 2)
        nn.init.constant_(trained.weight, 0.25)
        return [2.0, 1.0], trained.state_dict()

    kwargs = {"cache_dir": tmp_path, "method": "toy", "description": {"x": 1}, "train": train}
    first = loop.load_or_train(net=nn.Linear(3, 2), **kwargs)
    second_net = nn.Linear(3, 2)
    second = loop.load_or_train(net=second_net, **kwargs)
    assert not first.cached and second.cached and len(calls) == 1
    assert second.checkpoint == first.checkpoint and second.losses == [2.0, 1.0]
    assert torch.all(second_net.weight == 0.25)
    # A different description is a different checkpoint: it trains again.
    loop.load_or_train(net=nn.Linear(3, 2), **{**kwargs, "description": {"x": 2}})
    assert len(calls) == 2


def test_a_cached_load_reports_what_training_cost(tmp_path: Path) -> None:
    def train() -> tuple[list[float], dict[str, torch.Tensor]]:
        time.sleep(0.3)  # a measurable training time, unlike the load
        return [1.0], nn.Linear(3, 2).state_dict()

    kwargs = {"cache_dir": tmp_path, "method": "toy", "description": {"x": 1}, "train": train}
    first = loop.load_or_train(net=nn.Linear(3, 2), **kwargs)
    second = loop.load_or_train(net=nn.Linear(3, 2), **kwargs)
    assert not first.cached and first.seconds >= 0.3
    assert second.cached and second.seconds == first.seconds
    # A checkpoint that recorded no training time reports its load time instead.
    path = Path(first.checkpoint)
    stored = ckpt.load(path, path.stem)
    ckpt.save(path, ckpt.Checkpoint(key=stored.key, state=stored.state, losses=stored.losses))
    unrecorded = loop.load_or_train(net=nn.Linear(3, 2), **kwargs)
    assert unrecorded.cached and 0 <= unrecorded.seconds < first.seconds
