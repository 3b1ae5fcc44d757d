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

from .. import entropy
from .base import Architecture, Relaxation, check_indexes, register_architecture


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
            prefix = next((p for p in cls.MEAN_SCALE_KEYS if key.startswith(p)), None)
            mapped[key if prefix is None else cls.MEAN_SCALE_KEYS[prefix] + key[len(prefix):]] = value
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


@register_architecture
class Checkerboard(Architecture):
    """`mbt2018-mean-checkerboard`: entropy parameters of the anchors from `ẑ`, of the non-anchors
    from `ẑ` and the anchors' `ŷ`.

    The rate of given latents runs both passes in parallel form: `ỹ_a = μ_a + relax(y − μ_a)` at
    the anchors, the context from those `ỹ_a`, then `ỹ_n = μ_n + relax(y − μ_n)` at the others; so
    the proxy relaxes the anchors the context sees, gradients flow through the context into the
    anchors, and with `relax=torch.round` it is the two-pass decode itself. Entropy coding mirrors
    CompressAI's `CheckerboardLatentCodec.compress` (three strings: anchors, non-anchors, `z`); format 2
    runs the whole path that picks scale indexes (`h_s`, the context, the entropy parameters) in float64.
    """

    name = "mbt2018-mean-checkerboard"
    model_class = MeanScaleCheckerboard
    coding_modules = ("latent_codec",)
    #: Tiling's reach constants are derived for models without spatial context.
    tileable = False
    string_count = 3

    def matches(self, state_dict: dict) -> bool:
        return "latent_codec.y.context_prediction.weight" in state_dict and "latent_codec.hyper.h_s.0.weight" in state_dict

    def entropy_bottleneck(self, model: nn.Module) -> nn.Module:
        return model.latent_codec["hyper"].entropy_bottleneck

    def hyper_analysis(self, model: nn.Module, y: Tensor) -> Tensor:
        return model.latent_codec["hyper"].h_a(y)

    def side_parameters(self, model: nn.Module, z_tilde: Tensor) -> tuple[Tensor, Tensor | None]:
        """The anchors' `(σ, μ)` (no context), as the first pass computes them."""
        return self._anchor_parameters(model.latent_codec["y"], model.latent_codec["hyper"].h_s(z_tilde))

    @staticmethod
    def _anchor_parameters(codec: CheckerboardLatentCodec, side: Tensor) -> tuple[Tensor, Tensor]:
        """`(σ, μ)` of the first pass: from the side parameters `h_s(ẑ)` and an empty context."""
        return codec.entropy_parameters(codec.merge(torch.zeros_like(side), side)).chunk(2, 1)

    @staticmethod
    def _anchors(codec: CheckerboardLatentCodec, like: Tensor) -> Tensor:
        return codec._keep_only(torch.ones_like(like[:, :1]), "anchor").bool()

    def rate(self, model: nn.Module, y: Tensor, z: Tensor | None, relax: Relaxation) -> tuple[Tensor, Tensor]:
        hyper, codec = model.latent_codec["hyper"], model.latent_codec["y"]
        medians = entropy.bottleneck_medians(hyper.entropy_bottleneck)
        z_tilde = medians + relax(z - medians)
        side = hyper.h_s(z_tilde)
        scales_a, means_a = self._anchor_parameters(codec, side)
        y_anchor = means_a + relax(y - means_a)
        context = codec.context_prediction(codec._keep_only(y_anchor, "anchor"))
        scales_n, means_n = codec.entropy_parameters(codec.merge(context, side)).chunk(2, 1)
        y_other = means_n + relax(y - means_n)
        anchors = self._anchors(codec, y)
        scales, means = torch.where(anchors, scales_a, scales_n), torch.where(anchors, means_a, means_n)
        y_tilde = torch.where(anchors, y_anchor, y_other)
        conditional = codec.latent_codec["y"].gaussian_conditional
        bits = entropy.gaussian_bits(conditional, y_tilde, scales, means)
        return bits + entropy.bottleneck_bits(hyper.entropy_bottleneck, z_tilde), y_tilde

    def _passes(self, coder: nn.Module, z_hat: Tensor, format_version: int, y: Tensor | None = None,
                strings: list[bytes] | None = None) -> tuple[list[bytes], list[Tensor], Tensor]:
        """Both passes of CompressAI's `CheckerboardLatentCodec.compress` (with `y`) or `.decompress`
        (with `strings`): the strings, each pass's scale indexes, and `ŷ`."""
        codec = entropy.for_indexes(coder.latent_codec["y"], format_version)
        h_s = entropy.for_indexes(coder.latent_codec["hyper"].h_s, format_version)
        conditional = codec.latent_codec["y"].gaussian_conditional
        side = h_s(z_hat.to(next(h_s.parameters()).dtype))
        n, _, h, w = side.shape
        y_hat_ = side.new_zeros((2, n, side.shape[1] // 2, h, w // 2))
        side_ = codec.unembed(side)
        y_ = None if y is None else codec.unembed(y.to(side.dtype))
        written, indexes = [], []
        for i in range(2):
            context = codec.unembed(codec.context_prediction(codec.embed(y_hat_)))[i]
            if i == 0:
                context = codec._mask_all(context)
            scales, means = codec.latent_codec["y"]._chunk(codec.entropy_parameters(codec.merge(context, side_[i])))
            index = conditional.build_indexes(scales)
            coded = conditional.compress(y_[i], index, means) if y_ is not None else [strings[i]]
            y_hat_[i] = conditional.decompress(coded, index, means=means)
            written.append(coded[0])
            indexes.append(index)
        return written, indexes, codec.embed(y_hat_).float()

    def compress(self, coder: nn.Module, y: Tensor, z: Tensor | None, format_version: int) -> tuple[list[bytes], int]:
        bottleneck = coder.latent_codec["hyper"].entropy_bottleneck
        z_strings = bottleneck.compress(z)
        z_hat = bottleneck.decompress(z_strings, z.shape[-2:])
        y_strings, indexes, _ = self._passes(coder, z_hat, format_version, y=y)
        return [*y_strings, z_strings[0]], entropy.index_checksum(indexes)

    def decompress(self, coder: nn.Module, strings: list[bytes], shapes: list[tuple[int, int]],
                   format_version: int, index_checksum: int | None) -> Tensor:
        z_hat = coder.latent_codec["hyper"].entropy_bottleneck.decompress([strings[2]], shapes[1])
        _, indexes, y_hat = self._passes(coder, z_hat, format_version, strings=strings[:2])
        check_indexes(index_checksum, entropy.index_checksum(indexes))
        return y_hat
