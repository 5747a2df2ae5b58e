"""``make gpu-check``: what one lent GPU does with the paper profile, in under 10 minutes.

On the first dip9 images (512² RGB) at σ = 25 it fits the paper's DIP (the paper profile's
parameters) one image at a time and at the batch size ``auto`` picks (``benchmark.run.calibration``),
each in float32 and in mixed precision (bf16 autocast where the card has it, else fp16), then
runs DPS and the U-Net on the same images with priors trained here on a few training images. It
writes ``gpu_check.json`` and ``gpu_check.md``: the card, torch, and per part the seconds per
iteration, images per second, the batch size and the PSNRs (mixed precision next to float32).

Every part runs through the benchmark's own pieces: the paper profile as the plan reads it
(``profiles.load`` and ``plan.resolved_params``: its tuned values and overrides included), cells
measured and solved by ``harness.run_cells`` with a ``MethodPool`` (the same measurements, seeds,
metrics, batching and solo-equivalent costs as a benchmark run), the calibration of
``harness.calibrate``. It needs torch, numpy, PIL, pyyaml, scipy, pandas, deepinv and this
repository (no MLflow, Ray or LPIPS), stops adding work when the next part would not fit the
``--budget-s`` wall-clock budget, and records a part that fails instead of stopping. ``--quick``
runs tiny sizes (CPU, CI).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.problems import metrics

ROOT = Path(__file__).resolve().parents[1]
#: the metric the check reports (its results file's keys): the registered PSNR
PSNR = metrics.PSNR.name
SIGMA_TASK = "denoising_s25"


def _tqdm_fallback() -> None:
    """A no-op ``tqdm`` where it is not installed (the lent machines have no internet)."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        class _Bar:
            def __init__(self, iterable: Any = None, *args: Any, **kwargs: Any) -> None:
                self.iterable = iterable

            def __iter__(self) -> Iterator[Any]:
                return iter(self.iterable or [])

            def __getattr__(self, name: str) -> Callable[..., None]:
                return lambda *a, **k: None

            def __enter__(self) -> _Bar:
                return self

            def __exit__(self, *exc: Any) -> None:
                return None

        for name in ("tqdm", "tqdm.auto"):
            module = types.ModuleType(name)
            module.tqdm = _Bar  # type: ignore[attr-defined]
            sys.modules[name] = module


def _images(folder: Path, count: int, crop: int | None, mode: str | None = "rgb") -> list[Any]:
    """The first ``count`` images of ``folder`` by name (``data.folder_images``: read and hashed as
    a dataset folder is), centre-cropped to ``crop``² when given."""
    from benchmark.problems import data

    _, images = data.folder_images(folder, mode)
    out = []
    for image in images[:count]:
        tensor = data.center_crop(image.tensor, crop) if crop is not None else image.tensor
        out.append(data.Image(image.id, tensor.contiguous(), image.sha256, image.file))
    return out


class Check:
    """The results file, rewritten after every part, and the budget every part asks first."""

    def __init__(self, out: Path, budget_s: float) -> None:
        self.out, self.budget_s, self.started = out, budget_s, time.perf_counter()
        self.doc: dict[str, Any] = {"parts": {}}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def part(self, name: str, body: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        """Run one part; its failure is recorded, never raised."""
        started = time.perf_counter()
        try:
            result = {"status": "ok", **body()}
        except _Skip as skip:
            result = {"status": "skipped", "reason": str(skip)}
        except Exception as exc:  # noqa: BLE001 - one broken part must not lose the others
            result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc(limit=6)}
        result["part_wall_s"] = round(time.perf_counter() - started, 3)
        self.doc["parts"][name] = result
        self.write()
        return result if result["status"] == "ok" else None

    def write(self) -> None:
        self.doc["elapsed_s"] = round(time.perf_counter() - self.started, 3)
        (self.out / "gpu_check.json").write_text(json.dumps(self.doc, indent=2, default=str))
        (self.out / "gpu_check.md").write_text(markdown(self.doc))


class _Skip(Exception):
    """A part that does not fit the budget or lacks its inputs."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                           "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    if device.type == "cuda":
        env.update(card=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   memory_gb=round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1),
                   bf16=torch.cuda.is_bf16_supported())
    else:
        env["card"] = "cpu"
    try:
        import deepinv

        env["deepinv"] = deepinv.__version__
    except Exception as exc:  # noqa: BLE001
        env["deepinv"] = f"unavailable: {exc}"
    return env


def dip_params(quick: bool) -> dict[str, Any]:
    """The paper profile's DIP parameters for σ = 25 denoising, as its plan resolves them (tuned
    values and ``method_params`` included); tiny ones with ``--quick``."""
    from benchmark.problems import tasks
    from benchmark.run import plan, profiles

    profile = profiles.load("paper")
    instance = plan.MethodInstance("dip", tuple(sorted(profile.method_params.get("dip", {}).items())), "dip")
    params = plan.resolved_params(profile, instance, tasks.get(SIGMA_TASK))
    if quick:
        params.update(iterations=6, channels=8, scales=3)
    return params


def _cells(method: str, params: dict[str, Any], dataset: str, images: list[Any], training: str = "") -> list[Any]:
    from benchmark.core.keys import canonical_json
    from benchmark.run.plan import Cell, version_of

    return [Cell(method, canonical_json(params), SIGMA_TASK, dataset, img.id, "gpu-check", 0, method, training,
                 version_of(method)) for img in images]


def _pool(device: torch.device, out: Path, train: list[torch.Tensor] | None = None, name: str = "") -> Any:
    from benchmark.run.pool import MethodPool

    return MethodPool(lambda: list(train or []), name or "none", out / "checkpoints", device, progress=False,
                      load_training=lambda _name: list(train or []))


def _solve(cells: list[Any], images: list[Any], pool: Any, batch: int) -> list[list[Any]]:
    """``run_cells`` on ``batch`` cells at a time; the records of each batch (a failure raised)."""
    from benchmark.run.harness import run_cells

    batches = []
    for start in range(0, len(cells), batch):
        outcomes = run_cells(cells[start:start + batch], [img.tensor for img in images[start:start + batch]], pool,
                             profile="gpu-check", skip_metrics=(metrics.LPIPS.name,), save_reconstruction=False)
        for outcome in outcomes:
            if outcome.record.status != "ok":
                raise RuntimeError(f"{outcome.record.method} on {outcome.record.image_id}: {outcome.record.status} "
                                   f"{outcome.record.error}")
        batches.append([o.record for o in outcomes])
    return batches


def fit_dip(params: dict[str, Any], images: list[Any], dataset: str, batch: int, precision: str,
            device: torch.device, out: Path) -> dict[str, Any]:
    """Fit every image through the harness, ``batch`` at a time, at ``precision``; timings and PSNRs."""
    run = {**params, "precision": precision}
    batches = _solve(_cells("dip", run, dataset, images), images, _pool(device, out), batch)
    # each batch's own time, measured by the harness (a lone cell's runtime is its batch's)
    wall = sum(float(b[0].info.get("batch_runtime_s", b[0].runtime_s)) for b in batches)
    records = [r for b in batches for r in b]
    psnrs = [float(r.metrics[PSNR]) for r in records]
    iterations = int(params["iterations"])
    return {"batch_size": batch, "precision": precision, "images": len(records), "iterations": iterations,
            "wall_s": round(wall, 3), "s_per_iteration_per_image": wall / (iterations * len(records)),
            "images_per_s": len(records) / wall, "solo_runtime_s": [r.runtime_s for r in records],
            PSNR: psnrs, f"{PSNR}_mean": float(np.mean(psnrs))}


def _fitting(check: Check, images: list[Any], rate: float | None, iterations: int, reserve: float) -> int:
    """How many images a DIP part can fit in the budget left (0: skip), from a measured rate."""
    if rate is None:
        return len(images)
    per_image = iterations / rate
    return max(0, min(len(images), int((check.left() - reserve) / per_image)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    _tqdm_fallback()
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    check = Check(args.out, args.budget_s)
    check.doc["environment"] = environment(device)
    check.doc["settings"] = {"budget_s": args.budget_s, "count": args.count, "quick": args.quick,
                             "images": str(args.images), "task": SIGMA_TASK}
    check.write()
    images = _images(args.images, args.count, 32 if args.quick else None)
    dataset = args.images.name
    check.doc["images"] = [{"name": img.id, "sha256": img.sha256, "shape": list(img.tensor.shape)} for img in images]
    params = dip_params(args.quick)
    check.doc["dip_params"] = params
    mixed = "bf16" if device.type == "cpu" or torch.cuda.is_bf16_supported() else "fp16"
    iterations = int(params["iterations"])
    reserve = 0.25 * args.budget_s  # kept for DPS and the U-Net

    def calibrate() -> dict[str, Any]:
        from benchmark.run import calibration, harness

        pool = _pool(device, args.out)
        pool.calibrator.folder = args.out / "calibration"
        cells = _cells("dip", params, dataset, images)
        found = harness.calibrate(cells, [img.tensor for img in images], pool, calibration.candidates(len(cells)))
        return {"rates_image_steps_per_s": found.rates, "peak_mb": found.peak_mb,
                "batch_size": found.best(len(cells)), "seconds": round(pool.calibrator.measured_s, 3)}

    calibrated = check.part("calibration", calibrate) or {"batch_size": 1, "rates_image_steps_per_s": {}}
    rates = calibrated["rates_image_steps_per_s"]
    chosen = int(calibrated["batch_size"])
    dip_runs: dict[str, dict[str, Any]] = {}
    for batch in (1, chosen) if chosen > 1 else (1,):
        for precision in ("fp32", mixed):
            name = f"dip_b{batch}_{precision}"

            def body(batch: int = batch, precision: str = precision) -> dict[str, Any]:
                count = _fitting(check, images, rates.get(batch), iterations, reserve)
                if count == 0:
                    raise _Skip(f"one image would not fit the {check.left():.0f} s left")
                return fit_dip(params, images[:count], dataset, batch, precision, device, args.out)

            result = check.part(name, body)
            if result is not None:
                dip_runs[name] = result
    check.doc["mixed_precision"] = _precision_summary(dip_runs, mixed)
    train = _training_images(args)
    for method in ("unet", "dps"):

        def trained(method: str = method) -> dict[str, Any]:
            return data_driven(method, args, check, train, images, dataset, device)

        check.part(method, trained)
    check.write()
    return check.doc


def _precision_summary(runs: dict[str, dict[str, Any]], mixed: str) -> dict[str, Any]:
    """PSNR difference (mixed − fp32, same images) and speed-up, per batch size."""
    out: dict[str, Any] = {"mixed": mixed}
    for name, fp32 in runs.items():
        if not name.endswith("_fp32") or f"{name[:-5]}_{mixed}" not in runs:
            continue
        other = runs[f"{name[:-5]}_{mixed}"]
        n = min(len(fp32[PSNR]), len(other[PSNR]))
        out[name[:-5]] = {f"{PSNR}_diff_db": float(np.mean(np.subtract(other[PSNR][:n], fp32[PSNR][:n]))),
                          "speedup": fp32["s_per_iteration_per_image"] / other["s_per_iteration_per_image"]}
    return out


def _training_images(args: argparse.Namespace) -> list[torch.Tensor] | None:
    if args.train is None or not args.train.is_dir():
        return None
    return [img.tensor for img in _images(args.train, args.train_limit, 32 if args.quick else None)]


def data_driven(name: str, args: argparse.Namespace, check: Check, train: list[torch.Tensor] | None,
                images: list[Any], dataset: str, device: torch.device) -> dict[str, Any]:
    """Train (a small budget) and run a data-driven method on the same images through the harness,
    one image at a time while the budget lasts."""
    if train is None:
        raise _Skip("no training images (--train DIR)")
    if check.left() <= 0:
        raise _Skip("the budget is spent")
    from benchmark import registry
    from benchmark.problems import tasks

    budget = "test" if args.quick else "paper"  # --quick: the tests' tiny nets, for a CPU
    steps = {"unet": {"train_steps": args.train_steps},
             "dps": {"prior_steps": args.train_steps, "sampling_steps": 10 if args.quick else 1000}}[name]
    params = registry.get(name).resolve_params(tasks.get(SIGMA_TASK), steps, budget)
    training = f"{args.train.name} (first {len(train)})"
    pool = _pool(device, args.out, train, training)
    cells = _cells(name, params, dataset, images, training)
    _sync(device)
    began = time.perf_counter()
    _, report = pool.get(cells[0], int(images[0].tensor.shape[0]))
    _sync(device)
    train_s = time.perf_counter() - began
    records: list[Any] = []
    wall = 0.0
    for cell, image in zip(cells, images, strict=True):
        if records and check.left() < wall / len(records):  # the next image would not fit
            break
        (batch,) = _solve([cell], [image], pool, 1)
        records += batch
        wall += float(batch[0].runtime_s)
    psnrs = [float(r.metrics[PSNR]) for r in records]
    return {"train_steps": args.train_steps, "train_images": len(train), "train_s": round(train_s, 3),
            "cached": bool(report.cached) if report is not None else False, "images": len(records),
            "wall_s": round(wall, 3), "images_per_s": len(records) / wall if wall else None,
            PSNR: psnrs, f"{PSNR}_mean": float(np.mean(psnrs)) if psnrs else None}


def markdown(doc: dict[str, Any]) -> str:
    env = doc.get("environment", {})
    lines = [f"# gpu-check on {env.get('card', '?')}", "",
             f"torch {env.get('torch')}, deepinv {env.get('deepinv')}, CUDA {env.get('cuda', '-')}, "
             f"{env.get('threads')} threads; {doc.get('elapsed_s', 0):.0f} s in all.", "",
             "| part | status | B | images | s/iteration/image | images/s | mean PSNR [dB] | note |",
             "|---|---|---|---|---|---|---|---|"]
    for name, part in doc.get("parts", {}).items():
        def fmt(key: str, spec: str = ".4g", part: dict[str, Any] = part) -> str:
            value = part.get(key)
            return format(value, spec) if isinstance(value, (int, float)) else "-"

        note = part.get("reason") or part.get("error") or (f"train {part['train_s']} s" if "train_s" in part else "")
        lines.append(f"| {name} | {part['status']} | {fmt('batch_size', 'd')} | {fmt('images', 'd')} | "
                     f"{fmt('s_per_iteration_per_image')} | {fmt('images_per_s')} | {fmt(f'{PSNR}_mean', '.2f')} | "
                     f"{str(note)[:120]} |")
    mixed = doc.get("mixed_precision", {})
    for key, value in mixed.items():
        if isinstance(value, dict):
            lines.append(f"\nMixed precision ({mixed['mixed']}) at {key}: PSNR {value[f'{PSNR}_diff_db']:+.3f} dB "
                         f"against float32, {value['speedup']:.2f}× the speed.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    data_root = Path(os.environ.get("DIPBENCH_DATA", ROOT.parent / "shared" / "datasets"))
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=Path(os.environ.get("DIPBENCH_GPU_IMAGES", data_root / "dip9")),
                        help="folder of the test images (default: $DIPBENCH_GPU_IMAGES, else $DIPBENCH_DATA/dip9)")
    parser.add_argument("--train", type=Path,
                        default=Path(os.environ.get("DIPBENCH_GPU_TRAIN", data_root / "cbsd432")),
                        help="training images for DPS and the U-Net, read as RGB like the test images "
                             "(default: $DIPBENCH_GPU_TRAIN, else cbsd432)")
    parser.add_argument("--out", type=Path, default=Path("results/gpu_check"))
    parser.add_argument("--count", type=int, default=4, help="first N test images")
    parser.add_argument("--budget-s", type=float, default=540.0, help="wall-clock budget of the whole check")
    parser.add_argument("--train-steps", type=int, default=1500, help="training steps of the U-Net and DPS prior")
    parser.add_argument("--train-limit", type=int, default=64, help="training images used")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU, CI): 32² crops, 6-iteration DIP")
    args = parser.parse_args(argv)
    if args.quick:
        args.count, args.train_steps, args.train_limit = min(args.count, 2), min(args.train_steps, 5), 4
    doc = run(args)
    print((args.out / "gpu_check.md").read_text())
    failed = [n for n, p in doc["parts"].items() if p["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
