"""The channel-wise context family: ELIC (He et al. 2022), `y` in uneven channel groups, each coded
under a checkerboard context whose entropy parameters also see the groups decoded before it.

CompressAI 1.2.8's `Elic2022Official` (every earlier group feeds the channel context) and
`Elic2022Chandelier` (only the first and the most recent group) are built from its latent codecs
(`ChannelGroupsLatentCodec` over `CheckerboardLatentCodec`s under a `HyperpriorLatentCodec`), so the
`y` part here walks the same groups: `ChannelGroupsY`.

- The rate of given latents walks the groups in order; each group's side parameters are `h_s(z̃)`
  merged with its channel context computed from the earlier groups' `ỹ` (relaxed by the proxy, so
  gradients flow from a group's rate into the groups before it), then the group is a checkerboard
  (`CheckerboardY.group_rate`). With `relax=torch.round` this is the decoder's own sequence.
- Entropy coding mirrors `ChannelGroupsLatentCodec.compress`/`decompress`: two strings a group
  (anchors, non-anchors), then `z`'s. Format 2 runs every network that picks scale indexes (`h_s`,
  the channel contexts, the spatial contexts, the parameter aggregations) in float64; format 1 is
  CompressAI's arithmetic, so `--method none` files are its `compress()` byte for byte.
"""

from __future__ import annotations

import torch
from compressai.models import Elic2022Chandelier, Elic2022Official
from torch import Tensor, nn

from .. import entropy
from .base import Architecture, check_indexes, register_architecture
from .checkerboard import CheckerboardY
from .parts import HyperPart, LatentPart, Relaxation

#: The analysis transform's last convolution (to `M` channels) in CompressAI's ELIC `g_a`.
G_A_LAST = "g_a.13.weight"
SPATIAL = "latent_codec.y.latent_codec.y{}.context_prediction.weight"


def groups_for(M: int) -> list[int]:
    """ELIC's uneven groups for `M` latent channels: CompressAI's default (16, 16, 32, 64, M − 128) where
    `M` allows it, else the same shape scaled down (for small models, e.g. in tests)."""
    if M > 128:
        return [16, 16, 32, 64, M - 128]
    small = [max(1, M // 8), max(1, M // 8), max(1, M // 4)]
    return small + [M - sum(small)]


def groups_of(state_dict: dict) -> list[int]:
    """The channel groups a state dict's spatial contexts were built for."""
    groups, k = [], 0
    while SPATIAL.format(k) in state_dict:
        groups.append(int(state_dict[SPATIAL.format(k)].size(1)))
        k += 1
    return groups


class ChannelGroupsY(LatentPart):
    """`y` as CompressAI's `ChannelGroupsLatentCodec` at `path`: checkerboard groups in channel order."""

    def __init__(self, path: str = "latent_codec.y"):
        self.path = path

    def codec(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.path)

    def strings(self, model: nn.Module) -> int:
        return 2 * len(self.codec(model).groups)

    def rate(self, model: nn.Module, y: Tensor, side: Tensor | None, relax: Relaxation) -> tuple[Tensor, Tensor]:
        codec = self.codec(model)
        tilde: list[Tensor] = []
        bits = None
        for k, y_k in enumerate(y.split(codec.groups, dim=1)):
            group_bits, y_tilde = CheckerboardY.group_rate(codec.latent_codec[f"y{k}"], y_k,
                                                           codec._get_ctx_params(k, side, tilde), relax)
            bits = group_bits if bits is None else bits + group_bits
            tilde.append(y_tilde)
        return bits, torch.cat(tilde, dim=1)

    def _groups(self, coder: nn.Module, z_hat: Tensor, hyper: HyperPart, format_version: int, y: Tensor | None = None,
                strings: list[bytes] | None = None) -> tuple[list[bytes], list[Tensor], Tensor]:
        """Every group's two passes in order (`CheckerboardY.passes`), coding `y` or decoding `strings`."""
        codec = entropy.for_indexes(self.codec(coder), format_version)
        side = hyper.side_for_indexes(coder, z_hat, format_version)
        parts = None if y is None else y.to(side.dtype).split(codec.groups, dim=1)
        written, indexes, decoded = [], [], []
        for k in range(len(codec.groups)):
            params = codec._get_ctx_params(k, side, decoded)
            coded, index, y_hat = CheckerboardY.passes(
                codec.latent_codec[f"y{k}"], params, y=None if parts is None else parts[k],
                strings=None if strings is None else strings[2 * k: 2 * k + 2])
            written += coded
            indexes += index
            decoded.append(y_hat)
        return written, indexes, torch.cat(decoded, dim=1)

    def compress(self, coder: nn.Module, y: Tensor, z_hat: Tensor | None, hyper: HyperPart | None,
                 format_version: int) -> tuple[list[bytes], int]:
        strings, indexes, _ = self._groups(coder, z_hat, hyper, format_version, y=y)
        return strings, entropy.index_checksum(indexes)

    def decompress(self, coder: nn.Module, strings: list[bytes], shape: tuple[int, int], z_hat: Tensor | None,
                   hyper: HyperPart | None, format_version: int, index_checksum: int | None) -> Tensor:
        _, indexes, y_hat = self._groups(coder, z_hat, hyper, format_version, strings=strings)
        check_indexes(index_checksum, entropy.index_checksum(indexes))
        return y_hat.float()


class Elic(Architecture):
    """ELIC: a hyper part under `latent_codec.hyper` and a `ChannelGroupsY`; not tileable (spatial
    context). A `--finetune context` run trains every network of the `y` part."""

    hyper = HyperPart(prefix="latent_codec.hyper.")
    latent = ChannelGroupsY()
    coding_modules = ("latent_codec",)
    context_prefixes = ("latent_codec.y.",)

    def build(self, N: int, M: int) -> nn.Module:
        return self.model_class(N, M, groups=groups_for(M))

    def from_state_dict(self, state_dict: dict) -> nn.Module:
        N, M = int(state_dict["g_a.0.weight"].size(0)), int(state_dict[G_A_LAST].size(0))
        model = self.model_class(N, M, groups=groups_of(state_dict))
        model.load_state_dict(state_dict)
        return model

    def _elic(self, state_dict: dict) -> bool:
        return SPATIAL.format(0) in state_dict and G_A_LAST in state_dict

    @staticmethod
    def _h_s_ends_in_a_convolution(state_dict: dict) -> bool:
        """Chandelier's `h_s` ends in a convolution to 2M channels, the official one in a transposed
        convolution to 2N (whose weight is stored (in, out, k, k))."""
        weight = state_dict.get("latent_codec.hyper.h_s.4.weight")
        return weight is not None and int(weight.size(0)) == 2 * int(state_dict[G_A_LAST].size(0))


@register_architecture
class ElicOfficial(Elic):
    name = "elic2022-official"
    model_class = Elic2022Official

    def matches(self, state_dict: dict) -> bool:
        return self._elic(state_dict) and not self._h_s_ends_in_a_convolution(state_dict)


@register_architecture
class ElicChandelier(Elic):
    name = "elic2022-chandelier"
    model_class = Elic2022Chandelier

    def matches(self, state_dict: dict) -> bool:
        return self._elic(state_dict) and self._h_s_ends_in_a_convolution(state_dict)
