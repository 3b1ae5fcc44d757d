"""Time to quality: how fast do budget-aware settings reach the papers' final true loss? (not a test)

Reference: `sga+ssl` with the papers' setting (lr 5e-3, 2000 steps, τ_max 1, rate 1e-3, plain
memory layout). For every image the reference's best true loss `L_ref` and wall time `T_ref` are
recorded; each candidate setting then reports the first wall time at which its true loss is
<= `L_ref` (the trace is evaluated every 10 steps), as a fraction of `T_ref`. The issue's target is
a mean fraction <= 0.25 with every image reaching `L_ref`.

`reference-obvious` runs the same protocol the straightforward way (`step_speed.obvious_loop`:
trainable model, true loss every step, plain layout): the wall time a user of the papers' setting
waits without latentfit. With it journalled for an image, the summary also reports each candidate's
time to `L_ref` (the library reference's loss: the quality target stays the same) as a fraction of
that wall time, `T_obvious`.

Runs are journalled to `--journal` (one JSON line per (image, setting)), so an interrupted run
resumes and candidates can be added later without recomputing the reference.

Usage: python benchmarks/time_to_quality.py [--images kodim01,kodim05,...] [--crop 256] [--threads 1]
                                            [--candidates fast500,...] [--journal ttq.jsonl]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import torch

import latentfit
from latentfit.evaluation.journal import Journal
from latentfit import RefinementConfig, TemperatureSchedule
from latentfit.imageio import center_crop
from latentfit.shared_data import data_dir
from step_speed import obvious_loop

KODAK = data_dir("kodak")


#: The papers' protocol for SGA+: lr 5e-3 constant, τ = exp(−1e-3·t) from τ_max 1. Spelled out, since
#: RefinementConfig's own defaults are latentfit's budget-aware ones (until this was spelled out, from
#: 2026-11-24 08:35 to the next night, "reference" and "papers500" silently ran with those).
PAPERS = dict(method="sga+ssl", lr=5e-3, lr_schedule="constant", schedule="papers")


def settings() -> dict[str, dict]:
    """Named settings; each is RefinementConfig keyword arguments."""
    budget = lambda steps, lr, tau_end=0.05, tau_start=1.0, floor=0.1: dict(  # noqa: E731
        method="sga+ssl", steps=steps, lr=lr, lr_schedule="cosine", lr_final_fraction=floor,
        schedule=TemperatureSchedule.for_budget(steps, tau_start, tau_end))
    return {
        "reference": PAPERS | dict(steps=2000, channels_last=False),
        # The same protocol in the obvious loop (`run_one` dispatches on the name).
        "reference-obvious": PAPERS | dict(steps=2000, channels_last=False),
        "papers500": PAPERS | dict(steps=500),
        "default": dict(),  # what `encode` does: RefinementConfig's defaults
        "budget500-lr5e-3": budget(500, 5e-3),
        "budget500-lr1e-2": budget(500, 1e-2),
        "budget500-lr2e-2": budget(500, 2e-2),
        "budget300-lr2e-2": budget(300, 2e-2),
        "budget400-lr1.5e-2": budget(400, 1.5e-2),
        "budget600-lr2e-2": budget(600, 2e-2),
        "budget600-lr3e-2": budget(600, 3e-2),
        "budget600-lr3e-2-eval25": budget(600, 3e-2) | dict(evaluate_every=25),
        "budget1000-lr3e-2": budget(1000, 3e-2),
        "budget600-lr3e-2-tau0.2": budget(600, 3e-2, 0.2),
        "budget600-lr3e-2-tau0.02": budget(600, 3e-2, 0.02),
        "budget800-lr3e-2-eval50-compiled": budget(800, 3e-2) | dict(evaluate_every=50, compile=True),
        "budget600-lr3e-2-tau0.3": budget(600, 3e-2, 0.3),
        "budget600-lr4e-2-tau0.2": budget(600, 4e-2, 0.2),
        "budget700-lr3e-2-tau0.2-eval25": budget(700, 3e-2, 0.2) | dict(evaluate_every=25),
        "budget700-lr3e-2-tau0.2-eval25-compiled": budget(700, 3e-2, 0.2) | dict(evaluate_every=25, compile=True),
        "budget800-lr3e-2-tau0.2-compiled": budget(800, 3e-2, 0.2) | dict(compile=True),
        "budget900-lr3e-2-tau0.2-eval25-compiled": budget(900, 3e-2, 0.2) | dict(evaluate_every=25, compile=True),
        "budget500-lr3e-2-tau0.1": budget(500, 3e-2, 0.1),
        "budget800-lr3e-2-tau0.2": budget(800, 3e-2, 0.2),
        "budget1000-lr3e-2-tau0.2": budget(1000, 3e-2, 0.2),
        # τ from 1.5 (above the papers' τ_max 1) and cosine lr down to 0.01·lr (2026-11-25 defaults).
        **{f"budget{steps}-lr3e-2-tau1.5-0.2-floor0.01": budget(steps, 3e-2, 0.2, tau_start=1.5, floor=0.01)
           for steps in (800, 1000, 1200)},
    }


def configure(options: dict) -> RefinementConfig:
    return RefinementConfig(**({"seed": 0} | options))


def describe(name: str, options: dict) -> str:
    """The full configuration a setting runs with (defaults included, and which loop runs it), so
    that a journal entry is reused only for the very same configuration."""
    loop = "obvious loop: " if name.endswith("-obvious") else ""
    config = configure(options)
    fields, constants = dataclasses.asdict(config), config.constants()
    if constants.get("lr_final_fraction", 0.1) == 0.1:
        del fields["lr_final_fraction"]  # irrelevant, or the value before it was a setting: older runs stay valid
    if "budget_tau" in constants:  # what "budget" means is the library's constants, which have changed
        fields["schedule"] = "budget τ {} -> {} (x τ_max)".format(*constants["budget_tau"])
    return loop + repr(sorted((k, repr(v)) for k, v in fields.items()))


def run_obvious(model, x: torch.Tensor, steps: int, evaluate_every: int = 10) -> tuple[float, float, list]:
    """The papers' protocol in `step_speed.obvious_loop`: (seconds, best true loss, trace every
    `evaluate_every` steps of (step, seconds so far, best true loss so far))."""
    losses: list[float] = []
    times = obvious_loop(model, x, steps, lr=PAPERS["lr"], losses=losses)
    trace, elapsed, best = [], 0.0, float("inf")
    for step, (seconds, loss) in enumerate(zip(times, losses), start=1):
        elapsed, best = elapsed + seconds, min(best, loss)
        if step % evaluate_every == 0 or step == steps:
            trace.append((step, elapsed, best))
    return elapsed, best, trace


def run_one(model, image: str, crop: int, name: str, options: dict) -> dict:
    x = center_crop(latentfit.load_image(str(KODAK / f"{image}.png")), crop or None).tensor.to(model.device)
    record = {"image": image, "crop": crop, "setting": name, "config": describe(name, options),
              "model": model.digest.hex()}
    if name.endswith("-obvious"):
        initial = model.true_rate_distortion(model.analysis(x), x, model.lmbda).loss.item()
        seconds, final, trace = run_obvious(model, x, options["steps"])
        return record | {"seconds": seconds, "initial": initial, "final": final, "trace": trace}
    result = latentfit.refine_latents(model, x, configure(options))
    return record | {"seconds": result.seconds, "initial": result.initial.loss, "final": result.final.loss,
                     "trace": [(r.step, r.seconds, r.true_loss) for r in result.trace]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", default="kodim01,kodim03,kodim05,kodim07,kodim12,kodim15,kodim20,kodim23")
    parser.add_argument("--crop", type=int, default=256, help="centre crop side (0: full image)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--candidates", default="papers500,budget500-lr1e-2,budget300-lr2e-2")
    parser.add_argument("--journal", default="time_to_quality.jsonl")
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (use a separate journal per device)")
    parser.add_argument("--summary-only", action="store_true", help="only summarise what the journal holds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = latentfit.load_model(quality=args.quality, device=args.device)
    table = settings()
    names = list(dict.fromkeys(["reference"] + [c for c in args.candidates.split(",") if c]))
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown setting(s) {unknown}; known: {sorted(table)}")

    journal = Path(args.journal)
    done: dict[tuple, dict] = {}
    other_models = other_configs = 0
    for record in Journal(journal).records():  # runs of other weights (or with no digest recorded) are never mixed in
        if record.get("model") != model.digest.hex():
            other_models += 1
            continue
        if record.get("setting") not in table or record.get("config") != describe(record["setting"], table[record["setting"]]):
            other_configs += 1
            continue
        done[(record["image"], record["crop"], record["setting"])] = record
    if other_models:
        print(f"{journal}: ignoring {other_models} run(s) made with other model weights")
    if other_configs:
        print(f"{journal}: ignoring {other_configs} run(s) whose setting now means another configuration")
    for image in args.images.split(","):
        for name in names:
            key = (image, args.crop, name)
            if key not in done and args.summary_only:
                continue
            if key not in done:
                done[key] = run_one(model, image, args.crop, name, table[name])
                Journal(journal).append(done[key])
            print(f"{image} {name}: {done[key]['seconds']:.1f} s, loss {done[key]['initial']:.4f} -> "
                  f"{done[key]['final']:.4f}", flush=True)

    where = torch.cuda.get_device_name() if args.device == "cuda" else f"{args.threads} thread(s)"
    print(f"\ncrop {args.crop}, {where}, quality {args.quality}, torch {torch.__version__}")
    print("Time to reach L_ref as a fraction of the reference's wall time (an image that never reaches it counts "
          "its whole run); steps to reach it / 2000 (free of timing noise).")
    print("Share of gain: (L0 - L_final) / (L0 - L_ref). Reference's equal: the step (and fraction of T_ref) at "
          "which the reference's own trace first gets as low as the setting's final loss: its speed-up to that quality.")
    print("T_obvious: the wall time of `reference-obvious` (the same protocol in the obvious loop), where journalled; "
          "'at equal per-step cost': steps to reach L_ref times the reference's seconds per step, over T_obvious "
          "(free of the speed differences between runs made at different times).")
    obvious = {image: done[(image, args.crop, "reference-obvious")] for image in args.images.split(",")
               if (image, args.crop, "reference-obvious") in done}
    for image, run in obvious.items():
        ref = done[(image, args.crop, "reference")]
        print(f"{image}: T_obvious {run['seconds']:.0f} s = {run['seconds'] / ref['seconds']:.2f} T_ref; its best "
              f"true loss {run['final']:.5f} (library reference {ref['final']:.5f})")
    print("| setting | images reaching L_ref | mean time / T_ref | median | mean steps / 2000 | "
          "mean final - L_ref | share of gain (min-max) | reference's equal: step (fraction of T_ref) | "
          "mean time / T_obvious (images) | the same at equal per-step cost |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names[1:]:
        if name.endswith("-obvious"):
            continue
        fractions, step_fractions, gaps, shares, equal_steps, equal_fractions, reached = [], [], [], [], [], [], 0
        obvious_fractions, equal_cost_fractions = [], []
        for image in args.images.split(","):
            if (image, args.crop, name) not in done:
                continue
            ref, run = done[(image, args.crop, "reference")], done[(image, args.crop, name)]
            hit = next(((step, seconds) for step, seconds, loss in run["trace"] if loss <= ref["final"]), None)
            reached += hit is not None
            step, seconds = hit if hit is not None else run["trace"][-1][:2]
            fractions.append(seconds / ref["seconds"])
            if image in obvious:
                obvious_fractions.append(seconds / obvious[image]["seconds"])
                per_step = ref["seconds"] / ref["trace"][-1][0]
                equal_cost_fractions.append(step * per_step / obvious[image]["seconds"])
            step_fractions.append(step / ref["trace"][-1][0])
            gaps.append(run["final"] - ref["final"])
            shares.append((run["initial"] - run["final"]) / (ref["initial"] - ref["final"]))
            equal = next((step, seconds) for step, seconds, loss in ref["trace"] if loss <= run["final"] or
                         step == ref["trace"][-1][0])
            equal_steps.append(equal[0])
            equal_fractions.append(equal[1] / ref["seconds"])
        if not fractions:
            continue
        print(f"| {name} | {reached}/{len(fractions)} | {statistics.mean(fractions):.3f} | "
              f"{statistics.median(fractions):.3f} | {statistics.mean(step_fractions):.3f} | "
              f"{statistics.mean(gaps):+.4f} | {min(shares):.1%}-{max(shares):.1%} | "
              f"{min(equal_steps)}-{max(equal_steps)} ({min(equal_fractions):.2f}-{max(equal_fractions):.2f}) | "
              + (f"{statistics.mean(obvious_fractions):.3f} ({len(obvious_fractions)}) | "
                 f"{statistics.mean(equal_cost_fractions):.3f} |" if obvious_fractions else "— | — |"))

if __name__ == "__main__":
    main()
