"""Small step budgets (25–200 steps): which lr and temperature range make each step count? (not a test)

For every (image crop, quality, setting, step budget) the refinement's relative true-loss reduction
`1 − L_true(final) / L_true(encoder)` is journalled (one JSON line each, so a run resumes and runs
split with `--shard i/n` share one journal). The summary prints, per budget, each setting's mean and
median reduction and on how many cells it beats latentfit's default (`default`: lr 3e-2 cosine to
0.01·lr, τ 1.5 → 0.2·τ_max within the steps). True loss at the model's λ, seed 0, one thread; the
proxy's precision is latentfit's default (`auto`) unless a setting names one, and recorded per row.

Usage: python benchmarks/small_budgets.py [--images kodim01,...] [--crop 256] [--qualities 1,2,3,4]
           [--steps 25,50] [--settings default,lr5e-2,...] [--model latentfit-msh] [--shard 0/2]
           [--journal small-budgets.jsonl] [--summary]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

import latentfit
from latentfit.evaluation.journal import Journal
from latentfit import RefinementConfig, TemperatureSchedule
from latentfit.config import resolve_precision
from latentfit.imageio import center_crop
from latentfit.shared_data import data_dir

KODAK = data_dir("kodak")


def settings(steps: int) -> dict[str, dict]:
    """Named settings for a budget of `steps`; each is RefinementConfig keyword arguments."""
    def budget(lr=3e-2, start=1.5, end=0.2, floor=0.01):
        return dict(lr=lr, lr_final_fraction=floor, schedule=TemperatureSchedule.for_budget(steps, start, end))
    return {
        "default": dict(),
        "bf16": dict(precision="bf16"),
        "bf16-lr5e-2": budget(lr=5e-2) | dict(precision="bf16"),
        "lr5e-2": budget(lr=5e-2),
        "lr8e-2": budget(lr=8e-2),
        "lr5e-2-end0.3": budget(lr=5e-2, end=0.3),
        "lr5e-2-start1": budget(lr=5e-2, start=1.0),
        "lr5e-2-floor0.1": budget(lr=5e-2, floor=0.1),
        "lr8e-2-end0.3": budget(lr=8e-2, end=0.3),
    }


def run_one(model, image, steps: int, setting: dict) -> dict:
    config = RefinementConfig(method="sga+ssl", steps=steps, seed=0, tile=None, **setting)
    result = latentfit.refine_latents(model, image.tensor, config)
    return {"precision": resolve_precision(config.precision, model.device),
            "initial": result.initial.loss, "final": result.final.loss,
            "reduction": 1.0 - result.final.loss / result.initial.loss, "seconds": result.seconds}


def summarise(rows: list[dict]) -> None:
    by = {}
    for row in rows:
        by.setdefault((row["model"], row["steps"]), {}).setdefault(row["setting"], {})[(row["image"], row["quality"])] = row
    for (model, steps), table in sorted(by.items()):
        base = table.get("default", {})
        print(f"\n{model}, {steps} steps: mean / median true-loss reduction, cells ahead of default")
        for name, cells in sorted(table.items(), key=lambda kv: -statistics.mean(r["reduction"] for r in kv[1].values())):
            reductions = [r["reduction"] for r in cells.values()]
            ahead = sum(1 for k, r in cells.items() if k in base and r["final"] < base[k]["final"])
            shared = sum(1 for k in cells if k in base)
            print(f"  {name:18s} {100 * statistics.mean(reductions):6.2f} % {100 * statistics.median(reductions):6.2f} %"
                  f"  {ahead}/{shared}  ({len(cells)} cells)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="kodim01,kodim02,kodim03,kodim04,kodim05,kodim06")
    parser.add_argument("--crop", type=int, default=256, help="centre crop, pixels a side")
    parser.add_argument("--qualities", default="1,2,3,4")
    parser.add_argument("--steps", default="25,50")
    parser.add_argument("--settings", default=None)
    parser.add_argument("--model", default="latentfit-msh")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shard", default="0/1")
    parser.add_argument("--journal", default="small-budgets.jsonl")
    parser.add_argument("--summary", action="store_true", help="only summarise the journal")
    args = parser.parse_args()
    journal = Path(args.journal)
    rows = Journal(journal).records()
    if not args.summary:
        torch.set_num_threads(args.threads)
        shard, shards = map(int, args.shard.split("/"))
        done = {(r["model"], r["image"], r["quality"], r["steps"], r["setting"]) for r in rows}
        jobs = [(q, name, s) for q in map(int, args.qualities.split(",")) for name in args.images.split(",")
                for s in map(int, args.steps.split(","))]
        for index, (quality, name, steps) in enumerate(jobs):
            if index % shards != shard:
                continue
            model = latentfit.load_model(args.model, quality)
            image = center_crop(latentfit.load_image(KODAK / f"{name}.png"), args.crop)
            for setting, options in settings(steps).items():
                if args.settings and setting not in args.settings.split(","):
                    continue
                key = (args.model, name, quality, steps, setting)
                if key in done:
                    continue
                row = {"model": args.model, "image": name, "crop": args.crop, "quality": quality, "steps": steps,
                       "setting": setting, "weights_digest": model.digest.hex(), "encoder": model.encoder,
                       "seed": 0} | run_one(model, image, steps, options)
                Journal(journal).append(row)
                rows.append(row)
                print(f"{name} q{quality} {steps} {setting}: {100 * row['reduction']:.2f} %", flush=True)
    summarise(rows)


if __name__ == "__main__":
    main()
