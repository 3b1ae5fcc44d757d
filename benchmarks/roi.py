"""A region of interest against none (issue 46): the same image and steps at each quality, with and
without a mask; PSNR inside and outside the region, BD-rates of each part (so at equal file size), and
a figure (original / no ROI / ROI crops of the region at one quality).

    python benchmarks/roi.py ../shared/data/kodak/kodim04.png --crop 256 --box 55,115,60,250 \
        --quality 1,2,3,4 --steps 500 -o results/roi/kodim04
    python benchmarks/roi.py ../shared/data/clic2025-valid8/0c49a5cce349020bbba2f97ae41e90ba.png \
        --crop 256 --origin 850,530 --box 40,115,0,240 --quality 1,2,3,4 --steps 500 -o results/roi/clic-truck-text

`--box top,bottom,left,right` is the region (white) in the crop's pixels; the mask is written beside
the results (`mask.png`) so the run can be repeated with `latentfit encode --roi`. Real files
throughout; the default encode otherwise (seed 0); one thread. Writes `roi.json`, the figure `roi.png`,
the R-D plot `roi_rd.png` and `report.html` (all of them, self-contained); `--report-only` rebuilds the
plots and the report from `roi.json` and `roi.png`.
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
    parser.add_argument("image", nargs="?")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--origin", help="top,left of the crop in the image (default: the centre crop)")
    parser.add_argument("--box", help="top,bottom,left,right of the region in the crop")
    parser.add_argument("--quality", default="1,2,3,4")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--roi-weight", type=float, default=ROI_WEIGHT)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--report-only", action="store_true", help="rebuild roi_rd.png and report.html only")
    args = parser.parse_args()
    if args.report_only:
        write_report(args.output)
        return
    if args.image is None or args.box is None:
        parser.error("an image and --box are needed (or --report-only)")
    torch.set_num_threads(1)
    args.output.mkdir(parents=True, exist_ok=True)
    image = latentfit.load_image(args.image)
    if args.origin:
        y, x = map(int, args.origin.split(","))
        image = dataclasses.replace(image, tensor=image.tensor[..., y:y + args.crop, x:x + args.crop].contiguous())
    else:
        image = center_crop(image, args.crop)
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
    summary = {"image": args.image, "crop": args.crop, "origin": args.origin or "centre",
               "box": [top, bottom, left, right], "steps": args.steps,
               "roi_weight": args.roi_weight, "seed": 0,
               "weights_digests": sorted({latentfit.load_model("latentfit-msh", q).digest.hex()[:16]
                                          for q in map(int, args.quality.split(","))}),
               "region_share": float(inside.mean()), "rows": rows,
               "bd_rate_inside": bd_rate(curves[("none", "inside")], curves[("roi", "inside")]),
               "bd_rate_outside": bd_rate(curves[("none", "outside")], curves[("roi", "outside")])}
    (args.output / "roi.json").write_text(json.dumps(summary, indent=1))
    figure(reference, decoded, rows, (top, bottom, left, right), args.output / "roi.png")
    write_report(args.output)
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


def rd_figure(summary: dict, path: Path) -> None:
    """PSNR of the region and of the rest against the whole file's bpp, with and without the mask."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for axis, part in zip(axes, ("inside", "outside")):
        for mask, style in (("none", "o--"), ("roi", "s-")):
            points = sorted((r["bpp"], r[f"psnr_{part}"]) for r in summary["rows"] if r["mask"] == mask)
            axis.plot(*zip(*points), style, label="no ROI" if mask == "none" else f"ROI (weight {summary['roi_weight']:g})")
        bd = summary[f"bd_rate_{part}"]
        axis.set_title(f"{'the region' if part == 'inside' else 'the rest'}: BD-rate {bd:+.1f} %", fontsize=10)
        axis.set_xlabel("bpp (whole file)")
        axis.set_ylabel("PSNR (dB)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(output: Path) -> Path:
    """`output/report.html`: what was run, the table, the R-D plot and the crops, images embedded."""
    import html

    from latentfit.evaluation.report import _file_uri
    from latentfit.imageio import atomic_write_bytes

    summary = json.loads((output / "roi.json").read_text())
    rd_figure(summary, output / "roi_rd.png")
    table = "".join(
        f"<tr><td>{r['quality']}</td><td>{'ROI' if r['mask'] == 'roi' else 'none'}</td><td>{r['bytes']:,}</td>"
        f"<td>{r['bpp']:.4f}</td><td>{r['psnr']:.2f}</td><td>{r['psnr_inside']:.2f}</td><td>{r['psnr_outside']:.2f}</td></tr>"
        for r in sorted(summary["rows"], key=lambda r: (r["quality"], r["mask"])))
    figures = "".join(f'<figure><img alt="{name}" src="{_file_uri(output / name)}"></figure>'
                      for name in ("roi.png", "roi_rd.png", "mask.png") if (output / name).exists())
    top, bottom, left, right = summary["box"]
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>latentfit region of interest</title>
<style>body {{ font-family: sans-serif; margin: 2em; color: #222; }} img {{ max-width: 100%; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}</style>
</head><body><h1>A region of interest: {html.escape(Path(summary['image']).name)}</h1>
<p>{summary['crop']}² crop at {html.escape(str(summary.get('origin', 'centre')))} (top,left); region rows {top}–{bottom}, columns {left}–{right} ({summary['region_share']:.0%} of
the pixels), weight {summary['roi_weight']:g}; latentfit-msh, {summary['steps']} steps, seed {summary['seed']}; real files.
At equal file size (BD-rate over the qualities, each part's PSNR against the whole file's bpp) the region costs
<b>{summary['bd_rate_inside']:+.1f} %</b> bits, the rest {summary['bd_rate_outside']:+.1f} %.</p>
{figures}
<table><tr><th>quality</th><th>mask</th><th>bytes</th><th>bpp</th><th>PSNR</th><th>region PSNR</th><th>rest PSNR</th></tr>{table}</table>
</body></html>
"""
    path = output / "report.html"
    atomic_write_bytes(path, document.encode(), force=True)
    return path


if __name__ == "__main__":
    main()
