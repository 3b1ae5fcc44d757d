"""The hyperprior family without spatial context: `bmshj2018-hyperprior` (Ballé et al. 2018, scale
only, `z = h_a(|y|)`) and `mbt2018-mean` (Minnen et al. 2018's mean-scale hyperprior; `latentfit-msh`).

Their `y` part, `GaussianY`, is a Gaussian whose `(σ, μ)` are the side parameters `h_s(ẑ)` themselves:
`ỹ = μ + relax(y − μ)`. Tiles refine them with `HYPERPRIOR_REACH` (the checkerboard model with its
context's reach added to it).
"""

from __future__ import annotations

from compressai.models import MeanScaleHyperprior, ScaleHyperprior
from torch import Tensor, nn

from .. import entropy
from .base import Architecture, check_indexes, register_architecture
from .parts import Decoded, HyperPart, LatentPart, Relaxation, TilingReach

#: `g_s` is four stride-2 transposed convolutions (kernel 5): a latent reaches pixels within 2 latents,
#: which decode exactly with 2 more around them; `h_s` reaches `y` latents −7..+4 from a `z` latent,
#: and needs `z` within 2 (3 kept) of what it computes (`latentfit.tiling`).
HYPERPRIOR_REACH = TilingReach(margin=2, halo=4, hyper_reach=8, z_halo=3, stride=16)


class GaussianY(LatentPart):
    """`y` under a Gaussian with `(σ, μ) = h_s(ẑ)` (`mean_scale`), or `σ = h_s(ẑ)` and `μ = 0`."""

    def __init__(self, mean_scale: bool):
        self.mean_scale = mean_scale

    def first_parameters(self, model: nn.Module, side: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.mean_scale:
            scales, means = side.chunk(2, 1)
            return scales, means
        return side, None

    def decoded(self, model: nn.Module, y: Tensor, side: Tensor | None, relax: Relaxation) -> Decoded:
        scales, means = self.first_parameters(model, side)
        return Decoded(relax(y) if means is None else means + relax(y - means), scales, means)

    def element_bits(self, model: nn.Module, decoded: Decoded) -> Tensor:
        return entropy.gaussian_element_bits(model.gaussian_conditional, decoded.y_tilde, decoded.scales,
                                             decoded.means)

    def _hyper_decode(self, coder: nn.Module, z_hat: Tensor, hyper: HyperPart,
                      format_version: int) -> tuple[Tensor | None, Tensor]:
        """`(μ, indexes)` from `ẑ`; indexes as `entropy.scale_indexes` says (`μ` in the model's own
        arithmetic: the decoder adds it to the decoded symbols, so it cannot desynchronise them)."""
        _, means = self.first_parameters(coder, hyper.side(coder, z_hat))
        indexes = entropy.scale_indexes(hyper.h_s(coder), coder.gaussian_conditional, z_hat, self.mean_scale,
                                        format_version)
        return means, indexes

    def compress(self, coder: nn.Module, y: Tensor, z_hat: Tensor | None, hyper: HyperPart | None,
                 format_version: int) -> tuple[list[bytes], int]:
        means, indexes = self._hyper_decode(coder, z_hat, hyper, format_version)
        return [coder.gaussian_conditional.compress(y, indexes, means=means)[0]], entropy.index_checksum(indexes)

    def decompress(self, coder: nn.Module, strings: list[bytes], shape: tuple[int, int], z_hat: Tensor | None,
                   hyper: HyperPart | None, format_version: int, index_checksum: int | None) -> Tensor:
        means, indexes = self._hyper_decode(coder, z_hat, hyper, format_version)
        check_indexes(index_checksum, entropy.index_checksum(indexes))
        return coder.gaussian_conditional.decompress(strings, indexes, means=means)


class Hyperprior(Architecture):
    tiling = HYPERPRIOR_REACH

    def _last_h_s_channels(self, state_dict: dict) -> tuple[int, int] | None:
        """(channels out of `h_s`, M) of a state dict with CompressAI's GDN transforms, else None."""
        keys = [k for k in state_dict if k.startswith("h_s.") and k.endswith(".weight")]
        if not keys or "g_a.6.weight" not in state_dict or "g_a.1.beta" not in state_dict:
            return None
        last = max(keys, key=lambda k: int(k.split(".")[1]))
        return int(state_dict[last].size(0)), int(state_dict["g_a.6.weight"].size(0))


@register_architecture
class ScaleHyperpriorArchitecture(Hyperprior):
    name = "bmshj2018-hyperprior"
    model_class = ScaleHyperprior
    hyper = HyperPart(absolute=True)
    latent = GaussianY(mean_scale=False)

    def matches(self, state_dict: dict) -> bool:
        shapes = self._last_h_s_channels(state_dict)
        return shapes is not None and shapes[0] != 2 * shapes[1]


@register_architecture
class MeanScaleHyperpriorArchitecture(Hyperprior):
    name = "mbt2018-mean"
    model_class = MeanScaleHyperprior
    latent = GaussianY(mean_scale=True)

    def matches(self, state_dict: dict) -> bool:
        shapes = self._last_h_s_channels(state_dict)
        return shapes is not None and shapes[0] == 2 * shapes[1]
