"""Distilling refined latents into the encoder, measured and not kept (#31's warm start; not a test).

Two parts. `targets`: refine random 128² patches of the training photos (`sga+ssl`, latentfit's defaults,
batches of 16 refined together) and store them with their refined `(y, z)`. `train`: fine-tune `g_a`,
`h_a` of a model towards those latents (decoder and entropy models frozen): `mse` regresses the refined
latents, `hinge` pulls each latent into the rounding bin of the refined symbol (`μ* + q*`, with a
margin); Adam with a linear warm-up over the first epoch and cosine decay. Prints the true loss of 16
centre crops 256² of `cid22-valid` after each epoch.

    python benchmarks/warm_distill.py targets --quality 2 --steps 50 --batches 64 -o targets-q2.pt
    python benchmarks/warm_distill.py train targets-q2.pt --init latentfit-msh --loss hinge --lr 1e-4 --epochs 8
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from latentfit import load_model
from latentfit.config import RefinementConfig
from latentfit.models.weights import encoder_prefixes
from latentfit.refine import refine_latents
from latentfit.training import ImageBank, center_crops

TRAIN = ["../shared/data/train/cid22-train", "../shared/data/train/bsds500"]
VALID = "../shared/data/train/cid22-valid"


def targets(args) -> None:
    model = load_model("latentfit-msh", args.quality)
    bank = ImageBank(TRAIN, 128)
    generator = torch.Generator().manual_seed(args.seed)
    xs, ys, zs = [], [], []
    for batch in range(args.batches):
        x = bank.sample(16, 128, generator)
        result = refine_latents(model, x, RefinementConfig(steps=args.steps, tile=None, record_trace=False))
        xs.append((x * 255).round().to(torch.uint8))
        ys.append(result.latents.y.half())
        zs.append(result.latents.z.half())
        print(f"{batch}: {result.initial.loss:.4f} -> {result.final.loss:.4f}", flush=True)
        torch.save({"x": torch.cat(xs), "y": torch.cat(ys), "z": torch.cat(zs), "quality": args.quality,
                    "steps": args.steps, "seed": args.seed}, args.output)


def train(args) -> None:
    model = load_model(args.init, args.quality)
    net = model.model
    data = torch.load(args.targets, weights_only=True)
    x_all, y_all, z_all = data["x"], data["y"].float(), data["z"].float()
    if args.limit:
        x_all, y_all, z_all = x_all[: args.limit], y_all[: args.limit], z_all[: args.limit]
    with torch.no_grad():  # the refined symbols' bin centres, for the hinge loss
        medians = net.entropy_bottleneck._get_medians()
        z_bins = torch.round(z_all - medians) + medians
        _, means = net.h_s(z_bins).chunk(2, 1)
        y_bins = torch.round(y_all - means) + means
    valid = center_crops(VALID, 16, 256)

    def validate() -> float:
        with torch.no_grad():
            return sum(float(model.true_rate_distortion(model.analysis(v), v, model.lmbda).loss) * len(v)
                       for v in valid.split(4)) / len(valid)

    parameters = [p for n, p in net.named_parameters() if n.startswith(encoder_prefixes(net))]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(parameters, lr=args.lr)
    base = validate()
    print(f"{args.init} q{args.quality}: validation true loss {base:.4f}", flush=True)
    per_epoch = len(x_all) // args.batch
    total, step, started = args.epochs * per_epoch, 0, time.time()
    for epoch in range(args.epochs):
        order = torch.randperm(len(x_all))
        for i in range(per_epoch):
            index = order[i * args.batch: (i + 1) * args.batch]
            warm = min(1.0, (step + 1) / per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = args.lr * warm * 0.5 * (1 + math.cos(math.pi * step / total))
            y = net.g_a(x_all[index].float() / 255)
            z = net.h_a(y)
            if args.loss == "mse":
                loss = ((y - y_all[index]) ** 2).mean() + ((z - z_all[index]) ** 2).mean()
            else:
                def hinge(value, centre):
                    return torch.relu((value - centre).abs() - 0.5 + args.margin).pow(2).mean()
                loss = hinge(y, y_bins[index]) + hinge(z, z_bins[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        loss_now = validate()
        print(f"epoch {epoch + 1}: validation {loss_now:.4f} ({loss_now / base - 1:+.2%}), {time.time() - started:.0f} s",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_subparsers(dest="part", required=True)
    make = parts.add_parser("targets")
    make.add_argument("--quality", type=int, default=2)
    make.add_argument("--steps", type=int, default=50)
    make.add_argument("--batches", type=int, default=64)
    make.add_argument("--seed", type=int, default=1)
    make.add_argument("-o", "--output", required=True)
    fit = parts.add_parser("train")
    fit.add_argument("targets")
    fit.add_argument("--init", default="latentfit-msh")
    fit.add_argument("--quality", type=int, default=2)
    fit.add_argument("--loss", choices=["mse", "hinge"], default="hinge")
    fit.add_argument("--margin", type=float, default=0.1)
    fit.add_argument("--lr", type=float, default=1e-4)
    fit.add_argument("--epochs", type=int, default=8)
    fit.add_argument("--batch", type=int, default=16)
    fit.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    (targets if args.part == "targets" else train)(args)


if __name__ == "__main__":
    main()
