"""Three-class rounding re-run fairly: the authors' published setting against ours and two-class SSL.

Reads an eval journal holding, for the same crops and protocol (the papers': lr 5e-3 constant, their
τ schedules), `none` and 500-step cells of `sga+ssl`, `sga+ssl3` and `sga+ssl3:a=1.4:power=1.4` at
qualities 1-4. Prints, on the images finished for every method and quality, per method the mean
true-loss reduction by step 50 and at the end, the BD-rate against `none` (mean of per-image
BD-rates), and on how many cells and images the authors' setting is behind each of the others.

    python benchmarks/three_class.py results/three-class
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from collections import defaultdict
from pathlib import Path

from latentfit.evaluation.runner import journal_records
from latentfit.evaluation.bdrate import bd_rate
from latentfit.evaluation.tables import loss_reduction

AUTHORS = "sga+ssl3:a=1.4:power=1.4"
METHODS = ["sga+ssl", "sga+ssl3", AUTHORS]
QUALITIES = [1, 2, 3, 4]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    cells: dict[tuple[str, str], dict[int, dict]] = defaultdict(dict)  # (method, image) -> quality -> record
    for record in journal_records(args.results):
        if record.get("lmbda_point"):
            continue
        if record["method"] == "none" or (record["method"] in METHODS and record["steps"] == args.steps):
            cells[(record["method"], record["image"])][record["quality"]] = record
    images = sorted({image for (_, image) in cells
                     if all(set(cells.get((m, image), {})) >= set(QUALITIES) for m in ["none", *METHODS])})
    if not images:
        raise SystemExit("no image has every cell yet")
    names = ", ".join(Path(i).stem for i in images)
    print(f"{len(images)} images ({names}), 256x256 crops, qualities 1-4, {args.steps} steps, papers' protocol\n")

    def curve(method: str, image: str) -> list[tuple[float, float]]:
        return [(cells[(method, image)][q]["bpp"], cells[(method, image)][q]["psnr"]) for q in QUALITIES]

    reduction = {m: {(i, q): (loss_reduction(cells[(m, i)][q]["trace"], 50), loss_reduction(cells[(m, i)][q]["trace"], args.steps))
                     for i in images for q in QUALITIES} for m in METHODS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rates = {m: {i: bd_rate(curve("none", i), curve(m, i)) for i in images} for m in METHODS}
    print("| method | true-loss reduction by step 50 | at step 500 | BD-rate vs `none` (mean per image) |")
    print("|---|---|---|---|")
    for m in METHODS:
        early = statistics.mean(r[0] for r in reduction[m].values())
        final = statistics.mean(r[1] for r in reduction[m].values())
        print(f"| `{m}` | {early:.2%} | {final:.2%} | {statistics.mean(rates[m].values()):+.2f} % |")
    print()
    for other in METHODS[:2]:
        early = sum(reduction[AUTHORS][c][0] < reduction[other][c][0] for c in reduction[AUTHORS])
        final = sum(reduction[AUTHORS][c][1] < reduction[other][c][1] for c in reduction[AUTHORS])
        worse = sum(rates[AUTHORS][i] > rates[other][i] for i in images)
        print(f"- the authors' setting behind `{other}`: by step 50 on {early} of {len(reduction[AUTHORS])} cells, "
              f"at step {args.steps} on {final}; BD-rate worse on {worse} of {len(images)} images")


if __name__ == "__main__":
    main()
