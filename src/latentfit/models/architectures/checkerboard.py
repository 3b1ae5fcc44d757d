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

import dataclasses

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
from .base import Architecture, check_indexes, register_architecture
from .hyperprior import HYPERPRIOR_REACH
from .parts import Decoded, HyperPart, LatentPart, Relaxation


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


class CheckerboardY(LatentPart):
    """`y` under a checkerboard context (He et al. 2021) over the side parameters, as CompressAI's
    `CheckerboardLatentCodec` at `path` in the model: the anchors' `(σ, μ)` from the side parameters
    and an empty context, the others' from the side parameters and the anchors' `ŷ`.

    The rate of given latents runs both passes in parallel form: `ỹ_a = μ_a + relax(y − μ_a)` at
    the anchors, the context from those `ỹ_a`, then `ỹ_n = μ_n + relax(y − μ_n)` at the others; so
    the proxy relaxes the anchors the context sees, gradients flow through the context into the
    anchors, and with `relax=torch.round` it is the two-pass decode itself. Entropy coding mirrors
    the codec's `compress` (two strings: anchors, non-anchors); format 2 runs the whole path that
    picks scale indexes (`h_s`, the context, the entropy parameters) in float64.
    """

    string_count = 2

    def __init__(self, path: str = "latent_codec.y"):
        self.path = path

    def codec(self, model: nn.Module) -> CheckerboardLatentCodec:
        return model.get_submodule(self.path)

    @staticmethod
    def anchor_parameters(codec: CheckerboardLatentCodec, side: Tensor) -> tuple[Tensor, Tensor]:
        """`(σ, μ)` of the first pass: from the side parameters and an empty context."""
        n, _, h, w = side.shape
        empty = side.new_zeros((n, codec.context_prediction.out_channels, h, w))
        return codec.latent_codec["y"]._chunk(codec.entropy_parameters(codec.merge(empty, side)))

    def first_parameters(self, model: nn.Module, side: Tensor) -> tuple[Tensor, Tensor | None]:
        """The anchors' `(σ, μ)` (no context), as the first pass computes them."""
        return self.anchor_parameters(self.codec(model), side)

    @staticmethod
    def group_decoded(codec: CheckerboardLatentCodec, y: Tensor, side: Tensor, relax: Relaxation) -> Decoded:
        """`ỹ` and `(σ, μ)` of `y` under the checkerboard `codec` given its side parameters."""
        scales_a, means_a = CheckerboardY.anchor_parameters(codec, side)
        y_anchor = means_a + relax(y - means_a)
        context = codec.context_prediction(codec._keep_only(y_anchor, "anchor"))
        scales_n, means_n = codec.latent_codec["y"]._chunk(codec.entropy_parameters(codec.merge(context, side)))
        y_other = means_n + relax(y - means_n)
        anchors = codec._keep_only(torch.ones_like(y[:, :1]), "anchor").bool()
        scales, means = torch.where(anchors, scales_a, scales_n), torch.where(anchors, means_a, means_n)
        return Decoded(torch.where(anchors, y_anchor, y_other), scales, means)

    @staticmethod
    def group_rate(codec: CheckerboardLatentCodec, y: Tensor, side: Tensor, relax: Relaxation) -> tuple[Tensor, Tensor]:
        """`(R, ỹ)` of `y` under the checkerboard `codec` given its side parameters."""
        decoded = CheckerboardY.group_decoded(codec, y, side, relax)
        bits = entropy.gaussian_bits(codec.latent_codec["y"].gaussian_conditional, decoded.y_tilde, decoded.scales,
                                     decoded.means)
        return bits, decoded.y_tilde

    def decoded(self, model: nn.Module, y: Tensor, side: Tensor | None, relax: Relaxation) -> Decoded:
        return self.group_decoded(self.codec(model), y, side, relax)

    def element_bits(self, model: nn.Module, decoded: Decoded) -> Tensor:
        return entropy.gaussian_element_bits(self.codec(model).latent_codec["y"].gaussian_conditional,
                                             decoded.y_tilde, decoded.scales, decoded.means)

    @staticmethod
    def passes(codec: CheckerboardLatentCodec, side: Tensor, y: Tensor | None = None,
               strings: list[bytes] | None = None) -> tuple[list[bytes], list[Tensor], Tensor]:
        """Both passes of CompressAI's `CheckerboardLatentCodec.compress` (with `y`) or `.decompress`
        (with `strings`) of the (float64 for format 2) `codec` given its side parameters: the strings,
        each pass's scale indexes, and `ŷ`."""
        conditional = codec.latent_codec["y"].gaussian_conditional
        n, _, h, w = side.shape
        channels = codec.context_prediction.in_channels
        y_hat_ = side.new_zeros((2, n, channels, h, w // 2))
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
        return written, indexes, codec.embed(y_hat_)

    def compress(self, coder: nn.Module, y: Tensor, z_hat: Tensor | None, hyper: HyperPart | None,
                 format_version: int) -> tuple[list[bytes], int]:
        codec = entropy.for_indexes(self.codec(coder), format_version)
        strings, indexes, _ = self.passes(codec, hyper.side_for_indexes(coder, z_hat, format_version), y=y)
        return strings, entropy.index_checksum(indexes)

    def decompress(self, coder: nn.Module, strings: list[bytes], shape: tuple[int, int], z_hat: Tensor | None,
                   hyper: HyperPart | None, format_version: int, index_checksum: int | None) -> Tensor:
        codec = entropy.for_indexes(self.codec(coder), format_version)
        _, indexes, y_hat = self.passes(codec, hyper.side_for_indexes(coder, z_hat, format_version), strings=strings)
        check_indexes(index_checksum, entropy.index_checksum(indexes))
        return y_hat.float()


@register_architecture
class Checkerboard(Architecture):
    """`mbt2018-mean-checkerboard`: the mean-scale hyperprior's `z` (under `latent_codec.hyper`) and a
    checkerboard `y` part; three strings (anchors, non-anchors, `z`). It starts from a mean-scale
    hyperprior's weights with a context that adds nothing yet (`MeanScaleCheckerboard.from_mean_scale`)."""

    name = "mbt2018-mean-checkerboard"
    model_class = MeanScaleCheckerboard
    hyper = HyperPart(prefix="latent_codec.hyper.")
    latent = CheckerboardY()
    coding_modules = ("latent_codec",)
    starts_from = ("mbt2018-mean",)
    context_prefixes = ("latent_codec.y.context_prediction.", "latent_codec.y.entropy_parameters.")
    #: The hyperprior family's reach, and the context's: a latent's `(σ, μ)` see the anchors within 2
    #: latents (the 5x5 masked convolution; the entropy parameters are 1x1), in a pattern of period 2.
    tiling = dataclasses.replace(HYPERPRIOR_REACH, context=2, period=2)

    def matches(self, state_dict: dict) -> bool:
        return "latent_codec.y.context_prediction.weight" in state_dict and "latent_codec.hyper.h_s.0.weight" in state_dict

    def from_base_state_dict(self, state_dict: dict) -> nn.Module:
        return MeanScaleCheckerboard.from_mean_scale(state_dict)
