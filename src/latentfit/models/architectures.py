"""Registry of CompressAI architectures latentfit can build, train and refine, by zoo name."""

from __future__ import annotations

from compressai.models import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior
from torch import nn

from ..errors import LatentfitError
from .checkerboard import MeanScaleCheckerboard

#: Architectures whose latents latentfit can refine (hyperprior family, no autoregressive context).
ARCHITECTURES: dict[str, type[nn.Module]] = {
    "bmshj2018-factorized": FactorizedPrior,
    "bmshj2018-hyperprior": ScaleHyperprior,
    "mbt2018-mean": MeanScaleHyperprior,
}


#: Architectures latentfit can train but not refine or entropy-code yet (issue 29 in progress).
TRAINABLE_ARCHITECTURES: dict[str, type[nn.Module]] = ARCHITECTURES | {
    "mbt2018-mean-checkerboard": MeanScaleCheckerboard,
}


def architecture_class(name: str, trainable: bool = False) -> type[nn.Module]:
    table = TRAINABLE_ARCHITECTURES if trainable else ARCHITECTURES
    try:
        return table[name]
    except KeyError:
        known = ", ".join(sorted(table))
        raise LatentfitError(f"unknown architecture '{name}' (known: {known})") from None


def build_architecture(name: str, N: int, M: int) -> nn.Module:
    """A freshly initialised model of (trainable) architecture `name` with widths `N`, `M`."""
    return architecture_class(name, trainable=True)(N, M)


def architecture_of(model: nn.Module) -> str:
    for name, cls in ARCHITECTURES.items():
        if type(model) is cls:
            return name
    raise LatentfitError(f"model class {type(model).__name__} is not supported by latentfit")


def widths_from_state_dict(state_dict: dict) -> tuple[int, int]:
    """(N, M) inferred from weight shapes, as CompressAI's `from_state_dict` does."""
    try:
        return int(state_dict["g_a.0.weight"].size(0)), int(state_dict["g_a.6.weight"].size(0))
    except KeyError as missing:
        raise LatentfitError(f"state dict lacks {missing}: not a supported CompressAI image model") from None
