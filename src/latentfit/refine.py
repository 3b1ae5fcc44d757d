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


#: Before any step has been measured, a step is assumed to cost this many true-loss evaluations
#: (forward, backward and update against one forward pass; measured 2–2.5 on Kodak on this CPU).
STEP_COST_PRIOR = 3.0


def optimise(
    problem: RefinementProblem,
    initial: TrueLoss,
    config: RefinementConfig,
    proxy: QuantizationProxy,
    generator: torch.Generator,
    deadline: float | None,
    progress: Callable[[int, int, TraceRecord | None], None] | None = None,
    step_offset: int = 0,
    total_steps: int | None = None,
    eval_seconds: float = 0.0,
    steer=None,
) -> Outcome:
    """Adam on `problem.variables` against the proxy loss; the true loss every `evaluate_every`
    steps; returns the best iterate by true loss (the start, `initial`, if nothing beats it).

    `deadline` (a `time.perf_counter()` value, or None) is when the loop must have finished, its last
    true-loss evaluation included: a step is only taken if it and one evaluation fit before it, from
    the measured pace of the steps so far (before the first, `STEP_COST_PRIOR` evaluations of
    `eval_seconds`). With `steps="auto"` the plan (and with it the schedules) is fitted to the
    deadline after each of the first three steps and again at each evaluation."""
    started = time.perf_counter()
    steps = planned_steps(config) if proxy.refines else 0
    schedule = temperature_schedule(config, proxy, steps)
    lr = config.learning_rate(proxy)
    optimizer = torch.optim.Adam(problem.variables, lr=lr)
    best, best_variables, best_step = initial, problem.snapshot(), 0
    trace: list[TraceRecord] = []
    stopped_by, stale, step = "steps", 0, 0
    auto_fit = config.steps == "auto" and deadline is not None
    step_times: list[float] = []
    step_seconds = STEP_COST_PRIOR * eval_seconds

    def out_of_time(now: float) -> bool:
        return deadline is not None and now + step_seconds + eval_seconds > deadline

    if steps and out_of_time(started):
        steps, stopped_by = 0, "time_budget"
    while step < steps:
        step_started = time.perf_counter()
        step += 1
        tau = schedule(step - 1)
        if config.lr_schedule == "cosine":
            for group in optimizer.param_groups:
                group["lr"] = cosine_learning_rate(step - 1, steps, lr, config.lr_final_fraction)
        proxy_loss = problem.proxy_loss(lambda v: proxy.relax(v, tau, generator))
        optimizer.zero_grad(set_to_none=True)
        proxy_loss.backward()
        optimizer.step()

        now = time.perf_counter()
        step_times.append(now - step_started)
        # The first step pays one-off costs (allocation, Adam's state): pace from the later ones.
        recent = step_times[1:][-10:] or step_times
        step_seconds = sum(recent) / len(recent)
        if auto_fit and (step <= 3 or step % config.evaluate_every == 0):
            # Fit the plan to what is left of the budget (evaluations every `evaluate_every` steps
            # included), as the pace becomes known: on each of the first steps, then at each evaluation.
            left = deadline - now - eval_seconds
            per_step = step_seconds + eval_seconds / config.evaluate_every
            steps = max(step, min(AUTO_MAX_STEPS, step + int(left / per_step)))
            schedule = temperature_schedule(config, proxy, steps)
        last_chance = step < steps and out_of_time(now)
        evaluate = step % config.evaluate_every == 0 or step == steps or last_chance
        if evaluate:
            evaluated = time.perf_counter()
            true = problem.true_loss()
            eval_seconds = time.perf_counter() - evaluated
            improved = true.loss < best.loss - config.min_improvement * abs(best.loss)
            stale = 0 if improved else stale + 1
            if true.loss < best.loss:
                best, best_variables, best_step = true, problem.snapshot(), step
            if steer is not None:
                steer.observe(step, true, problem)
            record = TraceRecord(step + step_offset, tau, proxy_loss.item(), true.loss, true.bpp, true.psnr,
                                 time.perf_counter() - started)
            if config.record_trace:
                trace.append(record)
        if progress is not None:
            progress(step + step_offset, total_steps or steps, record if evaluate else None)
        if last_chance:
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


#: With a time budget, `encode` keeps this many true-loss evaluations' worth of time for what follows
#: the refinement: entropy coding, decoding its own file to measure it, and the metrics (measured on
#: full Kodak images on this CPU: 1.7–2.0 evaluations; BENCHMARKS.md, "Time budgets").
ENCODE_TAIL_EVALUATIONS = 2.5


def refine_latents(
    model: LatentModel,
    x: Tensor,
    config: RefinementConfig | None = None,
    x_padded: Tensor | None = None,
    progress: Callable[[int, int, TraceRecord | None], None] | None = None,
    clock_started: float | None = None,
    reserve_evaluations: float = 0.0,
    steer=None,
) -> RefinementResult:
    """Refine the latents of image `x` (1, 3, H, W) in [0, 1] for `model`.

    `x_padded` is the encoder's input: `x` padded to the model's stride (by default, edges replicated).
    Returns the best latents seen (by `L_true`), both losses, and the optimisation trace.

    `config.time_budget` counts from `clock_started` (a `time.perf_counter()` value; default: this
    call's start) and leaves `reserve_evaluations` true-loss evaluations' worth of time unused, for the
    caller's work after refinement (`encode` reserves `ENCODE_TAIL_EVALUATIONS`). A budget too small
    for one step returns the encoder's latents with `stopped_by="time_budget"`.

    `steer`: rate control's `Steering` (`latentfit.rate_control`), which moves λ while the run goes on
    and keeps its own candidates; it needs the whole image (no tiles).
    """
    config = config or RefinementConfig()
    proxy: QuantizationProxy = get_proxy(config.method, **config.proxy_options)
    lmbda = model.lmbda if config.lmbda is None else config.lmbda
    device = model.device
    started = time.perf_counter()
    clock_started = started if clock_started is None else clock_started
    x = x.to(device)
    x_padded = pad_to_multiple(x, model.stride) if x_padded is None else x_padded.to(device)
    with torch.no_grad():
        initial_latents = model.analysis(x_padded)
    generator = torch.Generator(device=device).manual_seed(config.seed)

    tile = config.tile
    if tile == "auto":
        big = x.shape[-2] * x.shape[-1] > AUTO_TILE_PIXELS
        tile = AUTO_TILE_SIZE if big and model.arch.tileable else None
    elif tile is not None and not model.arch.tileable and proxy.refines:
        raise LatentfitError(f"tile-by-tile refinement is not available for {model.architecture} models yet; "
                             "refine the whole image (tile none)")
    problem = WholeImage(model, x, initial_latents, lmbda, config)
    evaluated = time.perf_counter()
    initial = problem.true_loss()
    eval_seconds = time.perf_counter() - evaluated
    deadline = None
    if config.time_budget is not None:
        deadline = clock_started + config.time_budget - reserve_evaluations * eval_seconds
    if tile is not None and proxy.refines and steer is None:
        from .tiling import refine_tiles

        return refine_tiles(model, x, initial_latents, initial, config, proxy, lmbda, generator, tile, started,
                            deadline, eval_seconds, progress)

    if steer is not None and proxy.refines:
        steer.observe(0, initial, problem)  # the encoder's own latents are a candidate too
    outcome = optimise(problem, initial, config, proxy, generator, deadline, progress, eval_seconds=eval_seconds,
                       steer=steer)
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
