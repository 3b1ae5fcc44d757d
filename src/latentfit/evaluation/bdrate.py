"""Bjøntegaard deltas between two R-D curves, through the `bjontegaard` package.

A curve is a list of `(bpp, quality)` points (quality in dB: PSNR). BD-rate is the average rate
difference in percent at equal quality (negative: the test curve needs fewer bits). Both deltas
are averaged over the interval the two curves share only; `quality_overlap` says how much of their
joint quality range that is, so a table can flag a BD-rate taken over a sliver (the package's
own check only warns).
"""

from __future__ import annotations

from typing import Sequence

import bjontegaard

from ..errors import LatentfitError

Curve = Sequence[tuple[float, float]]


def _split(curve: Curve, label: str) -> tuple[list[float], list[float]]:
    points = sorted(curve)
    if len(points) < 2:
        raise LatentfitError(f"{label} curve needs at least 2 points, got {len(points)}")
    return [p[0] for p in points], [p[1] for p in points]


def quality_overlap(anchor: Curve, test: Curve) -> float:
    """Share of the joint quality range both curves cover: |[q_a] ∩ [q_t]| / |[q_a] ∪ [q_t]| (the
    interval BD-rate integrates over), 0 when they are disjoint."""
    quality_a, quality_t = _split(anchor, "anchor")[1], _split(test, "test")[1]
    low, high = max(min(quality_a), min(quality_t)), min(max(quality_a), max(quality_t))
    span = max(max(quality_a), max(quality_t)) - min(min(quality_a), min(quality_t))
    return max(high - low, 0.0) / span if span > 0 else 1.0


def bd_rate(anchor: Curve, test: Curve, method: str = "akima") -> float:
    """BD-rate of `test` against `anchor` in percent."""
    rate_a, dist_a = _split(anchor, "anchor")
    rate_t, dist_t = _split(test, "test")
    return float(bjontegaard.bd_rate(rate_a, dist_a, rate_t, dist_t, method=method, require_matching_points=False,
                                       min_overlap=0))


def bd_psnr(anchor: Curve, test: Curve, method: str = "akima") -> float:
    """BD-PSNR of `test` against `anchor` in dB (positive: the test curve is sharper at equal rate)."""
    rate_a, dist_a = _split(anchor, "anchor")
    rate_t, dist_t = _split(test, "test")
    return float(bjontegaard.bd_psnr(rate_a, dist_a, rate_t, dist_t, method=method, require_matching_points=False,
                                       min_overlap=0))
