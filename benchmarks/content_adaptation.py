"""Content adaptation (#30): every curve of some `latentfit eval` journals against the generic model's
`none`, on the images every curve finished, with one R-D plot (not a test).

Campos et al. 2019 compare, on content unlike the training photos: the generic model; the generic
model with per-image latents; the probability model fine-tuned on the content ("+proba"); both; a
model trained on the content ("specialised"); and that model with per-image latents. The journals
hold those as (model, method) curves: the generic model's name with `none` / `sga+ssl`, the
`--finetune prior` export's and the `--finetune all` export's (their card names, e.g. `screen-prior`,
`screen-all`), and classical codecs (`--classical`). BD-rate and BD-PSNR are against the generic
`none` (real files), over the same images for every row; a classical sweep's levels stand for qualities,
as in `latentfit eval`'s own tables.

    python benchmarks/content_adaptation.py results/content/screen-generic results/content/screen-prior \
        results/content/screen-all --generic latentfit-msh --prior screen-prior --specialised screen-all \
        --title "Screen content" --plot results/content/screen-rd.png --json results/content/screen.json
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections import defaultdict
from pathlib import Path

from latentfit.evaluation.bdrate import bd_psnr, bd_rate
from latentfit.evaluation.classical import is_classical
from latentfit.evaluation.runner import journal_records, mean_points
from latentfit.evaluation.tables import seconds_per_megapixel


def read_cells(folder: Path) -> list[dict]:
    """A journal's cells on the model's own λ (torn lines skipped)."""
    return [record for record in journal_records(folder) if not record.get("lmbda_point")]


def safe_bd_rate(anchor, test) -> float | None:
    """BD-rate of one image's curves, or None where a curve repeats a rate (a classical sweep whose
    two levels gave the same file size on a small crop), which the interpolation refuses."""
    try:
        return bd_rate(anchor, test)
    except ValueError:
        return None


def gather(folders: list[Path]) -> dict[tuple, dict[int, list[dict]]]:
    """Records by curve `(model, method, steps)` and quality (a classical codec's sweep level); a cell in
    two folders counts once."""
    curves: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    seen = set()
    for folder in folders:
        for record in read_cells(folder):
            key = (record["model"], record["method"], record["steps"])
            if (key, record["image"], record["quality"]) in seen:
                continue
            seen.add((key, record["image"], record["quality"]))
            curves[key][record["quality"]].append(record)
    return curves


def finished_images(curves: dict[tuple, dict[int, list[dict]]]) -> set[str]:
    """The images every curve has at every one of its qualities."""
    def complete(by_quality) -> set[str]:
        return set.intersection(*[{r["image"] for r in rs} for rs in by_quality.values()])

    return set.intersection(*[complete(by_quality) for by_quality in curves.values()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--generic", default="latentfit-msh")
    parser.add_argument("--prior", default=None, help="the --finetune prior model's name")
    parser.add_argument("--specialised", default=None, help="the --finetune all model's name")
    parser.add_argument("--same-images-as", type=Path, default=None,
                        help="only images whose file name a cell of this journal has (e.g. the halved set's "
                             "images that the full-size run finished)")
    parser.add_argument("--title", default="")
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    names = {args.generic: "generic"} | ({args.prior: "+proba"} if args.prior else {}) | (
        {args.specialised: "specialised"} if args.specialised else {})

    def label(model: str, method: str) -> str:
        if is_classical(method):
            return method
        base = names.get(model, model)
        return base if method == "none" else f"{base} + latents" if base != "generic" else "generic + latents"

    curves = gather(args.folders)
    anchor = (args.generic, "none", 0)
    if anchor not in curves:
        raise SystemExit(f"no {args.generic} none cells in {', '.join(map(str, args.folders))}")
    images = finished_images(curves)
    if args.same_images_as:
        other = {Path(i).stem for i in finished_images(gather([args.same_images_as]))}
        images = {i for i in images if Path(i).stem in other}
    if not images:
        raise SystemExit("no image is finished by every curve")
    order = ["generic", "generic + latents", "+proba", "+proba + latents", "specialised", "specialised + latents"]
    keys = sorted(curves, key=lambda k: (order.index(label(k[0], k[1])) if label(k[0], k[1]) in order else 99, k))
    rows, points = [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = mean_points(curves[anchor], images)
        for key in keys:
            curve = mean_points(curves[key], images)
            points[label(key[0], key[1])] = curve
            per_image = [] if key == anchor else [
                safe_bd_rate(mean_points(curves[anchor], {i}), mean_points(curves[key], {i})) for i in images]
            rows.append({"curve": label(key[0], key[1]), "model": key[0], "method": key[1], "steps": key[2],
                         "images": len(images),
                         "bd_rate": 0.0 if key == anchor else bd_rate(reference, curve),
                         "bd_psnr": 0.0 if key == anchor else bd_psnr(reference, curve),
                         "images_ahead": sum(1 for v in per_image if v is not None and v < 0),
                         "images_compared": len(images) if key == anchor else sum(v is not None for v in per_image),
                         "seconds_per_megapixel": seconds_per_megapixel(
                             [r for rs in curves[key].values() for r in rs if r["image"] in images]),
                         "points": [[round(b, 5), round(p, 3)] for b, p in curve]})
    print(f"{args.title or 'content'}: {len(images)} images, anchor {args.generic} none")
    print("| curve | BD-rate vs generic | BD-PSNR | ahead on | s/MP (median) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['curve']} | {row['bd_rate']:+.2f} % | {row['bd_psnr']:+.3f} dB | "
              f"{row['images_ahead']}/{row['images_compared']} | {row['seconds_per_megapixel']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"title": args.title, "anchor": f"{args.generic} none",
                                         "images": sorted(images), "rows": rows}, indent=2) + "\n")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6.4, 4.8))
        for name, curve in points.items():
            classical = is_classical(name)
            axis.plot(*zip(*sorted(curve)), marker="s" if classical else "o", markersize=3,
                      linestyle=":" if classical else "--" if "latents" not in name else "-", label=name)
        axis.set_xlabel("bpp (real files)")
        axis.set_ylabel("PSNR (dB)")
        axis.set_title(f"{args.title} ({len(images)} images)" if args.title else f"{len(images)} images")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
