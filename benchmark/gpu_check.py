"""``make gpu-check``: what one lent GPU does with the paper profile, in under 10 minutes.

On the first dip9 images (512² RGB) at σ = 25 it fits the paper's DIP (the paper profile's
parameters) one image at a time and at the batch size ``auto`` picks (``benchmark.run.calibration``),
each in float32 and in mixed precision (bf16 autocast where the card has it, else fp16), then
runs DPS and the U-Net on the same images with priors trained here on a few training images. It
writes ``gpu_check.json`` and ``gpu_check.md``: the card, torch, and per part the seconds per
iteration, images per second, the batch size and the PSNRs (mixed precision next to float32).

It needs only torch, numpy, PIL, pyyaml, deepinv and this repository (no MLflow, Ray or LPIPS),
stops adding work when the next part would not fit the ``--budget-s`` wall-clock budget, and
records a part that fails instead of stopping. ``--quick`` runs tiny sizes (CPU, CI).
"""

from __future__ import annotations

import argparse
import hashlib
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
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
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


def _images(folder: Path, count: int, crop: int | None) -> list[tuple[str, str, torch.Tensor]]:
    """(name, sha256, C×H×W in [0, 1]) of the first ``count`` images of ``folder`` by name."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".tif", ".tiff"})
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    out = []
    for path in files[:count]:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        if crop is not None:
            top, left = (tensor.shape[1] - crop) // 2, (tensor.shape[2] - crop) // 2
            tensor = tensor[:, top:top + crop, left:left + crop].contiguous()
        out.append((path.stem, hashlib.sha256(path.read_bytes()).hexdigest(), tensor))
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


def _psnr(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    from benchmark.problems import metrics

    return metrics.psnr(x_hat.clamp(0, 1).reshape(x.shape), x)


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


def _measure(images: list[tuple[str, str, torch.Tensor]], device: torch.device,
             dataset: str) -> list[tuple[Any, torch.Tensor]]:
    """(physics, y) per image, drawn as the harness draws them (dataset, task, image id, seed 0)."""
    from benchmark.problems import tasks

    task = tasks.get(SIGMA_TASK)
    out = []
    for name, _, image in images:
        generator = tasks.measurement_generator(task.name, name, 0, dataset=dataset)
        c, h, w = image.shape
        physics = task.physics((int(c), int(h), int(w)), device, generator)
        out.append((physics, task.measure(image.to(device)[None], physics, generator)))
    return out


def dip_params(quick: bool) -> dict[str, Any]:
    """The paper profile's DIP parameters for σ = 25 denoising (tiny ones with ``--quick``)."""
    import yaml

    from methods.dip import DeepImagePrior as DIP

    profile = yaml.safe_load((ROOT / "benchmark" / "profiles" / "paper.yaml").read_text())
    overrides = dict((profile.get("method_params") or {}).get("dip", {}))
    if quick:
        overrides.update(iterations=6, channels=8, scales=3)
    from benchmark.problems import tasks

    return DIP.resolve_params(tasks.get(SIGMA_TASK), overrides)


def fit_dip(params: dict[str, Any], data: list[tuple[Any, torch.Tensor]], truths: list[torch.Tensor],
            batch: int, precision: str, device: torch.device) -> dict[str, Any]:
    """Fit every image, ``batch`` at a time, at ``precision``; timings and PSNRs."""
    from benchmark.api import Problem
    from methods.dip import DeepImagePrior as DIP

    method = DIP(**{**params, "precision": precision})
    psnrs: list[float] = []
    wall = 0.0
    for start in range(0, len(data), batch):
        chunk = data[start:start + batch]
        problems = [Problem(y, physics, 0) for physics, y in chunk]
        _sync(device)
        began = time.perf_counter()
        results = method.reconstruct_batch(problems)
        _sync(device)
        wall += time.perf_counter() - began
        psnrs += [_psnr(r.x, truths[start + i]) for i, r in enumerate(results)]
    iterations = int(params["iterations"])
    return {"batch_size": batch, "precision": precision, "images": len(data), "iterations": iterations,
            "wall_s": round(wall, 3), "s_per_iteration_per_image": wall / (iterations * len(data)),
            "images_per_s": len(data) / wall, "psnr": psnrs, "psnr_mean": float(np.mean(psnrs))}


def _fitting(check: Check, data: list[Any], rate: float | None, iterations: int, reserve: float) -> int:
    """How many images a DIP part can fit in the budget left (0: skip), from a measured rate."""
    if rate is None:
        return len(data)
    per_image = iterations / rate
    return max(0, min(len(data), int((check.left() - reserve) / per_image)))


def run(args: argparse.Namespace) -> dict[str, Any]:
    _tqdm_fallback()
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    check = Check(args.out, args.budget_s)
    check.doc["environment"] = environment(device)
    check.doc["settings"] = {"budget_s": args.budget_s, "count": args.count, "quick": args.quick,
                             "images": str(args.images), "task": SIGMA_TASK}
    check.write()
    crop = 32 if args.quick else None
    images = _images(args.images, args.count, crop)
    check.doc["images"] = [{"name": n, "sha256": s, "shape": list(t.shape)} for n, s, t in images]
    truths = [t.to(device)[None] for _, _, t in images]
    data = _measure(images, device, args.images.name)
    params = dip_params(args.quick)
    check.doc["dip_params"] = params
    mixed = "bf16" if device.type == "cpu" or torch.cuda.is_bf16_supported() else "fp16"
    iterations = int(params["iterations"])
    reserve = 0.25 * args.budget_s  # kept for DPS and the U-Net

    def calibrate() -> dict[str, Any]:
        from benchmark.api import Problem
        from benchmark.run.calibration import Calibrator, cache_key, candidates
        from methods.dip import DeepImagePrior as DIP

        problems = [Problem(y, physics, 0) for physics, y in data]
        calibrator = Calibrator(args.out / "calibration", device)
        key = cache_key("dip", json.dumps(params, sort_keys=True), SIGMA_TASK, tuple(images[0][2].shape), device)
        found = calibrator.measure(key, DIP(**params), lambda b: [problems[i % len(problems)] for i in range(b)],
                                   candidates(len(problems)))
        return {"rates_image_steps_per_s": found.rates, "peak_mb": found.peak_mb,
                "batch_size": found.best(len(problems)), "seconds": round(calibrator.measured_s, 3)}

    calibration = check.part("calibration", calibrate) or {"batch_size": 1, "rates_image_steps_per_s": {}}
    rates = calibration["rates_image_steps_per_s"]
    chosen = int(calibration["batch_size"])
    dip_runs: dict[str, dict[str, Any]] = {}
    for batch in (1, chosen) if chosen > 1 else (1,):
        for precision in ("fp32", mixed):
            name = f"dip_b{batch}_{precision}"

            def body(batch: int = batch, precision: str = precision) -> dict[str, Any]:
                count = _fitting(check, data, rates.get(batch), iterations, reserve)
                if count == 0:
                    raise _Skip(f"one image would not fit the {check.left():.0f} s left")
                return fit_dip(params, data[:count], truths[:count], batch, precision, device)

            result = check.part(name, body)
            if result is not None:
                dip_runs[name] = result
    check.doc["mixed_precision"] = _precision_summary(dip_runs, mixed)
    train = _training_images(args)
    check.part("unet", lambda: data_driven("unet", args, check, train, data, truths, device))
    check.part("dps", lambda: data_driven("dps", args, check, train, data, truths, device))
    check.write()
    return check.doc


def _precision_summary(runs: dict[str, dict[str, Any]], mixed: str) -> dict[str, Any]:
    """PSNR difference (mixed − fp32, same images) and speed-up, per batch size."""
    out: dict[str, Any] = {"mixed": mixed}
    for name, fp32 in runs.items():
        if not name.endswith("_fp32") or f"{name[:-5]}_{mixed}" not in runs:
            continue
        other = runs[f"{name[:-5]}_{mixed}"]
        n = min(len(fp32["psnr"]), len(other["psnr"]))
        out[name[:-5]] = {"psnr_diff_db": float(np.mean(np.subtract(other["psnr"][:n], fp32["psnr"][:n]))),
                          "speedup": fp32["s_per_iteration_per_image"] / other["s_per_iteration_per_image"]}
    return out


def _training_images(args: argparse.Namespace) -> list[torch.Tensor] | None:
    if args.train is None or not args.train.is_dir():
        return None
    return [t for _, _, t in _images(args.train, args.train_limit, 32 if args.quick else None)]


def data_driven(name: str, args: argparse.Namespace, check: Check, train: list[torch.Tensor] | None,
                data: list[tuple[Any, torch.Tensor]], truths: list[torch.Tensor],
                device: torch.device) -> dict[str, Any]:
    """Train (a small budget) and run a data-driven method on the same images, while the budget lasts."""
    if train is None:
        raise _Skip("no training images (--train DIR)")
    if check.left() <= 0:
        raise _Skip("the budget is spent")
    from benchmark.api import TrainingContext
    from benchmark.problems import tasks

    if name == "unet":
        from methods.unet import SupervisedUNet

        budget = "test" if args.quick else "paper"  # --quick: the tests' tiny nets, for a CPU
        method: Any = SupervisedUNet(**SupervisedUNet.resolve_params("denoising", {"train_steps": args.train_steps},
                                                                     budget))
    else:
        from methods.dps import DPS

        method = DPS(**DPS.resolve_params("denoising", {"prior_steps": args.train_steps,
                                                         "sampling_steps": 10 if args.quick else 1000},
                                          "test" if args.quick else "paper"))
    ctx = TrainingContext(images=train, dataset=str(args.train), task=tasks.get(SIGMA_TASK),
                          cache_dir=args.out / "checkpoints", seed=0, device=device, progress=False)
    _sync(device)
    began = time.perf_counter()
    report = method.prepare(ctx)
    _sync(device)
    train_s = time.perf_counter() - began
    psnrs: list[float] = []
    wall = 0.0
    for (physics, y), truth in zip(data, truths, strict=True):
        if psnrs and check.left() < wall / len(psnrs):  # the next image would not fit
            break
        _sync(device)
        began = time.perf_counter()
        result = method.reconstruct(y, physics, seed=0)
        _sync(device)
        wall += time.perf_counter() - began
        psnrs.append(_psnr(result.x if hasattr(result, "x") else result, truth))
    return {"train_steps": args.train_steps, "train_images": len(train), "train_s": round(train_s, 3),
            "cached": bool(report.cached) if report is not None else False, "images": len(psnrs),
            "wall_s": round(wall, 3), "images_per_s": len(psnrs) / wall if wall else None,
            "psnr": psnrs, "psnr_mean": float(np.mean(psnrs)) if psnrs else None}


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
                     f"{fmt('s_per_iteration_per_image')} | {fmt('images_per_s')} | {fmt('psnr_mean', '.2f')} | "
                     f"{str(note)[:120]} |")
    mixed = doc.get("mixed_precision", {})
    for key, value in mixed.items():
        if isinstance(value, dict):
            lines.append(f"\nMixed precision ({mixed['mixed']}) at {key}: PSNR {value['psnr_diff_db']:+.3f} dB "
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
