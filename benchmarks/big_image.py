"""Big images: peak memory of tiled vs untiled refinement, and seams at tile borders (not a test).

`memory`: a 3840x2160 image (a CLIC photo resized with Lanczos) is refined for `--steps` steps
per tile, tiled (768 px tiles) and untiled, each in a fresh subprocess; the peak resident memory
(ru_maxrss) and seconds are printed.

`seams`: on a `--crop` centre crop of a CLIC photo, refined untiled and tiled (`--tile` px),
PSNR in 8-pixel strips along the tile borders against PSNR elsewhere, for none / untiled / tiled.

Usage: python benchmarks/big_image.py memory [--steps 2] [--threads 2] [--model latentfit-ctx]
       python benchmarks/big_image.py seams [--crop 1024] [--tile 256] [--steps 60] [--threads 2] [--model ...]
(`--model`: a bundled model at the default quality; default: the default model.)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from latentfit.shared_data import data_dir

CLIC = data_dir("clic2025-valid8")


def clic_photo(index: int = 0):
    return sorted(CLIC.glob("*.png"))[index]


def four_k() -> "torch.Tensor":  # noqa: F821
    import torch
    from PIL import Image

    image = Image.open(clic_photo()).convert("RGB")
    scale = max(3840 / image.width, 2160 / image.height)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    left, top = (image.width - 3840) // 2, (image.height - 2160) // 2
    pixels = np.asarray(image.crop((left, top, left + 3840, top + 2160)))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255


def memory_child(mode: str, steps: int, threads: int, name: str | None) -> None:
    import torch

    import latentfit

    torch.set_num_threads(threads)
    model = latentfit.load_model(name)
    x = four_k()
    started = time.perf_counter()
    config = latentfit.RefinementConfig(steps=steps, evaluate_every=steps, tile="auto" if mode == "tiled" else None)
    result = latentfit.refine_latents(model, x, config)
    print(json.dumps({"mode": mode, "tiles": result.tiles, "seconds": time.perf_counter() - started,
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      "initial": result.initial.loss, "final": result.final.loss}))


def memory(args) -> None:
    print(f"3840x2160, {args.steps} steps per tile, {args.threads} threads, {args.model or 'default model'}")
    for mode in ("tiled", "untiled"):
        run = subprocess.run([sys.executable, __file__, "memory-child", mode, str(args.steps), str(args.threads),
                              *([args.model] if args.model else [])], capture_output=True, text=True)
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        print(lines[-1] if lines else f"{mode}: exit {run.returncode} {run.stderr.strip().splitlines()[-1:]}",
              flush=True)


def strip_mask(height: int, width: int, tile: int, half_width: int = 4) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    for edge in range(tile, height, tile):
        mask[edge - half_width : edge + half_width, :] = True
    for edge in range(tile, width, tile):
        mask[:, edge - half_width : edge + half_width] = True
    return mask


def psnr_at(reference: np.ndarray, decoded: np.ndarray, mask: np.ndarray) -> float:
    mse = ((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)[mask].mean()
    return 10 * np.log10(255.0**2 / mse)


def seams(args) -> None:
    import torch

    import latentfit
    from latentfit.imageio import LoadedImage, to_uint8

    torch.set_num_threads(args.threads)
    model = latentfit.load_model(args.model)
    full = latentfit.load_image(clic_photo()).tensor
    top, left = (full.shape[-2] - args.crop) // 2, (full.shape[-1] - args.crop) // 2
    x = full[..., top : top + args.crop, left : left + args.crop].contiguous()
    image, reference = LoadedImage(x, "RGB"), to_uint8(x)
    mask = strip_mask(args.crop, args.crop, args.tile)
    print(f"{model.name}: "
          f"{clic_photo().name} centre {args.crop}x{args.crop}, tiles {args.tile} px, {args.steps} steps, "
          f"strips: 8 px around each tile border ({mask.mean():.1%} of pixels)")
    print("| run | bpp | PSNR | true loss | PSNR at tile borders | PSNR elsewhere | seconds |")
    print("|---|---|---|---|---|---|---|")
    runs = {"none": dict(method="none"), "untiled": dict(steps=args.steps, tile=None),
            "tiled": dict(steps=args.steps, tile=args.tile)}
    for name, options in runs.items():
        started = time.perf_counter()
        result = latentfit.encode(image, model, latentfit.RefinementConfig(seed=0, **options))
        print(f"| {name} | {result.stats['bpp']:.4f} | {result.stats['psnr']:.2f} | "
              f"{result.stats['true_loss_final']:.4f} | "
              f"{psnr_at(reference, result.decoded, mask):.2f} | {psnr_at(reference, result.decoded, ~mask):.2f} | "
              f"{time.perf_counter() - started:.0f} |", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "memory-child":
        memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["memory", "seams"])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--crop", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--model", default=None, help="a bundled model (default quality); default: the default model")
    args = parser.parse_args()
    if args.what == "memory":
        args.steps = args.steps or 2
        memory(args)
    else:
        args.steps = args.steps or 60
        seams(args)


if __name__ == "__main__":
    main()
