"""Markdown tables of an evaluation (`summary.md`): BD-rates against `none` with median seconds per cell,
and how fast each method lowers the true loss, from the recorded optimisation traces."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

#: Below this share of the joint PSNR range, a BD value is averaged over too little to trust
#: (the `bjontegaard` package's own threshold).
LOW_OVERLAP = 0.75
#: Steps at which `early_gain_table` reports the share of the final gain reached.
EARLY_STEPS = (50, 100, 250)


def _finite_points(trace: list[dict]) -> list[dict]:
    return [p for p in trace if p.get("true_loss") is not None and math.isfinite(p["true_loss"])]


def gain_share(trace: list[dict], step: int) -> float | None:
    """Share of the run's final gain reached by `step`: (L₀ − min_{s ≤ step} L_true(s)) / (L₀ − L_best),
    with L₀ the true loss at step 0 and L_best the best over the whole trace (the latents kept).
    None when the trace has no gain to share or does not reach `step`."""
    points = _finite_points(trace)
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


def seconds_per_megapixel(records: list[dict]) -> float | None:
    """Median over `records` of each cell's encode seconds per megapixel of its image (None without
    a timed cell of known size): the x axis on which encoders of any image size compare."""
    rates = [r["seconds"] / (r["width"] * r["height"] / 1e6) for r in records
             if r.get("seconds") is not None and r.get("width") and r.get("height")]
    return statistics.median(rates) if rates else None


def curve_method(record: dict) -> str:
    """The method a record's curve is named by: its method, and its decoder update and distortion if
    not the default ("sga+ssl adapt=decoder", "sga+ssl distortion=ms-ssim")."""
    adapt, distortion = record.get("adapt", "none"), record.get("distortion", "mse")
    return (record["method"] + (f" adapt={adapt}" if adapt != "none" else "")
            + (f" distortion={distortion}" if distortion != "mse" else ""))


def bd_rate_table(records: list[dict], bd_rates: list[dict]) -> str:
    """One row per compared curve: BD-rate and BD-PSNR against its anchor, images, median encode seconds
    per megapixel and per cell (a journal resumed over sessions mixes machines of different speed: the
    median is the typical cell's time, where one slow session would pull the mean)."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        cells[(record["model"], curve_method(record), record["steps"])].append(record)
    # BD-rates in the other metrics: MS-SSIM always, the perceptual ones where some row has them
    others = ["ms_ssim"] + [m for m in ("ssimulacra2", "cvvdp") if any(row.get(f"bd_rate_{m}") is not None
                                                                       for row in bd_rates)]
    names = {"ms_ssim": "MS-SSIM", "ssimulacra2": "SSIMULACRA2", "cvvdp": "CVVDP"}
    lines = ["| model | method | steps | anchor | images | BD-rate | BD-PSNR | PSNR overlap | median s/MP "
             "| median seconds per cell | " + " | ".join(f"BD-rate ({names[m]})" for m in others) + " |",
             "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(others)]
    def order(row: dict) -> tuple:  # steps in numeric order; "500|λx0.5"-style curve names after them
        steps = row["steps"]
        return row["model"], row["anchor"], row["method"], (0, steps, "") if isinstance(steps, int) else (1, 0, str(steps))

    for row in sorted(bd_rates, key=order):
        group = cells[(row["model"], row["method"], row["steps"])]
        images = row.get("images", len({r["image"] for r in group if "image" in r}))
        seconds = statistics.median([r.get("seconds") or 0.0 for r in group] or [0.0])
        # the row's own figure (over the images its BD-rate used), else from the cells
        per_megapixel = row["seconds_per_megapixel"] if "seconds_per_megapixel" in row else seconds_per_megapixel(group)
        psnr = "—" if row["bd_psnr"] is None else f"{row['bd_psnr']:+.3f} dB"
        overlap = row.get("psnr_overlap")
        flag = "" if overlap is None or overlap >= LOW_OVERLAP else " (low)"
        lines.append(f"| {row['model']} | {row['method']} | {row['steps']} | {row['anchor']} | {images} | "
                     f"{_percent(row['bd_rate'])} | {psnr} | {_percent(overlap, signed=False)}{flag} | "
                     f"{'—' if per_megapixel is None else f'{per_megapixel:.3g}'} | {seconds:.1f} | "
                     + " | ".join(_percent(row.get(f"bd_rate_{m}")) for m in others) + " |")
    return "\n".join(lines)


def loss_reduction(trace: list[dict], step: int) -> float | None:
    """Relative true-loss reduction by `step`: (L₀ − min_{s ≤ step} L_true(s)) / L₀, comparable across
    methods (unlike `gain_share`, which is relative to each run's own end). None if the trace stops
    before `step` or does not start at step 0."""
    points = _finite_points(trace)
    if not points or points[0]["step"] != 0 or points[-1]["step"] < step or points[0]["true_loss"] <= 0:
        return None
    start = points[0]["true_loss"]
    return (start - min(p["true_loss"] for p in points if p["step"] <= step)) / start


def early_gain_table(records: list[dict], steps: tuple[int, ...] = EARLY_STEPS) -> str:
    """Per (method, steps), mean over cells of the true-loss reduction by each of `steps` and at the
    end, with the mean share of the run's own final gain in brackets (by `steps` only from traces
    evaluated every `evaluate_every` steps)."""
    columns: dict[tuple, dict[int | str, list[tuple[float, float | None]]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if record.get("steps") and record.get("trace"):
            trace = record["trace"]
            # a trace of tail evaluations (`eval --evaluations tail`) is sparse before the last 20 %: its
            # best by step 50 would be the best of one or two points, so only its end counts here
            tail = record.get("config", {}).get("stopping", {}).get("evaluations", "every") != "every"
            for step in ("end",) if tail else (*steps, "end"):
                at = trace[-1]["step"] if step == "end" else step
                reduction = loss_reduction(trace, at)
                if reduction is not None:
                    columns[(record["method"], record["steps"])][step].append((reduction, gain_share(trace, at)))

    def cell(values: list[tuple[float, float | None]]) -> str:
        if not values:
            return "—"
        shares = [share for _, share in values if share is not None]
        share = f" ({sum(shares) / len(shares):.0%})" if shares else ""
        return f"{sum(r for r, _ in values) / len(values):.2%}{share}"

    lines = ["| method | steps | " + " | ".join(f"by step {s}" for s in steps) + " | at the end | cells |",
             "|---|---|" + "---|" * (len(steps) + 2)]
    for (method, total), by_step in sorted(columns.items()):
        lines.append(f"| {method} | {total} | " + " | ".join(cell(by_step[s]) for s in (*steps, "end")) +
                     f" | {len(by_step['end'])} |")
    return "\n".join(lines)


def left_out_note(bd_rates: list[dict]) -> str:
    """A line naming the images some BD row left out because a curve had not finished them."""
    left_out = sorted({image for row in bd_rates for image in row.get("left_out", [])})
    if not left_out:
        return ""
    return (f"\n\nLeft out of at least one row (not finished at every quality of both curves): "
            f"{', '.join(left_out)}.")


def markdown_summary(records: list[dict], bd_rates: list[dict]) -> str:
    return ("## BD-rate against `none` (negative: fewer bits at equal PSNR)\n\nBD values are averaged over the PSNR "
            "range both curves cover; *PSNR overlap* is that range's share of their joint range, "
            f"(low) below {LOW_OVERLAP:.0%}.\n\n" + bd_rate_table(records, bd_rates) + left_out_note(bd_rates) +
            "\n\n## How fast the true loss falls\n\nMean relative reduction (L₀ − L_best so far) / L₀ by each "
            "step, and in brackets the share of the run's own final gain it is.\n\n" + early_gain_table(records) + "\n")
