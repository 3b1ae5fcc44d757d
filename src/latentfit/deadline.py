"""The clock of one encode, from the command line down to a tile: one `Deadline` object.

An encode with a time budget must finish, from reading the image to the file on disk, within
`budget` seconds of `started` (a `time.perf_counter()` value). The stages after refinement (entropy
coding, the check decode, the metrics) cost about `tail` true-loss evaluations, so refinement and the
closed-loop passes end `tail` evaluations' worth of seconds early: `end(evaluation_seconds)`. A tiled
refinement gives each tile an equal `share` of what is left. Without a budget every question about
the clock has the answer "there is time" (`end` is None).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    """`started + budget`, less `tail` true-loss evaluations kept for what follows refinement."""

    started: float
    budget: float | None = None
    tail: float = 0.0

    @classmethod
    def start(cls, budget: float | None = None, started: float | None = None, tail: float = 0.0) -> "Deadline":
        """A deadline `budget` seconds after `started` (default: now)."""
        return cls(time.perf_counter() if started is None else started, budget, tail)

    @property
    def bounded(self) -> bool:
        return self.budget is not None

    def end(self, evaluation_seconds: float = 0.0) -> float | None:
        """The `time.perf_counter()` value by which refinement must be done, given what one true-loss
        evaluation costs (the stages after it take `tail` of them); None without a budget."""
        if self.budget is None:
            return None
        return self.started + self.budget - self.tail * evaluation_seconds

    def with_tail(self, tail: float) -> "Deadline":
        return Deadline(self.started, self.budget, tail)

    def fits(self, seconds: float, evaluation_seconds: float = 0.0, now: float | None = None) -> bool:
        """Whether work of `seconds` begun `now` ends by `end(evaluation_seconds)`."""
        end = self.end(evaluation_seconds)
        return end is None or (time.perf_counter() if now is None else now) + seconds <= end

    def share(self, parts: int, evaluation_seconds: float, now: float | None = None) -> "Deadline":
        """The deadline of the next of `parts` equal parts of what is left, after one final
        evaluation of `evaluation_seconds` (a tile of a tiled refinement). Unbounded stays unbounded."""
        if self.budget is None:
            return self
        now = time.perf_counter() if now is None else now
        remaining = self.end(evaluation_seconds) - now - evaluation_seconds
        return Deadline(now, remaining / parts)

    def portion(self, fraction: float, evaluation_seconds: float, now: float | None = None) -> "Deadline":
        """A deadline `fraction` of the way from `now` to this one's end (after one final evaluation of
        `evaluation_seconds`): the first of two stages of unequal length. Unbounded stays unbounded."""
        if self.budget is None:
            return self
        now = time.perf_counter() if now is None else now
        return Deadline(now, (self.end(evaluation_seconds) - now - evaluation_seconds) * fraction)

    def left(self, evaluation_seconds: float = 0.0, now: float | None = None) -> float:
        """Seconds until `end(evaluation_seconds)` (infinite without a budget)."""
        end = self.end(evaluation_seconds)
        return float("inf") if end is None else end - (time.perf_counter() if now is None else now)


#: No budget: the clock never runs out.
UNBOUNDED = Deadline(0.0)
