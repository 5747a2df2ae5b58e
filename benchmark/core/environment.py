"""What a run's floating-point results depend on: CPU, thread count, torch, oneDNN, GPU.

DIP fits amplify rounding differences, so a number is bit-for-bit reproducible only on the same
kind of machine with the same thread count and batch size (README, "Reproducibility"). CI prints
this at the top of its log (``python -m benchmark.core.environment``) so that a failure on one
machine can be told apart from one on another.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's marketing name (x86 ``model name``; on ARM the implementer and part numbers)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    for key in ("model name", "Model", "Hardware"):
        found = re.search(rf"^{key}\s*:\s*(.+)$", text, flags=re.MULTILINE)
        if found:
            return found.group(1).strip()
    parts = [re.search(rf"^CPU {key}\s*:\s*(\S+)", text, flags=re.MULTILINE) for key in ("implementer", "part")]
    if all(parts):
        return f"ARM implementer {parts[0].group(1)} part {parts[1].group(1)}"  # type: ignore[union-attr]
    return platform.processor() or platform.machine()


def _version(pattern: str) -> str:
    found = re.search(pattern, torch.__config__.show())
    return found.group(1) if found else "absent"


def describe() -> dict[str, str]:
    """Name → value of everything that changes a float32 reduction order."""
    onednn = _version(r"MKL-DNN v([\w.]+)")
    info = {
        "cpu": f"{cpu_model()} ({platform.machine()}, {os.cpu_count()} logical CPUs)",
        "cpu capability": torch.backends.cpu.get_cpu_capability(),
        "torch threads": f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op "
                         f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
        "torch": torch.__version__,
        "oneDNN": f"{onednn} (enabled: {torch.backends.mkldnn.is_available()})",
        "BLAS": _version(r"BLAS_INFO=(\w+)"),
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        info["cuda / cuDNN"] = f"{torch.version.cuda} / {torch.backends.cudnn.version()}"
    else:
        info["gpu"] = "none"
    return info


def main() -> None:
    for name, value in describe().items():
        print(f"{name:>15}: {value}")


if __name__ == "__main__":
    main()
