"""What the DIP-family method files share: default parameters, per-task settings, and the
set-up of a network and its fixed input for one measurement.

Per-task settings are those of Ulyanov et al.'s official notebooks (github
DmitryUlyanov/deep-image-prior), each for a 512×512 image; no notebook or paper gives budgets
for other image sizes, so the same budgets apply to every size (the quick profile, at 64×64,
overrides them for CPU time):

* denoising (``denoising.ipynb``, F16 at σ = 25): skip net 128/128/4, 5 scales, bilinear, lr
  0.01, input perturbation 1/30 ("set to 1./20. for sigma=50"), EMA 0.99 of the outputs, 3000
  iterations. The notebook gives no budget for σ = 15 or 50: they use σ = 25's.
* random-pixel inpainting (``restoration.ipynb``, barbara with 50% of the pixels missing, the
  paper's Fig. 7 bottom): the same skip net, lr 0.001, perturbation 0.03, 11000 iterations, the
  last raw output. (Its "kate" example keeps 2% of the pixels with a small 16-128/no-skip net,
  lr 0.01, no perturbation and 1000 iterations; ``inpainting.ipynb``'s kate is text inpainting.)
* text inpainting (``inpainting.ipynb``, kate/peppers text masks, the paper's Fig. 7 top) and box
  (region) inpainting, which takes the same settings: skip net 128/128/128 with nearest
  up-sampling, lr 0.01, perturbation 0.03, 6000 iterations, raw output.
* 4× super-resolution (``super-resolution.ipynb``): the denoising net, lr 0.01, perturbation
  0.03, 2000 iterations, raw output (no averaging).
* deblurring has no notebook: the denoising settings with 3000 iterations are our choice.
* sparse-view CT has no notebook; the DIP-for-CT literature fits the raw output with neither
  input perturbation nor averaging (Baguer, Leuschner & Schmidt 2020, dival's
  ``DeepImagePriorCTReconstructor``) and feeds the network the filtered back-projection instead
  of noise (Barbano et al. 2022, "An educated warm start for DIP-based micro CT"; Denker et al.'s
  DIP handbook code, ``model_inp="fbp"``). Measured on a ct_chest_train slice at 256², 60 views
  (quick network, lr 0.01): after 200 steps the FBP input reaches 28.9 dB, noise input 25.0 dB
  without and 19.1 dB with the denoising notebook's perturbation and EMA 0.99 (FBP: 25.2 dB);
  an A = Radon data term passes high frequencies only weakly (AᵀA ~ 1/|ω|), so a network that
  must build the image from noise needs thousands of steps (Baguer et al.: 5000). The budget is
  the skip defaults' 3000 (untuned at 512²); ``benchmark tune`` chooses it per profile.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.api import ORACLE_STREAM, Callback, Method, Problem, Reconstruction, SoloCost
from benchmark.core import seeding
from benchmark.core.errors import UserError
from benchmark.core.keys import canonical_json
from benchmark.problems import spaces
from methods._dip import loop, streams
from methods._dip.networks import (
    UPSAMPLE_MODES,
    ConvDecoder,
    DeepDecoder,
    SkipNet,
    decoder_width_for,
    padded_shape,
    parameter_count,
    start_at_zero,
)
from methods._dip.objectives import measurement_loss
from methods._dip.streams import Stream

#: Parameters of the paper's skip network and fitting loop (the denoising notebook's values).
SKIP_DEFAULTS: dict[str, Any] = {
    "iterations": 3000,
    "lr": 0.01,
    "channels": 128,
    "scales": 5,
    "skip_channels": 4,
    "input_channels": 32,
    "upsample": "bilinear",
    "reg_noise_std": 1.0 / 30.0,
    "ema": 0.99,
    "input": "noise",
    #: the forward pass's precision: "fp32", or mixed ("bf16" / "fp16" autocast; weights, Adam and the
    #: loss stay float32), a GPU option (``make gpu-check`` measures what it buys)
    "precision": "fp32",
}

#: MRI (task family "mri"): Adam's lr 0.003 instead of the denoising notebook's 0.01 for every
#: skip-network variant, chosen for DIP on 4 mri_brain_train slices at 4× (never test slices), by
#: the mean PSNR after a fixed budget: 64², 1500 iterations of the quick network: 21.96 dB against
#: 21.78 (zero-filled 20.49); 128², 1000 iterations: 23.74 against 23.53 (zero-filled 22.38).
#: Darestani & Heckel (IEEE TCI 2021, github MLI-lab/ConvDecoder) fit DIP to k-space with lr 0.008
#: and no input perturbation; without the perturbation (and its EMA) DIP fell below zero-filled on
#: those slices (19.99 dB at 3000 iterations), so the perturbation and EMA stay. It was chosen with
#: the quick network, so it also holds under the quick budget (``SKIP_BUDGET_TASK_PARAMS``).
MRI_DEFAULTS: dict[str, Any] = {"lr": 0.003}
#: ``inpainting.ipynb``'s kate/peppers settings (text masks), also those of box inpainting
TEXT_INPAINTING_DEFAULTS: dict[str, Any] = {"iterations": 6000, "lr": 0.01, "reg_noise_std": 0.03, "ema": 0.0,
                                            "skip_channels": 128, "upsample": "nearest"}
#: Per task family, then per task name (which wins), from the notebooks (see the module docstring).
PAPER_TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "denoising": {"iterations": 3000, "reg_noise_std": 1.0 / 30.0},
    "denoising_s50": {"reg_noise_std": 1.0 / 20.0},
    "inpainting": {"iterations": 11000, "lr": 0.001, "reg_noise_std": 0.03, "ema": 0.0},
    "inpainting_box": TEXT_INPAINTING_DEFAULTS,
    "inpainting_text": TEXT_INPAINTING_DEFAULTS,
    "super-resolution": {"iterations": 2000, "reg_noise_std": 0.03, "ema": 0.0},
    "deblurring": {"iterations": 3000, "reg_noise_std": 1.0 / 30.0},
    "ct": {"input": "fbp", "reg_noise_std": 0.0, "ema": 0.0},
    "mri": MRI_DEFAULTS,
}

#: Methods that stop themselves get a cap of at least 5000 iterations (ES-WMV's notebooks), so
#: that stopping early, not the notebooks' hand-picked budgets, decides where they end.
EARLY_STOPPING_TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    key: {**values, "iterations": max(int(values["iterations"]), 5000)} if "iterations" in values else dict(values)
    for key, values in PAPER_TASK_DEFAULTS.items()
}

#: The budgets of the tests and of the quick profile (64×64 images on a CPU): the paper's
#: budgets are for 512×512 images and over-fit here. ``QUICK_CAP`` is the quick budget's iteration
#: cap for every DIP-family method, so that the variants of a block run under the same cap: the
#: stopping rules stop within it, and the fixed budgets of DIP and DIP-TV are chosen by ``benchmark
#: tune`` on training images from a grid that ends at it (the report lists an untuned one).
QUICK_CAP = 800
TEST_PARAMS: dict[str, Any] = {"iterations": 60, "channels": 16, "scales": 3}
QUICK_PARAMS: dict[str, Any] = {"iterations": QUICK_CAP, "channels": 32}

#: The skip-network methods' budgets: lr 0.01 for every task, since the inpainting notebook's
#: lr 0.001 is paired with its 11000 iterations.
SKIP_TEST_PARAMS: dict[str, Any] = {**TEST_PARAMS, "lr": 0.01}
SKIP_QUICK_PARAMS: dict[str, Any] = {**QUICK_PARAMS, "lr": 0.01}

SKIP_BUDGET_TASK_PARAMS: dict[str, dict[str, dict[str, Any]]] = {"quick": {"mri": MRI_DEFAULTS}}

#: Scale of the fixed uniform input, as in the paper's code.
INPUT_SCALE = 0.1


@dataclass
class Setup:
    """A network ready to fit one measurement: its fixed input, the image size it must produce."""

    network: nn.Module
    z: torch.Tensor
    size: tuple[int, int]
    noise: torch.Generator | None


def positive_int(params: Mapping[str, Any], key: str, minimum: int = 1) -> int:
    value = params[key]
    try:
        whole = not isinstance(value, bool) and float(value).is_integer()
    except (TypeError, ValueError):
        whole = False
    if not whole or int(value) < minimum:
        raise UserError(f"parameter {key!r} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def finite_or_none(value: float) -> float | None:
    """A rule's best value for the record: None when the rule never saw a value."""
    return value if math.isfinite(value) else None


def image_shape(y: torch.Tensor, physics: Any) -> tuple[int, int, int]:
    """(C, H, W) of the image behind ``y``: the domain of ``A`` (the HR size for super-resolution)."""
    with torch.no_grad():
        shape = physics.A_adjoint(y).shape
    return int(shape[-3]), int(shape[-2]), int(shape[-1])


def loop_settings(params: Mapping[str, Any]) -> loop.LoopSettings:
    """The loop's settings (what the trajectory depends on) from a method's parameters; the loop's
    options a method does not have keep their defaults."""
    optional = {key: params[key] for key in ("noise_law", "draws", "input_lr", "weight_decay", "lr_decay")
                if key in params}
    try:
        return loop.LoopSettings(
            lr=float(params["lr"]),
            reg_noise_std=float(params["reg_noise_std"]),
            precision=str(params.get("precision", "fp32")),
            reg_noise_decay=float(params.get("reg_noise_decay", 1.0)),
            reg_noise_decay_every=positive_int(params, "reg_noise_decay_every", minimum=0)
            if "reg_noise_decay_every" in params else 0,
            lr_decay_every=positive_int(params, "lr_decay_every", minimum=0) if "lr_decay_every" in params else 0,
            **optional,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def _fixed_input(channels: int, height: int, width: int, seed: int, like: torch.Tensor,
                 scale: float = INPUT_SCALE) -> torch.Tensor:
    # Drawn on the CPU in float32 so that the input depends neither on the device nor on the dtype.
    z = torch.rand((1, channels, height, width), generator=seeding.generator(seed, "input"))
    return (z * scale).to(device=like.device, dtype=like.dtype)


#: what the skip network's fixed input is: "noise" (``input_channels`` of uniform noise, the
#: paper's) or "fbp" (the image ``A_dagger(y)``, e.g. the filtered back-projection for CT, as the
#: DIP-for-CT literature feeds it: Barbano et al. 2022, Denker et al.'s DIP handbook code)
INPUTS = ("noise", "fbp")


def _pseudo_inverse_input(y: torch.Tensor, physics: Any, height: int, width: int) -> torch.Tensor:
    """``A_dagger(y)`` projected into the image space, edge-padded to ``height``×``width`` (the
    network's padded size; reflection cannot pad by more than the image's side)."""
    with torch.no_grad():
        x0 = spaces.of(physics).project(physics.A_dagger(y))
    top, left = (height - x0.shape[-2]) // 2, (width - x0.shape[-1]) // 2
    pad = (left, width - x0.shape[-1] - left, top, height - x0.shape[-2] - top)
    return torch.nn.functional.pad(x0, pad, mode="replicate") if any(pad) else x0.clone()


def _noise(params: Mapping[str, Any], seed: int, device: torch.device) -> torch.Generator | None:
    return seeding.generator(seed, "perturbation", device=device) if float(params["reg_noise_std"]) > 0 else None


def skip_setup(params: Mapping[str, Any], y: torch.Tensor, physics: Any, seed: int) -> Setup:
    """The paper's skip network, input of ``input_channels`` at the image size padded to 2**scales."""
    c, h, w = image_shape(y, physics)
    scales = positive_int(params, "scales")
    width = positive_int(params, "channels")
    skip = positive_int(params, "skip_channels", minimum=0)
    depth = positive_int(params, "input_channels")
    upsample = params["upsample"]
    if upsample not in UPSAMPLE_MODES:
        raise UserError(f"parameter 'upsample' must be one of {', '.join(UPSAMPLE_MODES)}, got {upsample!r}")
    source = params.get("input", "noise")  # checked by validate
    depth = c if source == "fbp" else depth
    output = spaces.of(physics).output_layer
    net = seeding.seeded_build(lambda: SkipNet(depth, c, width, skip, scales, upsample, output_layer=output), seed,
                               "network")
    net = net.to(device=y.device, dtype=y.dtype)
    ph, pw = padded_shape(h, w, scales)
    z = _pseudo_inverse_input(y, physics, ph, pw) if source == "fbp" else _fixed_input(depth, ph, pw, seed, y)
    return Setup(net, z, (h, w), _noise(params, seed, y.device))


def decoder_setup(params: Mapping[str, Any], y: torch.Tensor, physics: Any, seed: int) -> Setup:
    """The deep decoder, input of ``channels`` at the padded image size / 2**scales; ``channels``
    0 sizes it from the image so that its parameters are at most ``param_ratio`` per image value."""
    c, h, w = image_shape(y, physics)
    scales = positive_int(params, "scales")
    if params["channels"] == 0:
        ratio = params["param_ratio"]
        if not isinstance(ratio, (int, float)) or ratio <= 0:
            raise UserError(f"parameter 'param_ratio' must be a number > 0, got {ratio!r}")
        width = decoder_width_for(float(ratio), c, h, w, scales)
    else:
        width = positive_int(params, "channels")
    output = spaces.of(physics).output_layer
    net = seeding.seeded_build(lambda: DeepDecoder(c, width, scales, output_layer=output), seed, "network")
    net = net.to(device=y.device, dtype=y.dtype)
    ph, pw = padded_shape(h, w, scales)
    z = _fixed_input(width, ph >> scales, pw >> scales, seed, y)
    return Setup(net, z, (h, w), _noise(params, seed, y.device))


def conv_decoder_input_size(height: int, width: int, longer: int) -> tuple[int, int]:
    """The input's size: ``longer`` pixels on the image's longer side, the other side in
    proportion (at least 1), as the authors' 8×4 input for 640×368 k-space."""
    if height >= width:
        return min(longer, height), max(1, min(round(longer * width / height), width))
    short, long_ = conv_decoder_input_size(width, height, longer)
    return long_, short


def conv_decoder_setup(params: Mapping[str, Any], y: torch.Tensor, physics: Any, seed: int) -> tuple[Setup, float]:
    """ConvDecoder with uniform [0, 1) input (the authors' ``get_scale_factor``), its output scaled
    so that the untrained network's image has the norm of the zero-filled image ``A†y`` (the
    authors scale the measurement by ``‖net(z)‖ / ‖A†y‖`` instead, which Adam follows alike); then
    its head is zeroed, so that it starts at the zero image as every linear-output network here.
    Returns the set-up and the factor."""
    c, h, w = image_shape(y, physics)
    width = positive_int(params, "channels")
    layers = positive_int(params, "layers", minimum=2)
    size = conv_decoder_input_size(h, w, positive_int(params, "input_size"))
    output = spaces.of(physics).output_layer
    net = seeding.seeded_build(lambda: ConvDecoder(c, width, layers, size, (h, w), output_layer=output), seed,
                               "network")
    net = net.to(device=y.device, dtype=y.dtype)
    z = _fixed_input(width, size[0], size[1], seed, y, scale=1.0)
    with torch.no_grad():
        start = float(net(z).norm())
        target = float(physics.A_dagger(y).norm())
        factor = target / start if start > 0 and target > 0 else 1.0
        net.scale.factor.fill_(factor)
    start_at_zero(net.head, output)
    return Setup(net, z, (h, w), _noise(params, seed, y.device)), factor


@dataclass
class Fit:
    """One problem's fit as a variant sets it up: what the network minimises, and its work between
    steps. Methods whose fits are equal share one (``DipMethod.shared_fit_key``)."""

    setup: Setup
    objective: loop.Objective
    regulariser: loop.Regulariser | None = None
    hook: loop.Hook | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Reading:
    """How a variant reads a fit: its stream of iterates, its stopping rule, and what it adds to the
    record (``finish`` sees the finished reconstruction, e.g. to add the rule's best value)."""

    stream: Stream
    rule: loop.Observer | None = None
    info: dict[str, Any] = field(default_factory=dict)
    finish: Callable[[Reconstruction], None] | None = None


#: the parameters that decide a skip network and its input (the loop's settings decide the rest of
#: the trajectory): methods whose values agree, with the same ``fit_kind`` and loop settings, fit
#: one network together and differ only in how they read it
SKIP_FIT_PARAMS = ("channels", "scales", "skip_channels", "input_channels", "upsample", "input")


class DipMethod(Method):
    """A DIP-family method: it says how to set up the fit of one problem (:meth:`fit`) and how to
    read it (:meth:`read`); the shared loop fits one problem or a batch of them, one network per
    image, and several methods may read one fit (:meth:`solve_shared`)."""

    family = "dip"
    max_batch = 64
    #: the integer parameters that must be >= 1 (a method whose 0 means something drops its key)
    counts: ClassVar[tuple[str, ...]] = ("iterations", "channels", "scales", "input_channels")
    #: what the fit is (network and objective): methods of one kind whose ``fit_params`` agree share
    #: a fit; empty: the method's fit is its own (a hook, another objective)
    fit_kind: ClassVar[str] = "skip network, measurement loss"
    fit_params: ClassVar[tuple[str, ...]] = SKIP_FIT_PARAMS

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        for key in cls.counts:
            if key in params:
                cls.require(params, key, params[key] >= 1, "an integer >= 1")
        if "skip_channels" in params:
            cls.require(params, "skip_channels", params["skip_channels"] >= 0, "an integer >= 0")
        cls.require(params, "lr", params["lr"] > 0, "a number > 0")
        cls.require(params, "reg_noise_std", params["reg_noise_std"] >= 0, "a number >= 0")
        if "ema" in params:
            cls.require(params, "ema", 0 <= params["ema"] < 1, "a number in [0, 1)")
        if "input" in params:
            cls.require(params, "input", params["input"] in INPUTS, f"one of {', '.join(INPUTS)}")
        if "precision" in params:
            cls.require(params, "precision", params["precision"] in loop.PRECISIONS,
                        f"one of {', '.join(loop.PRECISIONS)}")

    def fit(self, y: torch.Tensor, physics: Any, seed: int) -> Fit:
        """The paper's skip network fitted to ``y`` by the measurement loss (vanilla DIP's fit)."""
        return Fit(skip_setup(self.params, y, physics, seed), measurement_loss(physics, y))

    def read(self, y: torch.Tensor, physics: Any, seed: int) -> Reading:
        """The stream of the ``ema`` parameter, no stopping rule (the budget stops the run)."""
        return Reading(streams.averaged(float(self.params.get("ema", 0.0))))

    def settings(self) -> loop.LoopSettings:
        """The loop's settings from the parameters (part of the fit)."""
        return loop_settings(self.params)

    def shared_fit_key(self) -> str | None:
        if not self.fit_kind:
            return None
        return canonical_json({"kind": self.fit_kind, "loop": dataclasses.asdict(self.settings()),
                               "params": {k: self.params[k] for k in self.fit_params if k in self.params}})

    def memory_estimate(self, shape: tuple[int, int, int]) -> int | None:
        """Activations saved for the backward pass, measured on a 64×64 probe and scaled by the
        padded pixel count, plus weights, gradients and Adam's two moments (4 × the weights)."""
        c, h, w = shape
        saved, weights, probe_pixels = _probe_memory(self, c)
        scales = positive_int(self.params, "scales") if "scales" in self.params else 0
        ph, pw = padded_shape(h, w, scales)
        return int(saved * ph * pw / probe_pixels + 4 * weights)

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> Reconstruction:
        return self.reconstruct_batch([Problem(y, physics, seed, callback)])[0]

    def reconstruct_batch(self, problems: Sequence[Problem]) -> list[Reconstruction]:
        return [group[0] for group in self.solve_shared([[(self, p)] for p in problems])]

    @classmethod
    def solve_shared(cls, groups: Sequence[Sequence[tuple[Method, Problem]]]) -> list[list[Reconstruction]]:
        """One fit per group (the methods reading one problem; the first sets the fit up), all
        groups in one batch; each method gets what it would get alone."""
        first: DipMethod = groups[0][0][0]  # type: ignore[assignment]
        config = first.settings()
        fits, readings = [], []
        for group in groups:
            owner, problem = group[0]
            fit = owner.fit(problem.y, problem.physics, problem.seed)  # type: ignore[attr-defined]
            reads = [(m, m.read(p.y, p.physics, p.seed)) for m, p in group]  # type: ignore[attr-defined]
            watchers = [loop.Watcher(positive_int(m.params, "iterations"), r.stream, r.rule, p.callback)
                        for (m, r), (_, p) in zip(reads, group, strict=True)]
            fits.append(loop.FitProblem(fit.setup.network, fit.setup.z, fit.objective, fit.setup.size, watchers,
                                        fit.setup.noise, fit.regulariser, fit.hook))
            readings.append((fit, reads))
        with torch.enable_grad():
            results = loop.fit_many(fits, config)
        out = []
        for group, (fit, reads), per_watcher in zip(groups, readings, results, strict=True):
            space = spaces.of(group[0][1].physics)
            row = []
            for (method, reading), result in zip(reads, per_watcher, strict=True):
                reconstruction = Reconstruction(
                    x=space.project(result.x),
                    iterations=result.iterations,
                    selected_iteration=result.selected_iteration,
                    budget=positive_int(method.params, "iterations"),
                    info={
                        "stopped_by": result.stopped_by,
                        "final_loss": result.final_loss,
                        "network_parameters": parameter_count(fit.setup.network),
                        "input_shape": "x".join(str(s) for s in fit.setup.z.shape[1:]),
                        ORACLE_STREAM: reading.stream.name,
                        "shared_fit": len(group),
                        **fit.info,
                        **reading.info,
                    },
                    uncertainty=result.spread,
                    cost=SoloCost(dict(result.network_s), result.own_s),
                )
                if reading.finish is not None:
                    reading.finish(reconstruction)
                row.append(reconstruction)
            out.append(row)
        return out


#: (channels, parameters) → (saved activation bytes, weight bytes, output pixels) of a probe
_PROBES: dict[tuple[Any, ...], tuple[int, int, int]] = {}


def _probe_memory(method: DipMethod, channels: int) -> tuple[int, int, int]:
    """(bytes of saved activations, bytes of weights, output pixels) of one forward pass on a 64×64
    probe, traced on the meta device."""
    import deepinv as dinv

    key = (channels, tuple(sorted((k, repr(v)) for k, v in method.params.items())))
    if key not in _PROBES:
        setup = method.fit(torch.zeros(1, channels, 64, 64), dinv.physics.Denoising(), 0).setup
        saved = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal saved
            saved += t.numel() * t.element_size()
            return t

        # On the meta device: shapes and sizes without computing anything.
        network, z = setup.network.to("meta"), setup.z.to("meta")
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = network(z)
        weights = sum(p.numel() * p.element_size() for p in network.parameters())
        _PROBES[key] = (saved, weights, int(out.shape[-1] * out.shape[-2]))
    return _PROBES[key]
