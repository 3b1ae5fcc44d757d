"""`latentfit-ctx`'s architecture: the mean-scale hyperprior's transforms with a checkerboard context.

Minnen et al. 2018's mean-scale hyperprior (`mbt2018-mean`, `latentfit-msh`'s architecture: same
`g_a`, `g_s`, `h_a`, `h_s`, entropy bottleneck) plus He et al. 2021's checkerboard context model,
assembled from CompressAI's `latent_codecs` as its `Cheng2020AnchorCheckerboard` is, so `compress()`
and `decompress()` are CompressAI's own: half of `ŷ` (the anchors, `(i + j)` even) is coded with
entropy parameters from `ẑ` alone, the other half with parameters from `ẑ` and the decoded anchors
(a 5x5 masked convolution), two parallel passes instead of an autoregressive scan.

The entropy-parameter network is residual: `(σ, μ) = h_s(ẑ) + f(h_s(ẑ), ctx)` with `f`'s last layer
initialised to zero, so a model whose transforms are copied from a `latentfit-msh` model starts with
exactly its rates and learns only what the context adds (`from_mean_scale`).
"""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import (
    CheckerboardLatentCodec,
    GaussianConditionalLatentCodec,
    HyperLatentCodec,
    HyperpriorLatentCodec,
)
from compressai.layers import CheckerboardMaskedConv2d
from compressai.models import MeanScaleHyperprior, SimpleVAECompressionModel
from torch import Tensor, nn


class ResidualEntropyParameters(nn.Module):
    """`f(ctx ⊕ params) + params` for the checkerboard codec's merged input `ctx ⊕ params` (1x1
    convolutions only: the pointwise network CompressAI's checkerboard codec requires)."""

    def __init__(self, M: int):
        super().__init__()
        self.side_channels = 2 * M
        self.net = nn.Sequential(
            nn.Conv2d(4 * M, 10 * M // 3, 1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(10 * M // 3, 8 * M // 3, 1),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(8 * M // 3, 2 * M, 1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, merged: Tensor) -> Tensor:
        return merged[:, -self.side_channels:] + self.net(merged)


class MeanScaleCheckerboard(SimpleVAECompressionModel):
    """Mean-scale hyperprior + checkerboard context (`N` hyper channels, `M` latent channels)."""

    def __init__(self, N: int = 128, M: int = 192, **kwargs):
        super().__init__(**kwargs)
        base = MeanScaleHyperprior(N, M)
        self.N, self.M = N, M
        self.g_a, self.g_s = base.g_a, base.g_s
        self.latent_codec = HyperpriorLatentCodec(
            latent_codec={
                "y": CheckerboardLatentCodec(
                    latent_codec={"y": GaussianConditionalLatentCodec(quantizer="ste")},
                    entropy_parameters=ResidualEntropyParameters(M),
                    context_prediction=CheckerboardMaskedConv2d(M, 2 * M, kernel_size=5, stride=1, padding=2),
                ),
                "hyper": HyperLatentCodec(entropy_bottleneck=EntropyBottleneck(N), h_a=base.h_a, h_s=base.h_s,
                                          quantizer="ste"),
            },
        )

    #: Where a `MeanScaleHyperprior`'s modules live in this model.
    MEAN_SCALE_KEYS = {
        "g_a.": "g_a.",
        "g_s.": "g_s.",
        "h_a.": "latent_codec.hyper.h_a.",
        "h_s.": "latent_codec.hyper.h_s.",
        "entropy_bottleneck.": "latent_codec.hyper.entropy_bottleneck.",
        "gaussian_conditional.": "latent_codec.y.y.gaussian_conditional.",
    }

    @classmethod
    def from_mean_scale(cls, state_dict: dict[str, Tensor]) -> "MeanScaleCheckerboard":
        """This architecture with a mean-scale hyperprior's weights and a context that adds nothing yet."""
        N, M = int(state_dict["g_a.0.weight"].size(0)), int(state_dict["g_a.6.weight"].size(0))
        model = cls(N, M)
        mapped = {}
        for key, value in state_dict.items():
            prefix = next(p for p in cls.MEAN_SCALE_KEYS if key.startswith(p))
            mapped[cls.MEAN_SCALE_KEYS[prefix] + key[len(prefix):]] = value
        missing, unexpected = model.load_state_dict(mapped, strict=False)
        if unexpected or any(not k.startswith("latent_codec.y.") for k in missing):
            raise ValueError(f"not a mean-scale hyperprior state dict (missing {missing}, unexpected {unexpected})")
        return model

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, Tensor]) -> "MeanScaleCheckerboard":
        N = int(state_dict["g_a.0.weight"].size(0))
        M = int(state_dict["g_a.6.weight"].size(0))
        model = cls(N, M)
        model.load_state_dict(state_dict)
        return model

    @property
    def entropy_bottleneck(self) -> EntropyBottleneck:
        return self.latent_codec["hyper"].entropy_bottleneck


def context_parameters(model: MeanScaleCheckerboard) -> list[nn.Parameter]:
    """The parameters the context adds to a mean-scale hyperprior (context and entropy-parameter nets)."""
    return list(model.latent_codec["y"].context_prediction.parameters()) + list(
        model.latent_codec["y"].entropy_parameters.parameters())


@torch.no_grad()
def _check() -> None:  # pragma: no cover - a quick manual check
    model = MeanScaleCheckerboard(8, 12).eval()
    model.update(force=True)
    x = torch.rand(1, 3, 64, 64)
    out = model.compress(x)
    print(len(out["strings"]), model.decompress(out["strings"], out["shape"])["x_hat"].shape)
