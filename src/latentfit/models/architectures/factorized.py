"""`bmshj2018-factorized` (Ballé et al. 2018): `y` under a factorized density, no hyperprior."""

from __future__ import annotations

from compressai.models import FactorizedPrior
from torch import Tensor, nn

from .. import entropy
from .base import Architecture, Relaxation, register_architecture


@register_architecture
class Factorized(Architecture):
    name = "bmshj2018-factorized"
    model_class = FactorizedPrior
    stride = 16
    has_hyperprior = False
    coding_modules = ("entropy_bottleneck",)

    def matches(self, state_dict: dict) -> bool:
        return "entropy_bottleneck.quantiles" in state_dict and not any(k.startswith("h_s.") for k in state_dict)

    def rate(self, model: nn.Module, y: Tensor, z: Tensor | None, relax: Relaxation) -> tuple[Tensor, Tensor]:
        medians = entropy.bottleneck_medians(model.entropy_bottleneck)
        y_tilde = medians + relax(y - medians)
        return entropy.bottleneck_bits(model.entropy_bottleneck, y_tilde), y_tilde

    def compress(self, coder: nn.Module, y: Tensor, z: Tensor | None, format_version: int) -> tuple[list[bytes], int]:
        return [coder.entropy_bottleneck.compress(y)[0]], 0

    def decompress(self, coder: nn.Module, strings: list[bytes], shapes: list[tuple[int, int]],
                   format_version: int, index_checksum: int | None) -> Tensor:
        return coder.entropy_bottleneck.decompress([strings[0]], shapes[0])
