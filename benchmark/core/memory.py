"""How much memory a device has free for new work, and the one-line refusal when work needs more."""

from __future__ import annotations

import os

import torch

from benchmark.core.errors import UserError

GIB = float(1 << 30)


def check_device(device: torch.device) -> None:
    """Refuse a device this machine does not have (``cuda:3`` on a one-GPU machine, or no GPU)."""
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index or 0) >= count:
            raise UserError(f"device {device} requested, but this machine has {count} CUDA device(s); "
                            "use device: auto or cpu")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("device mps requested, but it is not available here; use device: auto or cpu")


def available_bytes(device: torch.device | str = "cpu") -> int:
    """Memory free for new work on ``device``: MemAvailable on Linux, free memory on a GPU."""
    device = torch.device(device)
    check_device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def check_fits(what: str, nbytes: int, device: torch.device | str = "cpu") -> None:
    """Refuse ``what`` when it needs more than the memory available on ``device``."""
    free = available_bytes(device)
    if nbytes > free:
        raise UserError(f"{what} needs at least {nbytes / GIB:.1f} GiB, more than the {free / GIB:.1f} GiB of "
                        f"memory available on {torch.device(device)}")
