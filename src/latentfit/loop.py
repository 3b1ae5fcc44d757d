"""The one optimisation loop: Adam on a `RefinementProblem`'s variables against a proxy of the true
R-D loss, the true loss measured as `config.evaluation_due` says (every `evaluate_every` steps, or
sparsely until the last part of the run) and the best iterate kept.

A problem is the whole image (`refine.WholeImage`) or one tile of a big image (`tiling`); both share
every setting, schedule and stopping rule through this loop.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Protocol, Sequence

import torch
from torch import Tensor

from .config import AUTO_MAX_STEPS, RefinementConfig
from .deadline import UNBOUNDED, Deadline
from .models.adapter import Latents, RateDistortion


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
    #: With a decoder update: the latents-only stage's result, the file the encoder compares with.
    fallback: "RefinementResult | None" = None

    def trace_dicts(self) -> list[dict]:
        return [asdict(record) | {"gap": record.gap} for record in self.trace]


@dataclass
class Start:
    """Where refinement starts: the latents, their true loss, what one true-loss evaluation took (the
    pace a time budget is planned with), and when the work on them began (`time.perf_counter()`)."""

    latents: Latents
    loss: TrueLoss
    eval_seconds: float
    started: float


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


class LoopHook:
    """Something that watches (or steers) the loop, called at its three moments; every method is
    optional. The progress bar, the trace, a tile's view of the whole image and rate control's λ
    steering are hooks: `optimise` knows none of them by name."""

    def on_start(self, problem: RefinementProblem, initial: TrueLoss) -> None:
        """Before the first step, with the starting point's true loss."""

    def on_evaluation(self, step: int, true: TrueLoss, record: TraceRecord, problem: RefinementProblem) -> None:
        """After the true loss of the iterate of `step` was measured (it may change the problem, e.g. its λ)."""

    def on_step(self, step: int, planned: int, record: TraceRecord | None) -> None:
        """After every step (`record`: the evaluation of this step, if it had one)."""


class Progress(LoopHook):
    """A `progress(step, planned, record)` callable (e.g. the command line's bar) as a hook."""

    def __init__(self, callback: Callable[[int, int, TraceRecord | None], None]):
        self.callback = callback

    def on_step(self, step: int, planned: int, record: TraceRecord | None) -> None:
        self.callback(step, planned, record)


class Trace(LoopHook):
    """Collects the evaluations' records (the optimisation trace of `RefinementResult.trace`)."""

    def __init__(self):
        self.records: list[TraceRecord] = []

    def on_evaluation(self, step: int, true: TrueLoss, record: TraceRecord, problem: RefinementProblem) -> None:
        self.records.append(record)


#: Before any step has been measured, a step is assumed to cost this many true-loss evaluations
#: (forward, backward and update against one forward pass; measured 2–2.5 on Kodak on this CPU).
STEP_COST_PRIOR = 3.0


class _Pace:
    """The loop's view of the clock: the measured seconds of a step and of an evaluation, against
    the deadline's end (fixed when the loop starts, from the evaluation's cost then)."""

    def __init__(self, deadline: Deadline, eval_seconds: float):
        self.end = deadline.end(eval_seconds)
        self.eval_seconds = eval_seconds
        self.step_seconds = STEP_COST_PRIOR * eval_seconds
        self.step_times: list[float] = []

    def stepped(self, seconds: float) -> None:
        self.step_times.append(seconds)
        # The first step pays one-off costs (allocation, Adam's state): pace from the later ones.
        recent = self.step_times[1:][-10:] or self.step_times
        self.step_seconds = sum(recent) / len(recent)

    def out_of_time(self, now: float) -> bool:
        """Whether one more step and its evaluation would end after the deadline."""
        return self.end is not None and now + self.step_seconds + self.eval_seconds > self.end

    def fitted_steps(self, step: int, now: float, config: RefinementConfig) -> int:
        """The step plan fitted to what is left of the budget, the evaluations it brings included."""
        left = self.end - now - self.eval_seconds
        per_step = self.step_seconds + self.eval_seconds * config.evaluations_per_step()
        return max(step, min(AUTO_MAX_STEPS, step + int(left / per_step)))


def optimise(
    problem: RefinementProblem,
    initial: TrueLoss,
    config: RefinementConfig,
    generator: torch.Generator,
    deadline: Deadline = UNBOUNDED,
    hooks: Sequence[LoopHook] = (),
    eval_seconds: float = 0.0,
) -> Outcome:
    """Adam on `problem.variables` against the proxy loss; the true loss when the evaluation policy
    says (and after the last step); returns the best iterate by true loss (the start, `initial`, if
    nothing beats it). `hooks` are told of the start, each evaluation and each step.

    `deadline` is when the loop must have finished, its last true-loss evaluation included (its end
    for evaluations of `eval_seconds`, what the starting point's took): a step is only taken if it and
    one evaluation fit before it, from the measured pace of the steps so far (before the first,
    `STEP_COST_PRIOR` evaluations). With `steps="auto"` the plan (and with it the schedules) is fitted
    to the deadline after each of the first three steps and again every `evaluate_every` steps."""
    started = time.perf_counter()
    proxy, lr_schedule = config.proxy(), config.lr_policy()
    steps = config.planned_steps()
    schedule = config.temperature(steps)
    lr = config.learning_rate()
    # a problem may scale the lr of some variables (a decoder update's against the latents')
    scales = getattr(problem, "lr_scales", None) or [1.0] * len(problem.variables)
    groups = ([{"params": problem.variables, "lr_scale": 1.0}] if all(s == 1.0 for s in scales)
              else [{"params": [v], "lr_scale": s} for v, s in zip(problem.variables, scales)])
    optimizer = torch.optim.Adam(groups, lr=lr)
    best, best_variables, best_step = initial, problem.snapshot(), 0
    pace = _Pace(deadline, eval_seconds)
    auto_fit = config.steps == "auto" and pace.end is not None
    stopped_by, stale, step = "steps", 0, 0
    for hook in hooks:
        hook.on_start(problem, initial)
    if steps and pace.out_of_time(started):
        steps, stopped_by = 0, "time_budget"
    while step < steps:
        step_started = time.perf_counter()
        step += 1
        tau = schedule(step - 1)
        for group in optimizer.param_groups:
            group["lr"] = lr_schedule(step - 1, steps, lr) * group["lr_scale"]
        proxy_loss = problem.proxy_loss(lambda v: proxy.relax(v, tau, generator))
        optimizer.zero_grad(set_to_none=True)
        proxy_loss.backward()
        optimizer.step()

        now = time.perf_counter()
        pace.stepped(now - step_started)
        if auto_fit and (step <= 3 or step % config.evaluate_every == 0):
            # Fit the plan to what is left of the budget as the pace becomes known: on each of the
            # first steps, then every `evaluate_every` steps.
            steps = pace.fitted_steps(step, now, config)
            schedule = config.temperature(steps)
        last_chance = step < steps and pace.out_of_time(now)
        record = None
        if config.evaluation_due(step, steps) or step == steps or last_chance:
            evaluated = time.perf_counter()
            true = problem.true_loss()
            pace.eval_seconds = time.perf_counter() - evaluated
            improved = true.loss < best.loss - config.min_improvement * abs(best.loss)
            stale = 0 if improved else stale + 1
            if true.loss < best.loss:
                best, best_variables, best_step = true, problem.snapshot(), step
            record = TraceRecord(step, tau, proxy_loss.item(), true.loss, true.bpp, true.psnr,
                                 time.perf_counter() - started)
            for hook in hooks:
                hook.on_evaluation(step, true, record, problem)
        for hook in hooks:
            hook.on_step(step, steps, record)
        # A scheduled evaluation spends time the check above did not count: look at the clock again
        # (this iterate has been evaluated, so stopping here loses nothing).
        if last_chance or (record is not None and step < steps and pace.out_of_time(time.perf_counter())):
            stopped_by = "time_budget"
            break
        if config.patience is not None and stale >= config.patience:
            stopped_by = "plateau"
            break
    return Outcome(best, best_variables, best_step, step, stopped_by)
