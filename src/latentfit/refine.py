"""The refinement loop: optimise one image's latents against a proxy of the true R-D loss.

Adam on `(y, z)` jointly (or on `y` with `z = h_a(y)` recomputed), model frozen, starting from the
encoder's `(y₀, z₀)`. Every `evaluate_every` steps the true loss `L_true` of the hard-quantised
iterate is measured and the best iterate kept, so the result is never worse than the plain encoder.

The loop (`optimise`) works on a `RefinementProblem`: the whole image here, or one tile of a big
image (`latentfit.tiling`), so both share every setting, schedule and stopping rule.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal, Protocol

import torch
from torch import Tensor

from .errors import LatentfitError
from .imageio import pad_to_multiple
from .models.adapter import LatentModel, Latents, RateDistortion
from .relaxations import QuantizationProxy, get_proxy
from .schedules import TemperatureSchedule, cosine_learning_rate


@dataclass
class RefinementConfig:
    """Settings of `refine_latents`. `lmbda=None` uses the model's training λ.

    The defaults (sga+ssl, 500 steps, its lr 3e-2 with cosine decay to 0.01·lr, τ annealed 1.5 → 0.2
    within the steps) were chosen from `benchmarks/time_to_quality.py` (BENCHMARKS.md): at a quarter
    of the papers' 2000 steps they get closer to the papers' final loss than the papers' own settings
    stopped at 500. The papers' protocol is `lr=5e-3, lr_schedule="constant", schedule="papers"`.

    `schedule`: a `TemperatureSchedule`; `"papers"` (or None) for the method's own default (SGA:
    τ_max 0.5, t₀ 700; SGA+: τ_max 1, t₀ 0; rate 1e-3); `"budget"` to anneal from 1.5·τ_max to 0.2·τ_max
    within the step budget (`TemperatureSchedule.for_budget`; `BUDGET_TAU_START`, `BUDGET_TAU_END`).
    `steps="auto"`: `AUTO_STEPS`, or with a `time_budget` as many steps as fit in it (measured
    on the first steps, at most `AUTO_MAX_STEPS`), with the schedules scaled to that count.
    `tile`: refine images larger than `AUTO_TILE_PIXELS` pixels tile by tile ("auto"), always with
    tiles of this many pixels a side (int), or never (None): see `latentfit.tiling`.
    """

    method: str = "sga+ssl"
    steps: int | Literal["auto"] = "auto"
    #: Adam's lr; None: the method's `default_lr` (3e-2 for sga+ssl, the papers' 5e-3 for the others).
    lr: float | None = None
    lmbda: float | None = None
    seed: int = 0
    evaluate_every: int = 10
    variables: Literal["joint", "y"] = "joint"
    schedule: TemperatureSchedule | Literal["papers", "budget"] | None = "budget"
    proxy_options: dict = field(default_factory=dict)
    time_budget: float | None = None
    record_trace: bool = True
    #: "constant", or "cosine" (decay to `lr_final_fraction`·lr over the step budget).
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    lr_final_fraction: float = 0.01
    #: Stop after this many true-loss evaluations without a relative improvement of `min_improvement`.
    patience: int | None = None
    min_improvement: float = 1e-4
    #: Run the proxy's decoder copies in channels-last layout (faster on CPU; the true loss and the
    #: file are computed by the plain model either way).
    channels_last: bool = True
    #: `torch.compile` the proxy's decoder copies (needs a C++ compiler on CPU; pays off on long runs).
    compile: bool = False
    tile: int | Literal["auto"] | None = "auto"

    def learning_rate(self, proxy: QuantizationProxy) -> float:
        """Adam's lr: `lr`, or the proxy's `default_lr` when `lr` is None."""
        return self.lr or proxy.default_lr

    def __post_init__(self):
        if self.steps != "auto" and (not isinstance(self.steps, int) or self.steps < 0):
            raise LatentfitError(f"steps must be an integer >= 0 or 'auto', got {self.steps!r}")
        if self.tile not in ("auto", None) and (not isinstance(self.tile, int) or self.tile < 64):
            raise LatentfitError(f"tile must be 'auto', None or an integer >= 64 pixels, got {self.tile!r}")
        if not (self.schedule in (None, "papers", "budget") or isinstance(self.schedule, TemperatureSchedule)):
            raise LatentfitError(f"schedule must be a TemperatureSchedule, 'papers' or 'budget', got {self.schedule!r}")
        if self.lr is not None and self.lr <= 0:
            raise LatentfitError(f"lr must be > 0, got {self.lr}")
        if self.evaluate_every < 1:
            raise LatentfitError(f"evaluate_every must be >= 1, got {self.evaluate_every}")
        if self.variables not in ("joint", "y"):
            raise LatentfitError(f"variables must be 'joint' or 'y', got {self.variables!r}")
        if self.lmbda is not None and self.lmbda <= 0:
            raise LatentfitError(f"lmbda must be > 0, got {self.lmbda}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise LatentfitError(f"time budget must be > 0 seconds, got {self.time_budget}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise LatentfitError(f"lr schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not 0 <= self.lr_final_fraction <= 1:
            raise LatentfitError(f"lr final fraction must be in [0, 1], got {self.lr_final_fraction}")
        if self.patience is not None and self.patience < 1:
            raise LatentfitError(f"patience must be >= 1 evaluations, got {self.patience}")


#: `steps="auto"` without a time budget; the most steps `auto` plans within one.
AUTO_STEPS = 500
AUTO_MAX_STEPS = 2000
#: With `tile="auto"`, images with more pixels than this are refined tile by tile.
AUTO_TILE_PIXELS = 4_000_000
AUTO_TILE_SIZE = 768


@dataclass
class TrueLoss:
    """`L_true` of one set of latents and its parts (bpp is the ideal rate `R/P`)."""

    loss: float
    bpp: float
    psnr: float

    @classmethod
    def of(cls, terms: RateDistortion) -> "TrueLoss":
        return cls(float(terms.loss), terms.bpp, terms.psnr)


@dataclass
class TraceRecord:
    step: int
    tau: float
    proxy_loss: float
    true_loss: float
    true_bpp: float
    true_psnr: float
    seconds: float

    @property
    def gap(self) -> float:
        """Proxy minus true loss: the diagnostic of Yang et al."""
        return self.proxy_loss - self.true_loss


@dataclass
class RefinementResult:
    latents: Latents
    initial: TrueLoss
    final: TrueLoss
    best_step: int
    steps_run: int
    seconds: float
    seed: int
    method: str
    lmbda: float
    trace: list[TraceRecord]
    stopped_by: str
    tiles: int = 1
    lr: float | None = None

    def trace_dicts(self) -> list[dict]:
        return [asdict(record) | {"gap": record.gap} for record in self.trace]


class RefinementProblem(Protocol):
    """What `optimise` needs: leaf `variables`, the proxy loss, the true loss of the current
    (hard-quantised) iterate, and snapshots to keep the best iterate."""

    variables: list[Tensor]

    def proxy_loss(self, relax: Callable[[Tensor], Tensor]) -> Tensor: ...

    def true_loss(self) -> TrueLoss: ...

    def snapshot(self) -> list[Tensor]: ...


@dataclass
class Outcome:
    best: TrueLoss
    best_variables: list[Tensor]
    best_step: int
    steps_run: int
    stopped_by: str
    trace: list[TraceRecord]


#: `"budget"` anneals τ from `BUDGET_TAU_START·τ_max` to `BUDGET_TAU_END·τ_max` (τ_max: the method's
#: own) within the steps; measured for sga+ssl (BENCHMARKS.md, time to quality): an end of 0.2 beat
#: 0.05 in all six runs (four Kodak crops, two sets of weights; 0.02 was worse still), a start of 1.5
#: beat 1 on every crop tried (0.6–0.7 and 2 were worse).
BUDGET_TAU_START = 1.5
BUDGET_TAU_END = 0.2


def schedule_constants(config: RefinementConfig) -> dict:
    """The constants behind `config`'s named schedules in this version of latentfit: the cosine lr's
    floor (`lr_final_fraction`) and the budget τ range (`budget_tau`, multiples of τ_max). Results
    journals key runs by them, since measurements move these values while the names stay."""
    constants: dict = {}
    if config.lr_schedule == "cosine":
        constants["lr_final_fraction"] = config.lr_final_fraction
    if config.schedule == "budget":
        constants["budget_tau"] = [BUDGET_TAU_START, BUDGET_TAU_END]
    return constants


def temperature_schedule(config: RefinementConfig, proxy: QuantizationProxy, steps: int) -> TemperatureSchedule:
    """The schedule `config.schedule` names, for a run of `steps` steps."""
    if isinstance(config.schedule, TemperatureSchedule):
        return config.schedule
    base = proxy.default_schedule()
    if config.schedule == "budget":
        return TemperatureSchedule.for_budget(max(steps, 1), BUDGET_TAU_START * base.tau_max,
                                              BUDGET_TAU_END * base.tau_max)
    return base


def planned_steps(config: RefinementConfig) -> int:
    return AUTO_STEPS if config.steps == "auto" else config.steps


def optimise(
    problem: RefinementProblem,
    initial: TrueLoss,
    config: RefinementConfig,
    proxy: QuantizationProxy,
    generator: torch.Generator,
    time_budget: float | None,
    progress: Callable[[int, int, TraceRecord | None], None] | None = None,
    step_offset: int = 0,
    total_steps: int | None = None,
) -> Outcome:
    """Adam on `problem.variables` against the proxy loss; the true loss every `evaluate_every`
    steps; returns the best iterate by true loss (the start, `initial`, if nothing beats it)."""
    started = time.perf_counter()
    steps = planned_steps(config) if proxy.refines else 0
    schedule = temperature_schedule(config, proxy, steps)
    lr = config.learning_rate(proxy)
    optimizer = torch.optim.Adam(problem.variables, lr=lr)
    best, best_variables, best_step = initial, problem.snapshot(), 0
    trace: list[TraceRecord] = []
    stopped_by, stale, step = "steps", 0, 0
    auto_fit = config.steps == "auto" and time_budget is not None
    while step < steps:
        step += 1
        tau = schedule(step - 1)
        if config.lr_schedule == "cosine":
            for group in optimizer.param_groups:
                group["lr"] = cosine_learning_rate(step - 1, steps, lr, config.lr_final_fraction)
        proxy_loss = problem.proxy_loss(lambda v: proxy.relax(v, tau, generator))
        optimizer.zero_grad(set_to_none=True)
        proxy_loss.backward()
        optimizer.step()

        elapsed = time.perf_counter() - started
        out_of_time = time_budget is not None and elapsed >= time_budget
        evaluate = step % config.evaluate_every == 0 or step == steps or out_of_time
        if evaluate:
            true = problem.true_loss()
            improved = true.loss < best.loss - config.min_improvement * abs(best.loss)
            stale = 0 if improved else stale + 1
            if true.loss < best.loss:
                best, best_variables, best_step = true, problem.snapshot(), step
            record = TraceRecord(step + step_offset, tau, proxy_loss.item(), true.loss, true.bpp, true.psnr,
                                 time.perf_counter() - started)
            if config.record_trace:
                trace.append(record)
            if auto_fit and step == config.evaluate_every:
                # Fit the plan to the budget, from the measured cost of steps (and one evaluation) so far.
                per_step = (time.perf_counter() - started) / step
                steps = max(step + 1, min(AUTO_MAX_STEPS, int(time_budget / per_step)))
                schedule = temperature_schedule(config, proxy, steps)
        if progress is not None:
            progress(step + step_offset, total_steps or steps, record if evaluate else None)
        if out_of_time:
            stopped_by = "time_budget"
            break
        if config.patience is not None and stale >= config.patience:
            stopped_by = "plateau"
            break
    return Outcome(best, best_variables, best_step, step, stopped_by, trace)


class WholeImage:
    """The untiled problem: `(y, z)` of the whole image (or `y` alone, `z = h_a(y)`)."""

    def __init__(self, model: LatentModel, x: Tensor, latents: Latents, lmbda: float, config: RefinementConfig):
        self.model, self.x, self.lmbda = model, x, lmbda
        self.fast = model.proxy_view(channels_last=config.channels_last, compile=config.compile)
        self.joint = model.has_hyperprior and config.variables == "joint"
        self.y = latents.y.detach().clone().requires_grad_(True)
        self.z = latents.z.detach().clone().requires_grad_(True) if self.joint else None
        self.variables = [self.y] + ([self.z] if self.joint else [])

    def latents(self, variables: list[Tensor] | None = None) -> Latents:
        variables = self.variables if variables is None else variables
        y = variables[0]
        if not self.model.has_hyperprior:
            return Latents(y)
        return Latents(y, variables[1] if self.joint else self.model.hyper_analysis(y))

    def proxy_loss(self, relax):
        return self.fast.rate_distortion(self.latents(), self.x, self.lmbda, relax).loss

    @torch.no_grad()
    def true_loss(self) -> TrueLoss:
        return TrueLoss.of(self.model.true_rate_distortion(self.latents().detach(), self.x, self.lmbda))

    def snapshot(self) -> list[Tensor]:
        return [v.detach().clone() for v in self.variables]


def refine_latents(
    model: LatentModel,
    x: Tensor,
    config: RefinementConfig | None = None,
    x_padded: Tensor | None = None,
    progress: Callable[[int, int, TraceRecord | None], None] | None = None,
) -> RefinementResult:
    """Refine the latents of image `x` (1, 3, H, W) in [0, 1] for `model`.

    `x_padded` is the encoder's input: `x` padded to the model's stride (by default, edges replicated).
    Returns the best latents seen (by `L_true`), both losses, and the optimisation trace.
    """
    config = config or RefinementConfig()
    proxy: QuantizationProxy = get_proxy(config.method, **config.proxy_options)
    lmbda = model.lmbda if config.lmbda is None else config.lmbda
    device = model.device
    x = x.to(device)
    x_padded = pad_to_multiple(x, model.stride) if x_padded is None else x_padded.to(device)
    started = time.perf_counter()
    with torch.no_grad():
        initial_latents = model.analysis(x_padded)
    generator = torch.Generator(device=device).manual_seed(config.seed)

    tile = config.tile
    if tile == "auto":
        tile = AUTO_TILE_SIZE if x.shape[-2] * x.shape[-1] > AUTO_TILE_PIXELS else None
    if tile is not None and proxy.refines:
        from .tiling import refine_tiles

        return refine_tiles(model, x, initial_latents, config, proxy, lmbda, generator, tile, started, progress)

    problem = WholeImage(model, x, initial_latents, lmbda, config)
    initial = problem.true_loss()
    budget = None  # what is left of the time budget after the encoder and the first true loss
    if config.time_budget is not None:
        budget = max(config.time_budget - (time.perf_counter() - started), 1e-3)
    outcome = optimise(problem, initial, config, proxy, generator, budget, progress)
    first = TraceRecord(0, temperature_schedule(config, proxy, planned_steps(config))(0), float("nan"),
                        initial.loss, initial.bpp, initial.psnr, 0.0)
    return RefinementResult(
        latents=problem.latents(outcome.best_variables).detach(),
        initial=initial,
        final=outcome.best,
        best_step=outcome.best_step,
        steps_run=outcome.steps_run,
        seconds=time.perf_counter() - started,
        seed=config.seed,
        method=proxy.name,
        lmbda=lmbda,
        trace=([first] + outcome.trace) if config.record_trace else [],
        stopped_by=outcome.stopped_by,
        lr=config.learning_rate(proxy),
    )
