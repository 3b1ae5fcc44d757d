"""Per-image decoder updates (`encode --adapt`): a few decoder-side parameters refined after the latents
(and with them: `latentfit.refine.adapt`), sent in the file (quantised and entropy-coded) and paid
for in the loss.

Following van Rozendaal et al. (ICLR 2021, instance-adaptive compression), the update's bits are part
of the rate the optimiser minimises: while refining, a differentiable surrogate (the ideal code length
of the relaxed values under a discrete Laplace law); in the true loss, the real code length of the
section the file would hold (none at all for an all-zero update, so the latents-only result is the
adapt stage's start and its keep-best never makes a file worse than the latents alone).

The base model stays as trained and shared: an update acts on `g_s` through forward hooks for the
duration of one synthesis (`UpdateForm.applied`), so nothing is copied, and nothing that picks
entropy-coding indexes changes (`h_s`, the entropy models): a file's scale indexes and their checksum
stay those of the base model, and decoding stays safe across machines.

Forms (`UPDATE_FORMS`, chosen by `RefinementConfig.adapt`; `decoder` names the recommended one):

- `channels`: a scale and a bias per output channel after each convolution of `g_s` (774 values on
  the bundled models): what the image's statistics shift inside the decoder;
- `postfilter`: a residual k×k convolution from RGB to RGB after `g_s` (84 values with k = 3): a
  per-image sharpening / colour correction.

Values are integers `q` (in steps of `2^-step_exp`; while refining, the continuous variable the proxy
relaxes like the latents) coded with CompressAI's rANS coder under one discrete Laplace law
`P(q) ∝ r^|q|`, `r` from `DECAYS` chosen per file for the shortest code (values beyond ±`TAIL` escape
through the coder's bypass mode). The CDFs are computed from exact binary fractions by repeated
multiplication, so they are the same on every machine.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, ClassVar, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..bitstream import MIN_UPDATE_VALUES, UpdateSection
from ..errors import BitstreamError, LatentfitError
from ..strategies import Registry, Strategy

__all__ = ["DECAYS", "MAX_VALUE", "TAIL", "UPDATE_FORMS", "Update", "UpdateForm", "adapt_form", "decode_update",
           "encode_update", "update_form"]

UPDATE_FORMS: Registry["UpdateForm"] = Registry("decoder update form")

#: The discrete Laplace laws' ratios `r` a file may use (its `decay` byte indexes them): exact binary
#: fractions 1/64 … 63/64.
DECAYS = tuple(j / 64 for j in range(1, 64))
#: Values in ±TAIL are coded with the law; beyond it, through the rANS coder's bypass mode.
TAIL = 24
#: Largest |q| an encoder writes and a decoder accepts.
MAX_VALUE = 1 << 15
#: The name `--adapt` gives the recommended form.
RECOMMENDED = "decoder"


@dataclass(frozen=True)
class UpdateForm(Strategy):
    """Where an update acts on `g_s`, and how many values it has. `step_exp`: values are multiples of
    2^-step_exp; `surrogate_decay`: the Laplace ratio of the rate surrogate while refining (the
    file's own law is fitted to the final values).

    How it is refined (`latentfit.refine`, the adapt stage): after the latents alone, for `share` of
    their steps more, the update from zero with the latents; the update's lr is `lr_scale` times the
    refinement's lr (both in quantisation steps), the latents' `latents_lr` times it."""

    step_exp: int = 8
    surrogate_decay: float = 0.25
    lr_scale: float = 10.0
    share: float = 0.25
    latents_lr: float = 0.1
    #: The form's number in the file, and the option its one argument byte holds (None: none).
    code: ClassVar[int]
    argument_option: ClassVar[str | None] = None

    def __post_init__(self):
        if not 0 <= self.step_exp <= 24:
            raise ValueError(f"step_exp must be 0..24, got {self.step_exp}")
        if not 0 < self.surrogate_decay < 1:
            raise ValueError(f"surrogate_decay must be in (0, 1), got {self.surrogate_decay}")
        if self.lr_scale <= 0:
            raise ValueError(f"lr_scale must be > 0, got {self.lr_scale}")
        if not 0 < self.share <= 4:
            raise ValueError(f"share must be in (0, 4] (of the latents' steps), got {self.share}")
        if not 0 < self.latents_lr <= 1:
            raise ValueError(f"latents_lr must be in (0, 1], got {self.latents_lr}")

    @property
    def step(self) -> float:
        return 2.0 ** -self.step_exp

    def argument(self) -> int:
        """The form's own option as the file's one byte for it (0 when it has none)."""
        return 0 if self.argument_option is None else int(getattr(self, self.argument_option))

    def parameter_count(self, g_s: nn.Module) -> int:
        raise NotImplementedError

    def hooks(self, g_s: nn.Module, theta: Tensor) -> list[tuple[nn.Module, Callable]]:
        """(module, forward hook) pairs that apply the parameters `theta` (real values) to `g_s`."""
        raise NotImplementedError

    @contextmanager
    def applied(self, g_s: nn.Module, theta: Tensor) -> Iterator[None]:
        """`g_s` with the update `theta` for the duration of the block."""
        count = self.parameter_count(g_s)
        if theta.numel() != count:
            raise LatentfitError(f"a {self.name} update of {theta.numel()} values for a decoder that takes {count}")
        handles = [module.register_forward_hook(hook) for module, hook in self.hooks(g_s, theta)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def _convolutions(g_s: nn.Module) -> list[nn.Module]:
    return [m for m in g_s.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


@UPDATE_FORMS.register
@dataclass(frozen=True)
class ChannelAffine(UpdateForm):
    """A scale `1 + s_c` and a bias `b_c` per output channel after every convolution of `g_s`."""

    name: ClassVar[str] = "channels"
    code: ClassVar[int] = 1

    def parameter_count(self, g_s: nn.Module) -> int:
        return sum(2 * conv.out_channels for conv in _convolutions(g_s))

    def hooks(self, g_s: nn.Module, theta: Tensor) -> list[tuple[nn.Module, Callable]]:
        pairs, offset = [], 0
        for conv in _convolutions(g_s):
            channels = conv.out_channels
            scale = theta[offset : offset + channels].view(1, -1, 1, 1)
            bias = theta[offset + channels : offset + 2 * channels].view(1, -1, 1, 1)
            offset += 2 * channels
            pairs.append((conv, lambda module, inputs, out, scale=scale, bias=bias:
                          torch.addcmul(bias.to(out.dtype), out, (1 + scale).to(out.dtype))))
        return pairs


@UPDATE_FORMS.register
@dataclass(frozen=True)
class PostFilter(UpdateForm):
    """`x̂ + W ∗ x̂ + b`: a residual `kernel`×`kernel` convolution from RGB to RGB on `g_s`'s output
    (edges replicated), starting from the identity (W = 0)."""

    name: ClassVar[str] = "postfilter"
    code: ClassVar[int] = 2
    argument_option: ClassVar[str | None] = "kernel"
    kernel: int = 3
    step_exp: int = 10

    def __post_init__(self):
        super().__post_init__()
        if self.kernel not in (1, 3, 5, 7):
            raise ValueError(f"kernel must be 1, 3, 5 or 7, got {self.kernel}")

    def parameter_count(self, g_s: nn.Module) -> int:
        channels = _convolutions(g_s)[-1].out_channels
        return channels * channels * self.kernel ** 2 + channels

    def hooks(self, g_s: nn.Module, theta: Tensor) -> list[tuple[nn.Module, Callable]]:
        channels = _convolutions(g_s)[-1].out_channels
        weights = channels * channels * self.kernel ** 2
        weight = theta[:weights].view(channels, channels, self.kernel, self.kernel)
        bias = theta[weights:]
        pad = self.kernel // 2

        def filtered(module, inputs, out):
            padded = F.pad(out, (pad,) * 4, mode="replicate") if pad else out
            return out + F.conv2d(padded, weight.to(out.dtype), bias.to(out.dtype))

        return [(g_s, filtered)]


#: The form each `--adapt` name stands for (`decoder`: the recommended one).
ALIASES = {RECOMMENDED: "channels"}


def adapt_form(spec: str) -> UpdateForm | None:
    """The form `--adapt` names: `none`, `decoder` (the recommended form), or a form with options,
    `postfilter:kernel=5:step_exp=9`. An unknown form or option is a one-line error."""
    name, _, rest = spec.strip().partition(":")
    if name == "none" and not rest:
        return None
    options: dict = {}
    for item in filter(None, rest.split(":")):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not key:
            raise LatentfitError(f"adapt option '{item}' is not key=value (in '{spec}')")
        try:
            options[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            raise LatentfitError(f"adapt option {key} must be a number, got '{value}' (in '{spec}')") from None
    if name not in UPDATE_FORMS.entries and name not in ALIASES:
        raise LatentfitError(f"unknown adapt '{name}' (use none, {RECOMMENDED}, {', '.join(UPDATE_FORMS.names())})")
    return UPDATE_FORMS.get(ALIASES.get(name, name), **options)


# -- the code ------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _law(decay: int) -> tuple[list[int], np.ndarray]:
    """The quantised CDF of law `decay` (an index into `DECAYS`) for CompressAI's rANS coder, and the
    ideal code length in bits of each value in ±TAIL and of an escape (the last entry)."""
    from compressai._CXX import pmf_to_quantized_cdf

    r = DECAYS[decay]
    powers = [1.0]
    for _ in range(TAIL + 1):
        powers.append(powers[-1] * r)  # exact IEEE products: the same table on every machine
    total = (1 + r) / (1 - r)
    pmf = [powers[abs(k)] / total for k in range(-TAIL, TAIL + 1)]
    tail = 2 * powers[TAIL + 1] / (1 - r) / total
    cdf = pmf_to_quantized_cdf(pmf + [tail], 16)
    counts = np.diff(np.asarray(cdf, dtype=np.float64))
    return list(cdf), -np.log2(counts / 65536.0)


def _ideal_bits(values: np.ndarray, decay: int) -> float:
    bits = _law(decay)[1]
    inside = np.abs(values) <= TAIL
    escapes = values[~inside]
    # an escape costs the escape symbol and about 2·log2 of the excess in bypass bits
    escape_bits = (bits[-1] + 2 * np.log2(np.abs(escapes) - TAIL + 1) + 4).sum() if escapes.size else 0.0
    return float(bits[values[inside] + TAIL].sum() + escape_bits)


def encode_update(form: UpdateForm, values: np.ndarray) -> UpdateSection | None:
    """The file's section for integer `values` (None when all are zero: nothing is sent)."""
    from compressai.ans import RansEncoder

    values = np.asarray(values, dtype=np.int64)
    if not values.any():
        return None
    if values.size < MIN_UPDATE_VALUES:
        raise LatentfitError(f"a decoder update needs at least {MIN_UPDATE_VALUES} values, got {values.size}")
    if np.abs(values).max() > MAX_VALUE:
        raise LatentfitError(f"decoder update value {int(np.abs(values).max())} beyond ±{MAX_VALUE}")
    decay = min(range(len(DECAYS)), key=lambda d: _ideal_bits(values, d))
    cdf = _law(decay)[0]
    payload = RansEncoder().encode_with_indexes(values.tolist(), [0] * values.size, [cdf], [len(cdf)], [-TAIL])
    return UpdateSection(form.code, form.argument(), form.step_exp, decay, int(values.size), payload)


def update_form(section: UpdateSection, source: str = "bitstream") -> UpdateForm:
    """The form a file's update section names (untrusted: an unknown form or option is refused)."""
    forms = {cls.code: cls for cls in UPDATE_FORMS.entries.values()}
    cls = forms.get(section.form)
    if cls is None:
        raise BitstreamError(f"{source}: unknown decoder update form {section.form}")
    if section.decay >= len(DECAYS):
        raise BitstreamError(f"{source}: decoder update law {section.decay} out of range")
    if cls.argument_option is None and section.argument != 0:
        raise BitstreamError(f"{source}: decoder update form {cls.name} takes no option, got {section.argument}")
    options = {"step_exp": section.step_exp} | ({cls.argument_option: section.argument} if cls.argument_option else {})
    try:
        return cls(**options)
    except ValueError as exc:
        raise BitstreamError(f"{source}: bad decoder update ({exc})") from None


def decode_update(section: UpdateSection, source: str = "bitstream") -> np.ndarray:
    """The integer values of a file's update section (refused when out of range)."""
    from compressai.ans import RansDecoder

    cdf = _law(section.decay)[0]
    values = np.asarray(RansDecoder().decode_with_indexes(section.payload, [0] * section.count, [cdf], [len(cdf)],
                                                          [-TAIL]), dtype=np.int64)
    if values.size != section.count or (values.size and np.abs(values).max() > MAX_VALUE):
        raise BitstreamError(f"{source}: corrupted decoder update (values out of range)")
    return values


# -- an update as refined and as sent ------------------------------------------------------------
@dataclass
class Update:
    """A decoder update: its form and `values` in quantisation steps (the refined variable, continuous;
    rounded, what the file holds)."""

    form: UpdateForm
    values: Tensor

    @classmethod
    def zero(cls, form: UpdateForm, g_s: nn.Module, device) -> "Update":
        return cls(form, torch.zeros(form.parameter_count(g_s), device=device))

    def detach(self) -> "Update":
        return Update(self.form, self.values.detach().clone())

    def integers(self) -> np.ndarray:
        return torch.round(self.values.detach()).clamp(-MAX_VALUE, MAX_VALUE).cpu().numpy().astype(np.int64)

    def section(self) -> UpdateSection | None:
        return encode_update(self.form, self.integers())

    def coded_bytes(self) -> int:
        """Bytes the update adds to the file (0 for an all-zero update, which is not written)."""
        section = self.section()
        return 0 if section is None else len(section.to_bytes())

    def relaxed(self, exact: bool) -> tuple[Tensor, Tensor | float]:
        """The parameters `θ` the decoder would use and the update's bits: `exact`, the rounded values
        and the real code length of the file's section; else, for refining, the rounded values with
        the straight-through gradient (the latents' stochastic proxies have no gradient at the
        integers an update starts from) and the surrogate `Σ |q|·(−log2 r)`, the slope of the code
        length under the form's Laplace law (its constant per value, which no step changes, left
        out: an all-zero update costs 0). Neither draws noise: an update's steps are deterministic."""
        if exact:
            q = torch.round(self.values.detach()).clamp(-MAX_VALUE, MAX_VALUE)
            return q * self.form.step, 8.0 * self.coded_bytes()
        q = self.values + (torch.round(self.values) - self.values).detach()
        bits = self.values.abs().sum() * -math.log2(self.form.surrogate_decay)
        return q * self.form.step, bits
