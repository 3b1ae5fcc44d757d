"""What refinement minimises besides the rate: the distortion `D` of `L = R/P + λ·255²·D`
(`RefinementConfig.distortion`, `--distortion`), and a region of interest's per-pixel weights (`--roi`).

The decoder stays as trained for MSE; refinement only moves the latents, so one model serves every
objective (Gao et al., NeurIPS 2022, "Flexible Neural Image Compression via Code Editing"). Every
distortion is in MSE's units, so that the model's λ means the same trade-off for all of them:

- `mse`: the mean squared error of [0, 1] images (with a region of interest, weighted per pixel);
- `ms-ssim`: `MS_SSIM_SCALE·(1 − MS-SSIM)` (pytorch-msssim, 5 scales, 11-pixel window, on [0, 1]
  images). The scale is CompressAI's: its MS-SSIM models were trained at λ about 1,290 times those
  of its MSE models of the same quality (qualities 2–5: 4.58/0.0035 … 31.73/0.025, 1,269–1,309), so
  `λ·255²·MS_SSIM_SCALE` is the λ an MS-SSIM model of this rate would have been trained with;
- `mix:W`: `W·ms-ssim + (1 − W)·mse`.

MS-SSIM's four downsamplings need images of at least `MS_SSIM_MIN_SIDE` pixels a side: smaller
images are refused with one line (as the metric itself reports None for them).

A region of interest is a greyscale image of the input's size: a pixel of level `v` (0–255) weighs
`1 + (ROI_WEIGHT − 1)·v/255` (`--roi-weight`, default `ROI_WEIGHT`: white counts 4 times black, grey
between; a black-and-white mask works as drawn), normalised to a mean of 1. The weights weight the
squared error (the MSE part of `mix`; the MS-SSIM part is not weighted; `ms-ssim` alone takes no mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np
import torch
from torch import Tensor

from .errors import LatentfitError
from .metrics import MS_SSIM_MIN_SIDE, ms_ssim_of
from .strategies import Registry, Strategy

__all__ = ["DISTORTIONS", "MS_SSIM_SCALE", "MS_SSIM_TARGET_DISTORTION", "ROI_WEIGHT", "Distortion", "Measure", "distortion_from", "load_roi", "measure"]

DISTORTIONS: Registry["Distortion"] = Registry("distortion")

#: CompressAI's MS-SSIM λ against its MSE λ of the same quality (about 1,290), in units of 255²·MSE.
MS_SSIM_SCALE = 1290.0 / 255.0**2

#: How much a white pixel of a region-of-interest mask counts against a black one (`--roi-weight`).
ROI_WEIGHT = 4.0

#: What a target in MS-SSIM (`--target-ms-ssim`) refines for unless `--distortion` is given: half MS-SSIM,
#: half MSE, which reaches an MS-SSIM with fewer bytes than `mse` without gaming the metric as pure
#: `ms-ssim` does (BENCHMARKS.md, "Objectives and regions of interest").
MS_SSIM_TARGET_DISTORTION = "mix:0.5"


@dataclass(frozen=True)
class Distortion(Strategy):
    """A distortion of [0, 1] images in MSE's units; `weights` (1, 1, H, W), mean 1, or None."""

    #: Whether it needs MS-SSIM (and so images of at least `MS_SSIM_MIN_SIDE` pixels a side).
    uses_ms_ssim: ClassVar[bool] = False
    #: Whether a region of interest's weights can weight it.
    takes_roi: ClassVar[bool] = True

    def __call__(self, x_hat: Tensor, x: Tensor, weights: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def ms_ssim_share(self) -> float:
        """The MS-SSIM term's share of it (the rest is the squared error)."""
        return 0.0

    def spec(self) -> str:
        """The `--distortion` text that names it."""
        return self.name

    def check(self, height: int, width: int, roi: bool, source: str = "image") -> None:
        """Refuse (one line) an image this distortion cannot measure, or a mask it cannot use."""
        if roi and not self.takes_roi:
            raise LatentfitError(f"a region of interest weights the squared error: use --distortion mse or mix, "
                                 f"not {self.spec()}")
        if self.uses_ms_ssim and min(height, width) < MS_SSIM_MIN_SIDE:
            raise LatentfitError(f"{source}: distortion {self.spec()} needs images of at least {MS_SSIM_MIN_SIDE} "
                                 f"pixels a side (MS-SSIM's scales), got {width}x{height}")


def _squared_error(x_hat: Tensor, x: Tensor, weights: Tensor | None) -> Tensor:
    error = (x_hat - x).square()
    return error.mean() if weights is None else (error * weights).mean()


def _ms_ssim_term(x_hat: Tensor, x: Tensor) -> Tensor:
    return MS_SSIM_SCALE * (1.0 - ms_ssim_of(x_hat, x))


@DISTORTIONS.register
@dataclass(frozen=True)
class MSE(Distortion):
    name: ClassVar[str] = "mse"

    def __call__(self, x_hat, x, weights=None):
        return _squared_error(x_hat, x, weights)


@DISTORTIONS.register
@dataclass(frozen=True)
class MSSSIM(Distortion):
    name: ClassVar[str] = "ms-ssim"
    uses_ms_ssim: ClassVar[bool] = True
    takes_roi: ClassVar[bool] = False

    def __call__(self, x_hat, x, weights=None):
        return _ms_ssim_term(x_hat, x)

    def ms_ssim_share(self) -> float:
        return 1.0


@DISTORTIONS.register
@dataclass(frozen=True)
class Mix(Distortion):
    """`weight·ms-ssim + (1 − weight)·mse`."""

    name: ClassVar[str] = "mix"
    uses_ms_ssim: ClassVar[bool] = True
    weight: float = 0.5

    def __post_init__(self):
        if not 0 <= self.weight <= 1:
            raise ValueError(f"the MS-SSIM share must be in [0, 1], got {self.weight}")

    def __call__(self, x_hat, x, weights=None):
        return self.weight * _ms_ssim_term(x_hat, x) + (1 - self.weight) * _squared_error(x_hat, x, weights)

    def ms_ssim_share(self) -> float:
        return self.weight

    def spec(self) -> str:
        return f"mix:{self.weight:g}"


def distortion_from(spec: str) -> Distortion:
    """The distortion `--distortion` names: `mse`, `ms-ssim`, `mix:W` (or `mix:weight=W`)."""
    name, _, rest = spec.strip().partition(":")
    options: dict = {}
    if rest:
        key, equals, value = rest.partition("=")
        key, value = ("weight", key) if not equals else (key.strip(), value)
        try:
            options[key] = float(value)
        except ValueError:
            raise LatentfitError(f"distortion option must be a number, got '{value}' (in '{spec}')") from None
    return DISTORTIONS.get(name, **options)


@dataclass(frozen=True, eq=False)
class Measure:
    """A distortion bound to one image's region-of-interest weights: `measure(x_hat, x)` is the `D` of
    the loss; `part(box, region)` is its share from a part of the image (a tile's pixels: exact for a
    per-pixel distortion, `mse` weighted or not; an estimate with MS-SSIM in it)."""

    distortion: Distortion
    weights: Tensor | None = None

    def __call__(self, x_hat: Tensor, x: Tensor) -> Tensor:
        weights = None if self.weights is None else self.weights.to(x_hat.device)
        return self.distortion(x_hat, x, weights)

    @property
    def per_pixel(self) -> bool:
        """Whether it is a mean over pixels (no MS-SSIM in it), so a part of the image measures its share exactly."""
        return self.distortion.ms_ssim_share() == 0

    def part(self, box: tuple[slice, slice], region: tuple[slice, slice]) -> Callable[[Tensor, Tensor], Tensor]:
        """The measure of a part of the image, `part(x_hat, x)` on the pixels of `box` (absolute slices),
        in units where its value times the pixels of `region` (slices within the box: the pixels that
        can change) is the part's share of the whole image's `D` times the image's pixels. The squared
        error counts the region's pixels (exactly: a mean over pixels); the MS-SSIM term is the box's,
        times the box's pixels over the region's, an estimate (MS-SSIM is not a mean over pixels: its
        windows and scales see the context the box holds around the region)."""
        share = self.distortion.ms_ssim_share()
        rows, cols = region
        absolute = (slice(box[0].start + rows.start, box[0].start + rows.stop),
                    slice(box[1].start + cols.start, box[1].start + cols.stop))
        weights = None if self.weights is None else self.weights[..., absolute[0], absolute[1]]
        ratio = ((box[0].stop - box[0].start) * (box[1].stop - box[1].start)
                 / ((rows.stop - rows.start) * (cols.stop - cols.start)))

        def measured(x_hat: Tensor, x: Tensor) -> Tensor:
            value = 0.0
            if share < 1:
                w = None if weights is None else weights.to(x_hat.device)
                value = (1 - share) * _squared_error(x_hat[..., rows, cols], x[..., rows, cols], w)
            if share > 0:
                value = value + share * ratio * _ms_ssim_term(x_hat, x)
            return value

        return measured


def measure(distortion: Distortion, weights: Tensor | None = None) -> Measure | None:
    """`distortion` bound to a region of interest's `weights`; None for the plain MSE (the loss's own,
    so that an encode without either computes exactly what it always has)."""
    if isinstance(distortion, MSE) and weights is None:
        return None
    return Measure(distortion, weights)


def load_roi(path: str | Path, height: int, width: int, ratio: float = ROI_WEIGHT) -> Tensor:
    """A region-of-interest mask as weights (1, 1, H, W) of mean 1: level `v` weighs `1 + (ratio − 1)·v/255`
    (an RGB mask is taken as its luma). Refused in one line: unreadable, of another size than the
    image, all black (no region), or a ratio that is not positive."""
    from PIL import Image, UnidentifiedImageError

    if not ratio > 0:
        raise LatentfitError(f"region-of-interest weight must be > 0, got {ratio}")
    try:
        with Image.open(path) as mask:
            levels = np.asarray(mask.convert("L"), dtype=np.float64)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise LatentfitError(f"{path}: not a readable region-of-interest mask ({type(exc).__name__})") from None
    if levels.shape != (height, width):
        raise LatentfitError(f"{path}: region-of-interest mask is {levels.shape[1]}x{levels.shape[0]}, "
                             f"the image {width}x{height}")
    if not levels.any():
        raise LatentfitError(f"{path}: region-of-interest mask is all black (no region of interest)")
    weights = 1.0 + (ratio - 1.0) * levels / 255.0
    weights = torch.from_numpy(weights / weights.mean()).float()
    return weights.view(1, 1, height, width)
