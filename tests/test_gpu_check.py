"""``make gpu-check`` on the CPU with tiny sizes: it writes its results file, keeps to its budget,
and a part that fails is recorded while the others still run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmark import gpu_check
from tests.conftest import SHARED, requires_shared

pytestmark = requires_shared


def _run(tmp_path: Path, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = gpu_check.main(["--quick", "--count", "1", "--images", str(SHARED / "datasets" / "dip9"),
                           "--train", str(SHARED / "datasets" / "train400"), "--out", str(tmp_path), *extra])
    return code, json.loads((tmp_path / "gpu_check.json").read_text())


def test_the_check_writes_timings_psnrs_and_the_card(tmp_path: Path, one_thread) -> None:  # type: ignore[no-untyped-def]
    code, doc = _run(tmp_path, "--budget-s", "600")
    assert code == 0, doc
    assert doc["environment"]["card"] == "cpu" and doc["environment"]["torch"]
    assert doc["images"][0]["name"] == "baboon" and len(doc["images"][0]["sha256"]) == 64
    parts = doc["parts"]
    for name in ("calibration", "dip_b1_fp32", "dip_b1_bf16", "unet", "dps"):
        assert parts[name]["status"] == "ok", (name, parts[name])
    fit = parts["dip_b1_fp32"]
    assert fit["batch_size"] == 1 and fit["s_per_iteration_per_image"] > 0 and fit["images_per_s"] > 0
    assert all(math.isfinite(p) for p in fit["psnr"])
    assert math.isfinite(doc["mixed_precision"]["dip_b1"]["psnr_diff_db"])
    assert all(math.isfinite(parts[m]["psnr_mean"]) for m in ("unet", "dps"))
    text = (tmp_path / "gpu_check.md").read_text()
    assert "gpu-check on cpu" in text and "dip_b1_bf16" in text and "Mixed precision (bf16)" in text


def test_a_spent_budget_skips_work_and_a_failing_part_does_not_stop_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread) -> None:  # type: ignore[no-untyped-def]
    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(gpu_check, "fit_dip", broken)
    code, doc = _run(tmp_path, "--budget-s", "600")
    assert code == 1  # a failed part is reported in the exit status…
    assert doc["parts"]["dip_b1_fp32"]["status"] == "failed"
    assert "out of memory" in doc["parts"]["dip_b1_fp32"]["error"]
    assert doc["parts"]["unet"]["status"] == "ok"  # …and the others still ran
    code, doc = _run(tmp_path / "spent", "--budget-s", "0")
    assert code == 0
    assert {p["status"] for n, p in doc["parts"].items() if n != "calibration"} == {"skipped"}
