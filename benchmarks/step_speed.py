"""Per-step cost of refinement: the library's loop against the obvious one, side by side (not a test).

The obvious loop: model parameters left trainable (weight gradients computed), the true loss
evaluated every step. The library's loop (`refine_latents`): parameters frozen, true loss every k
steps, a channels-last copy of the decoder for the proxy (also timed with the plain layout, as
time_to_quality.py's reference runs the papers' setting). All run the same proxy (sga+ssl) on the
same image, interleaved in blocks, and the median seconds per step are compared; FLOPs of one
proxy step come from torch's FlopCounterMode.

Usage: python benchmarks/step_speed.py [--image ../shared/data/kodak/kodim23.png] [--crop 256] [--steps 20]
                                        [--blocks 3] [--threads 2] [--peak-gflops 150]
                                        [--device cuda] [--variants bf16,compile,compile+bf16]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import latentfit
from latentfit.imageio import pad_to_multiple
from latentfit.relaxations import get_proxy


def synchronize(x: torch.Tensor) -> None:
    """Per-step times on CUDA need the queued kernels finished."""
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def obvious_loop(model, x, steps: int, lr: float = 5e-3, losses: list[float] | None = None) -> list[float]:
    """The straightforward implementation of the papers' protocol (sga+ssl, its τ schedule, constant
    lr): trainable model, true loss every step (appended to `losses` when given). Returns seconds per step."""
    model.model.requires_grad_(True)
    proxy = get_proxy("sga+ssl")
    schedule = proxy.default_schedule()
    latents = model.analysis(x)
    y = latents.y.detach().clone().requires_grad_(True)
    z = latents.z.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([y, z], lr=lr)
    generator = torch.Generator(device=x.device).manual_seed(0)
    times = []
    for step in range(steps):
        started = time.perf_counter()
        terms = model.rate_distortion(latentfit.Latents(y, z), x, model.lmbda,
                                      lambda v: proxy.relax(v, schedule(step), generator))
        optimizer.zero_grad()
        terms.loss.backward()
        optimizer.step()
        with torch.no_grad():  # the true loss as a user would compute it: all threads, every step
            true = model.rate_distortion(latentfit.Latents(y.detach(), z.detach()), x, model.lmbda, torch.round,
                                         clamp=True)
        if losses is not None:
            losses.append(true.loss.item())
        synchronize(x)
        times.append(time.perf_counter() - started)
    model.model.requires_grad_(False)
    return times


def library_loop(model, x, steps: int, channels_last: bool = True, compile: bool = False,
                 precision: str = "fp32") -> list[float]:
    """`refine_latents` with its defaults, the proxy's decoder copy channels-last (`channels_last=False`:
    the plain layout, as time_to_quality.py's reference runs the papers' setting), optionally compiled
    and/or in bf16. Seconds per step."""
    stamps: list[float] = [time.perf_counter()]
    config = latentfit.RefinementConfig(method="sga+ssl", steps=steps, record_trace=False, channels_last=channels_last,
                                        compile=compile, precision=precision)
    latentfit.refine_latents(model, x, config, progress=lambda *_: (synchronize(x), stamps.append(time.perf_counter())))
    return [b - a for a, b in zip(stamps[1:], stamps[2:])]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", default="../shared/data/kodak/kodim23.png")
    parser.add_argument("--crop", type=int, default=256, help="centre crop side (0: full image)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--peak-gflops", type=float, default=0.0, help="assumed peak, for the fraction reported")
    parser.add_argument("--variants", default="",
                        help="more library variants, comma-separated, each a '+'-joined set of bf16, compile, "
                             "reduce-overhead (torch.compile's CUDA-graph mode), e.g. bf16,compile+bf16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = latentfit.load_model(device=args.device)
    x = latentfit.load_image(args.image).tensor.to(args.device)
    if args.crop:
        top, left = (x.shape[-2] - args.crop) // 2, (x.shape[-1] - args.crop) // 2
        x = x[..., top : top + args.crop, left : left + args.crop].contiguous()
    x = pad_to_multiple(x, model.stride)

    latents = model.analysis(x)
    y = latents.y.clone().requires_grad_(True)
    z = latents.z.clone().requires_grad_(True)
    proxy = get_proxy("sga+ssl")
    with FlopCounterMode(display=False) as counter:
        model.rate_distortion(latentfit.Latents(y, z), x, model.lmbda, lambda v: proxy.relax(v, 1.0)).loss.backward()
    flops = counter.get_total_flops()

    variants = {v: [] for v in args.variants.split(",") if v}
    obvious, library, plain = [], [], []
    for _ in range(args.blocks):
        obvious += obvious_loop(model, x, args.steps)[1:]
        library += library_loop(model, x, args.steps)[1:]
        plain += library_loop(model, x, args.steps, channels_last=False)[1:]
        for variant, times in variants.items():
            try:
                times += variant_loop(model, x, args.steps, variant)[2:]  # compiled: the first calls compile
            except Exception as exc:  # one variant failing (a compiler missing) must not lose the others
                print(f"library loop + {variant}: failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
    t_obvious, t_library, t_plain = statistics.median(obvious), statistics.median(library), statistics.median(plain)
    gflops = flops / t_library / 1e9
    where = torch.cuda.get_device_name(x.device) if x.is_cuda else f"cpu, {args.threads} threads"
    print(f"image {args.image} {x.shape[-1]}x{x.shape[-2]}, {where}, torch {torch.__version__}")
    print(f"obvious loop: {t_obvious * 1000:.1f} ms/step (median of {len(obvious)})")
    print(f"library loop: {t_library * 1000:.1f} ms/step (median of {len(library)})")
    print(f"library loop, plain layout: {t_plain * 1000:.1f} ms/step (median of {len(plain)}); "
          f"obvious / plain {t_obvious / t_plain:.2f}x, plain / library {t_plain / t_library:.2f}x")
    print(f"speed-up: {t_obvious / t_library:.2f}x; one proxy step = {flops / 1e9:.2f} GFLOP -> {gflops:.1f} GFLOP/s"
          + (f" ({100 * gflops / args.peak_gflops:.0f}% of an assumed {args.peak_gflops:.0f} GFLOP/s peak)"
             if args.peak_gflops else ""), flush=True)
    for variant, times in variants.items():
        if not times:
            continue
        t = statistics.median(times)
        print(f"library loop + {variant}: {t * 1000:.1f} ms/step (median of {len(times)}); "
              f"obvious / this {t_obvious / t:.2f}x, library / this {t_library / t:.2f}x", flush=True)


def variant_loop(model, x, steps: int, variant: str) -> list[float]:
    """`library_loop` with the options `variant` names ('+'-joined: bf16, compile, reduce-overhead)."""
    parts = set(variant.split("+"))
    unknown = parts - {"bf16", "compile", "reduce-overhead"}
    if unknown:
        raise SystemExit(f"unknown variant part(s) {sorted(unknown)} in {variant!r}")
    if "reduce-overhead" not in parts:
        return library_loop(model, x, steps, compile="compile" in parts, precision="bf16" if "bf16" in parts else "fp32")
    original, views = torch.compile, model._proxy_views
    torch.compile = functools.partial(original, mode="reduce-overhead")  # the library's compile, CUDA graphs on
    model._proxy_views = model.__dict__.setdefault("_reduce_overhead_views", {})  # not the default mode's views
    try:
        return library_loop(model, x, steps, compile=True, precision="bf16" if "bf16" in parts else "fp32")
    finally:
        torch.compile, model._proxy_views = original, views


if __name__ == "__main__":
    main()
