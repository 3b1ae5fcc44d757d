"""Refine an architecture of your own: a model class plus its parts.

latentfit refines any CompressAI-style model once it knows the model's *architecture*: which part
models the side information `z` (a `HyperPart`, or none) and which part models `y` (a `LatentPart`:
`GaussianY`, `CheckerboardY`, `AutoregressiveY`, `ChannelGroupsY`, `FactorizedY`, or your own).
Here a user's mean-scale hyperprior whose transforms use ReLU instead of GDN (the same strides, so
the hyperprior's parts and tiling reach fit it unchanged) becomes refinable in one class:

    python examples/own_architecture.py [IMAGE] [--steps 20]

It builds the model (random weights here: train it with `latentfit train --architecture
relu-mean-scale`, since registering makes the name known to training too), refines an image's latents,
writes the file and decodes it again.
"""

from __future__ import annotations

import argparse

import torch
from compressai.models import MeanScaleHyperprior
from torch import nn

import latentfit
from latentfit.models.adapter import LatentModel
from latentfit.models.architectures import Architecture, register_architecture
from latentfit.models.architectures.hyperprior import HYPERPRIOR_REACH, GaussianY
from latentfit.models.architectures.parts import HyperPart


class ReluMeanScale(MeanScaleHyperprior):
    """A mean-scale hyperprior whose analysis and synthesis transforms use ReLU instead of (I)GDN."""

    def __init__(self, N: int = 128, M: int = 192, **kwargs):
        super().__init__(N, M, **kwargs)
        for transform in (self.g_a, self.g_s):
            for index, layer in enumerate(transform):
                if not isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                    transform[index] = nn.ReLU()


@register_architecture
class ReluMeanScaleArchitecture(Architecture):
    name = "relu-mean-scale"
    model_class = ReluMeanScale
    hyper = HyperPart()  # z = h_a(y) at the model's top level, under its entropy bottleneck
    latent = GaussianY(mean_scale=True)  # (σ, μ) = h_s(ẑ)
    tiling = HYPERPRIOR_REACH  # no spatial context: big images may be refined tile by tile

    def matches(self, state_dict: dict) -> bool:  # checkpoints without a model card: no GDN parameters
        return "h_s.0.weight" in state_dict and "g_a.0.weight" in state_dict and "g_a.1.beta" not in state_dict


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", nargs="?", default="../shared/data/kodak/kodim23.png")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--widths", type=int, nargs=2, default=(64, 96))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    network = ReluMeanScale(*args.widths).eval()
    network.update(force=True)  # the entropy coders' tables
    model = LatentModel(network, "relu-mean-scale", quality=1, lmbda=0.0130)
    image = latentfit.imageio.center_crop(latentfit.load_image(args.image), (args.crop, args.crop))
    result = latentfit.encode(image, model, latentfit.RefinementConfig(steps=args.steps, seed=0))
    decoded = latentfit.decode(result.data, model)
    stats = {key: result.stats[key] for key in ("bytes", "psnr", "true_loss_initial", "true_loss_final")}
    print(f"{model.architecture}: {stats}, decodes to the same pixels: {bool((decoded == result.decoded).all())}")
    return stats | {"decodes": bool((decoded == result.decoded).all())}


if __name__ == "__main__":
    main()
