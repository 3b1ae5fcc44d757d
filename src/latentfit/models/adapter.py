"""One small interface over CompressAI's hyperprior-family models: what refinement needs.

Symbols follow `docs/methods.md`: `y = g_a(x)`, `z = h_a(y)`, `(σ, μ) = h_s(ẑ)`, `x̂ = g_s(ŷ)`.
Every quantity is computed by the model's own modules, so the hard-quantised path of
`rate_distortion` is exactly what `compress()` transmits and `decompress()` rebuilds.
"""

from __future__ import annotations

import copy
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck
from compressai.models import FactorizedPrior, MeanScaleHyperprior, ScaleHyperprior
from torch import Tensor, nn

from ..bitstream import VERSION as FORMAT_VERSION  # the entropy coding `compress` writes by default
from ..errors import BitstreamError, LatentfitError
from .architectures import architecture_of
from .weights import weights_digest

#: A quantisation proxy applied to offset latents `v` (`v = y − μ` or `v = z − median`).
Relaxation = Callable[[Tensor], Tensor]


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


@dataclass
class Latents:
    """What is transmitted: `y` (B, M, h, w) and, for hyperprior models, `z` (B, N, h/4, w/4)."""

    y: Tensor
    z: Tensor | None = None

    def detach(self) -> "Latents":
        return Latents(self.y.detach().clone(), None if self.z is None else self.z.detach().clone())


@dataclass
class RateDistortion:
    """Terms of `L = R/P + λ·255²·MSE`; `bits` is `R = −Σ log2 p`, `x_hat` the (cropped) reconstruction."""

    loss: Tensor
    bits: Tensor
    mse: Tensor
    x_hat: Tensor
    pixels: int

    @property
    def bpp(self) -> float:
        return float(self.bits) / self.pixels

    @property
    def psnr(self) -> float:
        mse = float(self.mse)
        return float("inf") if mse <= 0 else -10.0 * torch.log10(torch.tensor(mse)).item()


def _bottleneck_likelihood(bottleneck: EntropyBottleneck, values: Tensor) -> Tensor:
    """Likelihood of `values` (B, C, H, W) under the factorized density, as CompressAI computes it."""
    channels_first = values.transpose(0, 1)
    shape = channels_first.shape
    likelihood, _, _ = bottleneck._likelihood(channels_first.reshape(shape[0], 1, -1))
    if bottleneck.use_likelihood_bound:
        likelihood = bottleneck.likelihood_lower_bound(likelihood)
    return likelihood.reshape(shape).transpose(0, 1)


def _bottleneck_medians(bottleneck: EntropyBottleneck) -> Tensor:
    return bottleneck._get_medians().detach().reshape(1, -1, 1, 1)


#: The parts of a CompressAI model that entropy coding uses (`g_a`/`g_s` are not among them).
ENTROPY_CODING_MODULES = ("entropy_bottleneck", "h_s", "gaussian_conditional")


def entropy_coder_copy(model: nn.Module) -> nn.Module:
    """A CPU copy of only the modules entropy coding needs (`ENTROPY_CODING_MODULES`): a fraction
    of the model's memory (the transforms `g_a`, `g_s` stay where they are, uncopied)."""
    coder = nn.Module()
    for name in ENTROPY_CODING_MODULES:
        module = getattr(model, name, None)
        if module is not None:
            setattr(coder, name, copy.deepcopy(module).cpu())
    return coder.eval()


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
    if format_version >= 2:
        h_s, z_hat = copy.deepcopy(h_s).double(), z_hat.double()
    params = h_s(z_hat)
    scales = params.chunk(2, 1)[0] if mean_scale else params
    return gaussian_conditional.build_indexes(scales)


class LatentModel:
    """A frozen CompressAI model seen through the operations latent refinement needs.

    - `analysis(x)`: the encoder's latents `(y₀, z₀)`;
    - `rate_distortion(latents, x, λ, relax)`: the R-D loss with `relax` as the quantiser
      (`torch.round` gives the true loss, a proxy gives a differentiable surrogate);
    - `compress(latents)` / `decompress(strings, shapes)`: entropy coding of *given* latents.
    """

    def __init__(self, model: nn.Module, name: str, quality: int, lmbda: float, source: str = "checkpoint"):
        self.model = model.eval().requires_grad_(False)
        self.architecture = architecture_of(model)
        self.name = name
        self.quality = int(quality)
        self.lmbda = float(lmbda)
        self.source = source
        self._digest: bytes | None = None
        self._proxy_views: dict[tuple[bool, bool], LatentModel] = {}
        self._cpu_coder: nn.Module | None = None

    # -- description ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def has_hyperprior(self) -> bool:
        return not type(self.model) is FactorizedPrior

    @property
    def stride(self) -> int:
        """Image sizes must be multiples of this (product of all downsampling factors)."""
        return 64 if self.has_hyperprior else 16

    @property
    def digest(self) -> bytes:
        if self._digest is None:
            self._digest = weights_digest(self.model)
        return self._digest

    def to(self, device: str | torch.device) -> "LatentModel":
        self.model.to(device)
        self._proxy_views.clear()
        self._cpu_coder = None
        return self

    def proxy_view(self, channels_last: bool = False, compile: bool = False) -> "LatentModel":
        """This model with private copies of `h_s` and `g_s` in channels-last memory format and/or
        compiled by `torch.compile`, for the *proxy* loss only (entropy models shared).

        Layout and compilation change floating-point rounding, so the true loss, `compress` and
        `decompress` always use the plain model: decoded pixels never depend on these speed settings.
        The view is cached, so compilation is paid once per model and image size.
        """
        if not (channels_last or compile):
            return self
        key = (channels_last, compile)
        if key not in self._proxy_views:
            model = copy.copy(self.model)
            model._modules = dict(self.model._modules)
            for name in ("g_s", "h_s"):
                if name not in model._modules:
                    continue
                module = copy.deepcopy(self.model._modules[name])
                if channels_last:
                    module = module.to(memory_format=torch.channels_last)
                model._modules[name] = torch.compile(module) if compile else module
            view = LatentModel.__new__(LatentModel)
            view.__dict__.update(self.__dict__)
            view.model, view._proxy_views = model, {}
            self._proxy_views[key] = view
        return self._proxy_views[key]

    # -- transforms ----------------------------------------------------------------------------
    def hyper_analysis(self, y: Tensor) -> Tensor:
        """`z = h_a(y)` (the scale hyperprior takes `|y|`)."""
        if type(self.model) is ScaleHyperprior:
            return self.model.h_a(torch.abs(y))
        return self.model.h_a(y)

    def analysis(self, x: Tensor) -> Latents:
        y = self.model.g_a(x)
        return Latents(y, self.hyper_analysis(y) if self.has_hyperprior else None)

    def _entropy_parameters(self, z_tilde: Tensor) -> tuple[Tensor, Tensor | None]:
        """`(σ, μ) = h_s(z̃)`; `μ` is None for the scale hyperprior (zero mean)."""
        return self._split_entropy_parameters(self.model.h_s(z_tilde))

    def _split_entropy_parameters(self, params: Tensor) -> tuple[Tensor, Tensor | None]:
        if type(self.model) is MeanScaleHyperprior:
            scales, means = params.chunk(2, 1)
            return scales, means
        return params, None

    def rate_distortion(
        self, latents: Latents, x: Tensor, lmbda: float, relax: Relaxation, clamp: bool = False
    ) -> RateDistortion:
        """`L = R/P + λ·255²·MSE(x, g_s(ỹ))` with `z̃ = m + relax(z − m)`, `ỹ = μ + relax(y − μ)`.

        `x` is the unpadded image (1, 3, H, W); the reconstruction is cropped to it and, with
        `clamp`, clamped to [0, 1] as the decoder does.
        """
        model = self.model
        if self.has_hyperprior:
            medians = _bottleneck_medians(model.entropy_bottleneck)
            z_tilde = medians + relax(latents.z - medians)
            scales, means = self._entropy_parameters(z_tilde)
            y_tilde = relax(latents.y) if means is None else means + relax(latents.y - means)
            likelihood_y = model.gaussian_conditional._likelihood(y_tilde, scales, means)
            if model.gaussian_conditional.use_likelihood_bound:
                likelihood_y = model.gaussian_conditional.likelihood_lower_bound(likelihood_y)
            bits = -torch.log2(likelihood_y).sum() - torch.log2(_bottleneck_likelihood(model.entropy_bottleneck, z_tilde)).sum()
        else:
            medians = _bottleneck_medians(model.entropy_bottleneck)
            y_tilde = medians + relax(latents.y - medians)
            bits = -torch.log2(_bottleneck_likelihood(model.entropy_bottleneck, y_tilde)).sum()
        x_hat = model.g_s(y_tilde)[..., : x.shape[-2], : x.shape[-1]]
        if clamp:
            x_hat = x_hat.clamp(0, 1)
        pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
        mse = F.mse_loss(x_hat, x)
        return RateDistortion(bits / pixels + lmbda * 255.0**2 * mse, bits, mse, x_hat, pixels)

    @torch.no_grad()
    def true_rate_distortion(self, latents: Latents, x: Tensor, lmbda: float) -> RateDistortion:
        """`L_true`: the loss of the hard-quantised latents, i.e. of what is actually transmitted
        (computed in `deterministic` mode, so its reconstruction is exactly what `decompress` gives)."""
        with deterministic(self.device):
            return self.rate_distortion(latents, x, lmbda, torch.round, clamp=True)

    # -- entropy coding ------------------------------------------------------------------------
    @staticmethod
    def index_checksum(indexes: Tensor) -> int:
        """CRC-32 of the scale-table indexes that select each symbol's CDF (models without a
        hyperprior have no indexes and store 0).

        Encoder and decoder compute these from `h_s(ẑ)` in floating point; if a platform or thread
        count rounds one scale across a table boundary the entropy decoder would silently desync
        (CompressAI's known cross-platform failure). Storing the checksum turns that into an error.
        """
        return zlib.crc32(indexes.detach().to(torch.int32).cpu().numpy().tobytes())

    def _coder(self) -> nn.Module:
        """The model whose entropy bottleneck, `h_s` and Gaussian conditional do the entropy coding:
        always a CPU one (a private copy when this model lives on a GPU). The scale indexes then come
        from the same single-threaded CPU arithmetic on every machine and device, so a file encoded
        on a GPU decodes on a CPU and vice versa; only `g_s` (the pixels) runs on `device`."""
        if self.device.type == "cpu":
            return self.model
        if self._cpu_coder is None:
            self._cpu_coder = entropy_coder_copy(self.model)
        return self._cpu_coder

    def _hyper_decode(self, coder: nn.Module, z_hat: Tensor, format_version: int) -> tuple[Tensor | None, Tensor]:
        """`(μ, indexes)` from `ẑ`, on the CPU coder (see `_coder`); indexes as `scale_indexes` says."""
        z_hat = z_hat.cpu()
        _, means = self._split_entropy_parameters(coder.h_s(z_hat))
        mean_scale = type(self.model) is MeanScaleHyperprior
        return means, scale_indexes(coder.h_s, coder.gaussian_conditional, z_hat, mean_scale, format_version)

    @torch.no_grad()
    def compress(self, latents: Latents, format_version: int = FORMAT_VERSION
                 ) -> tuple[list[bytes], list[tuple[int, int]], int]:
        """Entropy-code given latents: the strings, each latent's spatial shape, the index checksum.

        With `format_version=1` and `latents = analysis(x)` the strings are byte-identical to the
        model's own `compress(x)`; format 2 differs only in the scale indexes (see `scale_indexes`).
        """
        if latents.y.shape[0] != 1:
            raise LatentfitError("compress takes one image at a time")
        with deterministic(self.device):
            return self._compress(latents, format_version)

    def _compress(self, latents: Latents, format_version: int) -> tuple[list[bytes], list[tuple[int, int]], int]:
        coder = self._coder()
        y, z = latents.y.cpu(), None if latents.z is None else latents.z.cpu()
        if not self.has_hyperprior:
            strings = coder.entropy_bottleneck.compress(y)
            return [strings[0]], [tuple(latents.y.shape[-2:])], 0
        z_strings = coder.entropy_bottleneck.compress(z)
        z_hat = coder.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
        means, indexes = self._hyper_decode(coder, z_hat, format_version)
        y_strings = coder.gaussian_conditional.compress(y, indexes, means=means)
        shapes = [tuple(latents.y.shape[-2:]), tuple(latents.z.shape[-2:])]
        return [y_strings[0], z_strings[0]], shapes, self.index_checksum(indexes)

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial shapes of the latents for a padded image of `height` x `width`."""
        y_shape = (height // 16, width // 16)
        return [y_shape, (height // 64, width // 64)] if self.has_hyperprior else [y_shape]

    @torch.no_grad()
    def decompress(self, strings: list[bytes], shapes: list[tuple[int, int]], index_checksum: int | None = None,
                   format_version: int = FORMAT_VERSION) -> Tensor:
        """`x̂ = g_s(ŷ)` clamped to [0, 1], from the strings written by `compress` (mirrors it).

        With `index_checksum`, refuses (IndexMismatchError) when this machine's scale indexes differ
        from the encoder's, instead of decoding garbage.
        """
        with deterministic(self.device):
            return self._decompress(strings, shapes, index_checksum, format_version)

    def _decompress(self, strings: list[bytes], shapes: list[tuple[int, int]], index_checksum: int | None,
                    format_version: int) -> Tensor:
        coder = self._coder()
        if not self.has_hyperprior:
            y_hat = coder.entropy_bottleneck.decompress([strings[0]], shapes[0])
        else:
            z_hat = coder.entropy_bottleneck.decompress([strings[1]], shapes[1])
            means, indexes = self._hyper_decode(coder, z_hat, format_version)
            if index_checksum is not None and self.index_checksum(indexes) != index_checksum:
                raise IndexMismatchError(
                    "entropy-model scales computed here differ from the encoder's (floating-point differences "
                    "between machines); refusing to decode a garbled image"
                )
            y_hat = coder.gaussian_conditional.decompress([strings[0]], indexes, means=means)
        return self.model.g_s(y_hat.to(self.device)).clamp_(0, 1)
