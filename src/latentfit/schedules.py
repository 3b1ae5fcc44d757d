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
