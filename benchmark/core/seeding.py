"""Seeding, declared once: every random stream of the suite is a generator seeded by a sha256 of
the names that identify it, so streams are independent of each other, of the order anything
runs in, of the device and of the global RNG state.

``derive_seed("denoising_s25", "camera", 0)`` keys a measurement by (task, image, seed);
``generator(seed, "input")`` keys one of a method's streams (network, input, noise, mask…).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch

T = TypeVar("T")


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts``: the first 8 bytes (little-endian) of sha256("p1|p2|…")."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def method_seed(dataset: str, image_id: str, seed: int) -> int:
    """The seed a method gets for one cell: the run's ``seed`` mixed with the image and its
    dataset, so that each image of a run gets its own network initialisation, input noise and
    sampling noise, and each run seed another one for the same image (issue #12 item 3)."""
    return derive_seed("method", dataset, image_id, seed)


def generator(*parts: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded by ``derive_seed(*parts)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(*parts))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """The global (CPU) RNG seeded for code that draws from it, e.g. a network's initialisation,
    without disturbing anyone else's state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def seeded_build(build: Callable[[], T], *parts: object) -> T:
    """``build()`` with the global RNG seeded by ``derive_seed(*parts)`` (weights drawn from it)."""
    with seeded(derive_seed(*parts)):
        return build()
