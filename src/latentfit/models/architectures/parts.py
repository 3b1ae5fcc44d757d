"""The parts an architecture is composed of, in the spirit of CompressAI's `latent_codecs`.

- `HyperPart`: the side information `z` (Ballé et al.'s hyperprior), written once for every
  architecture that has one: `z = h_a(y)`, its rate under the factorized bottleneck with
  `z̃ = m + relax(z − m)`, the side parameters `h_s(ẑ)` the `y` part is conditioned on, and `z`'s
  own string (mirrored `compress`/`decompress`).
- a `LatentPart` for `y`: what differs between architectures (a Gaussian from the side parameters,
  a checkerboard context, a raster-scan autoregressive context, channel groups, a factorized density).
  Each supplies its rate under a proxy (`rate`), its entropy coding (mirrored `compress` /
  `decompress`, which run the networks that pick scale indexes in float64 from format 2 on) and how
  many strings it writes.

An `Architecture` (`base.py`) is a model class plus one hyper part (or none) and one `y` part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import Tensor, nn

from .. import entropy

#: A quantisation proxy applied to offset latents `v` (`v = y − μ` or `v = z − median`).
Relaxation = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class HyperPart:
    """`z`: its modules live under `prefix` (`""` for CompressAI's classic models, e.g.
    `"latent_codec.hyper."` for models built from its latent codecs); `absolute`: `z = h_a(|y|)` (the
    scale-only hyperprior)."""

    prefix: str = ""
    absolute: bool = False

    def h_a(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.prefix + "h_a")

    def h_s(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.prefix + "h_s")

    def bottleneck(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.prefix + "entropy_bottleneck")

    @property
    def encoder_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes of the encoder-side networks of `z` (an encoder fine-tune changes them)."""
        return (self.prefix + "h_a.",)

    def analysis(self, model: nn.Module, y: Tensor) -> Tensor:
        return self.h_a(model)(torch.abs(y) if self.absolute else y)

    def rate(self, model: nn.Module, z: Tensor, relax: Relaxation) -> tuple[Tensor, Tensor]:
        """`(R_z, z̃)` with `z̃ = m + relax(z − m)` (`m`: the bottleneck's medians)."""
        bottleneck = self.bottleneck(model)
        medians = entropy.bottleneck_medians(bottleneck)
        z_tilde = medians + relax(z - medians)
        return entropy.bottleneck_bits(bottleneck, z_tilde), z_tilde

    def side(self, model: nn.Module, z_tilde: Tensor) -> Tensor:
        """The side parameters `h_s(z̃)` (the model's own arithmetic)."""
        return self.h_s(model)(z_tilde)

    def side_for_indexes(self, coder: nn.Module, z_hat: Tensor, format_version: int) -> Tensor:
        """`h_s(ẑ)` as the scale indexes are picked from it: in float64 from format 2 on."""
        h_s = entropy.for_indexes(self.h_s(coder), format_version)
        return h_s(z_hat.to(next(h_s.parameters()).dtype))

    def compress(self, coder: nn.Module, z: Tensor) -> tuple[bytes, Tensor]:
        """`z`'s string and `ẑ` as the decoder will have it."""
        bottleneck = self.bottleneck(coder)
        strings = bottleneck.compress(z)
        return strings[0], bottleneck.decompress(strings, z.shape[-2:])

    def decompress(self, coder: nn.Module, string: bytes, shape: tuple[int, int]) -> Tensor:
        return self.bottleneck(coder).decompress([string], shape)


class LatentPart:
    """How `y` is modelled and coded given the side parameters (None without a hyper part)."""

    #: Strings this part writes (before `z`'s, if any), unless `strings` says otherwise for a model.
    string_count: ClassVar[int] = 1

    def strings(self, model: nn.Module) -> int:
        """How many strings `y` of `model` takes (a channel-groups model: two for each group)."""
        return self.string_count

    def first_parameters(self, model: nn.Module, side: Tensor) -> tuple[Tensor, Tensor | None]:
        """`(σ, μ)` of `y` from the side parameters alone (no context: what the first latents of a
        context model see; `μ` None for a zero-mean prior)."""
        raise NotImplementedError

    def rate(self, model: nn.Module, y: Tensor, side: Tensor | None, relax: Relaxation) -> tuple[Tensor, Tensor]:
        """`(R_y, ỹ)`: the bits of `y` quantised by `relax` and the `ỹ` the synthesis transform decodes;
        with `relax=torch.round`, exactly what is transmitted."""
        decoded = self.decoded(model, y, side, relax)
        return self.element_bits(model, decoded).sum(), decoded.y_tilde

    def decoded(self, model: nn.Module, y: Tensor, side: Tensor | None, relax: Relaxation) -> "Decoded":
        """`ỹ` and the entropy parameters each latent is coded with, given the side parameters (the
        context, if any, computed from the `ỹ` themselves, as the decoder does)."""
        raise NotImplementedError

    def element_bits(self, model: nn.Module, decoded: "Decoded") -> Tensor:
        """`−log2 p` of each of `decoded.y_tilde` under its parameters (`model`'s density)."""
        raise NotImplementedError

    def compress(self, coder: nn.Module, y: Tensor, z_hat: Tensor | None, hyper: HyperPart | None,
                 format_version: int) -> tuple[list[bytes], int]:
        """`y`'s strings (batch of one) and the checksum of their scale indexes."""
        raise NotImplementedError

    def decompress(self, coder: nn.Module, strings: list[bytes], shape: tuple[int, int], z_hat: Tensor | None,
                   hyper: HyperPart | None, format_version: int, index_checksum: int | None) -> Tensor:
        """`ŷ` from the strings `compress` wrote (`IndexMismatchError` on a checksum mismatch)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Decoded:
    """Latents `ỹ` as the synthesis transform decodes them and the parameters they are coded with:
    `(σ, μ)` of a Gaussian (`scales` None: a factorized density, `means` its medians; `means` None:
    zero mean)."""

    y_tilde: Tensor
    scales: Tensor | None
    means: Tensor | None

    def crop(self, rows: slice, cols: slice) -> "Decoded":
        def part(t: Tensor | None) -> Tensor | None:  # per-channel parameters (medians) broadcast
            return t if t is None or t.shape[-2:] == (1, 1) else t[..., rows, cols]

        return Decoded(self.y_tilde[..., rows, cols], part(self.scales), part(self.means))


@dataclass(frozen=True)
class TilingReach:
    """How far a latent's influence reaches, in latents, for tile-by-tile refinement (`latentfit.tiling`):
    pixels a latent reaches (`margin`), what the decoder must see beyond them (`halo`), the `y` whose
    entropy parameters a `z` latent moves (`hyper_reach`), the `z` around what `h_s` computes
    exactly (`z_halo`), pixels per latent (`stride`), the `y` whose entropy parameters a `y` latent
    moves through a spatial context (`context`; 0: none), and the period of the context's pattern
    (`period`: a box of latents must start at a multiple of it to see the pattern as the whole image)."""

    margin: int
    halo: int
    hyper_reach: int
    z_halo: int
    stride: int = 16
    context: int = 0
    period: int = 1
