"""Semi-multi-rate (issue 28; the SGA+ paper's Fig. 3c on our models): one model refined at other λ.

Reads an eval journal holding, for the same crops and protocol, `none` and the refined cells of
qualities 1-4 at their own λ, and quality `--quality` refined at a λ axis (`eval --quality 2
--lmbda ...`). Prints, per method, the one-model curve (mean over the images finished at every λ)
and its BD-rate against the four trained models unrefined (`none`) and refined at their own λ, then
whether `sga+ssl` stays ahead of `sga` (atanh) off the training λ.

    python benchmarks/semi_multi_rate.py results/semi-multi-rate --methods sga+ssl,sga --steps 500
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from collections import defaultdict
from pathlib import Path

from latentfit.evaluation.runner import journal_records
from latentfit.evaluation.bdrate import bd_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--methods", default="sga+ssl,sga")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--quality", type=int, default=2)
    args = parser.parse_args()
    records = journal_records(args.results)
    methods = args.methods.split(",")
    axis = defaultdict(dict)  # (method, image) -> λ -> record (quality args.quality)
    trained = defaultdict(dict)  # (method, image) -> quality -> record (own λ)
    for r in records:
        if r["method"] == "none":
            trained[("none", r["image"])][r["quality"]] = r
        elif r["method"] in methods and r["steps"] == args.steps:
            if not r.get("lmbda_point"):
                trained[(r["method"], r["image"])][r["quality"]] = r
            if r["quality"] == args.quality:
                axis[(r["method"], r["image"])][round(r["lmbda"], 6)] = r
    points = max((len(v) for v in axis.values()), default=0)
    images = sorted({image for (method, image), v in axis.items() if len(v) == points
                     and all(len(axis[(m, image)]) == points for m in methods)
                     and all(len(trained[(m, image)]) == 4 for m in methods + ["none"])})
    if not images:
        raise SystemExit("no image has every cell yet")
    print(f"{len(images)} images ({', '.join(i.split('/')[-1].removesuffix('.png') for i in images)}), 256x256 crops, "
          f"{args.steps} steps, papers' protocol (lr 5e-3 constant, their τ schedules), quality {args.quality} "
          f"refined at {points} λ\n")

    def mean_curve(table: dict, keys) -> list[tuple[float, float]]:
        return [(statistics.mean(table[i][k]["bpp"] for i in images), statistics.mean(table[i][k]["psnr"] for i in images))
                for k in keys]

    lmbdas = sorted(axis[(methods[0], images[0])])
    print("| method | λ | mean bpp | mean PSNR | mean true-loss reduction |")
    print("|---|---|---|---|---|")
    curves = {}
    for method in methods:
        table = {i: axis[(method, i)] for i in images}
        curves[method] = mean_curve(table, lmbdas)
        for lmbda, (bpp, quality) in zip(lmbdas, curves[method]):
            gain = statistics.mean(1 - table[i][lmbda]["true_loss_final"] / table[i][lmbda]["true_loss_initial"] for i in images)
            print(f"| {method} | {lmbda:g} | {bpp:.4f} | {quality:.2f} | {gain * 100:.2f} % |")
    print()
    none = mean_curve({i: trained[("none", i)] for i in images}, [1, 2, 3, 4])
    print("| one-model curve (quality %d refined at each λ) | against | BD-rate (mean curves) | per image, median |" % args.quality)
    print("|---|---|---|---|")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in methods:
            own = mean_curve({i: trained[(method, i)] for i in images}, [1, 2, 3, 4])
            for label, anchor, per_image in (
                    ("four models, none", none, lambda i: [(trained[("none", i)][q]["bpp"], trained[("none", i)][q]["psnr"]) for q in (1, 2, 3, 4)]),
                    (f"four models, {method} at their own λ", own,
                     lambda i, m=method: [(trained[(m, i)][q]["bpp"], trained[(m, i)][q]["psnr"]) for q in (1, 2, 3, 4)])):
                rates = [bd_rate(per_image(i), [(axis[(method, i)][l]["bpp"], axis[(method, i)][l]["psnr"]) for l in lmbdas])
                         for i in images]
                print(f"| {method} | {label} | {bd_rate(anchor, curves[method]):+.2f} % | {statistics.median(rates):+.2f} % |")
        if len(methods) == 2:
            a, b = methods
            wins = sum(axis[(a, i)][l]["true_loss_final"] < axis[(b, i)][l]["true_loss_final"] for i in images for l in lmbdas)
            off = [l for l in lmbdas if abs(l - trained[(a, images[0])][args.quality]["lmbda"]) > 1e-9]
            wins_off = sum(axis[(a, i)][l]["true_loss_final"] < axis[(b, i)][l]["true_loss_final"] for i in images for l in off)
            print(f"\n`{a}` ends with a lower true loss than `{b}` in {wins} of {len(images) * len(lmbdas)} (image, λ) cells, "
                  f"{wins_off} of {len(images) * len(off)} off the training λ; BD-rate of its one-model curve against "
                  f"`{b}`'s: {bd_rate(curves[b], curves[a]):+.2f} %.")


if __name__ == "__main__":
    main()
