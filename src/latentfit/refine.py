"""Refine one image's latents: the whole image as one `RefinementProblem`, or tile by tile.

Adam on `(y, z)` jointly (or on `y` with `z = h_a(y)` recomputed), model frozen, starting from the
encoder's `(y₀, z₀)`. Every `evaluate_every` steps the true loss `L_true` of the hard-quantised
iterate is measured and the best iterate kept, so the result is never worse than the plain encoder.

The settings are a `RefinementConfig` (`latentfit.config`); the loop is `latentfit.loop.optimise`,
shared with the tiles of big images (`latentfit.tiling`).
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import Tensor

from .config import (  # re-exported (__all__): latentfit.refine is where users found them
    AUTO_MAX_STEPS, AUTO_STEPS, AUTO_TILE_PIXELS, AUTO_TILE_SIZE, BUDGET_TAU_END, BUDGET_TAU_START, RefinementConfig,
)
from .config import resolve_precision
from .errors import LatentfitError
from .imageio import pad_to_multiple
from .loop import RefinementResult, TraceRecord, TrueLoss, optimise
from .models.adapter import LatentModel, Latents
from .tiling import refine_tiles

__all__ = [
    "AUTO_MAX_STEPS", "AUTO_STEPS", "AUTO_TILE_PIXELS", "AUTO_TILE_SIZE", "BUDGET_TAU_END", "BUDGET_TAU_START",
    "ENCODE_TAIL_EVALUATIONS", "RefinementConfig", "RefinementResult", "TraceRecord", "TrueLoss", "WholeImage",
    "optimise", "refine_latents",
]

class WholeImage:
    """The untiled problem: `(y, z)` of the whole image (or `y` alone, `z = h_a(y)`)."""

    def __init__(self, model: LatentModel, x: Tensor, latents: Latents, lmbda: float, config: RefinementConfig):
        self.model, self.x, self.lmbda = model, x, lmbda
        self.fast = model.proxy_view(channels_last=config.channels_last, compile=config.compile,
                                      precision=resolve_precision(config.precision, model.device))
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
    Returns the best latents seen (by `L_true`), both losses, and the optimisation trace. With
    `config.closed_loop` passes, refinement starts from their result (`LatentModel.closed_loop_analysis`)
    and `initial` is its loss.

    `config.time_budget` counts from `clock_started` (a `time.perf_counter()` value; default: this
    call's start) and leaves `reserve_evaluations` true-loss evaluations' worth of time unused, for the
    caller's work after refinement (`encode` reserves `ENCODE_TAIL_EVALUATIONS`). A budget too small
    for one step returns the encoder's latents with `stopped_by="time_budget"`.

    `steer`: rate control's `Steering` (`latentfit.rate_control`), which moves λ while the run goes on
    and keeps its own candidates; it needs the whole image (no tiles).
    """
    config = config or RefinementConfig()
    proxy = config.proxy()
    lmbda = model.lmbda if config.lmbda is None else config.lmbda
    device = model.device
    started = time.perf_counter()
    clock_started = started if clock_started is None else clock_started
    x = x.to(device)
    x_padded = pad_to_multiple(x, model.stride) if x_padded is None else x_padded.to(device)
    evaluated = time.perf_counter()
    if config.closed_loop:
        pace: list[float] = []  # a pass's seconds, as measured by the passes (a cautious pace for the budget)

        def budget_end(seconds: float) -> float:  # the passes end where the refinement's deadline would be
            pace.append(seconds)
            return clock_started + config.time_budget - reserve_evaluations * seconds

        initial_latents, terms = model.closed_loop_analysis(
            x, x_padded, lmbda, config.closed_loop, config.closed_loop_step,
            deadline=budget_end if config.time_budget is not None else None)
        # without a budget the pace only matters for `optimise`'s step prior, which then goes unused
        closed_loop = (TrueLoss.of(terms), pace[0] if pace else (time.perf_counter() - evaluated) / (config.closed_loop + 1))
    else:
        with torch.no_grad():
            initial_latents = model.analysis(x_padded)
        closed_loop = None
    generator = torch.Generator(device=device).manual_seed(config.seed)

    tile = config.tile
    if tile == "auto":
        big = x.shape[-2] * x.shape[-1] > AUTO_TILE_PIXELS
        tile = AUTO_TILE_SIZE if big and model.arch.tileable else None
    elif tile is not None and not model.arch.tileable and proxy.refines:
        raise LatentfitError(f"tile-by-tile refinement is not available for {model.architecture} models yet; "
                             "refine the whole image (tile none)")
    problem = WholeImage(model, x, initial_latents, lmbda, config)
    if closed_loop is None:
        evaluated = time.perf_counter()
        initial = problem.true_loss()
        eval_seconds = time.perf_counter() - evaluated
    else:
        initial, eval_seconds = closed_loop
    deadline = None
    if config.time_budget is not None:
        deadline = clock_started + config.time_budget - reserve_evaluations * eval_seconds
    if tile is not None and proxy.refines and steer is None:
        return refine_tiles(model, x, initial_latents, initial, config, lmbda, generator, tile, started,
                            deadline, eval_seconds, progress)

    if steer is not None and proxy.refines:
        steer.observe(0, initial, problem)  # the encoder's own latents are a candidate too
    outcome = optimise(problem, initial, config, generator, deadline, progress, eval_seconds=eval_seconds,
                       steer=steer)
    first = TraceRecord(0, config.temperature(config.planned_steps())(0), float("nan"),
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
        lr=config.learning_rate(),
    )
