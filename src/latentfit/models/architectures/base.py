"""What latentfit knows about one CompressAI architecture, in one object, registered by name.

An architecture is composed of parts (`parts.py`): a hyper part for `z` (shared by all that have
one) and a part for `y` (Gaussian from the side parameters, checkerboard, autoregressive, channel
groups, factorized), each with its rate under any quantisation proxy and its mirrored entropy coding.
The `Architecture` subclass (one file each: `factorized.py`, `hyperprior.py`, `checkerboard.py`,
`autoregressive.py`, `channel_groups.py`) names its model class and parts and says how to build it,
recognise its weights, tile it and fine-tune it. `LatentModel`, the refinement loop, tiling, the
registry and training use only this interface: a new architecture is one file with one decorated
class, a new kind of `y` model one `LatentPart`.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from ...errors import LatentfitError
from ..entropy import IndexMismatchError
from .parts import HyperPart, LatentPart, Relaxation, TilingReach

__all__ = ["REGISTRY", "Architecture", "Relaxation", "architecture_for", "check_indexes", "get_architecture",
           "register_architecture"]

#: Registered architectures by name (CompressAI zoo names where CompressAI has one).
REGISTRY: dict[str, "Architecture"] = {}


def register_architecture(cls: type["Architecture"]) -> type["Architecture"]:
    """Class decorator: make `cls` selectable by its `name` everywhere (models, training, the CLI)."""
    REGISTRY[cls.name] = cls()
    return cls


class Architecture:
    """One architecture: a CompressAI model class, a hyper part (`z`, or None) and a `y` part
    (`parts.py`); subclasses set the class attributes and say how to recognise their weights."""

    name: ClassVar[str]
    model_class: ClassVar[type[nn.Module]]
    #: Image sizes must be multiples of this (product of all downsampling factors).
    stride: ClassVar[int] = 64
    hyper: ClassVar[HyperPart | None] = HyperPart()
    latent: ClassVar[LatentPart]
    #: Modules that entropy coding uses: the CPU coder's private copy when the model is on a GPU.
    coding_modules: ClassVar[tuple[str, ...]] = ("entropy_bottleneck", "h_s", "gaussian_conditional")
    #: The reach of its latents, for tile-by-tile refinement (None: not tileable, e.g. a raster-scan context).
    tiling: ClassVar[TilingReach | None] = None
    #: Architectures whose weights this one can start from (a context model from the transforms and
    #: hyperprior of a model without context), see `from_base_state_dict`.
    starts_from: ClassVar[tuple[str, ...]] = ()
    #: The networks of its own that a `--finetune context` run trains (state-dict prefixes); none: it
    #: has no context to fine-tune.
    context_prefixes: ClassVar[tuple[str, ...]] = ()

    @property
    def has_hyperprior(self) -> bool:
        return self.hyper is not None

    @property
    def tileable(self) -> bool:
        return self.tiling is not None

    def string_count(self, model: nn.Module) -> int:
        """How many entropy-coded strings a file of `model` (of this architecture) holds."""
        return self.latent.strings(model) + (1 if self.hyper is not None else 0)

    @property
    def encoder_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the encoder side (`g_a`, `h_a`): what an encoder fine-tune changes,
        and what an encoder file holds."""
        return ("g_a.",) + (self.hyper.encoder_prefixes if self.hyper is not None else ())

    # -- building ------------------------------------------------------------------------------
    def build(self, N: int, M: int) -> nn.Module:
        return self.model_class(N, M)

    def from_state_dict(self, state_dict: dict) -> nn.Module:
        return self.model_class.from_state_dict(state_dict)

    def from_base_state_dict(self, state_dict: dict) -> nn.Module:
        """This architecture from the weights of one of `starts_from` (see there)."""
        raise NotImplementedError

    def matches(self, state_dict: dict) -> bool:
        """Whether a state dict's keys and shapes are this architecture's (for checkpoints without a card)."""
        raise NotImplementedError

    def owns(self, model: nn.Module) -> bool:
        return type(model) is self.model_class

    # -- transforms ----------------------------------------------------------------------------
    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial shapes of the transmitted latents for a padded image of `height` x `width`."""
        y_shape = (height // 16, width // 16)
        return [y_shape, (height // 64, width // 64)] if self.has_hyperprior else [y_shape]

    def hyper_analysis(self, model: nn.Module, y: Tensor) -> Tensor:
        """`z = h_a(y)`."""
        return self.hyper.analysis(model, y)

    def side_parameters(self, model: nn.Module, z_tilde: Tensor) -> tuple[Tensor, Tensor | None]:
        """`(σ, μ)` of `y` from `z̃` alone (`μ` None when the prior has zero mean)."""
        return self.latent.first_parameters(model, self.hyper.side(model, z_tilde))

    def rate(self, model: nn.Module, y: Tensor, z: Tensor | None, relax: Relaxation) -> tuple[Tensor, Tensor]:
        """`(R, ỹ)`: the bits `−Σ log2 p` of the latents quantised by `relax` (`z` first, then `y`
        given `h_s(z̃)`), and the `ỹ` the synthesis transform decodes. With `relax=torch.round` this
        is exactly what is transmitted."""
        if self.hyper is None:
            return self.latent.rate(model, y, None, relax)
        z_bits, z_tilde = self.hyper.rate(model, z, relax)
        y_bits, y_tilde = self.latent.rate(model, y, self.hyper.side(model, z_tilde), relax)
        return y_bits + z_bits, y_tilde

    # -- entropy coding (on the CPU coder, see `LatentModel._coder`) ---------------------------
    def compress(self, coder: nn.Module, y: Tensor, z: Tensor | None, format_version: int
                 ) -> tuple[list[bytes], int]:
        """The strings of given latents (batch of one: `y`'s, then `z`'s) and the checksum of their
        scale indexes."""
        if self.hyper is None:
            return self.latent.compress(coder, y, None, None, format_version)
        z_string, z_hat = self.hyper.compress(coder, z)
        strings, checksum = self.latent.compress(coder, y, z_hat, self.hyper, format_version)
        return [*strings, z_string], checksum

    def decompress(self, coder: nn.Module, strings: list[bytes], shapes: list[tuple[int, int]],
                   format_version: int, index_checksum: int | None) -> Tensor:
        """`ŷ` from the strings `compress` wrote (raising `IndexMismatchError` on a checksum mismatch)."""
        z_hat = None if self.hyper is None else self.hyper.decompress(coder, strings[-1], shapes[1])
        y_strings = strings[:-1] if self.hyper is not None else strings
        return self.latent.decompress(coder, y_strings, shapes[0], z_hat, self.hyper, format_version, index_checksum)


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
    if index_checksum is not None and computed != index_checksum:
        raise IndexMismatchError(
            "entropy-model scales computed here differ from the encoder's (floating-point differences "
            "between machines); refusing to decode a garbled image"
        )
