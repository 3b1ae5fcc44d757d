"""Closed-loop passes (`RefinementConfig.closed_loop`) on validation photos: the true-loss change of the
start they give, against the encoder's own latents, per model, quality, pass count and first step (not
a test). Validation photos only (centre crops of `cid22-valid`), never Kodak or CLIC, the evaluation
sets. `--fixed` measures the variant without backtracking (every pass from the last, the step never
halved, the best pass kept), as first tried.

    python benchmarks/closed_loop.py --models latentfit-msh-warm --passes 4,6,8 --steps 0.05,0.07 [--fixed]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from latentfit import load_model
from latentfit.imageio import pad_to_multiple
from latentfit.models.adapter import Latents
from rounding_offset import validation_arguments, validation_crops  # its sibling in benchmarks/


@torch.no_grad()
def fixed_steps(model, x, passes: int, step: float) -> float:
    """The best true loss of `passes` passes, each from the previous one, at a fixed step."""
    latents = model.analysis(x)
    terms = model.true_rate_distortion(latents, x, model.lmbda)
    best = float(terms.loss)
    for _ in range(passes):
        y = latents.y + step * (latents.y - model.model.g_a(pad_to_multiple(terms.x_hat, model.stride)))
        latents = Latents(y, model.hyper_analysis(y))
        terms = model.true_rate_distortion(latents, x, model.lmbda)
        best = min(best, float(terms.loss))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    validation_arguments(parser, limit=16)
    parser.add_argument("--passes", default="4,6,8")
    parser.add_argument("--steps", default="0.05")
    parser.add_argument("--fixed", action="store_true")
    args = parser.parse_args()
    images = validation_crops(args)
    grid = [(int(p), float(s)) for p in args.passes.split(",") for s in args.steps.split(",")]
    print(f"{len(images)} centre crops {args.crop}² of {args.images}; mean true-loss change against the encoder's "
          f"latents ({'fixed steps' if args.fixed else 'backtracking'})")
    for name in args.models.split(","):
        for quality in (int(q) for q in args.qualities.split(",")):
            model = load_model(name, quality)
            cells = []
            for passes, step in grid:
                changes = []
                for x in images:
                    plain = float(model.true_rate_distortion(model.analysis(x), x, model.lmbda).loss)
                    if args.fixed:
                        loss = fixed_steps(model, x, passes, step)
                    else:
                        loss = float(model.closed_loop_analysis(x, x, model.lmbda, passes, step)[1].loss)
                    changes.append(loss / plain - 1)
                cells.append(f"{passes} x {step:g}: {statistics.mean(changes):+.2%}")
            print(f"{name} q{quality}: " + "; ".join(cells), flush=True)


if __name__ == "__main__":
    main()
