"""R-D and convergence plots (PNG, matplotlib's Agg backend)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rd_plot(curves: dict[str, list[tuple[float, float]]], path: str | Path, title: str = "Rate-distortion",
            references: dict[str, list[tuple[float, float]]] | None = None, ylabel: str = "PSNR-RGB (dB)") -> Path:
    """One line per curve: PSNR (dB) against bpp. Classical codecs are dashed; `references` (published,
    not measured here) are dotted grey lines; when learned curves are present the axes frame them (up
    to 1.5x their highest bpp), where the comparison is."""
    from .classical import is_classical

    figure, axis = plt.subplots(figsize=(7, 5))
    colours = plt.get_cmap("tab20").colors
    learned = [bpp for label, points in curves.items() if not is_classical(label) for bpp, _ in points]
    right = 1.5 * max(learned) if learned else None
    shown = []
    for index, (label, points) in enumerate(sorted(curves.items())):
        points = sorted(points)
        classical = is_classical(label)
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="s" if classical else "o",
                  linestyle="--" if classical else "-", color=colours[(2 * index) % 20 + (index // 10) % 2],
                  label=label)
        shown += [q for b, q in points if right is None or b <= right]
    for index, (label, points) in enumerate(sorted((references or {}).items())):
        points = sorted(points)
        axis.plot([p[0] for p in points], [p[1] for p in points], linestyle=":", marker=".",
                  color=str(0.3 + 0.2 * (index % 3)), label=label)
    if right is not None and shown:
        axis.set_xlim(0, right)
        margin = 0.05 * (max(shown) - min(shown)) or 0.5
        axis.set_ylim(min(shown) - margin, max(shown) + margin)
    axis.set_xlabel("bits per pixel (file size)")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def convergence_plot(records: list[dict], path: str | Path) -> Path:
    """True loss, proxy-minus-true gap, true PSNR and true bpp against the step, averaged over
    images, one line per (method, steps) (the diagnostics of Yang et al.)."""
    series: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if record.get("steps") and record.get("trace"):
            for point in record["trace"]:
                series[f"{record['method']} ({record['steps']})"][point["step"]].append(point)
    figure, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = [("true_loss", "true loss"), ("gap", "proxy − true loss"), ("true_psnr", "true PSNR (dB)"),
              ("true_bpp", "true bpp (ideal)")]
    for axis, (key, label) in zip(axes.flat, panels):
        for name, by_step in sorted(series.items()):
            steps = sorted(by_step)
            values = []
            for step in steps:
                finite = [p[key] for p in by_step[step] if p.get(key) is not None and math.isfinite(p[key])]
                values.append(sum(finite) / len(finite) if finite else math.nan)
            axis.plot(steps, values, label=name)
        axis.set_xlabel("step")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    if series:
        axes.flat[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


def gain_per_second_plot(bd_rows: list[dict], path: str | Path) -> Path | None:
    """BD-rate against `none` (y) over median encode seconds per megapixel (x, log scale): one line per
    refinement method through its step counts, starting at its plain encoder (0 %), and one dashed line
    per classical codec through its presets (the specs evaluated, e.g. `avif:speed=6`), each point
    labelled with its steps or options. Rows without both values (or along a λ axis) are left out;
    nothing is written when no row has them."""
    from .classical import is_classical

    lines: dict[tuple, list[tuple[float, float, str]]] = defaultdict(list)
    anchors: dict[str, float] = {}
    for row in bd_rows:
        seconds, rate = row.get("seconds_per_megapixel"), row.get("bd_rate")
        if seconds is None or rate is None or seconds <= 0 or "|" in str(row["steps"]):
            continue
        if is_classical(row["method"]):
            codec, _, options = row["method"].partition(":")
            lines[(codec, row["anchor"], True)].append((seconds, rate, options.replace(":", " ")))
        else:
            lines[(f"{row['model']} {row['method']}", row["anchor"], False)].append((seconds, rate, str(row["steps"])))
            if row.get("anchor_seconds_per_megapixel"):
                anchors[row["anchor"]] = row["anchor_seconds_per_megapixel"]
    if not lines:
        return None
    several_anchors = len({anchor for _, anchor, _ in lines}) > 1
    figure, axis = plt.subplots(figsize=(7, 5))
    colours = plt.get_cmap("tab10").colors
    for index, ((label, anchor, classical), points) in enumerate(sorted(lines.items())):
        points = sorted(points)
        if not classical and anchor in anchors:
            points = [(anchors[anchor], 0.0, "none")] + points
        colour = colours[index % 10]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="s" if classical else "o",
                  linestyle="--" if classical else "-", color=colour,
                  label=label + (f" (vs {anchor})" if several_anchors else ""))
        for x, y, text in points:
            if text:
                axis.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colour)
    axis.axhline(0.0, color="grey", linewidth=0.8)
    axis.set_xscale("log")
    axis.set_xlabel("median encode seconds per megapixel (this machine)")
    axis.set_ylabel("BD-rate against none (%)")
    axis.set_title("BD-rate against none vs encode seconds per megapixel")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
