"""The one fitting loop every DIP-family method runs, for one problem or B at once, watched by one
stopping rule or several.

The variants differ only in the pieces they plug in: the network and its input, the objective
(data fidelity on some measured entries, plus a regulariser), the input perturbation, what they do
between steps (a hook), and how they read the fit: which stream of iterates (the raw outputs, an
exponential moving average, a posterior mean) and which stopping rule. The loop is the paper's:

    for k = 1..:  z_k = z + σ_reg·n_k;  out_k = crop(f_θ(z_k));  θ ← Adam step on objective(out_k)
                  hook(k, out_k);  for each watcher: x_k = stream(out_k); stop if its rule,
                  its callback or its cap says so

A fit runs until its last watcher has stopped. Several watchers on one fit are several methods
that differ only in how they read one trajectory (DIP's fixed budget, ES-WMV, ES-EMV,
self-validation): each gets exactly what it would get alone, because a watcher never acts on the
network (:func:`fit_many` is the shared fit of issue 23).

:func:`fit_many` runs B such fits in lock step: their networks are grouped into one
(``methods._dip.stacking``: one grouped convolution per layer, batch statistics per problem), the
summed loss gives each problem exactly its own gradient, and Adam is element-wise, so each problem
follows its solo trajectory up to the kernels' reduction order. A problem whose watchers have all
stopped leaves the group (its weights and Adam state are cut out) and the others go on.

Costs: every step is timed; the time of the watchers' streams and rules is each watcher's own,
the callbacks' time (the harness measuring) belongs to nobody, and the rest is the network's,
shared equally by the problems in the group at that step. A watcher's result carries its network
share per group size up to its stop and its own time, which the harness turns into the runtime a
user fitting that image alone with that method would see.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from methods._dip import stacking
from methods._dip.networks import crop_output
from methods._dip.stopping import Verdict
from methods._dip.streams import Raw, Stream

#: output (B×C×H×W) → loss per problem (B,)
Objective = Callable[[torch.Tensor], torch.Tensor]
#: (output, the problem's current input cropped to the output's size) → loss per problem (B,)
Regulariser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: (step, x_k, data loss of step k per problem) → Verdict: the stopping rule's view of the run.
#: The loss is a device tensor; a rule that needs it as a number pays for that sync itself.
Observer = Callable[[int, torch.Tensor, torch.Tensor], Verdict]
#: the harness's ``callback(step, x_k) -> keep_going``
Callback = Callable[[int, torch.Tensor], bool]

#: forward-pass precisions of the loop: autocast dtype (None: plain float32)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: laws of the input perturbation: Gaussian of std σ (the DIP papers), or uniform on [0, σ·max z)
#: (self-guided DIP: "noise_max = max(z)/2", σ = 0.5)
NOISE_LAWS = ("gaussian", "uniform_max")


@dataclass(frozen=True)
class LoopSettings:
    """What the network's trajectory depends on (shared by every watcher of a fit)."""

    lr: float
    #: std of the Gaussian perturbation added to the input at each step (0: none)
    reg_noise_std: float = 0.0
    #: the network's forward pass in "fp32", or under autocast in "bf16" or "fp16" (mixed
    #: precision: weights, Adam and the objective stay in float32; fp16 scales the loss)
    precision: str = "fp32"
    #: the perturbation is multiplied by ``reg_noise_decay`` every ``reg_noise_decay_every`` steps,
    #: from the first step on (0: never), as the deep decoder's inpainting code does
    reg_noise_decay: float = 1.0
    reg_noise_decay_every: int = 0
    noise_law: str = "gaussian"
    #: forward passes per step, each with its own perturbation; the objective sees their mean
    #: (self-guided DIP's K draws; 1: the plain loop)
    draws: int = 1
    #: the input is optimised with the network (by its own Adam at ``input_lr``); 0: fixed input
    input_lr: float = 0.0
    #: Adam's L2 weight decay (Bayesian DIP's Gaussian weight prior); 0: none
    weight_decay: float = 0.0
    #: the network's lr is multiplied by ``lr_decay`` every ``lr_decay_every`` steps (0: never)
    lr_decay: float = 1.0
    lr_decay_every: int = 0

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.reg_noise_std < 0:
            raise ValueError(f"reg_noise_std must be >= 0, got {self.reg_noise_std}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not 0.0 < self.reg_noise_decay <= 1.0 or self.reg_noise_decay_every < 0:
            raise ValueError("reg_noise_decay must be in (0, 1] and reg_noise_decay_every >= 0")
        if self.noise_law not in NOISE_LAWS:
            raise ValueError(f"noise_law must be one of {', '.join(NOISE_LAWS)}, got {self.noise_law!r}")
        if self.draws < 1 or self.input_lr < 0 or self.weight_decay < 0:
            raise ValueError("draws must be >= 1, input_lr and weight_decay >= 0")
        if not 0.0 < self.lr_decay <= 1.0 or self.lr_decay_every < 0:
            raise ValueError("lr_decay must be in (0, 1] and lr_decay_every >= 0")

    def noise_std(self, step: int) -> float:
        """The perturbation's scale at ``step`` (1-based)."""
        if self.reg_noise_decay_every <= 0:
            return self.reg_noise_std
        return self.reg_noise_std * self.reg_noise_decay ** ((step - 1) // self.reg_noise_decay_every + 1)


@dataclass
class Watcher:
    """One method's view of a fit: the stream it reads, its stopping rule, the harness's callback
    for its cell, and its iteration cap."""

    cap: int
    stream: Stream
    rule: Observer | None = None
    callback: Callback | None = None

    def __post_init__(self) -> None:
        if self.cap < 1:
            raise ValueError(f"an iteration cap must be >= 1, got {self.cap}")


@dataclass
class FitResult:
    """What one watcher got from the fit."""

    x: torch.Tensor  # the selected iterate, 1×C×H×W
    iterations: int  # steps the watcher saw
    selected_iteration: int  # step whose iterate is x
    stopped_by: str  # "budget" | "rule" | "callback"
    final_loss: float  # objective at the watcher's last step
    #: per-pixel spread of the stream at the selected step (a posterior std), where it has one
    spread: torch.Tensor | None = None
    #: seconds of the network's work this watcher shared in, by the group's size at each step
    network_s: dict[int, float] = field(default_factory=dict)
    #: seconds of the watcher's own work (its stream and its rule)
    own_s: float = 0.0


class Handle:
    """What a problem's between-steps hook may do to its own fit inside the group."""

    def __init__(self, group: Group, index: int) -> None:
        self._group, self._index = group, index

    def input(self) -> torch.Tensor:
        """The problem's current (unperturbed) input, 1×C×H'×W'."""
        return self._group.input_of(self._index)

    def set_input(self, z: torch.Tensor) -> None:
        """Replace the problem's input (aSeqDIP's sequential update); weights and Adam state stay."""
        self._group.set_input(self._index, z)

    def add_weight_noise(self, std: float, generator: torch.Generator) -> None:
        """Add N(0, std²) to the problem's convolution weights (Bayesian DIP's Langevin step), drawn
        in the solo network's layout, so that a batch gives each problem what it gets alone."""
        self._group.add_weight_noise(self._index, std, generator)


#: ``hook(step, out_k, handle)``: a problem's work between steps, after the optimiser step
Hook = Callable[[int, torch.Tensor, Handle], None]


@dataclass
class FitProblem:
    """One fit of :func:`fit_many`: a network, its input, what it minimises, and who watches it."""

    network: nn.Module
    z: torch.Tensor  # 1×C×H'×W', the input
    objective: Objective
    size: tuple[int, int]  # (H, W) of the image; the network's output is cropped to it
    watchers: list[Watcher]
    noise: torch.Generator | None = None  # draws the perturbations (needed when reg_noise_std > 0)
    regulariser: Regulariser | None = None
    hook: Hook | None = None


def fit_one(
    network: nn.Module,
    z: torch.Tensor,
    objective: Objective,
    settings: LoopSettings,
    *,
    size: tuple[int, int],
    iterations: int,
    stream: Stream | None = None,
    noise: torch.Generator | None = None,
    regulariser: Regulariser | None = None,
    rule: Observer | None = None,
    callback: Callback | None = None,
) -> FitResult:
    """Fit ``network`` so that ``objective(crop(network(z)))`` falls for ``iterations`` steps at
    most, watched by one rule; see the module docstring. ``size`` is the image's (H, W): the
    network works on the padded input ``z`` and its output is cropped to the centre. Without a
    ``rule`` the last iterate is returned; with one, the iterate of the rule's best step (the last
    iterate if the rule never named one, e.g. a variance window that never filled)."""
    watcher = Watcher(iterations, stream if stream is not None else Raw(), rule, callback)
    problem = FitProblem(network, z, objective, size, [watcher], noise, regulariser)
    return fit_many([problem], settings)[0][0]


def _adam(params: list[torch.Tensor], lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam with the fused kernel where the parameters' device has one, the default otherwise."""
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except RuntimeError:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


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
    if any(not p.watchers for p in problems):
        raise ValueError("every fit needs at least one watcher")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class _Watch:
    """A watcher while it runs: what it chose, its costs, its result once it stops."""

    watcher: Watcher
    chosen: tuple[torch.Tensor, int, torch.Tensor | None] | None = None
    network_s: dict[int, float] = field(default_factory=dict)
    own_s: float = 0.0
    result: FitResult | None = None


def fit_many(problems: Sequence[FitProblem], settings: LoopSettings) -> list[list[FitResult]]:
    """Fit every problem, B at once (one optimiser step per iteration for all of them); per
    problem, one result per watcher, in order."""
    _check(problems, settings)
    height, width = problems[0].size
    device = problems[0].z.device
    group = Group(problems, settings)
    watches = [[_Watch(w) for w in p.watchers] for p in problems]
    last = max(w.cap for p in problems for w in p.watchers)
    for step in range(1, last + 1):
        _sync(device)
        started = time.perf_counter()
        out = crop_output(group.forward(step), height, width)
        active = [problems[i] for i in group.members]
        data_loss = torch.cat([p.objective(out[j : j + 1]) for j, p in enumerate(active)])
        total = data_loss
        if any(p.regulariser is not None for p in active):
            inputs = crop_output(group.current_inputs(), height, width)
            total = total + torch.cat([
                p.regulariser(out[j : j + 1], inputs[j : j + 1]) if p.regulariser is not None else out.new_zeros(1)
                for j, p in enumerate(active)
            ])
        group.step(total.sum(), step)
        current = out.detach()
        for j, index in enumerate(group.members):
            hook = problems[index].hook
            if hook is not None:
                with torch.no_grad():
                    hook(step, current[j : j + 1], Handle(group, index))
        watched, leaving = 0.0, []
        # no_grad rather than inference_mode: iterates escape to the callers, and inference
        # tensors could not be updated in place outside inference mode
        with torch.no_grad():
            for j, index in enumerate(group.members):
                mine, loss_j = current[j : j + 1], data_loss[j : j + 1].detach()
                for watch in watches[index]:
                    if watch.result is None:
                        watched += _observe(watch, step, mine, loss_j, total[j], device)
                if all(w.result is not None for w in watches[index]):
                    leaving.append(j)
        _sync(device)
        network = max(time.perf_counter() - started - watched, 0.0)
        size = len(group.members)
        for index in group.members:
            for watch in watches[index]:
                if watch.result is None or watch.result.iterations == step:
                    watch.network_s[size] = watch.network_s.get(size, 0.0) + network / size
        if leaving:
            keep = [j for j in range(size) if j not in leaving]
            if not keep:
                break
            group.keep(keep)
    out_results: list[list[FitResult]] = []
    for per_problem in watches:
        for watch in per_problem:
            assert watch.result is not None, "a watcher ended without a result"
            watch.result.network_s, watch.result.own_s = dict(watch.network_s), watch.own_s
        out_results.append([w.result for w in per_problem])  # type: ignore[misc]
    return out_results


def _observe(watch: _Watch, step: int, out: torch.Tensor, loss: torch.Tensor, total: torch.Tensor,
             device: torch.device) -> float:
    """One step of one watcher: its stream and rule (its own time), then the callback (nobody's);
    returns the seconds spent here, which are not the network's."""
    _sync(device)
    began = time.perf_counter()
    w = watch.watcher
    x_k = w.stream.update(out)
    verdict = w.rule(step, x_k, loss) if w.rule is not None else Verdict(best=True)
    if verdict.best:
        watch.chosen = (x_k, step, w.stream.spread())
    _sync(device)
    ruled = time.perf_counter()
    watch.own_s += ruled - began
    keep_going = w.callback(step, x_k) if w.callback is not None else True
    ended = "rule" if verdict.stop else ("callback" if not keep_going else None)
    if ended is not None or step >= w.cap:
        x, chosen_step, spread = watch.chosen or (x_k, step, w.stream.spread())  # no opinion: the last iterate
        watch.result = FitResult(x=x.clone(), iterations=step, selected_iteration=chosen_step,
                                 stopped_by=ended or "budget", final_loss=float(total.detach()),
                                 spread=None if spread is None else spread.clone())
    _sync(device)
    return time.perf_counter() - began


class Group:
    """The networks of the problems still running, grouped into one, with their optimiser."""

    def __init__(self, problems: Sequence[FitProblem], settings: LoopSettings) -> None:
        self.settings = settings
        self.members = list(range(len(problems)))
        device = problems[0].z.device
        dtype = PRECISIONS[settings.precision]
        self._autocast = (torch.autocast(device.type, dtype=dtype) if dtype is not None
                          else contextlib.nullcontext())
        self._scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
        self.network = stacking.group([p.network for p in problems])
        self.network.train()  # DIP fits with batch statistics throughout, as the papers do
        # Channels-last convolutions and the fused Adam step: ~12% per step on a CPU, same results.
        self.network.to(memory_format=torch.channels_last)
        self.optimiser = _adam(list(self.network.parameters()), settings.lr, settings.weight_decay)
        self._inputs = [p.z.detach().clone().contiguous(memory_format=torch.channels_last) for p in problems]
        if settings.input_lr > 0:
            for z in self._inputs:
                z.requires_grad_(True)
            self.input_optimiser: torch.optim.Optimizer | None = _adam(list(self._inputs), settings.input_lr)
        else:
            self.input_optimiser = None
        self._noise = [p.noise for p in problems]
        self._count = len(problems)

    # ------------------------------------------------------------------ the members' inputs

    def input_of(self, index: int) -> torch.Tensor:
        return self._inputs[index].detach()

    def set_input(self, index: int, z: torch.Tensor) -> None:
        if tuple(z.shape) != tuple(self._inputs[index].shape):
            raise ValueError(f"a new input must keep the shape {tuple(self._inputs[index].shape)}, "
                             f"got {tuple(z.shape)}")
        with torch.no_grad():
            self._inputs[index].copy_(z)

    def current_inputs(self) -> torch.Tensor:
        """The members' inputs, B×C×H'×W' (with their gradient when the inputs are optimised)."""
        return torch.cat([self._inputs[i] for i in self.members])

    def _perturbation(self, scale: float) -> torch.Tensor:
        # Each draw has the layout of a solo run, so a problem sees the same numbers either way,
        # and is drawn in float32, so that a float64 run sees them too (up to rounding). Drawn
        # into a plain contiguous tensor: on a CPU, normal_ on a channels-last one takes a
        # per-element path ~10× slower (a fifth of the quick network's step at 64²).
        shape, z = self._inputs[0].shape, self._inputs[0]
        draws = []
        for i in self.members:
            plain = torch.empty(shape, device=z.device, dtype=torch.float32)
            if self.settings.noise_law == "gaussian":
                draws.append(plain.normal_(generator=self._noise[i]).to(z.dtype) * scale)
            else:  # uniform on [0, scale · max z), the scale following the (optimised) input
                draws.append(plain.uniform_(generator=self._noise[i]).to(z.dtype) * (scale * self._inputs[i].max()))
        return draws[0] if len(draws) == 1 else torch.cat(draws)

    # ------------------------------------------------------------------------- the steps

    def forward(self, step: int) -> torch.Tensor:
        """The members' outputs, B×C×H'×W': the mean over ``draws`` forward passes, each from
        inputs perturbed by each member's own stream."""
        scale = self.settings.noise_std(step)
        inputs = self.current_inputs()
        total: torch.Tensor | None = None
        for _ in range(self.settings.draws):
            net_input = inputs + self._perturbation(scale) if scale > 0 else inputs
            with self._autocast:
                out = self.network(stacking.to_grouped(net_input))
            if self._scaler is not None or not isinstance(self._autocast, contextlib.nullcontext):
                out = out.to(inputs.dtype)  # the objective and the iterates in the inputs' precision
            out = stacking.from_grouped(out, len(self.members))
            total = out if total is None else total + out
        assert total is not None
        return total if self.settings.draws == 1 else total / self.settings.draws

    def step(self, loss: torch.Tensor, step: int) -> None:
        optimisers = [o for o in (self.optimiser, self.input_optimiser) if o is not None]
        for optimiser in optimisers:
            optimiser.zero_grad(set_to_none=True)
        if self._scaler is None:
            loss.backward()
            for optimiser in optimisers:
                optimiser.step()
        else:
            self._scaler.scale(loss).backward()
            for optimiser in optimisers:
                self._scaler.step(optimiser)
            self._scaler.update()
        every = self.settings.lr_decay_every
        if every > 0 and step % every == 0:
            for param_group in self.optimiser.param_groups:
                param_group["lr"] *= self.settings.lr_decay

    def add_weight_noise(self, index: int, std: float, generator: torch.Generator) -> None:
        position, count = self.members.index(index), len(self.members)
        with torch.no_grad():
            for param in self.network.parameters():
                if param.dim() != 4:  # convolution weights only, as Cheng et al. perturb them
                    continue
                block = param.unflatten(0, (count, -1))[position]
                noise = torch.randn(block.shape, generator=generator, dtype=torch.float32)
                block.add_(noise.to(device=block.device, dtype=block.dtype), alpha=std)

    def keep(self, positions: list[int]) -> None:
        """Drop every member but those at ``positions``: weights and Adam state are cut out."""
        before = len(self.members)
        old = list(self.network.parameters())
        replaced = stacking.keep(self.network, before, positions)
        state = self.optimiser.state
        lr = self.optimiser.param_groups[0]["lr"]
        self.optimiser = _adam(list(self.network.parameters()), lr, self.settings.weight_decay)
        for param in old:
            if param in state:
                new = replaced[param]
                self.optimiser.state[new] = {
                    name: stacking.take(value, before, positions) if value.shape == param.shape else value
                    for name, value in state[param].items()
                }
        self.members = [self.members[j] for j in positions]
        if self.input_optimiser is not None:
            kept = [self._inputs[i] for i in self.members]
            states = {z: self.input_optimiser.state[z] for z in kept if z in self.input_optimiser.state}
            self.input_optimiser = _adam(kept, self.settings.input_lr)
            for z, value in states.items():
                self.input_optimiser.state[z] = value
