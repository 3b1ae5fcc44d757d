"""Warm start: curves of `latentfit eval` journals against one anchor curve, across models (#31).

`latentfit eval` compares each curve with its own model's `none`. A fine-tuned encoder
(`latentfit-msh-warm`) is judged against the *base* model's `none` instead: same decoder, same file
format, so the question is only how much better its files are. This prints, for every (model, method,
steps) curve in the given results folders, its BD-rate and BD-PSNR against the anchor (default
`latentfit-msh none`) over the images both finished at every quality, with the median encode seconds
per megapixel, and per image how many images the curve beats the anchor on.

    python benchmarks/warm_start.py results/warm-start/crops-none-base results/warm-start/crops-none-warm \
        [--anchor latentfit-msh] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections import defaultdict
from pathlib import Path

from latentfit.evaluation.bdrate import bd_psnr, bd_rate
from latentfit.evaluation.runner import journal_records, mean_points
from latentfit.evaluation.tables import seconds_per_megapixel


def read_cells(folder: Path) -> list[dict]:
    """A journal's learned cells on the model's own λ (a classical codec's record names itself as
    model and method; torn lines skipped)."""
    return [r for r in journal_records(folder) if not r.get("lmbda_point") and r["model"] != r["method"]]


def precision(record: dict) -> str:
    """The proxy pass's precision of a refined cell ("fp32" for `none`, and for records from before it existed)."""
    if record["method"] == "none":
        return "fp32"
    return record.get("precision") or record.get("config", {}).get("runtime", {}).get("precision", "fp32")


def closed_loop(record: dict) -> int:
    """The closed-loop passes the cell started from (0 for records from before they existed)."""
    return record.get("config", {}).get("start", {}).get("closed_loop", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--anchor", default="latentfit-msh")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    groups: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    seen = set()
    for folder in args.folders:
        for record in read_cells(folder):
            key = (record["model"], record["method"], record["steps"], precision(record), closed_loop(record))
            if (key, record["image"], record["quality"]) in seen:  # the same cell in two folders (e.g. `none`)
                continue
            seen.add((key, record["image"], record["quality"]))
            groups[key][record["quality"]].append(record)
    anchor_key = (args.anchor, "none", 0, "fp32", 0)
    if anchor_key not in groups:
        raise SystemExit(f"no {args.anchor} none cells in {', '.join(map(str, args.folders))}")
    qualities = sorted(groups[anchor_key])

    def complete(key):
        by_quality = groups[key]
        sets = [{r["image"] for r in by_quality.get(q, [])} for q in qualities]
        return set.intersection(*sets) if sets else set()

    rows = []
    for key in sorted(groups, key=lambda k: (k[0], k[3], k[4], k[1] != "none", k[1], k[2])):
        images = complete(key) & complete(anchor_key)
        if key == anchor_key or not images:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            anchor, test = mean_points(groups[anchor_key], images), mean_points(groups[key], images)
            per_image = [bd_rate(mean_points(groups[anchor_key], {i}), mean_points(groups[key], {i})) for i in images]
            row = {"model": key[0], "method": key[1], "steps": key[2], "precision": key[3], "closed_loop": key[4],
                   "anchor": f"{args.anchor} none",
                   "images": len(images), "bd_rate": bd_rate(anchor, test), "bd_psnr": bd_psnr(anchor, test),
                   "images_ahead": sum(1 for v in per_image if v < 0),
                   "seconds_per_megapixel": seconds_per_megapixel(
                       [r for rs in groups[key].values() for r in rs if r["image"] in images]),
                   "anchor_seconds_per_megapixel": seconds_per_megapixel(
                       [r for rs in groups[anchor_key].values() for r in rs if r["image"] in images])}
        rows.append(row)
        passes = f" +{key[4]} closed-loop passes" if key[4] else ""
        print(f"{row['model']:20s} {row['method']:8s} {row['steps']:4d} steps {row['precision']}{passes}: BD-rate {row['bd_rate']:+6.2f} % "
              f"BD-PSNR {row['bd_psnr']:+.3f} dB, ahead on {row['images_ahead']}/{row['images']} images, "
              f"median {row['seconds_per_megapixel']:.1f} s/MP (anchor {row['anchor_seconds_per_megapixel']:.1f})")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
