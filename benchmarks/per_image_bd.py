"""Per-image BD-rates of refinement methods against `none` (or another curve), from a `latentfit eval`
results folder.

A mean over images can hide that one method wins on most images and loses on a few; this prints,
for each image finished at every quality by all the named methods, each method's BD-rate against
the same image's anchor curve, and how often the first method beats each of the others. Methods are
named as the curves are (`runner.curve_method`): "sga+ssl", or with a decoder update
"sga+ssl adapt=decoder"; a classical codec by its spec ("avif", "avif:tune=psnr", whatever `--model`).

Usage: python benchmarks/per_image_bd.py RESULTS_DIR --methods sga+ssl,sga [--steps 500] [--model M]
       python benchmarks/per_image_bd.py RESULTS_DIR --methods "sga+ssl adapt=decoder" --anchor sga+ssl
       python benchmarks/per_image_bd.py RESULTS_DIR --methods "sga+ssl distortion=mix:0.5" --anchor sga+ssl \
           --metric ssimulacra2     (psnr, ms-ssim in dB, ssimulacra2, cvvdp: what the cells measured)
       python benchmarks/per_image_bd.py RESULTS_DIR --methods "sga+ssl distortion=mix:0.5,avif" --metric cvvdp
       python benchmarks/per_image_bd.py results/kodak-full12 results/kodak-full12-ctx --model latentfit-ctx \
           --methods sga+ssl --anchor sga+ssl --anchor-model latentfit-msh    (one model against another)
"""

from __future__ import annotations

import argparse
import warnings
from collections import defaultdict
from pathlib import Path

from latentfit.evaluation.runner import curve_method, journal_records, ms_ssim_db

#: --metric: the quality each point is measured in.
QUALITY = {"psnr": lambda r: r["psnr"], "ms-ssim": lambda r: ms_ssim_db(r.get("ms_ssim")),
           "ssimulacra2": lambda r: r.get("ssimulacra2"), "cvvdp": lambda r: r.get("cvvdp")}
from latentfit.evaluation.bdrate import bd_rate
from latentfit.evaluation.classical import is_classical


def per_image_rates(records: list[dict], methods: list[str], steps: int, model: str,
                    anchor_method: str = "none", metric: str = "psnr", anchor_model: str | None = None
                    ) -> dict[str, dict[str, float]]:
    """{image: {method: BD-rate against that image's `anchor_method` curve}} for the images that the
    anchor (of `anchor_model`, default `model`) and every one of `methods` (of `model`, at `steps`;
    `none` at 0; a classical codec at all its sweep's levels) have finished at every quality present."""
    wanted = {(model, m) for m in methods} | {(anchor_model or model, anchor_method)}
    points: dict[tuple[str, tuple], dict[int, tuple[float, float]]] = defaultdict(dict)
    for record in records:
        if is_classical(record["method"]):
            curve = (model, record["method"])
        elif record.get("lmbda_point"):
            continue
        else:
            curve = (record.get("model"), "none" if record["method"] == "none" else
                     (curve_method(record) if record["steps"] == steps else None))
        if curve in wanted:
            points[(record["image"], curve)][record["quality"]] = (record["bpp"], QUALITY[metric](record))
    qualities = defaultdict(set)  # each curve's qualities (a classical sweep's levels)
    for (_, curve), values in points.items():
        qualities[curve] |= set(values)
    images = sorted({image for image, _ in points
                     if all(set(points.get((image, c), {})) == qualities[c] for c in wanted)})
    rates = {}
    for image in images:
        anchor = list(points[(image, (anchor_model or model, anchor_method))].values())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rates[image] = {m: bd_rate(anchor, list(points[(image, (model, m))].values())) for m in methods}
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", type=Path, nargs="+", help="results folders (their journals together)")
    parser.add_argument("--methods", required=True, help="comma-separated; the first is compared with the rest")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--model", default="latentfit-msh")
    parser.add_argument("--anchor", default="none", help="the curve BD-rates are against (default none)")
    parser.add_argument("--anchor-model", help="the anchor curve's model (default --model)")
    parser.add_argument("--metric", default="psnr", choices=sorted(QUALITY))
    args = parser.parse_args()
    methods = args.methods.split(",")
    records = [record for folder in args.results for record in journal_records(folder)]
    rates = per_image_rates(records, methods, args.steps, args.model, args.anchor, args.metric, args.anchor_model)
    print("| image | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for image, row in rates.items():
        print(f"| {image} | " + " | ".join(f"{row[m]:+.2f} %" for m in methods) + " |")
    for other in methods[1:]:
        wins = sum(row[methods[0]] < row[other] for row in rates.values())
        print(f"{methods[0]} beats {other} on {wins} of {len(rates)} images")
    for method in methods:
        values = sorted(row[method] for row in rates.values())
        if values:
            print(f"{method} against {args.anchor}: mean {sum(values) / len(values):+.2f} %, median "
                  f"{values[len(values) // 2]:+.2f} %, {sum(v < 0 for v in values)} of {len(values)} images better")


if __name__ == "__main__":
    main()
