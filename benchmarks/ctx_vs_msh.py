"""`latentfit-ctx` (a training export) against `latentfit-msh` on full Kodak images, method `none`,
real files: mean bpp, PSNR and the R-D loss `bpp + λ·255²·MSE` at the quality's λ, per quality that
has an export; with all four qualities, BD-rate as well (issue 29).

    python benchmarks/ctx_vs_msh.py [--exports DIR (default: the bundled weights)] [--limit 24]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from latentfit.models.registry import BUNDLED_DIR
from latentfit.shared_data import data_dir

KODAK = data_dir("kodak")


def main() -> None:
    import latentfit
    from latentfit import RefinementConfig, encode
    from latentfit.evaluation.bdrate import bd_rate
    from latentfit.imageio import list_images
    from latentfit.models.registry import load_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exports", type=Path, default=BUNDLED_DIR)
    parser.add_argument("--limit", type=int, default=24)
    args = parser.parse_args()
    images = [latentfit.load_image(p) for p in list_images(KODAK)[: args.limit]]
    curves: dict[str, list[tuple[float, float]]] = {"msh": [], "ctx": []}
    print(f"{len(images)} full Kodak images, method none, real files")
    print("| quality | model | bpp | PSNR (dB) | bpp + λ·255²·MSE |")
    print("|---|---|---|---|---|")
    for quality in (1, 2, 3, 4):
        export = args.exports / f"latentfit-ctx-{quality}.pt"
        if not export.is_file():
            continue
        models = {"msh": latentfit.load_model(quality=quality), "ctx": load_checkpoint(export)}
        for key, model in models.items():
            stats = [encode(image, model, RefinementConfig(method="none")).stats for image in images]
            bpp = statistics.mean(s["bpp"] for s in stats)
            psnr = statistics.mean(s["psnr"] for s in stats)
            lmbda = models["msh"].lmbda
            loss = statistics.mean(s["bpp"] + lmbda * 255.0**2 * 10 ** (-s["psnr"] / 10) for s in stats)
            curves[key].append((bpp, psnr))
            print(f"| {quality} | {model.name} | {bpp:.4f} | {psnr:.2f} | {loss:.4f} |", flush=True)
    if len(curves["ctx"]) >= 4:
        print(f"\nBD-rate of latentfit-ctx against latentfit-msh: {bd_rate(curves['msh'], curves['ctx']):+.2f} %")


if __name__ == "__main__":
    main()
