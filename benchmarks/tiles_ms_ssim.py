"""MS-SSIM in tiles (issue 46): how close a tiled refinement for `mix:W` / `ms-ssim` comes to refining
the whole image, and what the context a tile's MS-SSIM sees is worth.

    python benchmarks/tiles_ms_ssim.py ../shared/data/kodak/kodim04.png ../shared/data/kodak/kodim23.png \
        --quality 2 --steps 100 --tile 256 --context 0,64 -o results/tiles/ms-ssim.json

For each image and quality: the default encode for `--distortion` (seed 0, one thread) on the whole
image, then in tiles of `--tile` pixels with each `--context` (pixels of decoded context around a
tile's region that its MS-SSIM sees; 64 is the library's `MS_SSIM_CONTEXT`). Each tile gets the same
steps as the whole image (as `--tile` does). Real files: bytes, MS-SSIM and PSNR of the decoded file,
the whole image's true loss of the latents kept (measured), and the tiled trace's estimate of it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import latentfit
import latentfit.tiling as tiling
from latentfit.distortion import distortion_from, measure
from latentfit.imageio import to_uint8
from latentfit.metrics import ms_ssim, psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--quality", default="2")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--context", default="0,64")
    parser.add_argument("--distortion", default="mix:0.5")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for path in args.images:
        image = latentfit.load_image(path)
        reference = to_uint8(image.tensor)
        chosen = measure(distortion_from(args.distortion))
        for quality in (int(q) for q in args.quality.split(",")):
            model = latentfit.load_model(quality=quality)
            runs = [("whole", None, None)] + [(f"tiles, context {c}", args.tile, int(c)) for c in args.context.split(",")]
            for label, tile, context in runs:
                if context is not None:
                    tiling.MS_SSIM_CONTEXT = context
                config = latentfit.RefinementConfig(steps=args.steps, tile=tile, distortion=args.distortion, seed=0)
                started = time.perf_counter()
                result = latentfit.encode(image, model, config)
                seconds = time.perf_counter() - started
                exact = float(model.true_rate_distortion(result.refinement.latents, image.tensor, model.lmbda,
                                                         chosen).loss)
                estimate = min(r.true_loss for r in result.refinement.trace) if result.refinement.trace else None
                row = {"image": Path(path).name, "quality": quality, "run": label, "tile": tile, "context": context,
                       "steps": args.steps, "distortion": args.distortion, "seed": 0,
                       "weights_digest": model.digest.hex()[:16],
                       "bytes": len(result.data), "ms_ssim": ms_ssim(reference, result.decoded),
                       "psnr": psnr(reference, result.decoded), "initial_loss": result.refinement.initial.loss,
                       "final_loss": exact, "trace_estimate": estimate, "tiles": result.refinement.tiles,
                       "seconds": seconds}
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
