"""Registry of the architectures latentfit can build, train, refine and entropy-code, by name.

Each architecture is one `Architecture` object in one file of this package (see `base.py`),
registered with `@register_architecture`; importing this package registers them all.
"""

from __future__ import annotations

from torch import nn

from ...errors import LatentfitError
from . import autoregressive, channel_groups, checkerboard, factorized, hyperprior  # noqa: F401  (each registers its own)
from .base import REGISTRY, Architecture, architecture_for, get_architecture, register_architecture

__all__ = ["ARCHITECTURES", "Architecture", "architecture_class", "architecture_for", "build_architecture",
           "get_architecture", "infer_architecture", "register_architecture"]

#: Architecture name -> its CompressAI model class (every registered architecture).
ARCHITECTURES: dict[str, type[nn.Module]] = {name: arch.model_class for name, arch in REGISTRY.items()}


def architecture_class(name: str) -> type[nn.Module]:
    return get_architecture(name).model_class


def build_architecture(name: str, N: int, M: int) -> nn.Module:
    """A freshly initialised model of architecture `name` with widths `N`, `M`."""
    return get_architecture(name).build(N, M)


def infer_architecture(state_dict: dict) -> str:
    """Architecture from the keys and shapes of a state dict (checkpoints without a model card)."""
    for name, architecture in REGISTRY.items():
        if architecture.matches(state_dict):
            return name
    raise LatentfitError("state dict matches no supported architecture")

