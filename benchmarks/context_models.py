"""Context models on this CPU: decode time of a 768x512 image for the mean-scale hyperprior
(`latentfit-msh`), the bundled checkerboard context model (`latentfit-ctx`, two parallel passes)
and Minnen et al.'s autoregressive context (`mbt2018`, CompressAI's sequential decode), and the
per-step refinement cost of the first two, measured side by side (medians; issue 29).

The autoregressive model is a random one of the same widths: its decode loop costs the same whatever
the weights (no trained `mbt2018` weights are available offline).

    python benchmarks/context_models.py [--image kodim23] [--repeats 3] [--steps 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from latentfit.shared_data import data_dir

KODAK = data_dir("kodak")


def seconds(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    from compressai.models import JointAutoregressiveHierarchicalPriors

    import latentfit
    from latentfit.imageio import pad_to_multiple

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="kodim23")
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    msh = latentfit.load_model(quality=args.quality)
    ckbd = latentfit.load_model("latentfit-ctx", args.quality)
    image = latentfit.load_image(KODAK / f"{args.image}.png")
    x = pad_to_multiple(image.tensor, 64)
    print(f"{args.image} ({image.width}x{image.height}), {args.threads} thread(s), medians of {args.repeats}")
    print("| model | decode (s) | × latentfit-msh |")
    print("|---|---|---|")
    base = None
    for name, model in [("latentfit-msh (mean-scale hyperprior)", msh), ("latentfit-ctx (checkerboard context)", ckbd)]:
        strings, shapes, checksum = model.compress(model.analysis(x))
        t = seconds(lambda: model.decompress(strings, shapes, checksum), args.repeats)
        base = base or t
        print(f"| {name} | {t:.2f} | {t / base:.2f} |", flush=True)
    torch.manual_seed(0)
    ar = JointAutoregressiveHierarchicalPriors(128, 192).eval()
    ar.update(force=True)
    with torch.no_grad():
        coded = ar.compress(x)
        t = seconds(lambda: ar.decompress(coded["strings"], coded["shape"]), 1)
    print(f"| mbt2018 (autoregressive, CompressAI's decode; N=128, M=192) | {t:.2f} | {t / base:.2f} |", flush=True)

    config = latentfit.RefinementConfig(steps=args.steps, evaluate_every=args.steps, record_trace=False)
    per_step = {"msh": [], "ckbd": []}
    for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
        for key, model in (("msh", msh), ("ckbd", ckbd)):
            result = latentfit.refine_latents(model, image.tensor, config)
            per_step[key].append(result.seconds / args.steps)
    msh_step, ckbd_step = statistics.median(per_step["msh"]), statistics.median(per_step["ckbd"])
    print(f"\nrefinement, {args.steps} steps of sga+ssl (one true-loss evaluation included): latentfit-msh "
          f"{msh_step:.3f} s/step, latentfit-ctx {ckbd_step:.3f} s/step ({ckbd_step / msh_step:.2f}x)")


if __name__ == "__main__":
    main()
