"""What a refinement step costs with a decoder update (`--adapt`) against latents alone, side by side.

For one image (default kodim23, 768x512) and the bundled model, builds the refinement problem of
latentfit's default encode without an update and with each form, and times their proxy steps
(forward, backward, Adam) interleaved: rounds of `--steps` steps of each in turn, `--repeats`
rounds, the median seconds per step of each and its ratio to latents alone. Timings on a shared CPU
are noisy: only the ratios measured in one run mean something.

Usage: python benchmarks/decoder_update.py [--image PATH] [--quality 2] [--steps 10] [--repeats 5]
       [--forms decoder,postfilter] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from latentfit import load_image, load_model
from latentfit.config import RefinementConfig
from latentfit.imageio import pad_to_multiple
from latentfit.refine import WholeImage, analyse
from latentfit.shared_data import data_dir


def step_seconds(problem: WholeImage, config: RefinementConfig, steps: int, generator: torch.Generator) -> float:
    """Median seconds of `steps` proxy steps of `problem` (Adam state kept between calls)."""
    proxy, optimiser = config.proxy(), problem.optimiser
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        loss = problem.proxy_loss(lambda v: proxy.relax(v, 0.5, generator))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", default=str(data_dir("kodak") / "kodim23.png"))
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--forms", default="decoder,postfilter")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("latentfit-msh", args.quality)
    x = load_image(args.image).tensor
    begin = analyse(model, x, pad_to_multiple(x, model.stride), model.lmbda)
    problems = {}
    for adapt in ["none", *args.forms.split(",")]:
        config = RefinementConfig(adapt=adapt)
        problem = WholeImage(model, x, begin.latents, model.lmbda, config)
        problem.optimiser = torch.optim.Adam(problem.variables, lr=config.learning_rate())
        problems[adapt] = (problem, config, torch.Generator().manual_seed(0))
    for problem, config, generator in problems.values():
        step_seconds(problem, config, 2, generator)  # warm-up: allocation, Adam's state
    seconds: dict[str, list[float]] = {adapt: [] for adapt in problems}
    for _ in range(args.repeats):
        for adapt, (problem, config, generator) in problems.items():
            seconds[adapt].append(step_seconds(problem, config, args.steps, generator))
    base = statistics.median(seconds["none"])
    print(f"{args.image} ({x.shape[-1]}x{x.shape[-2]}), latentfit-msh q{args.quality}, {args.threads} thread(s), "
          f"{args.repeats} rounds of {args.steps} steps, precision {RefinementConfig().precision}")
    print("| adapt | values | s/step (median) | vs latents alone |")
    print("|---|---|---|---|")
    for adapt, values in seconds.items():
        problem = problems[adapt][0]
        count = problem.variables[-1].numel() if problem.form is not None else 0
        print(f"| {adapt} | {count} | {statistics.median(values):.3f} | {statistics.median(values) / base:.2f}x |")


if __name__ == "__main__":
    main()
