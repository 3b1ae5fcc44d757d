"""One small interface over CompressAI models: what refinement needs.

Symbols follow the methods' specification (`../shared/docs/methods.md` beside the repository): `y = g_a(x)`, `z = h_a(y)`, `(σ, μ) = h_s(ẑ)`, `x̂ = g_s(ŷ)`.
What differs between architectures (the rate of given latents, entropy coding) is delegated to the
model's `Architecture` (`models/architectures/`); every quantity is computed by the model's own
modules, so the hard-quantised path of `rate_distortion` is exactly what `compress()` transmits and
`decompress()` rebuilds.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..deadline import Deadline
from ..distortion import Measure
from ..errors import LatentfitError
from ..metrics import psnr_from_mse, rd_loss
from .architectures import Architecture, architecture_for
from .architectures.parts import Relaxation
from .entropy import FORMAT_VERSION, IndexMismatchError, deterministic, index_checksum
from .update import Update
from .weights import weights_digest

__all__ = ["IndexMismatchError", "LatentModel", "Latents", "RateDistortion", "Relaxation", "deterministic",
           "entropy_coder_copy"]


@dataclass
class Latents:
    """What is transmitted: `y` (B, M, h, w), for hyperprior models `z` (B, N, h/4, w/4), and with
    `--adapt` a decoder update (`models.update.Update`; None: the decoder as trained)."""

    y: Tensor
    z: Tensor | None = None
    update: Update | None = None

    def detach(self) -> "Latents":
        return Latents(self.y.detach().clone(), None if self.z is None else self.z.detach().clone(),
                       None if self.update is None else self.update.detach())


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
        return psnr_from_mse(self.mse)


def entropy_coder_copy(model: nn.Module) -> nn.Module:
    """A CPU copy of only the modules entropy coding needs (its architecture's `coding_modules`): a
    fraction of the model's memory (the transforms `g_a`, `g_s` stay where they are, uncopied)."""
    coder = nn.Module()
    for name in architecture_for(model).coding_modules:
        module = getattr(model, name, None)
        if module is not None:
            setattr(coder, name, copy.deepcopy(module).cpu())
    return coder.eval()


class BFloat16(nn.Module):
    """`module` run under bfloat16 autocast on its input's device, its output back in float32: the
    proxy's synthesis transform at about 2.4x the speed on a CPU with AVX512-BF16 (`precision="bf16"`)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.module(x).float()


class LatentModel:
    """A frozen CompressAI model seen through the operations latent refinement needs.

    - `analysis(x)`: the encoder's latents `(y₀, z₀)`;
    - `rate_distortion(latents, x, λ, relax)`: the R-D loss with `relax` as the quantiser
      (`torch.round` gives the true loss, a proxy gives a differentiable surrogate);
    - `compress(latents)` / `decompress(strings, shapes)`: entropy coding of *given* latents.
    """

    def __init__(self, model: nn.Module, name: str, quality: int, lmbda: float, source: str = "checkpoint",
                 digest: bytes | None = None, encoder: str | None = None):
        self.model = model.eval().requires_grad_(False)
        self.arch: Architecture = architecture_for(model)
        self.architecture = self.arch.name
        self.name = name
        self.quality = int(quality)
        self.lmbda = float(lmbda)
        self.source = source
        #: The digest files carry: the weights that decode them. Given for a fine-tuned encoder over a base
        #: model (`encoder` names it), whose decoder-side tensors are the base's: the base's digest.
        self._digest: bytes | None = digest
        self.encoder = encoder
        self._proxy_views: dict[tuple[bool, bool], LatentModel] = {}
        self._cpu_coder: nn.Module | None = None

    # -- description ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def has_hyperprior(self) -> bool:
        return self.arch.has_hyperprior

    @property
    def stride(self) -> int:
        """Image sizes must be multiples of this (product of all downsampling factors)."""
        return self.arch.stride

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

    def proxy_view(self, channels_last: bool = False, compile: bool = False, precision: str = "fp32") -> "LatentModel":
        """This model with private copies of `h_s` and `g_s` in channels-last memory format and/or
        compiled by `torch.compile`, and with `precision="bf16"` a `g_s` run under bfloat16 autocast,
        for the *proxy* loss only (entropy models shared).

        Layout, compilation and precision change floating-point rounding, so the true loss, `compress`
        and `decompress` always use the plain model: decoded pixels never depend on these speed settings.
        The view is cached, so compilation is paid once per model and image size.
        """
        if not (channels_last or compile or precision != "fp32"):
            return self
        key = (channels_last, compile, precision)
        if key not in self._proxy_views:
            model = copy.copy(self.model)
            model._modules = dict(self.model._modules)
            for name in ("g_s", "h_s"):
                if name not in model._modules:
                    continue
                module = copy.deepcopy(self.model._modules[name])
                if channels_last:
                    module = module.to(memory_format=torch.channels_last)
                module = torch.compile(module) if compile else module
                model._modules[name] = BFloat16(module) if precision == "bf16" and name == "g_s" else module
            view = LatentModel.__new__(LatentModel)
            view.__dict__.update(self.__dict__)
            view.model, view._proxy_views = model, {}
            self._proxy_views[key] = view
        return self._proxy_views[key]

    # -- transforms ----------------------------------------------------------------------------
    def hyper_analysis(self, y: Tensor) -> Tensor:
        """`z = h_a(y)` (the scale hyperprior takes `|y|`)."""
        return self.arch.hyper_analysis(self.model, y)

    def analysis(self, x: Tensor) -> Latents:
        y = self.model.g_a(x)
        return Latents(y, self.hyper_analysis(y) if self.has_hyperprior else None)

    @torch.no_grad()
    def closed_loop_analysis(self, x: Tensor, x_padded: Tensor, lmbda: float, passes: int, step: float,
                             deadline: Deadline | None = None, distortion: Measure | None = None
                             ) -> tuple[Latents, RateDistortion, float]:
        """The encoder's latents corrected by `passes` rounds of analysis by synthesis, their true loss,
        and the seconds of one pass: each decodes the best latents so far to `x̂` and adds
        `step`·(y − g_a(x̂)) to their `y` (`z = h_a(y)` anew), so `y` moves the way the encoder sees the
        decoder's error; a round that does not lower the true loss halves `step` for the next. The best
        round is returned (round 0 is the encoder's own, so never worse than it). `x` is the image,
        `x_padded` the encoder's input (`x` padded to the stride, edges replicated; `x̂` is padded
        alike). With a `deadline` (`latentfit.deadline.Deadline`), a pass that would not end by its
        end for evaluations of a pass's cost (measured on the encoder's analysis and evaluation) is
        not begun."""
        from ..imageio import pad_to_multiple

        started = time.perf_counter()
        latents = self.analysis(x_padded)
        best = (latents, self.true_rate_distortion(latents, x, lmbda, distortion))
        pass_seconds = time.perf_counter() - started
        for _ in range(passes):
            if deadline is not None and not deadline.fits(pass_seconds, pass_seconds):
                break
            latents, terms = best
            x_hat = pad_to_multiple(terms.x_hat, self.stride)
            y = latents.y + step * (latents.y - self.model.g_a(x_hat))
            latents = Latents(y, self.hyper_analysis(y) if self.has_hyperprior else None)
            candidate = (latents, self.true_rate_distortion(latents, x, lmbda, distortion))
            if candidate[1].loss < best[1].loss:
                best = candidate
            else:
                step /= 2
        return (*best, pass_seconds)

    def rate_distortion(
        self, latents: Latents, x: Tensor, lmbda: float, relax: Relaxation, clamp: bool = False,
        distortion: Measure | None = None,
    ) -> RateDistortion:
        """`L = R/P + λ·255²·D(x, g_s(ỹ))` with `z̃ = m + relax(z − m)`, `ỹ = μ + relax(y − μ)`
        (the architecture's `rate` says how `μ` is found); `D` is the MSE, or `distortion`
        (`latentfit.distortion`: MS-SSIM, a mix, a region of interest's weights).

        `x` is the unpadded image (1, 3, H, W); the reconstruction is cropped to it and, with
        `clamp`, clamped to [0, 1] as the decoder does. A decoder update in `latents` acts on `g_s`
        and adds its bits: relaxed by `relax` and its surrogate rate, or with `clamp` (the decoder's
        view) rounded and its real code length.
        """
        bits, y_tilde = self.arch.rate(self.model, latents.y, latents.z, relax)
        if latents.update is None:
            x_hat = self.model.g_s(y_tilde)
        else:
            theta, update_bits = latents.update.relaxed(exact=clamp)
            with latents.update.form.applied(self.model.g_s, theta):
                x_hat = self.model.g_s(y_tilde)
            bits = bits + update_bits
        x_hat = x_hat[..., : x.shape[-2], : x.shape[-1]]
        if clamp:
            x_hat = x_hat.clamp(0, 1)
        pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
        mse = F.mse_loss(x_hat, x)
        d = mse if distortion is None else distortion(x_hat, x)
        return RateDistortion(rd_loss(bits / pixels, d, lmbda), bits, mse, x_hat, pixels)

    @torch.no_grad()
    def true_rate_distortion(self, latents: Latents, x: Tensor, lmbda: float,
                             distortion: Measure | None = None) -> RateDistortion:
        """`L_true`: the loss of the hard-quantised latents, i.e. of what is actually transmitted
        (computed in `deterministic` mode, so its reconstruction is exactly what `decompress` gives)."""
        with deterministic(self.device):
            return self.rate_distortion(latents, x, lmbda, torch.round, clamp=True, distortion=distortion)

    # -- entropy coding ------------------------------------------------------------------------
    index_checksum = staticmethod(index_checksum)

    def _coder(self) -> nn.Module:
        """The model whose entropy models (and the networks that compute their parameters) do the
        entropy coding: always a CPU one (a private copy when this model lives on a GPU). The scale
        indexes then come from the same single-threaded CPU arithmetic on every machine and device, so a
        file encoded on a GPU decodes on a CPU and vice versa; only `g_s` (the pixels) runs on `device`."""
        if self.device.type == "cpu":
            return self.model
        if self._cpu_coder is None:
            self._cpu_coder = entropy_coder_copy(self.model)
        return self._cpu_coder

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
        y, z = latents.y.cpu(), None if latents.z is None else latents.z.cpu()
        strings, checksum = self.arch.compress(self._coder(), y, z, format_version)
        shapes = [tuple(latents.y.shape[-2:])] + ([tuple(latents.z.shape[-2:])] if latents.z is not None else [])
        return strings, shapes, checksum

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Spatial shapes of the latents for a padded image of `height` x `width`."""
        return self.arch.latent_shapes(height, width)

    @torch.no_grad()
    def decompress(self, strings: list[bytes], shapes: list[tuple[int, int]], index_checksum: int | None = None,
                   format_version: int = FORMAT_VERSION, update: Update | None = None) -> Tensor:
        """`x̂ = g_s(ŷ)` clamped to [0, 1], from the strings written by `compress` (mirrors it), with
        the file's decoder `update` applied to `g_s` for this call (the model stays as trained).

        With `index_checksum`, refuses (IndexMismatchError) when this machine's scale indexes differ
        from the encoder's, instead of decoding garbage.
        """
        with deterministic(self.device):
            return self._decompress(strings, shapes, index_checksum, format_version, update)

    def _decompress(self, strings: list[bytes], shapes: list[tuple[int, int]], index_checksum: int | None,
                    format_version: int, update: Update | None) -> Tensor:
        y_hat = self.arch.decompress(self._coder(), strings, shapes, format_version, index_checksum).to(self.device)
        if update is None:
            return self.model.g_s(y_hat).clamp_(0, 1)
        theta = torch.round(update.values.to(self.device)) * update.form.step
        with update.form.applied(self.model.g_s, theta):
            return self.model.g_s(y_hat).clamp_(0, 1)
