"""Gain per second (#31): several `latentfit eval` journals on one "BD-rate against `none` vs encode
seconds per megapixel" plot and table (not a test).

Each journal is named by a label (`before=FOLDER`, `after=FOLDER`): typically the same images, models
and step counts run side by side with two settings (e.g. fp32 with the glibc malloc, against the
defaults). Every learned curve is compared with its own journal's `none` (the same bytes in every
journal: `none` does not refine), exactly as `latentfit eval` summarises one folder; the classical
codecs come from the first journal that has them (their files do not depend on the label). Seconds are
each cell's whole encode (reading, refinement, entropy coding, the checking decode), median per
megapixel, so they compare only within one machine and, ideally, one run.

    python benchmarks/gain_per_second.py before=results/gain-per-second/crops-before \
        after=results/gain-per-second/crops-after --plot results/gain-per-second/crops.png \
        --json results/gain-per-second/crops.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from latentfit.errors import LatentfitError
from latentfit.evaluation.classical import is_classical
from latentfit.evaluation.plots import gain_per_second_plot
from latentfit.evaluation.runner import journal_records, summarise


def read_cells(folder: Path, images: set[str] | None = None) -> list[dict]:
    """A journal's cells on the model's own λ (a torn last line of a killed or running eval is skipped),
    of the named images only if `images` (file stems, e.g. kodim01) is given."""
    return [record for record in journal_records(folder) if not record.get("lmbda_point")
            and (images is None or Path(record["image"]).stem in images)]


def labelled(text: str) -> tuple[str, Path]:
    label, sep, folder = text.partition("=")
    if not sep or not label or not folder:
        raise argparse.ArgumentTypeError(f"expected LABEL=FOLDER, got '{text}'")
    return label, Path(folder)


def rows_of(journals: list[tuple[str, Path]], images: set[str] | None = None) -> list[dict]:
    """BD rows of every journal's learned curves (model renamed `MODEL (LABEL)`), then the classical
    codecs' rows of the first journal with any."""
    rows: list[dict] = []
    classical_done = False
    for label, folder in journals:
        with tempfile.TemporaryDirectory() as scratch:  # summarise writes its files; the journal's stay as eval left them
            table = summarise(read_cells(folder, images), scratch)["bd_rates"]
        classical = [row for row in table if is_classical(row["method"])]
        for row in table:
            if not is_classical(row["method"]):
                rows.append(row | {"label": label, "model": f"{row['model']} ({label})", "journal": str(folder)})
        if classical and not classical_done:
            rows += [row | {"label": label, "journal": str(folder)} for row in classical]
            classical_done = True
    return rows


def markdown(rows: list[dict]) -> str:
    """Learned curves by steps, one column pair per label, the time ratio of each label to the first;
    then the classical presets."""
    labels = list(dict.fromkeys(row["label"] for row in rows if not is_classical(row["method"])))
    learned = {(row["label"], row["steps"]): row for row in rows if not is_classical(row["method"])}
    anchors = {row["label"]: row["anchor_seconds_per_megapixel"] for row in rows if not is_classical(row["method"])}
    steps = sorted({s for _, s in learned if isinstance(s, int)})
    head = ["steps"] + [f"{label}: BD-rate, s/MP (images)" for label in labels]
    head += [f"s/MP {label} / {labels[0]}" for label in labels[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    none = [f"0, {anchors[label]:.1f}" for label in labels]
    none += [f"{anchors[label] / anchors[labels[0]]:.2f}" for label in labels[1:]]
    lines.append("| 0 (`none`) | " + " | ".join(none) + " |")
    for step in steps:
        cells, ratios = [], []
        for label in labels:
            row = learned.get((label, step))
            if row is None or row["bd_rate"] is None:
                cells.append("—")
                continue
            cells.append(f"{row['bd_rate']:+.2f} %, {row['seconds_per_megapixel']:.1f} ({row['images']})")
        first = learned.get((labels[0], step))
        for label in labels[1:]:
            row = learned.get((label, step))
            ratios.append(f"{row['seconds_per_megapixel'] / first['seconds_per_megapixel']:.2f}"
                          if row and first else "—")
        lines.append(f"| {step} | " + " | ".join(cells + ratios) + " |")
    classical = sorted((row for row in rows if is_classical(row["method"])), key=lambda r: r["method"])
    if classical:
        lines += ["", "| classical codec | BD-rate vs `none` | median s/MP | images |", "|---|---|---|---|"]
        lines += [f"| {row['method']} | {'—' if row['bd_rate'] is None else format(row['bd_rate'], '+.2f') + ' %'} | "
                  f"{row['seconds_per_megapixel']:.2f} | {row['images']} |" for row in classical]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("journals", nargs="+", type=labelled, metavar="LABEL=FOLDER")
    parser.add_argument("--plot", type=Path, help="write the plot here")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--min-images", type=int, default=1,
                        help="leave out curves finished on fewer images (a journal extended to more images at some budgets)")
    parser.add_argument("--images", help="only these images (comma-separated file stems, e.g. kodim01)")
    args = parser.parse_args()
    images = {name.strip() for name in args.images.split(",") if name.strip()} if args.images else None
    try:
        rows = [row for row in rows_of(args.journals, images) if row["images"] >= args.min_images]
    except LatentfitError as exc:  # e.g. a folder without a journal (`journal_records` says which)
        parser.error(str(exc))
    print(markdown(rows))
    if args.plot:
        gain_per_second_plot(rows, args.plot)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
