"""Temperature schedules for the annealed quantisation proxies."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TemperatureSchedule:
    """`τ(t) = clip(τ_max · exp(−rate · (t − t₀)), τ_min, τ_max)`.

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

    @classmethod
    def for_budget(cls, steps: int, tau_max: float = 1.0, tau_end: float = 0.05) -> "TemperatureSchedule":
        """Anneal from `τ_max` to `τ_end` over exactly `steps` steps: `rate = ln(τ_max/τ_end)/steps`, `t₀ = 0`.

        The papers' fixed `rate = 1e-3` only reaches `τ ≈ 0.6·τ_max` after 500 steps; this schedule
        finishes annealing within whatever budget is given.
        """
        if steps < 1 or not (0 < tau_end < tau_max):
            raise ValueError(f"need steps >= 1 and 0 < tau_end < tau_max, got {steps}, {tau_end}, {tau_max}")
        return cls(tau_max=tau_max, rate=math.log(tau_max / tau_end) / steps, t0=0.0, tau_min=tau_end)


def cosine_learning_rate(step: int, steps: int, lr: float, final_fraction: float) -> float:
    """`lr_t = lr_min + ½(lr − lr_min)(1 + cos(π t / T))` with `lr_min = final_fraction · lr`."""
    lr_min = final_fraction * lr
    progress = min(max(step / max(steps, 1), 0.0), 1.0)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * progress))
