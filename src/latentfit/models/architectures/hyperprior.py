"""The hyperprior family without spatial context: `bmshj2018-hyperprior` (Ballé et al. 2018, scale
only, `z = h_a(|y|)`) and `mbt2018-mean` (Minnen et al. 2018's mean-scale hyperprior; `latentfit-msh`)."""

from __future__ import annotations

import torch
from compressai.models import MeanScaleHyperprior, ScaleHyperprior
from torch import Tensor, nn

from .. import entropy
from .base import Architecture, Relaxation, check_indexes, register_architecture


class Hyperprior(Architecture):
    """`(σ, μ) = h_s(ẑ)`, `ỹ = μ + relax(y − μ)`, `z̃ = m + relax(z − m)` (`m`: the bottleneck's medians)."""

    mean_scale = False

    def _last_h_s_channels(self, state_dict: dict) -> int | None:
        keys = [k for k in state_dict if k.startswith("h_s.") and k.endswith(".weight")]
        if not keys or "g_a.6.weight" not in state_dict:
            return None
        last = max(keys, key=lambda k: int(k.split(".")[1]))
        return int(state_dict[last].size(0)), int(state_dict["g_a.6.weight"].size(0))

    def side_parameters(self, model: nn.Module, z_tilde: Tensor) -> tuple[Tensor, Tensor | None]:
        params = model.h_s(z_tilde)
        if self.mean_scale:
            scales, means = params.chunk(2, 1)
            return scales, means
        return params, None

    def rate(self, model: nn.Module, y: Tensor, z: Tensor | None, relax: Relaxation) -> tuple[Tensor, Tensor]:
        medians = entropy.bottleneck_medians(model.entropy_bottleneck)
        z_tilde = medians + relax(z - medians)
        scales, means = self.side_parameters(model, z_tilde)
        y_tilde = relax(y) if means is None else means + relax(y - means)
        bits = entropy.gaussian_bits(model.gaussian_conditional, y_tilde, scales, means)
        return bits + entropy.bottleneck_bits(model.entropy_bottleneck, z_tilde), y_tilde

    def _hyper_decode(self, coder: nn.Module, z_hat: Tensor, format_version: int) -> tuple[Tensor | None, Tensor]:
        """`(μ, indexes)` from `ẑ`; indexes as `entropy.scale_indexes` says."""
        _, means = self.side_parameters(coder, z_hat)
        indexes = entropy.scale_indexes(coder.h_s, coder.gaussian_conditional, z_hat, self.mean_scale, format_version)
        return means, indexes

    def compress(self, coder: nn.Module, y: Tensor, z: Tensor | None, format_version: int) -> tuple[list[bytes], int]:
        z_strings = coder.entropy_bottleneck.compress(z)
        z_hat = coder.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        means, indexes = self._hyper_decode(coder, z_hat, format_version)
        y_strings = coder.gaussian_conditional.compress(y, indexes, means=means)
        return [y_strings[0], z_strings[0]], entropy.index_checksum(indexes)

    def decompress(self, coder: nn.Module, strings: list[bytes], shapes: list[tuple[int, int]],
                   format_version: int, index_checksum: int | None) -> Tensor:
        z_hat = coder.entropy_bottleneck.decompress([strings[1]], shapes[1])
        means, indexes = self._hyper_decode(coder, z_hat, format_version)
        check_indexes(index_checksum, entropy.index_checksum(indexes))
        return coder.gaussian_conditional.decompress([strings[0]], indexes, means=means)


@register_architecture
class ScaleHyperpriorArchitecture(Hyperprior):
    name = "bmshj2018-hyperprior"
    model_class = ScaleHyperprior

    def matches(self, state_dict: dict) -> bool:
        shapes = self._last_h_s_channels(state_dict)
        return shapes is not None and shapes[0] != 2 * shapes[1]

    def hyper_analysis(self, model: nn.Module, y: Tensor) -> Tensor:
        return model.h_a(torch.abs(y))


@register_architecture
class MeanScaleHyperpriorArchitecture(Hyperprior):
    name = "mbt2018-mean"
    model_class = MeanScaleHyperprior
    mean_scale = True

    def matches(self, state_dict: dict) -> bool:
        shapes = self._last_h_s_channels(state_dict)
        return shapes is not None and shapes[0] == 2 * shapes[1]
