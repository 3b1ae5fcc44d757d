"""Markdown tables of an evaluation (`summary.md`): BD-rates against `none` with seconds per cell,
and how early each method gets its gain, from the recorded optimisation traces."""

from __future__ import annotations

import math
from collections import defaultdict

#: Steps at which `early_gain_table` reports the share of the final gain reached.
EARLY_STEPS = (50, 100, 250)


def gain_share(trace: list[dict], step: int) -> float | None:
    """Share of the run's final gain reached by `step`: (L₀ − min_{s ≤ step} L_true(s)) / (L₀ − L_best),
    with L₀ the true loss at step 0 and L_best the best over the whole trace (the latents kept).
    None when the trace has no gain to share or does not reach `step`."""
    points = [p for p in trace if p.get("true_loss") is not None and math.isfinite(p["true_loss"])]
    if not points or points[0]["step"] != 0 or points[-1]["step"] < step:
        return None
    start = points[0]["true_loss"]
    gain = start - min(p["true_loss"] for p in points)
    if gain <= 0:
        return None
    reached = start - min(p["true_loss"] for p in points if p["step"] <= step)
    return reached / gain


def _percent(value: float | None, signed: bool = True) -> str:
    return "—" if value is None else (f"{value:+.2f} %" if signed else f"{value:.1%}")


def bd_rate_table(records: list[dict], bd_rates: list[dict]) -> str:
    """One row per compared curve: BD-rate and BD-PSNR against its anchor, images, mean seconds per cell."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        cells[(record["model"], record["method"], record["steps"])].append(record)
    lines = ["| model | method | steps | anchor | images | BD-rate | BD-PSNR | seconds per cell |",
             "|---|---|---|---|---|---|---|---|"]
    for row in sorted(bd_rates, key=lambda r: (r["model"], r["anchor"], r["method"], r["steps"])):
        group = cells[(row["model"], row["method"], row["steps"])]
        images = len({r["image"] for r in group if "image" in r})
        seconds = sum(r.get("seconds") or 0.0 for r in group) / max(len(group), 1)
        psnr = "—" if row["bd_psnr"] is None else f"{row['bd_psnr']:+.3f} dB"
        lines.append(f"| {row['model']} | {row['method']} | {row['steps']} | {row['anchor']} | {images} | "
                     f"{_percent(row['bd_rate'])} | {psnr} | {seconds:.1f} |")
    return "\n".join(lines)


def early_gain_table(records: list[dict], steps: tuple[int, ...] = EARLY_STEPS) -> str:
    """Mean share of the final gain reached by each of `steps`, per (method, steps), over cells."""
    shares: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if record.get("steps") and record.get("trace"):
            for step in steps:
                share = gain_share(record["trace"], step)
                if share is not None:
                    shares[(record["method"], record["steps"])][step].append(share)
    lines = ["| method | steps | " + " | ".join(f"gain by step {s}" for s in steps) + " | cells |",
             "|---|---|" + "---|" * (len(steps) + 1)]
    for (method, total), by_step in sorted(shares.items()):
        values = [sum(by_step[s]) / len(by_step[s]) if by_step[s] else None for s in steps]
        count = max(len(v) for v in by_step.values())
        lines.append(f"| {method} | {total} | " + " | ".join(_percent(v, signed=False) for v in values) +
                     f" | {count} |")
    return "\n".join(lines)


def markdown_summary(records: list[dict], bd_rates: list[dict]) -> str:
    return ("## BD-rate against `none` (negative: fewer bits at equal PSNR)\n\n" + bd_rate_table(records, bd_rates) +
            "\n\n## Share of the final gain (L₀ − L_best) reached early\n\n" + early_gain_table(records) + "\n")
