"""Minnen et al. 2018's joint autoregressive and hierarchical priors (`mbt2018`, the "full" model of
Campos et al. and Yang et al.) and Cheng et al. 2020's models built on it (`cheng2020-anchor`,
`cheng2020-attn`): `(σ, μ)` of each latent from `h_s(ẑ)` and a 5x5 masked convolution over the
latents already decoded, in raster order.

- The true loss (`relax=torch.round`) runs the decoder's own sequential scan: each `ŷ = μ + round(y − μ)`
  with `μ` from the latents decoded before it, exactly as `compress()` quantises (a Kodak image's
  1536 positions take about a second on one core).
- The proxy uses the parallel masked-convolution form, iterated twice: the context of the first pass
  sees `relax(y)` (as CompressAI's training forward does), that of the second sees
  `μ₁ + relax(y − μ₁)` with the first pass's means, as the decoder's context sees its latents; rate
  and reconstruction use `ỹ = μ₂ + relax(y − μ₂)`. Gradients flow through both contexts.
- Entropy coding mirrors CompressAI's `_compress_ar`/`_decompress_ar` (one rANS string for `y`,
  one for `z`); format 2 runs `h_s`, the context and the entropy parameters in float64.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from compressai.ans import BufferedRansEncoder, RansDecoder
from compressai.models import Cheng2020Anchor, Cheng2020Attention, JointAutoregressiveHierarchicalPriors
from torch import Tensor, nn

from .. import entropy
from .base import Architecture, check_indexes, register_architecture
from .parts import HyperPart, LatentPart, Relaxation

KERNEL, PADDING = 5, 2


class AutoregressiveY(LatentPart):
    """`y` under a Gaussian from `h_s(ẑ)` and a 5x5 masked convolution over the latents decoded
    before it, in raster order (see the module docstring)."""

    def first_parameters(self, model: nn.Module, side: Tensor) -> tuple[Tensor, Tensor | None]:
        """`(σ, μ)` from `ẑ` with an empty context (what the first latent of a scan sees)."""
        context = torch.zeros_like(side)
        return model.entropy_parameters(torch.cat((side, context), dim=1)).chunk(2, 1)

    @staticmethod
    def _parallel(model: nn.Module, params: Tensor, context_input: Tensor) -> tuple[Tensor, Tensor]:
        context = model.context_prediction(context_input)
        return model.entropy_parameters(torch.cat((params, context), dim=1)).chunk(2, 1)

    def rate(self, model: nn.Module, y: Tensor, side: Tensor | None, relax: Relaxation) -> tuple[Tensor, Tensor]:
        if relax is torch.round:
            _, _, scales, means, y_tilde = self._scan(model, side, y=y)
        else:
            _, means = self._parallel(model, side, relax(y))
            scales, means = self._parallel(model, side, means + relax(y - means))
            y_tilde = means + relax(y - means)
        return entropy.gaussian_bits(model.gaussian_conditional, y_tilde, scales, means), y_tilde

    @staticmethod
    def _scan(model: nn.Module, params: Tensor, y: Tensor | None = None, decoder: RansDecoder | None = None
              ) -> tuple[list[int], list[int], Tensor, Tensor, Tensor]:
        """The raster scan of CompressAI's `_compress_ar` (with `y`) or `_decompress_ar` (with a
        `decoder`): symbols, scale indexes, and `(σ, μ, ŷ)` of every position (batch of one)."""
        conditional = model.gaussian_conditional
        height, width = params.shape[-2:]
        channels = model.context_prediction.in_channels
        dtype = params.dtype
        if y is not None:
            y_hat = F.pad(y.to(dtype), (PADDING,) * 4).clone()
        else:
            y_hat = params.new_zeros((1, channels, height + 2 * PADDING, width + 2 * PADDING))
        weight = model.context_prediction.weight * model.context_prediction.mask
        bias = model.context_prediction.bias
        scales = params.new_zeros((1, channels, height, width))
        means = params.new_zeros((1, channels, height, width))
        symbols: list[int] = []
        indexes: list[int] = []
        if decoder is not None:
            cdf = conditional.quantized_cdf.tolist()
            cdf_lengths = conditional.cdf_length.tolist()
            offsets = conditional.offset.tolist()
        for h in range(height):
            for w in range(width):
                crop = y_hat[:, :, h : h + KERNEL, w : w + KERNEL]
                context = F.conv2d(crop, weight, bias=bias)
                p = params[:, :, h : h + 1, w : w + 1]
                gaussian = model.entropy_parameters(torch.cat((p, context), dim=1)).squeeze(3).squeeze(2)
                scale, mean = gaussian.chunk(2, 1)
                index = conditional.build_indexes(scale)
                if decoder is None:
                    q = conditional.quantize(crop[:, :, PADDING, PADDING], "symbols", mean)
                    value = q + mean
                    symbols.extend(q.squeeze().tolist())
                else:
                    q = decoder.decode_stream(index.squeeze().tolist(), cdf, cdf_lengths, offsets)
                    value = conditional.dequantize(torch.tensor(q, dtype=dtype).reshape(1, -1), mean)
                indexes.extend(index.squeeze().tolist())
                y_hat[:, :, h + PADDING, w + PADDING] = value
                scales[:, :, h, w], means[:, :, h, w] = scale, mean
        return symbols, indexes, scales, means, y_hat[..., PADDING:-PADDING, PADDING:-PADDING]

    @staticmethod
    def _coding_copy(coder: nn.Module, format_version: int) -> nn.Module:
        """The modules that pick scale indexes, in float64 for format 2 (see `entropy.scale_indexes`)."""
        if format_version < 2:
            return coder
        copied = nn.Module()
        for name in ("context_prediction", "entropy_parameters"):
            setattr(copied, name, entropy.for_indexes(getattr(coder, name), format_version))
        copied.gaussian_conditional = coder.gaussian_conditional
        return copied

    def compress(self, coder: nn.Module, y: Tensor, z_hat: Tensor | None, hyper: HyperPart | None,
                 format_version: int) -> tuple[list[bytes], int]:
        net = self._coding_copy(coder, format_version)
        params = hyper.side_for_indexes(coder, z_hat, format_version)
        symbols, indexes, _, _, _ = self._scan(net, params, y=y)
        conditional = coder.gaussian_conditional
        encoder = BufferedRansEncoder()
        encoder.encode_with_indexes(symbols, indexes, conditional.quantized_cdf.tolist(),
                                    conditional.cdf_length.tolist(), conditional.offset.tolist())
        return [encoder.flush()], entropy.index_checksum(torch.tensor(indexes, dtype=torch.int32))

    def decompress(self, coder: nn.Module, strings: list[bytes], shape: tuple[int, int], z_hat: Tensor | None,
                   hyper: HyperPart | None, format_version: int, index_checksum: int | None) -> Tensor:
        net = self._coding_copy(coder, format_version)
        params = hyper.side_for_indexes(coder, z_hat, format_version)
        decoder = RansDecoder()
        decoder.set_stream(strings[0])
        _, indexes, _, _, y_hat = self._scan(net, params, decoder=decoder)
        check_indexes(index_checksum, entropy.index_checksum(torch.tensor(indexes, dtype=torch.int32)))
        return y_hat.float()



class Autoregressive(Architecture):
    latent = AutoregressiveY()
    coding_modules = ("entropy_bottleneck", "h_s", "gaussian_conditional", "context_prediction", "entropy_parameters")


@register_architecture
class Mbt2018(Autoregressive):
    name = "mbt2018"
    model_class = JointAutoregressiveHierarchicalPriors

    def matches(self, state_dict: dict) -> bool:
        return "context_prediction.weight" in state_dict and "g_a.0.weight" in state_dict


@register_architecture
class Cheng2020AnchorArchitecture(Autoregressive):
    name = "cheng2020-anchor"
    model_class = Cheng2020Anchor

    def build(self, N: int, M: int) -> nn.Module:
        return self.model_class(N)  # Cheng et al.'s latents have N channels (M = N)

    def matches(self, state_dict: dict) -> bool:
        return ("context_prediction.weight" in state_dict and "g_a.0.conv1.weight" in state_dict
                and not any(".conv_a." in k for k in state_dict))


@register_architecture
class Cheng2020AttentionArchitecture(Cheng2020AnchorArchitecture):
    name = "cheng2020-attn"
    model_class = Cheng2020Attention

    def matches(self, state_dict: dict) -> bool:
        return "context_prediction.weight" in state_dict and any(".conv_a." in k for k in state_dict)
