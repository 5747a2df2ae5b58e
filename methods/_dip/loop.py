"""The one fitting loop every DIP-family method runs, for one problem or B at once.

The variants differ only in the pieces they plug in: the network and its fixed input, the
objective (data fidelity on some measured entries, plus a regulariser), the input perturbation,
the output averaging and the stopping rule. The loop itself is the paper's:

    for k = 1..budget:  z_k = z + σ_reg·n_k;  out_k = crop(f_θ(z_k));  x_k = EMA(out_k)
                        θ ← Adam step on objective(out_k)
                        stop if the rule or the caller's callback says so

:func:`fit_many` runs B such problems in lock step: their networks are grouped into one
(``methods._dip.stacking``: one grouped convolution per layer, batch statistics per problem),
the summed loss gives each problem exactly its own gradient, and Adam is element-wise, so each
problem follows its solo trajectory up to the kernels' reduction order. Each problem keeps its
own input, perturbation stream, objective, stopping rule and callback; a problem that stops
leaves the group (its weights and Adam state are cut out) and the others go on.

The loop makes no host-device sync of its own except what a stopping rule needs, and each
problem's final loss, read once when it ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from methods._dip import stacking
from methods._dip.networks import crop_output
from methods._dip.stopping import Verdict

#: output (B×C×H×W) → loss per problem (B,)
Objective = Callable[[torch.Tensor], torch.Tensor]
#: (step, x_k, data loss of step k per problem) → Verdict: the stopping rule's view of the run.
#: The loss is a device tensor; a rule that needs it as a number pays for that sync itself.
Observer = Callable[[int, torch.Tensor, torch.Tensor], Verdict]
#: the harness's ``callback(step, x_k) -> keep_going``
Callback = Callable[[int, torch.Tensor], bool]


#: forward-pass precisions of the loop: autocast dtype (None: plain float32)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class LoopSettings:
    iterations: int
    lr: float
    #: std of the Gaussian perturbation added to the fixed input at each step (0: none)
    reg_noise_std: float = 0.0
    #: weight of the exponential moving average of outputs (0: the raw output is the iterate)
    ema: float = 0.0
    #: the network's forward pass in "fp32", or under autocast in "bf16" or "fp16" (mixed
    #: precision: weights, Adam and the objective stay in float32; fp16 scales the loss)
    precision: str = "fp32"
    #: the perturbation is multiplied by ``reg_noise_decay`` every ``reg_noise_decay_every`` steps,
    #: from the first step on (0: never), as the deep decoder's inpainting code does
    reg_noise_decay: float = 1.0
    reg_noise_decay_every: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.reg_noise_std < 0:
            raise ValueError(f"reg_noise_std must be >= 0, got {self.reg_noise_std}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0.0 < self.reg_noise_decay <= 1.0 or self.reg_noise_decay_every < 0:
            raise ValueError("reg_noise_decay must be in (0, 1] and reg_noise_decay_every >= 0")

    def noise_std(self, step: int) -> float:
        """The perturbation's std at ``step`` (1-based)."""
        if self.reg_noise_decay_every <= 0:
            return self.reg_noise_std
        return self.reg_noise_std * self.reg_noise_decay ** ((step - 1) // self.reg_noise_decay_every + 1)


@dataclass
class FitResult:
    x: torch.Tensor  # the selected iterate, B×C×H×W
    iterations: int  # steps run
    selected_iteration: int  # step whose iterate is x
    stopped_by: str  # "budget" | "rule" | "callback"
    final_loss: float  # objective at the last step run


def _adam(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam with the fused kernel where the parameters' device has one, the default otherwise."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except RuntimeError:
        return torch.optim.Adam(params, lr=lr)


@dataclass
class FitProblem:
    """One problem of :func:`fit_many`: a network, its fixed input and everything it answers to."""

    network: nn.Module
    z: torch.Tensor  # 1×C×H'×W', the fixed input
    objective: Objective
    size: tuple[int, int]  # (H, W) of the image; the network's output is cropped to it
    noise: torch.Generator | None = None  # draws the perturbations (needed when reg_noise_std > 0)
    regulariser: Objective | None = None
    rule: Observer | None = None
    callback: Callback | None = None


def fit_one(
    network: nn.Module,
    z: torch.Tensor,
    objective: Objective,
    settings: LoopSettings,
    *,
    size: tuple[int, int],
    noise: torch.Generator | None = None,
    regulariser: Objective | None = None,
    rule: Observer | None = None,
    callback: Callback | None = None,
) -> FitResult:
    """Fit ``network`` so that ``objective(crop(network(z)))`` falls; see the module docstring.

    ``size`` is the image's (H, W): the network works on the padded input ``z`` and its output
    is cropped to the centre before the objective sees it. Without a ``rule`` the last iterate
    is returned; with one, the iterate of the rule's best step (the last iterate if the rule
    never named one, e.g. a variance window that never filled).
    """
    problem = FitProblem(network, z, objective, size, noise, regulariser, rule, callback)
    return fit_many([problem], settings)[0]


def _check(problems: Sequence[FitProblem], settings: LoopSettings) -> None:
    if not problems:
        raise ValueError("fit_many needs at least one problem")
    shapes = {(tuple(p.z.shape), p.size) for p in problems}
    if len(shapes) != 1:
        raise ValueError(f"problems fitted together need one input shape and image size, got {sorted(shapes)}")
    if problems[0].z.shape[0] != 1:
        shape = tuple(problems[0].z.shape)
        raise ValueError(f"each problem is one image (a batch of 1), got an input of shape {shape}")
    if settings.reg_noise_std > 0 and any(p.noise is None for p in problems):
        raise ValueError("reg_noise_std > 0 needs a `noise` generator for the perturbations")


def fit_many(problems: Sequence[FitProblem], settings: LoopSettings) -> list[FitResult]:
    """Fit every problem, B at once (one optimiser step per iteration for all of them)."""
    _check(problems, settings)
    height, width = problems[0].size
    group = Group(problems, settings.lr, settings.precision)
    results: list[FitResult | None] = [None] * len(problems)
    chosen: list[tuple[torch.Tensor, int] | None] = [None] * len(problems)
    x_k: torch.Tensor | None = None
    for step in range(1, settings.iterations + 1):
        out = crop_output(group.forward(settings.noise_std(step)), height, width)
        active = [problems[i] for i in group.members]
        data_loss = torch.cat([p.objective(out[j : j + 1]) for j, p in enumerate(active)])
        total = data_loss
        if any(p.regulariser is not None for p in active):
            total = total + torch.cat([
                p.regulariser(out[j : j + 1]) if p.regulariser is not None else out.new_zeros(1)
                for j, p in enumerate(active)
            ])
        group.step(total.sum())

        # no_grad rather than inference_mode: x_k escapes to the caller, and inference tensors
        # could not be updated in place outside inference mode.
        with torch.no_grad():
            current = out.detach()
            # A fresh tensor every step: the caller may keep x_k, so it is never updated in place.
            if settings.ema > 0 and x_k is not None:
                x_k = x_k * settings.ema + current * (1.0 - settings.ema)
            else:
                x_k = current
            leaving: list[int] = []
            for j, (index, problem) in enumerate(zip(group.members, active, strict=True)):
                mine = x_k[j : j + 1]
                loss_j = data_loss[j : j + 1].detach()
                verdict = problem.rule(step, mine, loss_j) if problem.rule else Verdict(best=True)
                if verdict.best:
                    chosen[index] = (mine, step)
                keep_going = problem.callback(step, mine) if problem.callback is not None else True
                ended = "rule" if verdict.stop else ("callback" if not keep_going else None)
                if ended is None and step < settings.iterations:
                    continue
                best = chosen[index] or (mine, step)  # the rule never had an opinion: last iterate
                results[index] = FitResult(x=best[0].clone(), iterations=step, selected_iteration=best[1],
                                           stopped_by=ended or "budget", final_loss=float(total[j].detach()))
                leaving.append(j)
            if leaving:
                keep = [j for j in range(len(group.members)) if j not in leaving]
                if not keep:
                    break
                group.keep(keep)
                x_k = x_k[keep]
    assert all(r is not None for r in results), "a problem ended without a result"
    return results  # type: ignore[return-value]


class Group:
    """The networks of the problems still running, grouped into one, with their optimiser."""

    def __init__(self, problems: Sequence[FitProblem], lr: float, precision: str = "fp32") -> None:
        self.members = list(range(len(problems)))
        device = problems[0].z.device
        dtype = PRECISIONS[precision]
        self._autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                          else contextlib.nullcontext())
        self._scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
        self.network = stacking.group([p.network for p in problems])
        self.network.train()  # DIP fits with batch statistics throughout, as the papers do
        # Channels-last convolutions and the fused Adam step: ~12% per step on a CPU, same results.
        self.network.to(memory_format=torch.channels_last)
        self.lr = lr
        self.optimiser = _adam(list(self.network.parameters()), lr)
        self._inputs = [p.z.contiguous(memory_format=torch.channels_last) for p in problems]
        self._noise = [p.noise for p in problems]
        self.z = stacking.to_grouped(torch.cat(self._inputs))

    def forward(self, reg_noise_std: float) -> torch.Tensor:
        """The members' outputs, B×C×H'×W', from inputs perturbed by each member's own stream."""
        net_input = self.z
        if reg_noise_std > 0:
            # Each draw has the layout of a solo run, so a problem sees the same numbers either way,
            # and is drawn in float32, so that a float64 run sees them too (up to rounding).
            # Drawn into a plain contiguous tensor: on a CPU, normal_ on a channels-last one takes
            # a per-element path ~10× slower (a fifth of the quick network's step at 64²).
            shape, z = self._inputs[0].shape, self._inputs[0]
            draws = [
                torch.empty(shape, device=z.device, dtype=torch.float32).normal_(generator=self._noise[i]).to(z.dtype)
                for i in self.members
            ]
            noise = draws[0] if len(draws) == 1 else torch.cat(draws)
            net_input = self.z + reg_noise_std * stacking.to_grouped(noise)
        with self._autocast:
            out = self.network(net_input)
        if self._scaler is not None or not isinstance(self._autocast, contextlib.nullcontext):
            out = out.to(self.z.dtype)  # the objective and the iterates in the inputs' precision
        return stacking.from_grouped(out, len(self.members))

    def step(self, loss: torch.Tensor) -> None:
        self.optimiser.zero_grad(set_to_none=True)
        if self._scaler is None:
            loss.backward()
            self.optimiser.step()
            return
        self._scaler.scale(loss).backward()
        self._scaler.step(self.optimiser)
        self._scaler.update()

    def keep(self, positions: list[int]) -> None:
        """Drop every member but those at ``positions``: weights and Adam state are cut out."""
        before = len(self.members)
        old = list(self.network.parameters())
        replaced = stacking.keep(self.network, before, positions)
        state = self.optimiser.state
        self.optimiser = _adam(list(self.network.parameters()), self.lr)
        for param in old:
            if param in state:
                new = replaced[param]
                self.optimiser.state[new] = {
                    name: stacking.take(value, before, positions) if value.shape == param.shape else value
                    for name, value in state[param].items()
                }
        self.members = [self.members[j] for j in positions]
        self.z = stacking.to_grouped(torch.cat([self._inputs[i] for i in self.members]))
