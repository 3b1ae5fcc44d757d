"""The one optimisation loop: Adam on a `RefinementProblem`'s variables against a proxy of the true
R-D loss, the true loss measured as `config.evaluation_due` says (every `evaluate_every` steps, or
sparsely until the last part of the run) and the best iterate kept.

A problem is the whole image (`refine.WholeImage`) or one tile of a big image (`tiling`); both share
every setting, schedule and stopping rule through this loop.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Protocol

import torch
from torch import Tensor

from .config import AUTO_MAX_STEPS, RefinementConfig
from .models.adapter import Latents, RateDistortion
from .schedules import cosine_learning_rate


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


#: Before any step has been measured, a step is assumed to cost this many true-loss evaluations
#: (forward, backward and update against one forward pass; measured 2–2.5 on Kodak on this CPU).
STEP_COST_PRIOR = 3.0


def optimise(
    problem: RefinementProblem,
    initial: TrueLoss,
    config: RefinementConfig,
    generator: torch.Generator,
    deadline: float | None,
    progress: Callable[[int, int, TraceRecord | None], None] | None = None,
    step_offset: int = 0,
    total_steps: int | None = None,
    eval_seconds: float = 0.0,
    steer=None,
) -> Outcome:
    """Adam on `problem.variables` against the proxy loss; the true loss when `config.evaluation_due`
    (and after the last step); returns the best iterate by true loss (the start, `initial`, if
    nothing beats it).

    `deadline` (a `time.perf_counter()` value, or None) is when the loop must have finished, its last
    true-loss evaluation included: a step is only taken if it and one evaluation fit before it, from
    the measured pace of the steps so far (before the first, `STEP_COST_PRIOR` evaluations of
    `eval_seconds`). With `steps="auto"` the plan (and with it the schedules) is fitted to the
    deadline after each of the first three steps and again every `evaluate_every` steps."""
    started = time.perf_counter()
    proxy = config.proxy()
    steps = config.planned_steps()
    schedule = config.temperature(steps)
    lr = config.learning_rate()
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
            # Fit the plan to what is left of the budget (the evaluations it brings included), as the
            # pace becomes known: on each of the first steps, then every `evaluate_every` steps.
            left = deadline - now - eval_seconds
            per_step = step_seconds + eval_seconds * config.evaluations_per_step()
            steps = max(step, min(AUTO_MAX_STEPS, step + int(left / per_step)))
            schedule = config.temperature(steps)
        last_chance = step < steps and out_of_time(now)
        evaluate = config.evaluation_due(step, steps) or step == steps or last_chance
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
        # A scheduled evaluation spends time the check above did not count: look at the clock again
        # (this iterate has been evaluated, so stopping here loses nothing).
        if last_chance or (evaluate and step < steps and out_of_time(time.perf_counter())):
            stopped_by = "time_budget"
            break
        if config.patience is not None and stale >= config.patience:
            stopped_by = "plateau"
            break
    return Outcome(best, best_variables, best_step, step, stopped_by, trace)
