"""What latentfit knows about one CompressAI architecture, in one object, registered by name.

Everything that differs between architectures lives in its `Architecture` subclass, in one file
(`factorized.py`, `hyperprior.py`, `checkerboard.py`, `autoregressive.py`): how to build it and recognise its weights,
its stride and latent shapes, `z = h_a(y)`, the entropy parameters from `ẑ`, the rate of *given*
latents under any quantisation proxy, and the entropy coding of given latents (mirroring
CompressAI's own `compress`/`decompress`). `LatentModel`, the refinement loop, tiling, the registry
and training use only this interface, so a new architecture is one new file with one decorated class.
"""

from __future__ import annotations

from typing import Callable, ClassVar

from torch import Tensor, nn

from ...errors import LatentfitError

#: A quantisation proxy applied to offset latents `v` (`v = y − μ` or `v = z − median`).
Relaxation = Callable[[Tensor], Tensor]

#: Registered architectures by name (CompressAI zoo names where CompressAI has one).
REGISTRY: dict[str, "Architecture"] = {}


def register_architecture(cls: type["Architecture"]) -> type["Architecture"]:
    """Class decorator: make `cls` selectable by its `name` everywhere (models, training, the CLI)."""
    REGISTRY[cls.name] = cls()
    return cls


class Architecture:
    """One architecture. Subclasses set the class attributes and implement the methods below."""

    name: ClassVar[str]
    model_class: ClassVar[type[nn.Module]]
    #: Image sizes must be multiples of this (product of all downsampling factors).
    stride: ClassVar[int] = 64
    has_hyperprior: ClassVar[bool] = True
    #: Modules that entropy coding uses: the CPU coder's private copy when the model is on a GPU.
    coding_modules: ClassVar[tuple[str, ...]] = ("entropy_bottleneck", "h_s", "gaussian_conditional")
    #: `latentfit.tiling` can refine it tile by tile (its reach constants, derived for the hyperprior
    #: family without spatial context, hold for it).
    tileable: ClassVar[bool] = True

    @property
    def string_count(self) -> int:
        """How many entropy-coded strings a file of this architecture holds."""
        return 2 if self.has_hyperprior else 1

    # -- building ------------------------------------------------------------------------------
    def build(self, N: int, M: int) -> nn.Module:
        return self.model_class(N, M)

    def from_state_dict(self, state_dict: dict) -> nn.Module:
        return self.model_class.from_state_dict(state_dict)

    def matches(self, state_dict: dict) -> bool:
        """Whether a state dict's keys and shapes are this architecture's (for checkpoints without a card)."""
        raise NotImplementedError

    def owns(self, model: nn.Module) -> bool:
        return type(model) is self.model_class

    # -- transforms ----------------------------------------------------------------------------
    def entropy_bottleneck(self, model: nn.Module) -> nn.Module:
        return model.entropy_bottleneck

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial shapes of the transmitted latents for a padded image of `height` x `width`."""
        y_shape = (height // 16, width // 16)
        return [y_shape, (height // 64, width // 64)] if self.has_hyperprior else [y_shape]

    def hyper_analysis(self, model: nn.Module, y: Tensor) -> Tensor:
        return model.h_a(y)

    def side_parameters(self, model: nn.Module, z_tilde: Tensor) -> tuple[Tensor, Tensor | None]:
        """`(σ, μ)` of `y` from `z̃` alone (`μ` None when the prior has zero mean)."""
        raise NotImplementedError

    def rate(self, model: nn.Module, y: Tensor, z: Tensor | None, relax: Relaxation) -> tuple[Tensor, Tensor]:
        """`(R, ỹ)`: the bits `−Σ log2 p` of the latents quantised by `relax`, and the `ỹ` the
        synthesis transform decodes. With `relax=torch.round` this is exactly what is transmitted."""
        raise NotImplementedError

    # -- entropy coding (on the CPU coder, see `LatentModel._coder`) ---------------------------
    def compress(self, coder: nn.Module, y: Tensor, z: Tensor | None, format_version: int
                 ) -> tuple[list[bytes], int]:
        """The strings of given latents (batch of one) and the checksum of their scale indexes."""
        raise NotImplementedError

    def decompress(self, coder: nn.Module, strings: list[bytes], shapes: list[tuple[int, int]],
                   format_version: int, index_checksum: int | None) -> Tensor:
        """`ŷ` from the strings `compress` wrote (raising `IndexMismatchError` on a checksum mismatch)."""
        raise NotImplementedError


def get_architecture(name: str) -> Architecture:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise LatentfitError(f"unknown architecture '{name}' (known: {known})") from None


def architecture_for(model: nn.Module) -> Architecture:
    for architecture in REGISTRY.values():
        if architecture.owns(model):
            return architecture
    raise LatentfitError(f"model class {type(model).__name__} is not supported by latentfit")


def check_indexes(index_checksum: int | None, computed: int) -> None:
    from ..entropy import IndexMismatchError

    if index_checksum is not None and computed != index_checksum:
        raise IndexMismatchError(
            "entropy-model scales computed here differ from the encoder's (floating-point differences "
            "between machines); refusing to decode a garbled image"
        )
