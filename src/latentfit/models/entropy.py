"""Entropy-coding arithmetic shared by the architectures: densities of given latents, the scale
indexes that pick each symbol's CDF, and the deterministic mode encoder and decoder both run in."""

from __future__ import annotations

import copy
import zlib
from contextlib import contextmanager

import torch
from compressai.entropy_models import EntropyBottleneck
from torch import Tensor, nn

from ..bitstream import VERSION as FORMAT_VERSION  # the entropy coding `compress` writes by default
from ..errors import BitstreamError


@contextmanager
def deterministic(device: torch.device):
    """Run what defines decoded pixels the same way in every process: one CPU thread (thread count
    changes how convolutions split their sums, so 1 and 2 threads round differently; the entropy
    coder's `h_s` always runs on the CPU), plus deterministic cuDNN on CUDA. Encoder and decoder both
    use it, so a file decodes to the pixels the encoder measured."""
    threads = torch.get_num_threads()
    previous = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.set_num_threads(1)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous


class IndexMismatchError(BitstreamError):
    """The decoder's scale indexes differ from the encoder's: decoding would give garbage."""


def bottleneck_likelihood(bottleneck: EntropyBottleneck, values: Tensor) -> Tensor:
    """Likelihood of `values` (B, C, H, W) under the factorized density, as CompressAI computes it."""
    channels_first = values.transpose(0, 1)
    shape = channels_first.shape
    likelihood, _, _ = bottleneck._likelihood(channels_first.reshape(shape[0], 1, -1))
    if bottleneck.use_likelihood_bound:
        likelihood = bottleneck.likelihood_lower_bound(likelihood)
    return likelihood.reshape(shape).transpose(0, 1)


def bottleneck_medians(bottleneck: EntropyBottleneck) -> Tensor:
    return bottleneck._get_medians().detach().reshape(1, -1, 1, 1)


def bottleneck_bits(bottleneck: EntropyBottleneck, values: Tensor) -> Tensor:
    """`−Σ log2 p(values)` under the factorized density."""
    return bottleneck_element_bits(bottleneck, values).sum()


def bottleneck_element_bits(bottleneck: EntropyBottleneck, values: Tensor) -> Tensor:
    """`−log2 p` of each of `values` under the factorized density."""
    return -torch.log2(bottleneck_likelihood(bottleneck, values))


def gaussian_bits(conditional: nn.Module, values: Tensor, scales: Tensor, means: Tensor | None) -> Tensor:
    """`−Σ log2 p(values)` under CompressAI's Gaussian conditional `(σ, μ)`."""
    return gaussian_element_bits(conditional, values, scales, means).sum()


def gaussian_element_bits(conditional: nn.Module, values: Tensor, scales: Tensor, means: Tensor | None) -> Tensor:
    """`−log2 p` of each of `values` under CompressAI's Gaussian conditional `(σ, μ)`."""
    likelihood = conditional._likelihood(values, scales, means)
    if conditional.use_likelihood_bound:
        likelihood = conditional.likelihood_lower_bound(likelihood)
    return -torch.log2(likelihood)


def for_indexes(module: nn.Module, format_version: int) -> nn.Module:
    """`module` as it computes what picks scale indexes in `format_version`: a float64 copy from
    format 2 on (see `scale_indexes`), the module itself in format 1 (CompressAI's arithmetic)."""
    return copy.deepcopy(module).double() if format_version >= 2 else module


def scale_indexes(h_s: nn.Module, gaussian_conditional: nn.Module, z_hat: Tensor, mean_scale: bool,
                  format_version: int = FORMAT_VERSION) -> Tensor:
    """The scale-table index of each element of `ŷ` (which CDF codes it), from `σ = h_s(ẑ)`.

    Encoder and decoder must agree on every index, or the entropy decoder desynchronises. In float32
    (format 1, CompressAI's own arithmetic) another convolution algorithm moves a few `σ` of a Kodak
    image across a table boundary (measured: 0–5 of 294,912 between two memory formats on one CPU;
    37 % of files made on another machine refused). Format 2 computes `σ` in float64, where rounding
    differences are ~1e-16 rather than ~1e-7: no index moved in the same measurement. `μ` is not
    taken from here: the decoder adds its own `μ` to the decoded symbols, so a last-bit difference
    in `μ` moves a pixel by at most a rounding step and never desynchronises the decoder.
    """
    h_s = for_indexes(h_s, format_version)
    params = h_s(z_hat.to(next(h_s.parameters()).dtype))
    scales = params.chunk(2, 1)[0] if mean_scale else params
    return gaussian_conditional.build_indexes(scales)


def index_checksum(indexes: Tensor | list[Tensor]) -> int:
    """CRC-32 of the scale-table indexes that select each symbol's CDF (models without a
    hyperprior have no indexes and store 0).

    Encoder and decoder compute these from `h_s(ẑ)` in floating point; if a platform or thread
    count rounds one scale across a table boundary the entropy decoder would silently desync
    (CompressAI's known cross-platform failure). Storing the checksum turns that into an error.
    """
    parts = indexes if isinstance(indexes, list) else [indexes]
    checksum = 0
    for part in parts:
        checksum = zlib.crc32(part.detach().to(torch.int32).cpu().numpy().tobytes(), checksum)
    return checksum
