"""Bjøntegaard deltas between two R-D curves, through the `bjontegaard` package.

A curve is a list of `(bpp, quality)` points (quality in dB: PSNR). BD-rate is the average rate
difference in percent at equal quality (negative: the test curve needs fewer bits).
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


def bd_rate(anchor: Curve, test: Curve, method: str = "akima") -> float:
    """BD-rate of `test` against `anchor` in percent."""
    rate_a, dist_a = _split(anchor, "anchor")
    rate_t, dist_t = _split(test, "test")
    return float(bjontegaard.bd_rate(rate_a, dist_a, rate_t, dist_t, method=method, require_matching_points=False))


def bd_psnr(anchor: Curve, test: Curve, method: str = "akima") -> float:
    """BD-PSNR of `test` against `anchor` in dB (positive: the test curve is sharper at equal rate)."""
    rate_a, dist_a = _split(anchor, "anchor")
    rate_t, dist_t = _split(test, "test")
    return float(bjontegaard.bd_psnr(rate_a, dist_a, rate_t, dist_t, method=method, require_matching_points=False))
