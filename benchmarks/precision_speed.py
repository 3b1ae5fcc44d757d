"""Seconds per refinement step, fp32 against bf16 for the proxy's decoder, side by side (not a test).

One process alternates blocks of proxy steps (forward and backward of `sga+ssl`'s relaxed loss, the
channels-last decoder copy as the loop uses it) in each precision, on a full Kodak image and on a
256x256 crop, and prints each one's median seconds per step and the ratio. Also prints the CPU's
bfloat16 support, which `--precision auto` goes by.

Usage: python benchmarks/precision_speed.py [--image ../shared/data/kodak/kodim23.png] [--blocks 5]
                                            [--steps 4] [--threads 1] [--quality 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import latentfit
from latentfit.imageio import LoadedImage, pad_to_multiple
from latentfit.models.adapter import Latents
from latentfit.relaxations import get_proxy
from latentfit.shared_data import data_dir


def step_seconds(model, x: torch.Tensor, precision: str, steps: int, generator: torch.Generator) -> list[float]:
    view = model.proxy_view(channels_last=True, precision=precision)
    latents = model.analysis(pad_to_multiple(x, model.stride))
    y, z = latents.y.clone().requires_grad_(True), latents.z.clone().requires_grad_(True)
    proxy = get_proxy("sga+ssl")
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        loss = view.rate_distortion(Latents(y, z), x, model.lmbda, lambda v: proxy.relax(v, 0.5, generator)).loss
        loss.backward()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(data_dir("kodak") / "kodim23.png"))
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"AVX512-BF16 {torch.cpu._is_avx512_bf16_supported()}, AMX {torch.cpu._is_amx_tile_supported()}, "
          f"torch {torch.__version__}, {args.threads} thread(s)")
    model = latentfit.load_model("latentfit-msh", args.quality)
    image = latentfit.load_image(args.image)
    crop = LoadedImage(image.tensor[..., :256, :256].contiguous(), "RGB")
    generator = torch.Generator().manual_seed(0)
    for label, x in ((f"full {image.width}x{image.height}", image.tensor), ("crop 256x256", crop.tensor)):
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(args.blocks):
            for precision in times:
                times[precision] += step_seconds(model, x, precision, args.steps, generator)[1:]  # first: warm-up
        fp32, bf16 = (statistics.median(times[p]) for p in ("fp32", "bf16"))
        print(f"{label}: fp32 {fp32:.3f} s/step, bf16 {bf16:.3f} s/step, {fp32 / bf16:.2f}x")


if __name__ == "__main__":
    main()
