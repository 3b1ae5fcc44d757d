"""Rate control: encode to a file size, a bitrate or a quality (PSNR, MS-SSIM) instead of a fixed λ.

A target is met by one refinement run whose λ is steered while it runs (the latents and Adam's
state carry over from one λ to the next; nothing restarts from the plain encoder):

1. every model of the family (its qualities) encodes the image plainly, once; these points give the
   image's own R-D curve over λ, the reachable range (targets far outside it are refused before any
   refinement), the quality to refine (the one whose training λ is nearest the λ the curve predicts
   for the target) and the starting λ;
2. at every true-loss evaluation `Steering` moves λ by the remaining error over the curve's local
   slope, aiming a little inside the target, and keeps the iterates that look feasible;
3. the real file decides: candidates are entropy-coded (and, for a PSNR target, decoded) best
   first until one meets the target, so the guarantee is checked on the bytes that are written.

Guarantees: the file is never larger than a bytes/bpp target and its decoded PSNR (MS-SSIM) never
below a PSNR (MS-SSIM) target; an unreachable target raises `TargetUnreachableError` naming the
image's range. MS-SSIM is steered in dB, `−10·log10(1 − MS-SSIM)`, which like PSNR is nearly linear in
ln λ. Any distortion (`RefinementConfig.distortion`, a region of interest) can be refined to a target:
among the candidates that meet a size target, the one with the lowest distortion of that kind is kept.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from .codec import EncodeResult, StageClock, decode_stream, encode_stats, entropy_code
from .config import RefinementConfig
from .errors import LatentfitError
from .imageio import LoadedImage, pad_to_multiple, to_uint8
from .loop import LoopHook, RefinementResult, TrueLoss
from .metrics import MS_SSIM_MIN_SIDE, ms_ssim, ms_ssim_of, psnr
from .models.adapter import LatentModel, Latents

#: The kinds of target, as the CLI spells them (`--target-bytes`, `--target-bpp`, `--target-psnr`,
#: `--target-ms-ssim`).
TARGET_KINDS = ("bytes", "bpp", "psnr", "ms-ssim")
#: λ is searched within [λ_lowest / LAMBDA_REACH, λ_highest · LAMBDA_REACH] of the family's models.
LAMBDA_REACH = 4.0
#: Steering aims this far inside the target (relative for sizes, dB for PSNR), so that the iterates
#: near the end of the run mostly meet it.
SIZE_MARGIN = 0.006
QUALITY_MARGIN = 0.03  # dB of PSNR or of MS-SSIM
#: Share of the remaining error corrected at each evaluation (an integral controller's gain).
GAIN = 0.6
#: How strongly a refinement's iterate follows a change of λ within the run, relative to the plain
#: curve's slope across models (which changes the transforms too, not only the latents).
RESPONSE = 0.3
#: At most this factor of change of λ per evaluation.
MAX_LAMBDA_STEP = 2.0
#: Without two plain points, the slopes of the bundled models' Kodak curves: ln bytes, PSNR (dB) and
#: MS-SSIM (dB) per ln λ (MS-SSIM: the median over the first 4 odd Kodak crops, results/objectives).
PRIOR_SLOPE = {"size": 0.65, "psnr": 2.9, "ms-ssim": 3.3}
#: Where refinement at a model's own λ moves its file from the plain encoder's: ln bytes and PSNR (dB);
#: the medians over the 24 Kodak crops of `sga+ssl` (results/kodak-256: +0.6 to +1.1 dB, bytes within
#: ±7 %); MS-SSIM (dB): +0.8 (the first 4 of the 12 odd Kodak crops in results/objectives/kodak-crops; +1.5
#: refined for mix:0.5). Used to predict the starting λ (and so the quality) for the refined file.
REFINED_SHIFT = {"size": 0.0, "psnr": 0.9, "ms-ssim": 0.8}
#: What refinement at the end of the λ range may still win beyond the extrapolated plain curve, used
#: only to refuse targets before any work: sizes down to this fraction, PSNR up by this many dB.
REFUSE_SIZE_FRACTION = 0.6
REFUSE_QUALITY_MARGIN = 1.5  # dB
#: Candidates kept for the final check, best first.
CANDIDATES = 6


class TargetUnreachableError(LatentfitError):
    """The target lies outside what the models can reach on this image."""


def ms_ssim_db(value: float) -> float:
    """MS-SSIM in dB, `−10·log10(1 − MS-SSIM)` (inf for 1)."""
    return math.inf if value >= 1 else -10.0 * math.log10(1.0 - value)


@dataclass(frozen=True)
class Quality:
    """What a quality target measures, steered in dB: PSNR (dB already) or MS-SSIM."""

    name: str  #: the target kind and the `--json` key ("psnr", "ms_ssim" for "ms-ssim")
    label: str

    @property
    def stats_key(self) -> str:
        return self.name.replace("-", "_")

    def db(self, value: float) -> float:
        return value

    def from_db(self, db: float) -> float:
        return db

    def check(self, value: float) -> None:
        """Refuse (one line) a target value this measure cannot take."""

    def check_image(self, height: int, width: int, source: str) -> None:
        """Refuse (one line) an image this measure cannot be taken on."""

    def of_file(self, reference: np.ndarray, decoded: np.ndarray) -> float | None:
        """The decoded file's quality, in the target's units."""
        return psnr(reference, decoded)

    def of_iterate(self, true: TrueLoss, x_hat: Callable[[], torch.Tensor], x: torch.Tensor) -> float:
        """An iterate's quality in dB: from its true loss, or `x_hat()` (its reconstruction) if needed."""
        return true.psnr

    def describe(self, value: float) -> str:
        return f"{value:.2f} dB"

    def describe_range(self, low_db: float, high_db: float) -> str:
        return f"{low_db:.2f} to {high_db:.2f} dB"


class MSSSIMQuality(Quality):
    def db(self, value):
        return ms_ssim_db(value)

    def from_db(self, db):
        return 1.0 - 10.0 ** (-db / 10.0)

    def check(self, value):
        if not value < 1:
            raise LatentfitError(f"--target-ms-ssim is an MS-SSIM between 0 and 1 (e.g. 0.98), got {value!r}")

    def check_image(self, height, width, source):
        if min(height, width) < MS_SSIM_MIN_SIDE:
            raise LatentfitError(f"{source}: --target-ms-ssim needs images of at least {MS_SSIM_MIN_SIDE} pixels "
                                 f"a side (MS-SSIM's scales), got {width}x{height}")

    def of_file(self, reference, decoded):
        return ms_ssim(reference, decoded)

    def of_iterate(self, true, x_hat, x):
        return _ms_ssim_db_of(x_hat(), x)

    def describe(self, value):
        return f"MS-SSIM {value:.4f}"

    def describe_range(self, low_db, high_db):
        return f"MS-SSIM {self.from_db(low_db):.4f} to {self.from_db(high_db):.4f}"


#: The quality targets' measures, by target kind.
QUALITIES = {"psnr": Quality("psnr", "PSNR"), "ms-ssim": MSSSIMQuality("ms-ssim", "MS-SSIM")}


@dataclass(frozen=True)
class Target:
    """`kind` is "bytes" (file size), "bpp" (file size / pixels), "psnr" (dB of the decoded file) or
    "ms-ssim" (MS-SSIM of the decoded file, in (0, 1), e.g. 0.98)."""

    kind: str
    value: float

    def __post_init__(self):
        if self.kind not in TARGET_KINDS:
            raise LatentfitError(f"unknown target kind '{self.kind}' (use {', '.join(TARGET_KINDS)})")
        if not (isinstance(self.value, (int, float)) and math.isfinite(self.value) and self.value > 0):
            raise LatentfitError(f"--target-{self.kind} must be a positive number, got {self.value!r}")
        if self.quality is not None:
            self.quality.check(self.value)

    @property
    def is_size(self) -> bool:
        return self.kind in ("bytes", "bpp")

    @property
    def quality(self) -> Quality | None:
        """What a quality target measures (None for a size)."""
        return QUALITIES.get(self.kind)

    @property
    def curve_kind(self) -> str:
        """What its curve and steering measure: "size" (ln bytes), "psnr" or "ms-ssim" (dB)."""
        return "size" if self.is_size else self.kind

    @property
    def db(self) -> float:
        """A quality target in dB (PSNR, or MS-SSIM in dB)."""
        return self.quality.db(self.value)

    def check(self, height: int, width: int, source: str = "image") -> None:
        """Refuse (one line) an image this target cannot be measured on."""
        if self.quality is not None:
            self.quality.check_image(height, width, source)

    def size_limit(self, height: int, width: int) -> int:
        """The largest file (bytes) a size target allows for an image of this size."""
        return int(self.value) if self.kind == "bytes" else int(math.floor(self.value * height * width / 8))

    def met(self, size: int, quality: float, height: int, width: int) -> bool:
        return size <= self.size_limit(height, width) if self.is_size else quality >= self.value

    def option(self) -> str:
        return f"--target-{self.kind} {self.value:g}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value}


def _interpolate(xs: Sequence[float], ys: Sequence[float], x: float, slope: float) -> float:
    """Piecewise-linear y(x) through the points (xs ascending), extended beyond them by the end
    segments (or `slope` through a single point)."""
    if len(xs) == 1:
        return ys[0] + slope * (x - xs[0])
    i = int(np.clip(np.searchsorted(xs, x) - 1, 0, len(xs) - 2))
    return ys[i] + (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i]) * (x - xs[i])


@dataclass
class PlainPoint:
    """One model's plain encode of the image: the ideal size (bytes, with the calibrated header and
    coder overhead), the PSNR and (for a target in another quality) that quality in dB, at its own λ."""

    model: LatentModel
    size: float
    psnr: float
    db: float | None = None

    @property
    def quality_db(self) -> float:
        return self.psnr if self.db is None else self.db

    @property
    def log_lmbda(self) -> float:
        return math.log(self.model.lmbda)


@dataclass
class Curve:
    """The image's plain R-D curve over ln λ: `metric(ln λ)` is ln bytes (size targets) or the
    quality in dB (PSNR, MS-SSIM in dB; `kind`: "size", "psnr", "ms-ssim")."""

    points: list[PlainPoint]
    kind: str = "psnr"

    @property
    def is_size(self) -> bool:
        return self.kind == "size"

    def value(self, point: PlainPoint) -> float:
        return math.log(point.size) if self.is_size else point.quality_db

    def at(self, log_lmbda: float) -> float:
        xs = [p.log_lmbda for p in self.points]
        return _interpolate(xs, [self.value(p) for p in self.points], log_lmbda, self.prior_slope)

    @property
    def prior_slope(self) -> float:
        return PRIOR_SLOPE[self.kind]

    def slope(self, log_lmbda: float) -> float:
        """d metric / d ln λ near `log_lmbda`, kept within a factor 3 of the prior."""
        if len(self.points) == 1:
            return self.prior_slope
        h = 0.05
        raw = (self.at(log_lmbda + h) - self.at(log_lmbda - h)) / (2 * h)
        return float(np.clip(raw, self.prior_slope / 3, self.prior_slope * 3))

    def solve(self, goal: float, low: float, high: float) -> float:
        """ln λ in [low, high] where the curve reaches `goal` (bisection; the curve rises with λ)."""
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if self.at(mid) < goal else (low, mid)
        return (low + high) / 2


@dataclass
class Candidate:
    score: float  # higher is better: quality for size targets, −size for quality targets
    step: int
    lmbda: float
    latents: Latents
    true: TrueLoss
    size: float
    quality: float  # in dB: PSNR, or the quality target's measure


@dataclass
class Steering(LoopHook):
    """The refinement loop's hook that moves the problem's λ at each true-loss evaluation towards the
    target and keeps the iterates that look feasible (by the ideal size plus the calibrated overhead,
    or the true PSNR or MS-SSIM); the encoder's own latents (the start) are a candidate too.

    Among feasible iterates of a size target the best has the lowest distortion the refinement
    minimises (`distortion` set: that one, `(L − R/P)/(λ·255²)`; else the highest PSNR)."""

    target: Target
    curve: Curve
    goal: float  # the metric steered to (a margin inside the target)
    limit: float  # the metric's feasibility bound (from the target itself)
    log_low: float
    log_high: float
    pixels: int
    overhead: float
    #: the refinement's own distortion is not the plain MSE (another objective, a region of interest)
    distortion: bool = False
    #: the image and the refined model, for a measure an iterate's true loss does not carry (MS-SSIM)
    x: torch.Tensor | None = None
    model: LatentModel | None = None
    lmbdas: list[float] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    #: the most nearly feasible iterate and how far outside the target it is, for when none is feasible
    closest: Candidate | None = None
    closest_distance: float = math.inf

    def size_of(self, true: TrueLoss) -> float:
        return true.bpp * self.pixels / 8 + self.overhead

    def quality(self, true: TrueLoss, latents: Latents) -> float:
        """The iterate's quality in dB: PSNR for a size target, else the target's measure (MS-SSIM
        costs one more synthesis)."""
        if self.target.is_size:
            return true.psnr

        def x_hat() -> torch.Tensor:
            with torch.no_grad():
                return self.model.true_rate_distortion(latents, self.x, 1.0).x_hat

        return self.target.quality.of_iterate(true, x_hat, self.x)

    def score(self, true: TrueLoss, quality: float, lmbda: float) -> float:
        if not self.target.is_size:
            return -self.size_of(true)
        if self.distortion:
            return -(true.loss - true.bpp) / (lmbda * 255.0**2)
        return quality

    def on_start(self, problem, initial: TrueLoss) -> None:
        self.observe(0, initial, problem)

    def on_evaluation(self, step: int, true: TrueLoss, record, problem) -> None:
        self.observe(step, true, problem)

    def observe(self, step: int, true: TrueLoss, problem) -> None:
        latents = problem.latents(problem.snapshot()).detach()
        size, quality = self.size_of(true), self.quality(true, latents)
        metric = math.log(size) if self.target.is_size else quality
        distance = (metric - self.limit) if self.target.is_size else (self.limit - metric)  # > 0: outside
        candidate = Candidate(self.score(true, quality, problem.lmbda), step, problem.lmbda, latents, true,
                              size, quality)
        if distance <= 0:
            self.candidates.append(candidate)
            self.candidates.sort(key=lambda c: -c.score)
            del self.candidates[CANDIDATES:]
        if distance < self.closest_distance:
            self.closest, self.closest_distance = candidate, distance
        if step == 0:
            return  # the encoder's latents: the starting λ already allows for where they are
        log_lmbda = math.log(problem.lmbda)
        change = GAIN * (self.goal - metric) / (self.curve.slope(log_lmbda) * RESPONSE)
        change = float(np.clip(change, -math.log(MAX_LAMBDA_STEP), math.log(MAX_LAMBDA_STEP)))
        problem.lmbda = math.exp(float(np.clip(log_lmbda + change, self.log_low, self.log_high)))
        self.lmbdas.append(problem.lmbda)


def _ms_ssim_db_of(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    return ms_ssim_db(float(ms_ssim_of(x_hat, x)))


def _plain_point(model: LatentModel, x: torch.Tensor, quality: Quality | None = None) -> tuple[PlainPoint, Latents]:
    """`model`'s plain encode of `x`: its ideal size in bytes (no overhead yet), PSNR (and `quality`
    in dB), and the latents."""
    x = x.to(model.device)
    with torch.no_grad():
        latents = model.analysis(pad_to_multiple(x, model.stride))
        terms = model.true_rate_distortion(latents, x, model.lmbda)
    pixels = x.shape[-2] * x.shape[-1]
    db = None if quality is None else quality.of_iterate(TrueLoss.of(terms), lambda: terms.x_hat, x)
    return PlainPoint(model, terms.bpp * pixels / 8, terms.psnr, db), latents


def _lmbda_range(models: Sequence[LatentModel]) -> tuple[float, float]:
    lmbdas = [m.lmbda for m in models]
    return math.log(min(lmbdas) / LAMBDA_REACH), math.log(max(lmbdas) * LAMBDA_REACH)


def _describe_range(target: Target, low: float, high: float, image: LoadedImage) -> str:
    if target.kind == "bytes":
        return f"{low:,.0f} to {high:,.0f} bytes"
    if target.kind == "bpp":
        pixels = image.height * image.width
        return f"{low * 8 / pixels:.3f} to {high * 8 / pixels:.3f} bpp"
    return target.quality.describe_range(low, high)


def _unreachable(target: Target, image: LoadedImage, low: float, high: float, models, how: str):
    qualities = sorted(m.quality for m in models)
    span = f"quality {qualities[0]}" if len(qualities) == 1 else f"qualities {qualities[0]}-{qualities[-1]}"
    return TargetUnreachableError(
        f"{target.option()} is out of reach for this {image.width}x{image.height} image with "
        f"{models[0].name} ({span}): {how} {_describe_range(target, low, high, image)}")


def protocol(config: RefinementConfig | None) -> RefinementConfig:
    """The refinement settings rate control runs: `config` with an fp32 proxy and every evaluation
    (what it was measured with), or a one-line error for a setting a target cannot take."""
    config = config or RefinementConfig()
    if config.precision == "auto":
        # Rate control was measured with an fp32 proxy; with bf16 the λ steering missed a tight PSNR
        # window on a small crop (tests/test_rate_control.py), so `auto` means fp32 here.
        config = dataclasses.replace(config, precision="fp32")
    if config.evaluations != "every":
        # The λ steering acts at each evaluation, and was measured with one every `evaluate_every` steps.
        config = dataclasses.replace(config, evaluations="every")
    if config.lmbda is not None:
        raise LatentfitError("a target chooses λ itself: leave out lmbda (--lmbda)")
    if config.patience is not None:
        raise LatentfitError("a target steers λ during the run, so a plateau is not defined: leave out patience")
    if isinstance(config.tile, int):
        raise LatentfitError("a target refines the whole image: leave out tile (--tile none or auto)")
    return config


@dataclass
class Plan:
    """What the plain encodes of every quality say about reaching `target` on this image (stage 1):
    its plain curve, the file overhead, the λ range and, for a refining method, the quality to refine,
    the λ to start from and the `Steering` hook."""

    target: Target
    image: LoadedImage
    models: list[LatentModel]
    points: list[PlainPoint]
    curve: Curve
    log_low: float
    log_high: float
    low: float
    high: float
    real_encodes: int
    model: LatentModel | None = None
    log_start: float = 0.0
    steering: Steering | None = None

    @property
    def limit(self) -> int:
        return self.target.size_limit(self.image.height, self.image.width)

    def unreachable(self, how: str, low: float | None = None, high: float | None = None) -> TargetUnreachableError:
        return _unreachable(self.target, self.image, self.low if low is None else low,
                            self.high if high is None else high, self.models, how)


def plan(image: LoadedImage, models: LatentModel | Sequence[LatentModel], target: Target,
         config: RefinementConfig) -> Plan:
    """Stage 1: every model of the family encodes the image plainly (the header and coder overhead
    calibrated on one real file); a target out of reach is refused here, before any refinement; a
    refining method gets its quality, starting λ and `Steering`."""
    models = [models] if isinstance(models, LatentModel) else sorted(models, key=lambda m: m.lmbda)
    if not models:
        raise LatentfitError("a target needs at least one model")
    refines = config.proxy().refines
    target.check(image.height, image.width)
    raw = [_plain_point(m, image.tensor, target.quality) for m in models]
    middle = len(models) // 2
    _, data = entropy_code(image, models[middle], raw[middle][1])
    overhead = len(data) - raw[middle][0].size
    points = [dataclasses.replace(point, size=point.size + overhead) for point, _ in raw]
    curve = Curve(points, target.curve_kind)
    log_low, log_high = _lmbda_range(models)
    low, high = plain_range(curve, log_low, log_high, refines)
    result = Plan(target, image, models, points, curve, log_low, log_high, low, high, real_encodes=1)
    if target.is_size:
        if result.limit <= overhead:
            raise result.unreachable("its files range from about")
        goal_value, limit_value = math.log(result.limit * (1 - SIZE_MARGIN)), math.log(result.limit)
    else:
        goal_value, limit_value = target.db + QUALITY_MARGIN, target.db
    reach = low * REFUSE_SIZE_FRACTION if target.is_size else high + REFUSE_QUALITY_MARGIN
    if (target.is_size and result.limit < reach) or (not target.is_size and target.db > reach):
        raise result.unreachable("its files range from about")
    if refines:
        # the quality whose λ is nearest the λ the plain curve predicts, and steering from there
        shift = REFINED_SHIFT[target.curve_kind]
        result.log_start = curve.solve(goal_value - shift, log_low, log_high)
        result.model = min(models, key=lambda m: abs(math.log(m.lmbda) - result.log_start))
        result.steering = Steering(target, curve, goal_value, limit_value, log_low, log_high,
                                   image.height * image.width, overhead,
                                   distortion=config.distortion != "mse" or image.roi is not None,
                                   x=image.tensor.to(result.model.device), model=result.model)
    return result


#: `encode_plain(model)`: the pipeline's plain encode of the image with `model` (method none), an
#: `EncodeResult`; rate control is handed it rather than importing the pipeline that imports it.
PlainEncoder = Callable[[LatentModel], EncodeResult]


def best_candidate(plan: Plan, result: RefinementResult, config: RefinementConfig, clock: StageClock,
                   encode_plain: PlainEncoder) -> EncodeResult:
    """Stage 3, the real file decides: the steered run's candidates are entropy-coded (and decoded)
    best first until one meets the target, then the iterate nearest it; if none does, a plain file of
    another quality that meets it; else `TargetUnreachableError`."""
    image, target, model = plan.image, plan.target, plan.model
    height, width = image.height, image.width
    reference = to_uint8(image.tensor)
    tried = list(plan.steering.candidates) + ([plan.steering.closest] if plan.steering.closest else [])
    chosen, sizes = None, []
    for candidate in tried:
        stream, data = entropy_code(image, model, candidate.latents)
        plan.real_encodes += 1
        sizes.append(len(data))
        if target.is_size and len(data) > plan.limit:
            continue
        clock.mark("check")
        decoded = decode_stream(stream, model)
        quality = None if target.is_size else target.quality.of_file(reference, decoded)
        if target.met(len(data), quality, height, width):
            chosen = candidate
            break
    if chosen is None:
        # refinement ended just outside the target: a plain file of another quality that meets it
        fallback = best_plain(plan, encode_plain, skip_unlikely=True)
        if fallback is not None:
            fallback.stats |= {"fallback": "plain", "steps_run": result.steps_run}
            return fallback
        best = (f"the smallest file refinement made was {min(sizes):,} bytes" if target.is_size else
                f"the best {target.quality.label} refinement reached was "
                f"{target.quality.describe(target.quality.from_db(max(c.quality for c in tried)))}")
        raise plan.unreachable(f"{best}; its files range from about")
    result = dataclasses.replace(result, latents=chosen.latents, final=chosen.true, best_step=chosen.step,
                                 lmbda=chosen.lmbda)
    stats = encode_stats(image, model, config, result, data, decoded, clock)
    stats |= {
        "target": target.to_dict() | ({"bytes": plan.limit} if target.is_size else {}),
        "achieved": _achieved(stats),
        "lmbda_start": math.exp(plan.log_start),
        "lmbda_probes": len(set(plan.steering.lmbdas)) + 1,
        "real_encodes": plan.real_encodes,
    }
    return EncodeResult(data, stream, result, decoded, stats)


def plain_range(curve: Curve, log_low: float, log_high: float, refines: bool) -> tuple[float, float]:
    """The metric's range over the λ range (plain curve, extended; without refinement, the plain
    points themselves): sizes in bytes, or PSNR or MS-SSIM in dB."""
    if refines:
        ends = [curve.at(log_low), curve.at(log_high)]
    else:
        ends = [curve.value(curve.points[0]), curve.value(curve.points[-1])]
    return tuple(math.exp(v) for v in ends) if curve.is_size else tuple(ends)


def best_plain(plan: Plan, encode_plain: PlainEncoder, skip_unlikely: bool = False) -> EncodeResult | None:
    """The best quality whose plain file meets the target (for sizes the largest file, for a quality
    the smallest), or None. `skip_unlikely`: only try qualities whose plain point nearly meets it."""
    target, height, width = plan.target, plan.image.height, plan.image.width
    order = list(reversed(plan.points)) if target.is_size else list(plan.points)
    for point in order:
        if skip_unlikely and (point.size > 1.05 * plan.limit if target.is_size else
                              plan.curve.value(point) < target.db - 0.1):
            continue
        result = encode_plain(point.model)
        plan.real_encodes += 1
        quality = None if target.is_size else result.stats[target.quality.stats_key]
        if (target.is_size or quality is not None) and target.met(result.stats["bytes"], quality, height, width):
            result.stats |= {"target": target.to_dict(), "achieved": _achieved(result.stats),
                             "lmbda_start": point.model.lmbda, "lmbda_probes": 0, "real_encodes": plan.real_encodes}
            if target.is_size:
                result.stats["target"]["bytes"] = plan.limit
            return result
    return None


def _achieved(stats: dict) -> dict:
    """What `--json` reports the file reached: its size and qualities."""
    return {key: stats[key] for key in ("bytes", "bpp", "psnr", "ms_ssim")}
