"""Per-step time and before/after figures of refinement on full Kodak images (not part of the tests).

Usage: python benchmarks/refine_kodak.py [--images kodim01,kodim07,kodim23] [--methods sga,sga+ssl,uniform-noise]
                                         [--steps 100] [--threads 2] [--out results.json]
Prints one row per (image, method): bytes/bpp/PSNR of the real file with `none` and after refinement,
the true loss before/after, and the median seconds per step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import latentfit

from latentfit.shared_data import data_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", default="kodim01,kodim07,kodim23")
    parser.add_argument("--methods", default="sga,sga+ssl,uniform-noise")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--quality", type=int, default=None)
    parser.add_argument("--checkpoint", default=None, help="weights file instead of the bundled model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kodak", default=str(data_dir("kodak")))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = latentfit.load_model(quality=args.quality, checkpoint=args.checkpoint)
    rows = []
    print(f"model {model.name} q{model.quality} lambda {model.lmbda}, {args.steps} steps, {args.threads} threads")
    for name in args.images.split(","):
        image = latentfit.load_image(f"{args.kodak}/{name}.png")
        base = latentfit.encode(image, model, latentfit.RefinementConfig(method="none")).stats
        for method in args.methods.split(","):
            stamps: list[float] = []
            progress = lambda step, total, record: stamps.append(time.perf_counter())  # noqa: E731
            stats = latentfit.encode(image, model, latentfit.RefinementConfig(method=method, steps=args.steps),
                                     progress=progress).stats
            per_step = statistics.median(b - a for a, b in zip(stamps, stamps[1:]))
            row = {"image": name, "method": method, "steps": args.steps, "bytes_none": base["bytes"],
                   "bpp_none": base["bpp"], "psnr_none": base["psnr"], "bytes": stats["bytes"], "bpp": stats["bpp"],
                   "psnr": stats["psnr"], "true_loss_initial": stats["true_loss_initial"],
                   "true_loss_final": stats["true_loss_final"], "seconds_per_step": per_step}
            rows.append(row)
            print(f"{name} {method:<14} none {base['bpp']:.4f} bpp {base['psnr']:.2f} dB -> {stats['bpp']:.4f} bpp "
                  f"{stats['psnr']:.2f} dB | true loss {stats['true_loss_initial']:.4f} -> {stats['true_loss_final']:.4f}"
                  f" | {per_step:.3f} s/step", flush=True)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
