"""A zero-step lever for #31's warm start, measured: shift the rounding of `y − μ` (not a test).

The plain encoder rounds `r = y − μ` to the nearest integer. A rounding offset δ sends `r` to
`sign(r)·floor(|r| + 0.5 − δ)`: δ > 0 is the classical dead zone (more zeros, fewer bits), δ < 0 rounds
away from the mean. The file format and the decoder do not change (the symbols are still integers
around μ); `z` is rounded as before. This prints the true loss (the hard-quantised R-D loss the file
has) relative to plain rounding, with its rate and MSE, per model and quality, on centre crops of the
validation photos (never Kodak or CLIC, the evaluation sets).

    python benchmarks/rounding_offset.py --models latentfit-msh,latentfit-msh-warm --offsets=-0.05,-0.03,0.05
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from latentfit import load_image, load_model
from latentfit.imageio import center_crop, list_images
from latentfit.models.entropy import deterministic


def offset_rounding(delta: float, y_channels: int):
    """`torch.round` for `z`, rounding with offset `delta` for `y` (told apart by their channel counts)."""
    def relax(r: torch.Tensor) -> torch.Tensor:
        if r.shape[1] != y_channels:
            return torch.round(r)
        return torch.sign(r) * torch.floor(r.abs() + 0.5 - delta).clamp_min(0)
    return relax


def validation_arguments(parser: argparse.ArgumentParser, limit: int) -> None:
    """The options of a warm-start lever measured on validation crops (`--models`, `--qualities`,
    `--images`, `--limit`, `--crop`); `validation_crops` reads them."""
    parser.add_argument("--models", default="latentfit-msh,latentfit-msh-warm")
    parser.add_argument("--qualities", default="1,2,3,4")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/train/cid22-valid"))
    parser.add_argument("--limit", type=int, default=limit)
    parser.add_argument("--crop", type=int, default=256)


def validation_crops(args: argparse.Namespace) -> list[torch.Tensor]:
    """The first `--limit` images of `--images`, centre-cropped (one thread from here on)."""
    torch.set_num_threads(1)
    return [center_crop(load_image(p), args.crop).tensor for p in list_images(args.images)[: args.limit]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    validation_arguments(parser, limit=8)
    parser.add_argument("--offsets", default="-0.08,-0.05,-0.03,-0.02,0.02,0.05")
    args = parser.parse_args()
    images = validation_crops(args)
    offsets = [float(v) for v in args.offsets.split(",")]
    print(f"{len(images)} centre crops {args.crop}² of {args.images}; true loss / rate / MSE against plain rounding")
    for name in args.models.split(","):
        for quality in (int(q) for q in args.qualities.split(",")):
            model = load_model(name, quality)
            totals: dict[float, list[tuple[float, float, float]]] = {d: [] for d in [0.0, *offsets]}
            with torch.no_grad():
                for x in images:
                    latents = model.analysis(x)
                    for delta in totals:
                        relax = offset_rounding(delta, latents.y.shape[1]) if delta else torch.round
                        with deterministic(model.device):
                            rd = model.rate_distortion(latents, x, model.lmbda, relax, clamp=True)
                        totals[delta].append((float(rd.loss), float(rd.bits), float(rd.mse)))
            base = [statistics.mean(v[i] for v in totals[0.0]) for i in range(3)]
            cells = []
            for delta in offsets:
                loss, bits, mse = (statistics.mean(v[i] for v in totals[delta]) / base[i] - 1 for i in range(3))
                cells.append(f"δ {delta:+.2f}: {loss:+.2%} ({bits:+.1%} / {mse:+.1%})")
            print(f"{name} q{quality}: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
