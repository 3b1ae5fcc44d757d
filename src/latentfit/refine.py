"""Refine one image's latents: the stages before the file (`latentfit.pipeline` runs them in order).

- `analyse`: the encoder's latents `(y₀, z₀)` and their true loss: where refinement starts;
- `closed_loop`: that start corrected by passes of analysis by synthesis (`RefinementConfig.closed_loop`);
- `refine`: Adam on `(y, z)` jointly (or on `y` with `z = h_a(y)` recomputed), model frozen, from the
  start; every few steps the true loss `L_true` of the hard-quantised iterate is measured and the best
  iterate kept, so the result is never worse than the start. The whole image is one
  `RefinementProblem` (`WholeImage`), a big one is refined tile by tile (`latentfit.tiling`); both run
  the one loop, `latentfit.loop.optimise`.

`refine_latents` runs the three for a caller that wants latents, not a file.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import torch
from torch import Tensor

from .config import (  # re-exported (__all__): latentfit.refine is where users found them
    AUTO_MAX_STEPS, AUTO_STEPS, AUTO_TILE_PIXELS, AUTO_TILE_SIZE, BUDGET_TAU_END, BUDGET_TAU_START, RefinementConfig,
)
from .config import resolve_precision
from .deadline import UNBOUNDED, Deadline
from .distortion import Measure, measure
from .errors import LatentfitError
from .imageio import pad_to_multiple
from .loop import LoopHook, Progress, RefinementResult, Start, Trace, TraceRecord, TrueLoss, optimise
from .models.adapter import LatentModel, Latents
from .models.update import Update
from .tiling import refine_tiles

__all__ = [
    "AUTO_MAX_STEPS", "AUTO_STEPS", "AUTO_TILE_PIXELS", "AUTO_TILE_SIZE", "BUDGET_TAU_END", "BUDGET_TAU_START",
    "RefinementConfig", "RefinementResult", "Start", "TraceRecord", "TrueLoss", "WholeImage", "analyse",
    "closed_loop", "optimise", "refine", "refine_latents",
]


class WholeImage:
    """The untiled problem: `(y, z)` of the whole image (or `y` alone, `z = h_a(y)`), and with
    `config.adapt` a decoder update refined with them (from zero, i.e. the decoder as trained)."""

    def __init__(self, model: LatentModel, x: Tensor, latents: Latents, lmbda: float, config: RefinementConfig,
                 update_lr_scale: float | None = None, distortion: Measure | None = None):
        self.model, self.x, self.lmbda, self.distortion = model, x, lmbda, distortion
        self.fast = model.proxy_view(channels_last=config.channels_last, compile=config.compile,
                                      precision=resolve_precision(config.precision, model.device))
        self.joint = model.has_hyperprior and config.variables == "joint"
        self.y = latents.y.detach().clone().requires_grad_(True)
        self.z = latents.z.detach().clone().requires_grad_(True) if self.joint else None
        self.variables = [self.y] + ([self.z] if self.joint else [])
        self.form = config.update_form()
        self.lr_scales = [1.0] * len(self.variables)
        if self.form is not None:
            update = latents.update or Update.zero(self.form, model.model.g_s, model.device)
            self.variables.append(update.values.detach().clone().requires_grad_(True))
            self.lr_scales.append(self.form.lr_scale if update_lr_scale is None else update_lr_scale)

    def latents(self, variables: list[Tensor] | None = None) -> Latents:
        variables = self.variables if variables is None else variables
        update = Update(self.form, variables[-1]) if self.form is not None else None
        y = variables[0]
        if not self.model.has_hyperprior:
            return Latents(y, update=update)
        return Latents(y, variables[1] if self.joint else self.model.hyper_analysis(y), update)

    def proxy_loss(self, relax):
        return self.fast.rate_distortion(self.latents(), self.x, self.lmbda, relax, distortion=self.distortion).loss

    @torch.no_grad()
    def true_loss(self) -> TrueLoss:
        return TrueLoss.of(self.model.true_rate_distortion(self.latents().detach(), self.x, self.lmbda, self.distortion))

    def snapshot(self) -> list[Tensor]:
        return [v.detach().clone() for v in self.variables]


def analyse(model: LatentModel, x: Tensor, x_padded: Tensor, lmbda: float, distortion: Measure | None = None) -> Start:
    """The encoder's latents of `x_padded` (`x` padded to the stride) and their true loss for `x`
    (`distortion`: what the loss measures, `latentfit.distortion`; None: the MSE)."""
    started = time.perf_counter()
    with torch.no_grad():
        latents = model.analysis(x_padded)
    evaluated = time.perf_counter()
    loss = TrueLoss.of(model.true_rate_distortion(latents, x, lmbda, distortion))
    return Start(latents, loss, time.perf_counter() - evaluated, started)


def closed_loop(model: LatentModel, x: Tensor, x_padded: Tensor, lmbda: float, config: RefinementConfig,
                deadline: Deadline = UNBOUNDED, distortion: Measure | None = None) -> Start:
    """The encoder's latents after `config.closed_loop` passes of analysis by synthesis (the best pass;
    `LatentModel.closed_loop_analysis`), which end where refinement's deadline would be."""
    started = time.perf_counter()
    latents, terms, pass_seconds = model.closed_loop_analysis(x, x_padded, lmbda, config.closed_loop,
                                                              config.closed_loop_step, deadline, distortion)
    return Start(latents, TrueLoss.of(terms), pass_seconds, started)


def start(model: LatentModel, x: Tensor, x_padded: Tensor, lmbda: float, config: RefinementConfig,
          deadline: Deadline = UNBOUNDED, distortion: Measure | None = None) -> Start:
    """`analyse`, or with closed-loop passes `closed_loop`."""
    if config.closed_loop:
        return closed_loop(model, x, x_padded, lmbda, config, deadline, distortion)
    return analyse(model, x, x_padded, lmbda, distortion)


def tile_size(model: LatentModel, x: Tensor, config: RefinementConfig) -> int | None:
    """The tile side `config.tile` means for this image and model (None: the whole image at once)."""
    tile = config.tile
    if tile == "auto":
        big = x.shape[-2] * x.shape[-1] > AUTO_TILE_PIXELS
        return AUTO_TILE_SIZE if big and model.arch.tileable else None
    if tile is not None and not model.arch.tileable and config.proxy().refines:
        raise LatentfitError(f"tile-by-tile refinement is not available for {model.architecture} models yet; "
                             "refine the whole image (tile none)")
    return tile


def refine(model: LatentModel, x: Tensor, begin: Start, config: RefinementConfig, lmbda: float,
           deadline: Deadline = UNBOUNDED, hooks: Sequence[LoopHook] = (), distortion: Measure | None = None
           ) -> RefinementResult:
    """Refine from `begin` (the refine stage): the best latents seen (by `L_true`), both losses and the
    optimisation trace. `deadline` is the encode's (its end leaves `deadline.tail` evaluations for
    what follows); `hooks` watch or steer the loop (`latentfit.loop.LoopHook`; tiles tell them of
    whole-image steps and losses). Rate control, whose hook steers λ, asks for no tiles.

    With a decoder update (`config.adapt`), two stages: the latents alone as without one, then the
    adapt stage (`adapt`) from their best; the result keeps the first stage's as its `fallback`.
    `distortion`: what the loss measures (`latentfit.distortion`; None: the MSE), the whole image's."""
    x = x.to(model.device)
    tile = tile_size(model, x, config)
    form = config.update_form()
    if tile is not None and config.proxy().refines:
        if form is not None:
            raise LatentfitError(f"a decoder update (adapt {config.adapt}) is refined on the whole image, and this one "
                                 f"would be refined in tiles of {tile} pixels: refine it whole (tile none) or adapt none")
        return refine_tiles(model, x, begin, config, lmbda, tile, deadline, hooks, distortion)
    if form is None or not config.proxy().refines:
        return refine_whole(model, x, begin, config, lmbda, deadline, hooks, distortion=distortion)[0]
    # the latents' share of the time, the adapt stage's steps counted at their measured cost (1.10x)
    first_deadline = deadline.portion(1 / (1 + ADAPT_STEP_COST * form.share), begin.eval_seconds)
    plain = dataclasses.replace(config, adapt="none")
    first, problem = refine_whole(model, x, begin, plain, lmbda, first_deadline, hooks, distortion=distortion)
    return adapt(model, x, first, begin, config, problem.lmbda, deadline, hooks, distortion)


#: A step with a decoder update against one without (BENCHMARKS.md "Decoder update": 1.10x at 768x512).
ADAPT_STEP_COST = 1.1


def adapt(model: LatentModel, x: Tensor, first: RefinementResult, begin: Start, config: RefinementConfig,
          lmbda: float, deadline: Deadline = UNBOUNDED, hooks: Sequence[LoopHook] = (),
          distortion: Measure | None = None) -> RefinementResult:
    """The adapt stage: from the latents-only result `first`, `form.share` of its steps more on the
    latents (at `form.latents_lr` of the lr) and the decoder update (from zero, at `form.lr_scale`
    times the lr), the loop's keep-best starting at `first`'s true loss, so the result is never worse
    than the latents alone; `first` is kept as its `fallback` (the encoder codes both and keeps the
    better file). Steps, trace and time are counted on from `first`'s."""
    form = config.update_form()
    steps = max(1, round(form.share * first.steps_run))
    if first.steps_run == 0 or not deadline.fits(0.0, begin.eval_seconds):
        return first
    stage = dataclasses.replace(config, steps=steps, lr=config.learning_rate() * form.latents_lr, patience=None)
    then = Start(first.latents, first.final, begin.eval_seconds, time.perf_counter())
    shifted = [Shifted(hook, first.steps_run, first.seconds) for hook in hooks]
    second, _ = refine_whole(model, x, then, stage, lmbda, deadline, shifted,
                             update_lr_scale=form.lr_scale / form.latents_lr, distortion=distortion)
    return dataclasses.replace(
        second, initial=first.initial, steps_run=first.steps_run + second.steps_run,
        best_step=first.best_step if second.best_step == 0 else first.steps_run + second.best_step,
        seconds=time.perf_counter() - begin.started, lr=config.learning_rate(),
        trace=first.trace + [_later(r, first.steps_run, first.seconds) for r in second.trace[1:]],
        stopped_by=second.stopped_by if second.stopped_by != "steps" else first.stopped_by,
        fallback=first)


class Shifted(LoopHook):
    """A hook of a whole refinement, told of a later stage's steps as counted from the refinement's
    start (`offset` steps earlier); the start of the stage is not news to it."""

    def __init__(self, hook: LoopHook, offset: int, seconds: float):
        self.hook, self.offset, self.seconds = hook, offset, seconds

    def on_evaluation(self, step, true, record, problem) -> None:
        self.hook.on_evaluation(step + self.offset, true, _later(record, self.offset, self.seconds), problem)

    def on_step(self, step, planned, record) -> None:
        shifted = None if record is None else _later(record, self.offset, self.seconds)
        self.hook.on_step(step + self.offset, planned + self.offset, shifted)


def _later(record: TraceRecord, steps: int, seconds: float) -> TraceRecord:
    """A later stage's trace record as counted from the refinement's start."""
    return dataclasses.replace(record, step=record.step + steps, seconds=record.seconds + seconds)


def refine_whole(model: LatentModel, x: Tensor, begin: Start, config: RefinementConfig, lmbda: float,
                 deadline: Deadline = UNBOUNDED, hooks: Sequence[LoopHook] = (), update_lr_scale: float | None = None,
                 distortion: Measure | None = None) -> tuple[RefinementResult, "WholeImage"]:
    """One run of the loop on the whole image from `begin`, and the problem it ran (whose λ a hook may
    have steered)."""
    problem = WholeImage(model, x, begin.latents, lmbda, config, update_lr_scale, distortion)
    generator = torch.Generator(device=model.device).manual_seed(config.seed)
    trace = Trace() if config.record_trace else None
    outcome = optimise(problem, begin.loss, config, generator, deadline, [*hooks] + ([trace] if trace else []),
                       eval_seconds=begin.eval_seconds)
    initial = begin.loss
    first = TraceRecord(0, config.temperature(config.planned_steps())(0), float("nan"),
                        initial.loss, initial.bpp, initial.psnr, 0.0)
    result = RefinementResult(
        latents=problem.latents(outcome.best_variables).detach(),
        initial=initial,
        final=outcome.best,
        best_step=outcome.best_step,
        steps_run=outcome.steps_run,
        seconds=time.perf_counter() - begin.started,
        seed=config.seed,
        method=config.proxy().name,
        lmbda=lmbda,
        trace=[first] + trace.records if trace else [],
        stopped_by=outcome.stopped_by,
        lr=config.learning_rate(),
    )
    return result, problem


def refine_latents(
    model: LatentModel,
    x: Tensor,
    config: RefinementConfig | None = None,
    x_padded: Tensor | None = None,
    progress: Callable[[int, int, TraceRecord | None], None] | None = None,
    deadline: Deadline | None = None,
) -> RefinementResult:
    """Refine the latents of image `x` (1, 3, H, W) in [0, 1] for `model`: `analyse` (or
    `closed_loop`), then `refine`.

    `x_padded` is the encoder's input: `x` padded to the model's stride (by default, edges replicated).
    Returns the best latents seen (by `L_true`), both losses, and the optimisation trace. With
    `config.closed_loop` passes, refinement starts from their result and `initial` is its loss.
    `config.time_budget` counts from this call's start unless `deadline` says otherwise; a budget too
    small for one step returns the start's latents with `stopped_by="time_budget"`.
    """
    config = config or RefinementConfig()
    deadline = deadline or Deadline.start(config.time_budget)
    lmbda = model.lmbda if config.lmbda is None else config.lmbda
    chosen = config.distortion_measure()
    chosen.check(x.shape[-2], x.shape[-1], roi=False)
    return refine_image(model, x, config, lmbda, deadline, [Progress(progress)] if progress else [], measure(chosen),
                        x_padded)


def refine_image(model: LatentModel, x: Tensor, config: RefinementConfig, lmbda: float, deadline: Deadline,
                 hooks: Sequence[LoopHook] = (), distortion: Measure | None = None, x_padded: Tensor | None = None
                 ) -> RefinementResult:
    """An encode's refinement stages for image `x`: moved to the model's device and padded to its
    stride (unless `x_padded` is given), `start` (analyse, closed-loop passes), then `refine`."""
    x = x.to(model.device)
    x_padded = pad_to_multiple(x, model.stride) if x_padded is None else x_padded.to(model.device)
    begin = start(model, x, x_padded, lmbda, config, deadline, distortion)
    return refine(model, x, begin, config, lmbda, deadline, hooks, distortion)
