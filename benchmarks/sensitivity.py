"""Sensitivity of SGA (atanh logits) and SGA+ SSL to Adam's lr and τ_max (not a test).

Perugachi-Diaz et al. report that SSL is less sensitive to the learning rate and to τ_max than
the atanh logits of Yang et al. This runs both methods over a small grid of (lr, τ_max), each with
its papers' temperature schedule otherwise (SGA: rate 1e-3, t₀ 700; SGA+: rate 1e-3, t₀ 0), on
Kodak centre crops, and prints the share of the best gain each setting reaches: a method that is
less sensitive keeps a higher worst-case share and a smaller spread.

Runs are journalled (one JSON line per (image, method, lr, τ_max)), so an interrupted sweep resumes.

Usage: python benchmarks/sensitivity.py [--images kodim01,kodim03] [--crop 256] [--steps 500]
                                        [--lrs 2e-3,5e-3,1.5e-2] [--tau-maxes 0.5,1] [--methods sga] [--journal J]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import torch

import latentfit
from latentfit.evaluation.journal import Journal
from latentfit import RefinementConfig
from latentfit.relaxations import get_proxy
from latentfit.imageio import center_crop
from latentfit.shared_data import data_dir

KODAK = data_dir("kodak")
METHODS = ("sga", "sga+ssl")


def run_one(model, image: str, crop: int, method: str, lr: float, tau_max: float, steps: int) -> dict:
    x = center_crop(latentfit.load_image(str(KODAK / f"{image}.png")), crop or None).tensor
    schedule = dataclasses.replace(get_proxy(method).default_schedule(), tau_max=tau_max)
    config = RefinementConfig(method=method, steps=steps, lr=lr, lr_schedule="constant", schedule=schedule, seed=0,
                              record_trace=False)
    result = latentfit.refine_latents(model, x, config)
    return {"image": image, "crop": crop, "method": method, "lr": lr, "tau_max": tau_max, "steps": steps,
            "model": model.digest.hex(), "initial": result.initial.loss, "final": result.final.loss,
            "seconds": result.seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", default="kodim01,kodim03")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--lrs", default="2e-3,5e-3,1.5e-2")
    parser.add_argument("--tau-maxes", default="0.5,1")
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", default=",".join(METHODS), help="run only these (split a sweep over processes)")
    parser.add_argument("--journal", default="sensitivity.jsonl")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = latentfit.load_model(quality=args.quality)
    images = args.images.split(",")
    lrs = [float(v) for v in args.lrs.split(",")]
    tau_maxes = [float(v) for v in args.tau_maxes.split(",")]

    journal = Journal(args.journal)
    done: dict[tuple, dict] = {}
    for r in journal.records():
        if r["model"] == model.digest.hex():  # runs of other weights are never mixed in
            done[(r["image"], r["crop"], r["method"], r["lr"], r["tau_max"], r["steps"])] = r
    for image in images:
        for method in args.methods.split(","):
            for lr in lrs:
                for tau_max in tau_maxes:
                    key = (image, args.crop, method, lr, tau_max, args.steps)
                    if key not in done:
                        done[key] = run_one(model, image, args.crop, method, lr, tau_max, args.steps)
                        journal.append(done[key])
                    r = done[key]
                    print(f"{image} {method} lr {lr:g} τ_max {tau_max:g}: {r['initial']:.4f} -> {r['final']:.4f} "
                          f"({r['seconds']:.0f} s)", flush=True)

    if any((image, args.crop, method, lr, tau_max, args.steps) not in done
           for image in images for method in METHODS for lr in lrs for tau_max in tau_maxes):
        return  # the other methods' runs are not all in the journal yet
    print(f"\ncrop {args.crop}, {args.steps} steps, quality {args.quality}, lr constant, torch {torch.__version__}")
    print("Share of the best gain (L₀ − L_final) / max over both methods and all settings of (L₀ − L_final), "
          "mean over images:")
    print("| method | " + " | ".join(f"lr {lr:g}, τ_max {t:g}" for lr in lrs for t in tau_maxes) +
          " | worst | spread |")
    print("|---" * (2 + len(lrs) * len(tau_maxes) + 1) + "|")
    for method in METHODS:
        shares = []
        for lr in lrs:
            for tau_max in tau_maxes:
                per_image = []
                for image in images:
                    runs = [r for k, r in done.items() if k[0] == image and k[1] == args.crop and k[5] == args.steps]
                    best = max(r["initial"] - r["final"] for r in runs)
                    r = done[(image, args.crop, method, lr, tau_max, args.steps)]
                    per_image.append((r["initial"] - r["final"]) / best)
                shares.append(statistics.mean(per_image))
        print(f"| {method} | " + " | ".join(f"{s:.1%}" for s in shares) +
              f" | {min(shares):.1%} | {max(shares) - min(shares):.1%} |")


if __name__ == "__main__":
    main()
