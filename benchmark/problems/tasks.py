"""Tasks: the inverse problems, a registry of declarations on deepinv physics.

A task is one ``register(Task(...))``: its name, family, description, noise level, physics
builder, image space and options; the plan, the harness, the methods (``task_defaults`` are keyed
by family or task name), ``benchmark list`` and the docs read it from the registry. A family is
declared once (``FAMILIES``, ``declare_family``), so a per-task setting keyed by a misspelt family
is refused instead of silently dropped.

Each measurement is made once per (dataset, task, image, seed) from a generator seeded by those,
so every method sees the same ``y`` and the same operator (random masks included).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import deepinv as dinv
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from benchmark.core import seeding
from benchmark.core.errors import unknown
from benchmark.problems import medical, spaces

PhysicsFactory = Callable[[tuple[int, int, int], torch.device, torch.Generator], Any]


@dataclass(frozen=True)
class Task:
    name: str
    family: str  # denoising | inpainting | super-resolution | deblurring | mri | ct
    description: str
    #: std of the additive Gaussian noise on y (per real/imaginary part for MRI); 0 where the
    #: noise is another model's (CT's photon counts) or there is none
    noise_sigma: float
    build: PhysicsFactory = field(compare=False, repr=False)
    params: dict[str, Any] = field(default_factory=dict, compare=False)
    #: image sides must be a multiple of this (the super-resolution factor)
    size_multiple: int = 1
    #: y is clipped to [0, 1] and rounded to this many bits after the noise (None: kept as is);
    #: the SR literature's low-resolution images are 8-bit files
    quantise_bits: int | None = None
    #: what the images' numbers mean: metrics, PNGs, LPIPS and network outputs follow it
    space: spaces.ImageSpace = spaces.UNIT
    #: the operator mixes the whole image (MRI's k-space lines, CT's projections), so a patch's own
    #: measurement is not the patch of the image's: a mask drawn at a patch's width or a sinogram of
    #: a patch has other artefacts than the test images'. Trained methods then learn from windows
    #: cut out of measurements of whole images (fastMRI's U-Net and FBPConvNet learn from whole ones)
    whole_image_operator: bool = False
    #: CT: y is the post-log measurement of Poisson photon counts instead of y = A x + σ n
    photon_counts: medical.PhotonCounts | None = None
    #: how the measurements and the metrics are made where a reader could assume otherwise (an
    #: inverse crime, a data-range convention, a dose): reports state it for the tasks they show
    conventions: str = ""

    def physics(self, shape: tuple[int, int, int], device: torch.device, generator: torch.Generator) -> Any:
        physics = self.build(shape, device, generator)
        noise = dinv.physics.GaussianNoise(sigma=self.noise_sigma) if self.noise_sigma > 0 else dinv.physics.ZeroNoise()
        physics.noise_model = noise
        physics.image_space = self.space  # methods see the physics only: spaces.of(physics)
        return physics.to(device)

    def measure(self, x: torch.Tensor, physics: Any, generator: torch.Generator) -> torch.Tensor:
        """y = A x + σ n, with n drawn from ``generator`` (x is 1×C×H×W); n is drawn in float32
        whatever the dtype of x, so that a float64 check sees the same noise. With photon counts,
        y is their post-log measurement (``medical.PhotonCounts``), and ``physics.noise_model``
        becomes the post-log Gaussian approximation at the level the counts give (read off y),
        for the methods that take a Gaussian level."""
        y = physics.A(x)
        if self.photon_counts is not None:
            width = int(x.shape[-1])
            y = self.photon_counts.measure(y, physics, width, generator)
            sigma = self.photon_counts.sigma(y, physics, width)
            physics.noise_model = dinv.physics.GaussianNoise(sigma=sigma).to(y.device)
        elif self.noise_sigma > 0:
            noise = torch.randn(y.shape, generator=generator, device=generator.device, dtype=torch.float32).to(y.dtype)
            y = y + self.noise_sigma * noise.to(y.device)
        if self.quantise_bits is not None:
            levels = float(2**self.quantise_bits - 1)
            y = torch.round(y.clamp(0, 1) * levels) / levels
        return y


def measurement_generator(task: str, image_id: str, seed: int, *, dataset: str) -> torch.Generator:
    """A CPU generator seeded by (dataset, task, image, seed): the same y for every method and
    run, and another one for each dataset (Set5 and Set14 share image ids such as "baby")."""
    return seeding.generator(dataset, task, image_id, seed)


def _denoising(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
    return dinv.physics.Denoising(device=device)


def _random_inpainting(ratio_missing: float) -> PhysicsFactory:
    def build(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
        _, h, w = shape
        keep = (torch.rand((1, h, w), generator=g) >= ratio_missing).float()
        return dinv.physics.Inpainting(img_size=shape, mask=keep.expand(shape[0], h, w).clone(), device=device)

    return build


def _box_inpainting(fraction: float) -> PhysicsFactory:
    def build(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
        c, h, w = shape
        bh, bw = int(round(h * fraction)), int(round(w * fraction))
        mask = torch.ones(shape)
        top, left = (h - bh) // 2, (w - bw) // 2
        mask[:, top : top + bh, left : left + bw] = 0
        return dinv.physics.Inpainting(img_size=shape, mask=mask, device=device)

    return build


#: the phrase of text inpainting, repeated along every line (a pangram: every letter's strokes)
TEXT_PHRASE = "The quick brown fox jumps over the lazy dog. "
#: line pitch of the text in font pixels (PIL's bitmap font: 11-pixel glyph cells, 6 wide)
TEXT_LINE_PITCH = 12


def text_scale(height: int, width: int) -> int:
    """How many image pixels one font pixel covers: the font grows with the image (4 at 512², the
    DIP notebook's size), and strokes stay at least 2 pixels wide on small images."""
    return max(2, round(min(height, width) / 128))


def text_mask(height: int, width: int, g: torch.Generator) -> torch.Tensor:
    """A height × width mask (1 kept, 0 hidden) of text written over the image, as in the DIP
    inpainting notebook's kate example (Ulyanov et al. 2018, Fig. 7 top): ``TEXT_PHRASE`` in PIL's
    bitmap default font (the same glyphs on every platform, unlike its FreeType default), drawn
    line under line and enlarged by ``text_scale``; each line starts at another character of the
    phrase and the lines at another height, drawn from ``g`` (so per image and seed)."""
    scale = text_scale(height, width)
    rows, cols = -(-height // scale), -(-width // scale)
    canvas = Image.new("1", (cols, rows))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default_imagefont()
    first = int(torch.randint(TEXT_LINE_PITCH, (1,), generator=g))
    characters = cols // 6 + 2
    for top in range(first - TEXT_LINE_PITCH, rows, TEXT_LINE_PITCH):
        start = int(torch.randint(len(TEXT_PHRASE), (1,), generator=g))
        line = (TEXT_PHRASE * (characters // len(TEXT_PHRASE) + 2))[start:start + characters]
        draw.text((0, top), line, font=font, fill=1)
    ink = np.asarray(canvas, dtype=bool).repeat(scale, axis=0).repeat(scale, axis=1)[:height, :width]
    return torch.from_numpy(~ink).float()


def _text_inpainting(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
    c, h, w = shape
    mask = text_mask(h, w, g).expand(c, h, w).clone()
    return dinv.physics.Inpainting(img_size=shape, mask=mask, device=device)


def _super_resolution(factor: int) -> PhysicsFactory:
    def build(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
        return dinv.physics.Downsampling(img_size=shape, factor=factor, filter="bicubic", padding="reflect",
                                         device=device)

    return build


@functools.lru_cache(maxsize=32)
def _imresize_matrices(n: int, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, R⁺) in float64: R (⌈n/factor⌉ × n) is MATLAB's bicubic antialiased imresize of each
    unit vector (as a constant 4-pixel-wide image left at its width, which resampling at scale 1
    keeps as it is); R has full row rank, so R⁺ = Rᵀ(RRᵀ)⁻¹."""
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, n, 1).expand(n, 1, n, 4).contiguous()
    columns = dinv.physics.functional.imresize_matlab(eye, sizes=(math.ceil(n / factor), 4), kernel="cubic",
                                                      padding_type="reflect", antialiasing=True)
    matrix = columns[..., 0].reshape(n, -1).T.contiguous()
    return matrix, torch.linalg.solve(matrix @ matrix.T, matrix).T.contiguous()


class MatlabDownsampling(dinv.physics.DownsamplingMatlab):
    """MATLAB's ``imresize(x, 1/factor)``: bicubic, antialiased, reflect padding (deepinv's
    reimplementation), the low-resolution images of the SR literature (Timofte et al. 2014, Kim et
    al. 2016). The resampling is separable, ``A x = R_h x R_wᵀ`` per channel, so the adjoint and the
    pseudo-inverse are exact and cheap from the two small matrices (deepinv's autograd adjoint
    and CG pseudo-inverse take minutes on a 512² colour image)."""

    def _r(self, n: int, like: torch.Tensor, pseudo_inverse: bool = False) -> torch.Tensor:
        return _imresize_matrices(n, int(self.factor))[int(pseudo_inverse)].to(device=like.device, dtype=like.dtype)

    def A(self, x: torch.Tensor, factor: Any = None, **kwargs: Any) -> torch.Tensor:
        return self._r(x.shape[-2], x) @ x @ self._r(x.shape[-1], x).T

    def A_adjoint(self, y: torch.Tensor, factor: Any = None, **kwargs: Any) -> torch.Tensor:
        h, w = y.shape[-2] * int(self.factor), y.shape[-1] * int(self.factor)
        return self._r(h, y).T @ y @ self._r(w, y)

    def A_dagger(self, y: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        h, w = y.shape[-2] * int(self.factor), y.shape[-1] * int(self.factor)
        return self._r(h, y, True) @ y @ self._r(w, y, True).T


def _matlab_super_resolution(factor: int) -> PhysicsFactory:
    def build(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
        return MatlabDownsampling(factor=factor, kernel="cubic", padding="reflect", antialiasing=True, device=device)

    return build


def _gaussian_deblurring(sigma_blur: float) -> PhysicsFactory:
    def build(shape: tuple[int, int, int], device: torch.device, g: torch.Generator) -> Any:
        kernel = dinv.physics.functional.blur.gaussian_blur(sigma=(sigma_blur, sigma_blur))
        return dinv.physics.BlurFFT(img_size=shape, filter=kernel, device=device)

    return build


def _built_in() -> list[Task]:
    return [
        *(
            Task(f"denoising_s{s}", "denoising", f"Gaussian denoising, σ = {s}/255", s / 255.0, _denoising,
                 {"sigma255": s})
            for s in (15, 25, 50)
        ),
        Task("inpainting_random50", "inpainting", "Inpainting, 50% of pixels missing at random", 0.0,
             _random_inpainting(0.5), {"missing": 0.5}),
        Task("inpainting_box", "inpainting",
             "Inpainting of a centred box covering half of each side (25% of the area)", 0.0,
             _box_inpainting(0.5), {"box_fraction": 0.5}),
        Task("inpainting_text", "inpainting",
             "Inpainting of text written over the image (the DIP notebook's kate example): lines of a phrase in "
             "PIL's bitmap font, strokes 2+ px, about 22% of the pixels, placed per image and seed", 0.0,
             _text_inpainting, {"phrase": TEXT_PHRASE}),
        Task("sr_x4", "super-resolution", "4× super-resolution, bicubic down-sampling", 0.0,
             _super_resolution(4), {"factor": 4}, size_multiple=4),
        Task("sr_x4_bicubic", "super-resolution",
             "4× super-resolution as the SR literature measures it: MATLAB bicubic imresize, y rounded to 8 bits",
             0.0, _matlab_super_resolution(4), {"factor": 4, "bits": 8}, size_multiple=4, quantise_bits=8),
        Task("deblurring_gaussian", "deblurring", "Gaussian deblurring (blur σ = 1.6 px) with noise σ = 2.55/255",
             2.55 / 255.0, _gaussian_deblurring(1.6), {"blur_sigma": 1.6}),
        *_medical(),
    ]


#: MRI: complex Gaussian noise of this std per real/imaginary part of the orthonormal k-space (so
#: also per pixel of the zero-filled image), images scaled to a largest magnitude of 1
MRI_NOISE = 0.005
#: CT: photons per ray (one detector bin of one view) before attenuation. 10⁵ is a blank-scan
#: count simulation studies often take for a normal dose (low-dose studies go to 10⁴ and below;
#: LoDoPaB-CT's 4096 comes with 1000 views): the difficulty of these tasks is the view count
CT_PHOTONS = 1e5
CT_COUNTS = medical.PhotonCounts(CT_PHOTONS)

MRI_CONVENTIONS = (
    "MRI: k-space is simulated from the coil-combined complex slices (SIAT), never acquired, with the "
    "operator the methods invert; the multi-coil task's sensitivities are analytic (smooth Gaussian coils, "
    "Σ|S|² = 1) and known exactly to every method: an inverse crime shared by every method, so the figures "
    "are optimistic against raw multi-coil data. PSNR and SSIM compare magnitudes with each slice's own "
    "data range (its largest reference magnitude), not fastMRI's maximum over the volume."
)
CT_CONVENTIONS = (
    "CT: sinograms are simulated from reconstructed slices with the discrete operator the methods invert "
    f"(an inverse crime shared by every method). Noise: Poisson counts of I0 = {CT_COUNTS.photons:,.0f} photons "
    f"per ray before the log, attenuation μ = μ_water (HU + 1024)/1000 with μ_water = {CT_COUNTS.mu_water_per_mm} "
    f"mm⁻¹, over a {CT_COUNTS.field_of_view_mm:.0f} mm field of view; the dose is I0 per ray, so 30 views get "
    "half the dose of 60. The FBP baseline uses a Hann-windowed ramp filter."
)


def _medical() -> list[Task]:
    mri = [
        Task(f"mri_x{acc}", "mri", f"Single-coil MRI, {acc}× Cartesian undersampling (fastMRI random lines, "
             f"{round(100 * cf)}% fully sampled centre), complex noise σ = {MRI_NOISE}",
             MRI_NOISE, medical.mri(acc, cf), {"acceleration": acc, "center_fraction": cf}, space=spaces.MRI,
             whole_image_operator=True, conventions=MRI_CONVENTIONS)
        for acc, cf in ((4, 0.08), (8, 0.04))
    ]
    multi = Task("mri_multicoil_x4", "mri", "Multi-coil MRI (8 simulated Gaussian coils, Σ|S|² = 1), 4× Cartesian "
                 f"undersampling (fastMRI random lines, 8% centre), complex noise σ = {MRI_NOISE}", MRI_NOISE,
                 medical.mri(4, 0.08, coils=8), {"acceleration": 4, "center_fraction": 0.08, "coils": 8},
                 space=spaces.MRI, whole_image_operator=True, conventions=MRI_CONVENTIONS)
    ct = [
        Task(f"ct_views{v}", "ct", f"Sparse-view parallel-beam CT, {v} views over 180°, Poisson counts of "
             f"{CT_PHOTONS:,.0f} photons per ray (post-log), FBP with a Hann filter", 0.0,
             medical.sparse_view_ct(v, "hann"), {"views": v, "photons": CT_PHOTONS, "fbp_filter": "hann"},
             space=spaces.CT, whole_image_operator=True, photon_counts=CT_COUNTS,
             conventions=CT_CONVENTIONS)
        for v in (60, 30)
    ]
    return [*mri, multi, *ct]


#: the task families; a method's per-task settings are keyed by family or by task name
FAMILIES: list[str] = ["denoising", "inpainting", "super-resolution", "deblurring", "mri", "ct"]
#: every registered task, by name
TASKS: dict[str, Task] = {}


def declare_family(family: str) -> str:
    """Declare a new task family (its tasks may then be registered, methods may key settings by it)."""
    if not family or family != family.strip():
        raise ValueError(f"a task family needs a name, got {family!r}")
    if family not in FAMILIES:
        FAMILIES.append(family)
    return family


def register(task: Task) -> Task:
    """Declare ``task`` (anywhere before a run: e.g. a module of your own imported first)."""
    if task.family not in FAMILIES:
        raise ValueError(f"task {task.name!r}: family {task.family!r} is not declared (tasks.declare_family); "
                         f"families: {', '.join(FAMILIES)}")
    if task.name in TASKS and TASKS[task.name] != task:
        raise ValueError(f"task name {task.name!r} registered twice")
    if task.name in FAMILIES:
        raise ValueError(f"task name {task.name!r} is a family's: per-task settings could not tell them apart")
    TASKS[task.name] = task
    return task


def unregister(name: str) -> None:
    TASKS.pop(name, None)


def keyable(key: str) -> bool:
    """Whether a per-task table may be keyed by ``key``: a registered task or a declared family."""
    return key in TASKS or key in FAMILIES


def _shift_conditions() -> list[Task]:
    """Conditions a trained method may be tested on away from what it learnt (``benchmark.problems.
    conditions``): 4× MRI with equispaced instead of random lines, the same acceleration and centre
    (a mask-pattern shift from ``mri_x4``)."""
    return [
        Task("mri_x4_equispaced", "mri", "Single-coil MRI, 4× Cartesian undersampling (fastMRI equispaced lines, "
             f"8% fully sampled centre), complex noise σ = {MRI_NOISE}", MRI_NOISE,
             medical.mri_equispaced(4, 0.08), {"acceleration": 4, "center_fraction": 0.08, "mask": "equispaced"},
             space=spaces.MRI, whole_image_operator=True),
    ]


for _task in [*_built_in(), *_shift_conditions()]:
    register(_task)


def get(name: str) -> Task:
    if name not in TASKS:
        raise unknown("task", name, TASKS)
    return TASKS[name]
