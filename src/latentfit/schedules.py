"""The refinement's schedules as small registered strategies: how τ anneals, how the learning rate
moves, and when the true loss is measured.

Each kind has a registry (`TAU_SCHEDULES`, `LR_SCHEDULES`, `EVALUATION_POLICIES`); a strategy is one
frozen dataclass with a `name`, its options as fields, and `to_dict`/`from_dict`, registered with
`@REGISTRY.register`. `RefinementConfig` names them by string (`schedule="budget"`,
`lr_schedule="cosine"`, `evaluations="tail"`) and resolves the name here, so a new strategy is one
class and nothing else compares names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from .strategies import Registry, Strategy

__all__ = ["EVALUATION_POLICIES", "LR_SCHEDULES", "TAU_SCHEDULES", "Registry", "Strategy", "TemperatureSchedule",
           "cosine_learning_rate"]

# -- temperature ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TemperatureSchedule:
    """`τ(t) = clip(τ_max · exp(−rate · (t − t₀)), τ_min, τ_max)`: an explicit schedule.

    SGA (Yang et al.) used `τ_max = 0.5, rate = 1e-3, t₀ = 700`; SGA+ (Perugachi-Diaz et al.)
    `τ_max = 1, rate = 1e-3, t₀ = 0`.
    """

    tau_max: float = 1.0
    rate: float = 1e-3
    t0: float = 0.0
    tau_min: float = 1e-2

    def __post_init__(self):
        if not (0 < self.tau_min <= self.tau_max):
            raise ValueError(f"need 0 < tau_min <= tau_max, got {self.tau_min}, {self.tau_max}")
        if self.rate < 0:
            raise ValueError(f"rate must be >= 0, got {self.rate}")

    def __call__(self, step: int) -> float:
        tau = self.tau_max * math.exp(-self.rate * (step - self.t0))
        return min(max(tau, self.tau_min), self.tau_max)

    def for_run(self, default: "TemperatureSchedule", steps: int) -> "TemperatureSchedule":
        """An explicit schedule is the same whatever the method and the step count."""
        return self

    @classmethod
    def for_budget(cls, steps: int, tau_max: float = 1.0, tau_end: float = 0.05) -> "TemperatureSchedule":
        """Anneal from `τ_max` to `τ_end` over exactly `steps` steps: `rate = ln(τ_max/τ_end)/steps`, `t₀ = 0`.

        The papers' fixed `rate = 1e-3` only reaches `τ ≈ 0.6·τ_max` after 500 steps; this schedule
        finishes annealing within whatever budget is given.
        """
        if steps < 1 or not (0 < tau_end < tau_max):
            raise ValueError(f"need steps >= 1 and 0 < tau_end < tau_max, got {steps}, {tau_end}, {tau_max}")
        return cls(tau_max=tau_max, rate=math.log(tau_max / tau_end) / steps, t0=0.0, tau_min=tau_end)


#: Named temperature schedules (`RefinementConfig.schedule`); each turns the method's own published
#: schedule (`default`) and a run's step count into a `TemperatureSchedule`.
TAU_SCHEDULES: Registry = Registry("temperature schedule")


@TAU_SCHEDULES.register
@dataclass(frozen=True)
class PapersTemperature(Strategy):
    """The method's published schedule (SGA: τ_max 0.5, t₀ 700; SGA+: τ_max 1, t₀ 0; rate 1e-3)."""

    name: ClassVar[str] = "papers"

    def for_run(self, default: TemperatureSchedule, steps: int) -> TemperatureSchedule:
        return default


@TAU_SCHEDULES.register
@dataclass(frozen=True)
class BudgetTemperature(Strategy):
    """Anneal from `start`·τ_max to `end`·τ_max (τ_max: the method's own) within the steps. Measured
    for sga+ssl (BENCHMARKS.md, time to quality): an end of 0.2 beat 0.05 in all six runs (four Kodak
    crops, two sets of weights; 0.02 was worse still), a start of 1.5 beat 1 on every crop tried
    (0.6–0.7 and 2 were worse)."""

    name: ClassVar[str] = "budget"
    start: float = 1.5
    end: float = 0.2

    def for_run(self, default: TemperatureSchedule, steps: int) -> TemperatureSchedule:
        return TemperatureSchedule.for_budget(max(steps, 1), self.start * default.tau_max, self.end * default.tau_max)

    def record(self) -> dict:
        return {"budget_tau": [self.start, self.end]}


# -- learning rate -------------------------------------------------------------------------------
#: Named learning-rate schedules (`RefinementConfig.lr_schedule`): `schedule(step, steps, lr)` is the
#: lr of 0-based `step` of a run of `steps` steps starting from `lr`.
LR_SCHEDULES: Registry = Registry("lr schedule")


@LR_SCHEDULES.register
@dataclass(frozen=True)
class ConstantLearningRate(Strategy):
    name: ClassVar[str] = "constant"

    def __call__(self, step: int, steps: int, lr: float) -> float:
        return lr


@LR_SCHEDULES.register
@dataclass(frozen=True)
class CosineLearningRate(Strategy):
    """`lr_t = lr_min + ½(lr − lr_min)(1 + cos(π t / T))` with `lr_min = final_fraction · lr`."""

    name: ClassVar[str] = "cosine"
    final_fraction: float = 0.01

    def __post_init__(self):
        if not 0 <= self.final_fraction <= 1:
            raise ValueError(f"lr final fraction must be in [0, 1], got {self.final_fraction}")

    def __call__(self, step: int, steps: int, lr: float) -> float:
        return cosine_learning_rate(step, steps, lr, self.final_fraction)

    def record(self) -> dict:
        return {"lr_final_fraction": self.final_fraction}


def cosine_learning_rate(step: int, steps: int, lr: float, final_fraction: float) -> float:
    """`lr_t = lr_min + ½(lr − lr_min)(1 + cos(π t / T))` with `lr_min = final_fraction · lr`."""
    lr_min = final_fraction * lr
    progress = min(max(step / max(steps, 1), 0.0), 1.0)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * progress))


# -- evaluations -----------------------------------------------------------------------------------
#: When the true loss is measured (`RefinementConfig.evaluations`): `due(step, steps, every)` for
#: 1-based `step` of a run planned for `steps` (the last step, and a run's last chance before its
#: deadline, are measured regardless), and `per_step(every)`, about how many evaluations a step
#: brings with it (to plan against a time budget).
EVALUATION_POLICIES: Registry = Registry("evaluation policy")


@EVALUATION_POLICIES.register
@dataclass(frozen=True)
class EveryEvaluation(Strategy):
    """Every `every` steps throughout: the papers' practice, and `eval`'s protocol (its convergence
    curves need the whole trace)."""

    name: ClassVar[str] = "every"

    def due(self, step: int, steps: int, every: int) -> bool:
        return step % every == 0

    def per_step(self, every: int) -> float:
        return 1 / every


@EVALUATION_POLICIES.register
@dataclass(frozen=True)
class TailEvaluation(Strategy):
    """Every `every` steps in the last `tail` of the planned steps, every `sparse`·`every` before. In
    315 journalled 500-step `sga+ssl` runs with traces every 10 steps, the best iterate of those
    evaluations kept 99.99 % of the every-10 gain (the worst 99.3 %) with 18 evaluations instead of
    50 (BENCHMARKS.md, "Gain per second")."""

    name: ClassVar[str] = "tail"
    tail: float = 0.2
    sparse: int = 5

    def due(self, step: int, steps: int, every: int) -> bool:
        if step % every:
            return False
        return step > steps - math.ceil(self.tail * steps) or step % (self.sparse * every) == 0

    def per_step(self, every: int) -> float:
        return (self.tail + (1 - self.tail) / self.sparse) / every
