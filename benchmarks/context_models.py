"""Context models on this CPU: decode time of a 768x512 image for the mean-scale hyperprior
(`latentfit-msh`), the bundled checkerboard context model (`latentfit-ctx`, two parallel passes),
ELIC's channel groups (`elic2022-official`, `elic2022-chandelier`: five groups, two passes each) and
Minnen et al.'s autoregressive context (`mbt2018`, CompressAI's sequential decode), and the per-step
refinement cost of all but the last, measured side by side (medians; issues 29 and 44).

The autoregressive and ELIC models are random ones of their published widths (mbt2018 N=128, M=192;
ELIC N=192, M=320): decode loops and steps cost the same whatever the weights (no trained weights of
these are available offline). Files are latentfit's (format 2); refinement is the default encode's
proxy (`sga+ssl`, `precision auto`).

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
    from latentfit.models.adapter import LatentModel
    from latentfit.models.architectures import build_architecture

    msh = latentfit.load_model(quality=args.quality)
    ckbd = latentfit.load_model("latentfit-ctx", args.quality)
    torch.manual_seed(0)
    elic = {}
    for name in ("elic2022-official", "elic2022-chandelier"):
        net = build_architecture(name, 192, 320).eval()
        net.update(force=True)
        elic[name] = LatentModel(net, name, 1, msh.lmbda)
    image = latentfit.load_image(KODAK / f"{args.image}.png")
    x = pad_to_multiple(image.tensor, 64)
    print(f"{args.image} ({image.width}x{image.height}), {args.threads} thread(s), medians of {args.repeats}")
    print("| model | decode (s) | × latentfit-msh |")
    print("|---|---|---|")
    base = None
    for name, model in [("latentfit-msh (mean-scale hyperprior)", msh), ("latentfit-ctx (checkerboard context)", ckbd),
                        *((f"{n} (channel groups; N=192, M=320)", m) for n, m in elic.items())]:
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
    models = {"latentfit-msh": msh, "latentfit-ctx": ckbd} | elic
    per_step = {key: [] for key in models}
    for _ in range(args.repeats):  # interleaved, so load on the machine hits all alike
        for key, model in models.items():
            result = latentfit.refine_latents(model, image.tensor, config)
            per_step[key].append(result.seconds / args.steps)
    print(f"\nrefinement, {args.steps} steps of sga+ssl (one true-loss evaluation included):")
    print("| model | s/step | × latentfit-msh |")
    print("|---|---|---|")
    base = statistics.median(per_step["latentfit-msh"])
    for key, times in per_step.items():
        print(f"| {key} | {statistics.median(times):.3f} | {statistics.median(times) / base:.2f} |", flush=True)


if __name__ == "__main__":
    main()
