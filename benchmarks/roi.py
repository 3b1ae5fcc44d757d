"""A region of interest against none (issue 46): the same image and steps at each quality, with and
without a mask; PSNR inside and outside the region, BD-rates of each part (so at equal file size), and
a figure (original / no ROI / ROI crops of the region at one quality).

    python benchmarks/roi.py ../shared/data/kodak/kodim04.png --crop 256 --box 55,115,60,250 \
        --quality 1,2,3,4 --steps 500 -o results/roi/kodim04

`--box top,bottom,left,right` is the region (white) in the crop's pixels; the mask is written beside
the results (`mask.png`) so the run can be repeated with `latentfit encode --roi`. Real files
throughout; the default encode otherwise (seed 0); one thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import latentfit
from latentfit.distortion import ROI_WEIGHT, load_roi
from latentfit.evaluation.bdrate import bd_rate
from latentfit.imageio import center_crop, to_uint8


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--box", required=True, help="top,bottom,left,right of the region in the crop")
    parser.add_argument("--quality", default="1,2,3,4")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--roi-weight", type=float, default=ROI_WEIGHT)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.output.mkdir(parents=True, exist_ok=True)
    image = center_crop(latentfit.load_image(args.image), args.crop)
    top, bottom, left, right = map(int, args.box.split(","))
    inside = np.zeros((image.height, image.width), dtype=bool)
    inside[top:bottom, left:right] = True
    Image.fromarray((inside * 255).astype(np.uint8), "L").save(args.output / "mask.png")
    roi = dataclasses.replace(image, roi=load_roi(args.output / "mask.png", image.height, image.width, args.roi_weight))
    reference = to_uint8(image.tensor)
    rows, decoded = [], {}
    for quality in map(int, args.quality.split(",")):
        model = latentfit.load_model("latentfit-msh", quality)
        for name, source in (("none", image), ("roi", roi)):
            result = latentfit.encode(source, model, latentfit.RefinementConfig(steps=args.steps))
            decoded[(quality, name)] = result.decoded
            rows.append({"quality": quality, "mask": name, "bytes": result.stats["bytes"], "bpp": result.stats["bpp"],
                         "psnr": result.stats["psnr"], "psnr_inside": psnr(reference[inside], result.decoded[inside]),
                         "psnr_outside": psnr(reference[~inside], result.decoded[~inside]),
                         "seconds": result.stats["seconds"]})
            print(json.dumps(rows[-1]), file=sys.stderr)
    curves = {(name, part): [(r["bpp"], r[f"psnr_{part}"]) for r in rows if r["mask"] == name]
              for name in ("none", "roi") for part in ("inside", "outside")}
    summary = {"image": args.image, "crop": args.crop, "box": [top, bottom, left, right], "steps": args.steps,
               "roi_weight": args.roi_weight, "seed": 0,
               "weights_digests": sorted({latentfit.load_model("latentfit-msh", q).digest.hex()[:16]
                                          for q in map(int, args.quality.split(","))}),
               "region_share": float(inside.mean()), "rows": rows,
               "bd_rate_inside": bd_rate(curves[("none", "inside")], curves[("roi", "inside")]),
               "bd_rate_outside": bd_rate(curves[("none", "outside")], curves[("roi", "outside")])}
    (args.output / "roi.json").write_text(json.dumps(summary, indent=1))
    figure(reference, decoded, rows, (top, bottom, left, right), args.output / "roi.png")
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}))


def figure(reference, decoded, rows, box, path: Path) -> None:
    """Original / no ROI / ROI, around the region, at the quality whose two files are closest in size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top, bottom, left, right = box
    pad = 16
    window = (slice(max(0, top - pad), bottom + pad), slice(max(0, left - pad), right + pad))
    pairs = {q: {r["mask"]: r for r in rows if r["quality"] == q} for q in {r["quality"] for r in rows}}
    quality = min(pairs, key=lambda q: abs(pairs[q]["roi"]["bytes"] / pairs[q]["none"]["bytes"] - 1))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for axis, (title, pixels) in zip(axes, [
            ("original", reference),
            (f"no ROI: {pairs[quality]['none']['bytes']} B, region {pairs[quality]['none']['psnr_inside']:.2f} dB",
             decoded[(quality, "none")]),
            (f"ROI: {pairs[quality]['roi']['bytes']} B, region {pairs[quality]['roi']['psnr_inside']:.2f} dB",
             decoded[(quality, "roi")])]):
        axis.imshow(pixels[window])
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    fig.suptitle(f"quality {quality}: the region (box) at about equal file size")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
