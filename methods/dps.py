"""Diffusion posterior sampling (DPS; Chung, Kim, Mccann, Klasky & Ye, ICLR 2023).

The prior is a DDPM noise predictor. By default the suite trains a small fully convolutional
one on random patches of the training split (once per training set: the prior does not depend
on the task, so its cache key leaves the task out), which lets DPS run offline on a CPU at any
image size. Colour images get a colour prior, trained on the profile's colour training set
(``training: {rgb: cbsd432}``); a gray prior is never applied channel by channel (the harness
skips such cells, saying why).

Released deepinv ``DiffUNet`` weights replace the suite prior (nothing is then trained):
``pretrained="ffhq"`` (``diffusion_ffhq_10m.pt``, 374 MB, FFHQ faces, as in the DPS paper's
face experiments) or ``"imagenet"`` (``diffusion_openai.pt``, 2.2 GB, Dhariwal & Nichol's
ImageNet model). Like DnCNN's, they are read from ``$DIPBENCH_WEIGHTS/diffunet/``, else the
download cache, else downloaded from deepinv's Hugging Face repository at a pinned commit, and
each must match the sha256 of its Git LFS pointer there (see ``methods._weights``), so a
different file never gives silently different numbers. ``pretrained_path`` loads any other
local DiffUNet state dict, unchecked. Both are read with ``torch.load(weights_only=True)``.

**MRI** (the ``mri`` space: 2×H×W real and imaginary parts, largest magnitude 1). The prior is
one 2-channel network trained on the complex training slices (``mri_brain_train``): real and
imaginary parts are modelled jointly, as Jalal et al. (NeurIPS 2021, "Robust compressed sensing
MRI with deep generative priors") train their score model on complex fastMRI images. The space
declares where its values lie ([-1, 1] per part) and how they map to the diffusion's [-1, 1]
(``ImageSpace.to_signed``: the identity here, x ↦ 2x − 1 on [0, 1] images); x̂0 is clipped to
that range and the residual ‖y − A x̂0‖ is taken in k-space on the complex image. Departures from
Chung & Ye (Medical Image Analysis 2022, "Score-based diffusion models for accelerated MRI", code
HJ-harry/score-MRI): they train a VE-SDE score model on magnitude images only and apply it to
the real and imaginary parts separately, enforcing data consistency by a projection onto the
measured k-space lines after each predictor-corrector step; here the chain is DPS's (a VP DDPM,
the gradient step on ‖y − A x̂0‖, no projection), the prior is a small U-Net trained on 40 slices
at most (theirs: an NCSN++ on ~1 000 fastMRI knee volumes), and the slices are scaled by their
largest magnitude when read (the space's convention). The released DiffUNet weights model RGB
photographs and do not apply to complex images (such cells are skipped, saying why). ζ keeps its
default 0.3: on held-out training slices (64², 4×) 0.3-1.0 were within 0.15 dB of each other at
100-1000 steps. With a CPU prior DPS stays ~0.6 dB below zero-filled on 4× slices at 64²
(``tests/test_dps_mri.py``): a posterior sample's error is twice the posterior mean's.

**What a reconstruction is.** The paper's DPS returns one posterior sample. ``samples: K`` draws K
independent chains (one batch, seeded from the cell's seed) and returns their mean, an estimate of
the posterior mean, with the per-pixel standard deviation across them as the reconstruction's
uncertainty (``Reconstruction.uncertainty``; the harness measures its calibration). For a
Gaussian posterior of covariance Σ a sample's expected squared error is 2 tr Σ and the mean of K
samples' (1 + 1/K) tr Σ, so the mean's PSNR is up to 3 dB above one sample's; its runtime is that
of all K chains. The record's info and the tables' "trained on" text say which estimate a row is.

Step size ζ is given as in the paper, for its 1000-step chain: each step moves the sample by
ζ ∇‖y − A x̂0‖ (the norm, as in the authors' code; the paper writes ζ_i = ζ'/‖y − A x̂0‖ on the
squared norm, ζ' ∈ [0.1, 1]). A chain re-spaced to S steps takes ζ·1000/S per step, so the total
guidance, and the meaning of ζ, do not change with the step count. The authors' code uses
ζ = 0.3 for super-resolution and Gaussian deblurring and 0.5 for random inpainting (256² colour
faces); the per-family defaults below are what ``benchmark tune`` chose for the suite's priors on
training crops held out of the prior's training set (records in ``benchmark/profiles/tuned/``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.api import Callback, Method, Reconstruction, ReleasedTraining, TrainingContext, TrainingReport
from benchmark.core import seeding
from benchmark.core.errors import UserError
from benchmark.problems import spaces
from benchmark.registry import register
from methods._training import diffusion, loop
from methods._training.nets import UNet
from methods._weights import WeightFile, locate

#: deepinv/diffunet on Hugging Face at the commit that added ``diffusion_openai.pt``, the last of
#: its history when pinned; deepinv itself downloads the same files from ``resolve/main``.
DIFFUNET_COMMIT = "6b0a2cf45decab1f022d22eefe3787d9d515f32b"
_DIFFUNET_BASE = f"https://huggingface.co/deepinv/diffunet/resolve/{DIFFUNET_COMMIT}/"

#: released DiffUNet checkpoints by ``pretrained`` name; sha256 = the oid of each Git LFS pointer
PRETRAINED: dict[str, WeightFile] = {
    "ffhq": WeightFile("diffunet", "diffusion_ffhq_10m.pt", _DIFFUNET_BASE + "diffusion_ffhq_10m.pt",
                       "81d535743156ec6be34d8668e6920da94f0614074d7793a16c8fa9e306237faa"),
    "imagenet": WeightFile("diffunet", "diffusion_openai.pt", _DIFFUNET_BASE + "diffusion_openai.pt",
                           "a37c32fffd316cd494cf3f35b339936debdc1576dad13fe57c42399a5dbc78b1"),
}

#: what the released DiffUNet weights learnt from. ffhq: the FFHQ model of Choi et al. (ILVR, ICCV
#: 2021) that Chung et al. use for faces (DPS, ICLR 2023, Sec. 4); FFHQ has 70 000 images (Karras
#: et al., CVPR 2019) and neither paper says a subset was held out, so the whole set is the figure.
#: imagenet: Dhariwal & Nichol's unconditional 256² model (NeurIPS 2021), trained on the ILSVRC
#: 2012 training set, 1 281 167 images (Russakovsky et al., IJCV 2015).
RELEASED_TRAINING = {
    "ffhq": ReleasedTraining("FFHQ faces at 256²", 70000,
                             "Choi et al. 2021, used by Chung et al. 2023, Sec. 4; size: Karras et al. 2019"),
    "imagenet": ReleasedTraining("the ImageNet (ILSVRC 2012) training set at 256²", 1281167,
                                 "Dhariwal & Nichol 2021; size: Russakovsky et al. 2015"),
}

#: parameters that shape the trained prior (its cache key); the others only affect sampling
PRIOR_PARAMS = ("prior_channels", "prior_depth", "prior_patch", "prior_batch", "prior_steps", "prior_lr",
                "prior_ema", "train_images")


@register
class DPS(Method):
    name = "dps"
    family = "data-driven"
    summary = "Diffusion posterior sampling with a DDPM prior trained by the suite (or released DiffUNet weights)."
    citation = (
        'Chung, Kim, Mccann, Klasky, Ye, "Diffusion Posterior Sampling for General Noisy Inverse Problems", '
        'ICLR 2023'
    )
    released_training = RELEASED_TRAINING  # by ``pretrained`` name
    needs_training = True
    training_steps_parameter = "prior_steps"
    defaults = {
        "sampling_steps": 1000,  # reverse diffusion steps, as in the paper (quick profile: 200), evenly re-spaced
        "zeta": 0.3,  # guidance ζ on ∇‖y − A x̂0‖, in 1000-step units (per-family values below)
        # independent posterior samples per reconstruction (one batch): 1 is the paper's estimate, a
        # single sample; K > 1 returns their mean (the posterior mean) and their per-pixel std
        "samples": 1,
        # The prior's paper budget is sized for a GPU (a few minutes per training set there, by our
        # estimate; not measured here); the quick profile trains 32 channels, 32² × 16, 800 steps.
        # The dps_cpu profile's prior (32 channels, 3 levels, 3000 steps of 16 × 48² on cbsd432,
        # 13-26 min on one CPU thread) beats TV on Set5 inpainting crops and stays 2.4 dB below
        # it on ×4 SR, with the best LPIPS there (README; tests/perf/test_dps_set5.py).
        "prior_channels": 64,  # features of the noise predictor at full resolution, doubled per level
        "prior_depth": 3,
        "prior_patch": 64,  # side of the random training patches (the net is fully convolutional)
        "prior_batch": 32,
        "prior_steps": 30000,  # optimiser steps of the prior (quick profile: 800, ~3 min on one CPU core)
        "prior_lr": 1e-3,  # Adam, warm-up then cosine decay to 1% of it
        "prior_ema": 0.999,  # the prior samples with an exponential moving average of its weights
        "train_images": None,  # train the prior on the first N training images (None: all)
        "pretrained": "",  # released DiffUNet weights ("ffhq" or "imagenet"); empty: train the small prior
        "pretrained_path": "",  # any local deepinv DiffUNet state dict (no checksum); empty: none
        # the training set of the prior (None: the profile's for the task's image space); no
        # train_task: the prior models images, whatever the task
        "train_set": None,
    }
    #: ζ per family where a profile has not tuned it: the choices of ``benchmark tune`` (records
    #: in ``benchmark/profiles/tuned/``, validation crops held out of the prior's training set)
    #: for the two priors tuned so far: denoising 0.3 (quick prior, 200 steps), inpainting 0.5
    #: (quick prior and the 3000-step cbsd432 prior of the dps_cpu profile; also the authors'
    #: value), super-resolution 1.2 (dps_cpu; 0.8 within 0.001 dB). Deblurring keeps the authors'
    #: 0.3, unchecked here. A profile tunes ζ for its own prior with ``--methods dps``.
    task_defaults = {
        "denoising": {"zeta": 0.3},
        "inpainting": {"zeta": 0.5},
        "super-resolution": {"zeta": 1.2},
        "deblurring": {"zeta": 0.3},
    }
    #: test: 400 prior steps at a higher rate (at 150 the prior of MR slices, small signed values in
    #: [-1, 1], still samples noise, and 32² 4× slices come out worse than an all-zero image);
    #: quick: the quick profile's prior; cpu: the dps_cpu profile's, a 3-level colour prior trained
    #: 3000 steps of 16 × 48² on cbsd432 (13-26 min on one CPU thread), sampling 500 steps
    budgets = {
        "test": {"sampling_steps": 50, "prior_steps": 400, "prior_channels": 8, "prior_depth": 2, "prior_batch": 8,
                 "prior_patch": 32, "prior_lr": 3e-3},
        "quick": {"sampling_steps": 200, "prior_steps": 800, "prior_channels": 32, "prior_patch": 32,
                  "prior_batch": 16},
        "cpu": {"prior_channels": 32, "prior_depth": 3, "prior_patch": 48, "prior_batch": 16, "prior_steps": 3000,
                "sampling_steps": 500},
    }
    #: the guidance strength depends on the prior and the task (the authors hand-pick it per task
    #: in [0.1, 1]); one choice per family
    tunable = {"zeta": [0.1, 0.2, 0.3, 0.5, 0.8, 1.2]}
    tune_by = "family"

    @classmethod
    def validate(cls, params: Mapping[str, Any]) -> None:
        super().validate(params)
        for key in ("sampling_steps", "samples", "prior_channels", "prior_depth", "prior_patch", "prior_batch",
                    "prior_steps"):
            cls.require(params, key, params[key] >= 1, "an integer >= 1")
        cls.require(params, "sampling_steps", params["sampling_steps"] <= diffusion.TRAIN_STEPS,
                    f"an integer <= {diffusion.TRAIN_STEPS}")
        cls.require(params, "zeta", params["zeta"] >= 0, "a number >= 0")
        cls.require(params, "prior_lr", params["prior_lr"] > 0, "a number > 0")
        cls.require(params, "prior_ema", 0 <= params["prior_ema"] < 1, "a number in [0, 1)")
        name, path = params["pretrained"], params["pretrained_path"]
        cls.require(params, "pretrained", not name or name in PRETRAINED,
                    f"one of {', '.join(PRETRAINED)} (or '' to train the suite prior)")
        if name and path:
            raise UserError("method 'dps': give either pretrained or pretrained_path, not both")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._eps: nn.Module | None = None
        self._channels: int | None = None  # channels the prior was trained on (None: any)
        self._space: str | None = None  # image space the prior was trained on (None: released weights)

    def released_content(self) -> str:
        """The released DiffUNet weights learnt photographs; the suite prior, its training set."""
        name = self.params["pretrained"]
        return RELEASED_TRAINING[name].content if name else ""

    def skip_reason(self, task: Any, channels: int | None = None) -> str | None:
        released = self.params["pretrained"] or self.params["pretrained_path"]
        if released and task.space.complex:
            return (f"the released DiffUNet weights model RGB photographs, not the complex {task.space.name!r} "
                    f"images of {task.name!r}: use the suite prior (no pretrained), trained on the training slices")
        return None

    def prepare(self, ctx: TrainingContext) -> TrainingReport:
        p = self.params
        if p["pretrained"] or p["pretrained_path"]:
            return self._load_pretrained(ctx)
        images = loop.training_images(ctx, p["train_images"], self.name)
        channels = images[0].shape[0]
        space = spaces.of(ctx.task)
        description = {
            "dataset": ctx.dataset,
            "space": space.name,  # how the training images' values map to the diffusion's [-1, 1]
            "n_images": len(images),
            "images_sha256": loop.images_fingerprint(images),
            "channels_in": channels,
            "params": {k: p[k] for k in PRIOR_PARAMS},
            "seed": ctx.seed,
        }
        with seeding.seeded(ctx.seed):
            net = UNet(channels, channels, channels=int(p["prior_channels"]), depth=int(p["prior_depth"]),
                       time_conditioned=True).to(ctx.device)

        def train() -> tuple[list[float], dict[str, torch.Tensor]]:
            return diffusion.train_prior(
                net, images, patch=int(p["prior_patch"]), batch=int(p["prior_batch"]),
                steps=int(p["prior_steps"]), lr=float(p["prior_lr"]), ema_decay=float(p["prior_ema"]),
                seed=ctx.seed, device=ctx.device, progress=ctx.progress, space=space,
            )

        report = loop.load_or_train(cache_dir=ctx.cache_dir, method="dps-prior", description=description,
                                    net=net, train=train)
        self._eps, self._channels, self._space = net.requires_grad_(False), channels, space.name
        report.images = len(images)
        used = loop.count(len(images), "image")
        report.description = f"suite prior, {used} of {ctx.dataset}, {int(p['prior_steps'])} steps; {self._estimate()}"
        return report

    def _estimate(self) -> str:
        """What a reconstruction is, for the tables' "trained on" text and the record's info."""
        count = int(self.params["samples"])
        return "one posterior sample" if count == 1 else f"mean of {count} posterior samples"

    def _load_pretrained(self, ctx: TrainingContext) -> TrainingReport:
        """DiffUNet weights instead of training; the report's seconds are the fetch and load time."""
        start = time.perf_counter()
        name = self.params["pretrained"]
        path = locate(PRETRAINED[name]) if name else Path(self.params["pretrained_path"])
        self._eps = diffusion.load_diffunet(path).to(ctx.device)
        self._channels, self._space = None, None  # DiffUNet is RGB; gray images are repeated to RGB per call
        seconds = time.perf_counter() - start
        if name:
            report = RELEASED_TRAINING[name].report(seconds, str(path))
            report.description += f"; {self._estimate()}"
            return report
        # a user's own state dict: what it learnt from is not known here
        return TrainingReport(seconds=seconds, cached=True, checkpoint=str(path),
                              description=f"DiffUNet weights {path.name}; {self._estimate()}")

    def reconstruct(
        self, y: torch.Tensor, physics: Any, *, seed: int, callback: Callback | None = None
    ) -> Reconstruction:
        if self._eps is None:
            raise UserError("dps: call prepare() (train or load the prior) before reconstruct()")
        shape = tuple(physics.A_adjoint(y).shape)
        eps_model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = self._eps.to(y.device)
        if self._channels is not None and shape[1] != self._channels:
            raise UserError(f"dps: the prior models {self._channels}-channel images, the measurement has {shape[1]}")
        if self._space is not None and spaces.of(physics).name != self._space:
            raise UserError(f"dps: the prior models images of the {self._space!r} space, the measurement's are "
                            f"{spaces.of(physics).name!r}")
        result = diffusion.dps_sample(
            eps_model, y, physics, shape=shape, steps=int(self.params["sampling_steps"]),
            zeta=float(self.params["zeta"]), generator=torch.Generator().manual_seed(seed), callback=callback,
            samples=int(self.params["samples"]),
        )
        return Reconstruction(x=result.x, iterations=result.steps_run, budget=result.budget, uncertainty=result.std,
                              info={"final_residual": result.final_residual, "samples": result.samples,
                                    "estimate": self._estimate()})
