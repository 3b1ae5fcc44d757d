"""`bmshj2018-factorized` (Ballé et al. 2018): `y` under a factorized density, no hyperprior."""

from __future__ import annotations

from compressai.models import FactorizedPrior
from torch import Tensor, nn

from .. import entropy
from .base import Architecture, register_architecture
from .parts import Decoded, HyperPart, LatentPart, Relaxation, TilingReach


class FactorizedY(LatentPart):
    """`y` under the model's entropy bottleneck: `ỹ = m + relax(y − m)`, no scale indexes."""

    def decoded(self, model: nn.Module, y: Tensor, side: Tensor | None, relax: Relaxation) -> Decoded:
        medians = entropy.bottleneck_medians(model.entropy_bottleneck)
        return Decoded(medians + relax(y - medians), None, medians)

    def element_bits(self, model: nn.Module, decoded: Decoded) -> Tensor:
        return entropy.bottleneck_element_bits(model.entropy_bottleneck, decoded.y_tilde)

    def compress(self, coder: nn.Module, y: Tensor, z_hat: Tensor | None, hyper: HyperPart | None,
                 format_version: int) -> tuple[list[bytes], int]:
        return [coder.entropy_bottleneck.compress(y)[0]], 0

    def decompress(self, coder: nn.Module, strings: list[bytes], shape: tuple[int, int], z_hat: Tensor | None,
                   hyper: HyperPart | None, format_version: int, index_checksum: int | None) -> Tensor:
        return coder.entropy_bottleneck.decompress(strings, shape)


@register_architecture
class Factorized(Architecture):
    name = "bmshj2018-factorized"
    model_class = FactorizedPrior
    stride = 16
    hyper = None
    latent = FactorizedY()
    coding_modules = ("entropy_bottleneck",)
    #: The synthesis transform's reach is the hyperprior family's (`hyperprior.HYPERPRIOR_REACH`); no `z`.
    tiling = TilingReach(margin=2, halo=4, hyper_reach=0, z_halo=0)

    def matches(self, state_dict: dict) -> bool:
        return "entropy_bottleneck.quantiles" in state_dict and not any(k.startswith("h_s.") for k in state_dict)
