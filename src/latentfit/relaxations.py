"""Quantisation proxies: differentiable stand-ins for rounding, one small class per method.

Each proxy maps offset latents `v` (`y − μ` or `z − median`) to relaxed values `ṽ`, given the
temperature `τ` and a random generator. Select one by name with `get_proxy("sga+ssl", a=2.3)`;
adding a method is one new class registered with `@register_proxy`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from .errors import LatentfitError
from .schedules import TemperatureSchedule

PROXIES: dict[str, type["QuantizationProxy"]] = {}

_EPS = 1e-5


def register_proxy(cls: type["QuantizationProxy"]) -> type["QuantizationProxy"]:
    PROXIES[cls.name] = cls
    return cls


def get_proxy(name: str, **options) -> "QuantizationProxy":
    """The proxy registered as `name`, constructed with `options` (None values are left at their
    defaults); an option the proxy does not take is an error."""
    try:
        cls = PROXIES[name]
    except KeyError:
        raise LatentfitError(f"unknown method '{name}' (known: {', '.join(PROXIES)})") from None
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        takes = ", ".join(cls.options) or "none"
        raise LatentfitError(f"method {name} has no option {', '.join(repr(k) for k in unknown)} (its options: {takes})")
    return cls(**{k: v for k, v in options.items() if v is not None})


def is_plain(spec: str) -> bool:
    """Whether `spec` names the plain encoder (a registered method that does not refine: `none`);
    False for refining methods and for names that are not methods (classical codecs)."""
    cls = PROXIES.get(spec.partition(":")[0].strip())
    return cls is not None and not cls.refines


def describe_methods() -> str:
    """Every registered method with its options, for help texts: `none, ..., sga+ssl (a, hard), ...`."""
    return ", ".join(name + (f" ({', '.join(cls.options)})" if cls.options else "") for name, cls in PROXIES.items())


def parse_method(spec: str) -> tuple[str, dict]:
    """`name` or `name:key=value[:key=value...]` (e.g. `sga+ssl3:a=1.4:power=1.4`) -> the method's
    name and its options; an unknown method, an option it does not take or a non-number is an error."""
    name, _, rest = spec.strip().partition(":")
    cls = PROXIES.get(name)
    if cls is None:
        raise LatentfitError(f"unknown method '{name}' (known: {', '.join(PROXIES)})")
    options: dict = {}
    for item in filter(None, rest.split(":")):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not key:
            raise LatentfitError(f"method option '{item}' is not key=value (in '{spec}')")
        if key not in cls.options:
            takes = ", ".join(cls.options) or "none"
            raise LatentfitError(f"method {name} has no option '{key}' (its options: {takes}; in '{spec}')")
        if value.lower() in ("true", "false"):
            options[key] = value.lower() == "true"
            continue
        try:
            options[key] = float(value)
        except ValueError:
            raise LatentfitError(f"method option {key} must be a number, got '{value}' (in '{spec}')") from None
    return name, options


def _uniform(v: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.rand(v.shape, generator=generator, device=v.device, dtype=v.dtype)


def _gumbel(shape: torch.Size, like: Tensor, generator: torch.Generator | None) -> Tensor:
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    return -torch.log(-torch.log(u.clamp(1e-10, 1.0 - 1e-7)))


class QuantizationProxy:
    """Base class. `relax(v, τ, generator)` returns the relaxed `ṽ` used in the proxy loss."""

    name: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()
    #: False only for `none`: the plain encoder, nothing to optimise.
    refines: ClassVar[bool] = True
    #: Whether the proxy anneals a temperature.
    annealed: ClassVar[bool] = False
    #: Adam lr used when the settings give none: the papers' 5e-3, or what we measured to be better
    #: with latentfit's default budget schedule and cosine lr decay (BENCHMARKS.md).
    default_lr: ClassVar[float] = 5e-3

    def default_schedule(self) -> TemperatureSchedule:
        return TemperatureSchedule(tau_max=1.0, rate=1e-3, t0=0.0)

    def relax(self, v: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"method": self.name} | {k: getattr(self, k) for k in self.options}


@register_proxy
class NoRefinement(QuantizationProxy):
    """`none`: the plain encoder; `relax` is hard rounding."""

    name = "none"
    refines = False

    def relax(self, v, tau, generator=None):
        return torch.round(v)


@register_proxy
class StraightThrough(QuantizationProxy):
    """STE: forward `round(v)`, backward the identity."""

    name = "ste"

    def relax(self, v, tau, generator=None):
        return v + (torch.round(v) - v).detach()


@register_proxy
class UniformNoise(QuantizationProxy):
    """Campos et al.: `ṽ = v + u`, `u ~ U(−½, ½)`."""

    name = "uniform-noise"

    def relax(self, v, tau, generator=None):
        return v + _uniform(v, generator) - 0.5


class GumbelAnnealing(QuantizationProxy):
    """Stochastic Gumbel annealing over candidate integers `k` with logits `ℓ_k`:

    `ṽ = Σ_k w_k · k`, `w = softmax((ℓ + g) / τ)`, `g ~ Gumbel(0, 1)` (soft sample), or with
    `hard=True` the one-hot argmax forward and the soft weights' gradient backward.
    """

    annealed = True
    options: ClassVar[tuple[str, ...]] = ("hard",)

    def __init__(self, hard: bool = False):
        self.hard = bool(hard)

    def candidates_and_logits(self, v: Tensor, tau: float) -> tuple[Tensor, Tensor]:
        """Candidate integers (…, K) and their logits `ℓ` (…, K) at temperature `τ`."""
        raise NotImplementedError

    def probabilities(self, v: Tensor, tau: float = 1.0) -> Tensor:
        """Class probabilities `softmax(ℓ)` without Gumbel noise (…, K)."""
        return torch.softmax(self.candidates_and_logits(v, tau)[1], dim=-1)

    def relax(self, v, tau, generator=None):
        candidates, logits = self.candidates_and_logits(v, tau)
        weights = torch.softmax((logits + _gumbel(logits.shape, logits, generator)) / tau, dim=-1)
        if self.hard:
            one_hot = torch.zeros_like(weights).scatter_(-1, weights.argmax(-1, keepdim=True), 1.0)
            weights = weights + (one_hot - weights).detach()
        return (weights * candidates).sum(-1)


class TwoClass(GumbelAnnealing):
    """Two neighbours `⌊v⌋, ⌈v⌉` with `r = v − ⌊v⌋`; subclasses give `(ℓ_floor, ℓ_ceil)·τ`."""

    def log_weights(self, r: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def candidates_and_logits(self, v, tau):
        floor = torch.floor(v).detach()
        r = (v - floor).clamp(_EPS, 1.0 - _EPS)
        log_floor, log_ceil = self.log_weights(r)
        candidates = torch.stack([floor, floor + 1.0], dim=-1)
        return candidates, torch.stack([log_floor, log_ceil], dim=-1) / tau


@register_proxy
class SGA(TwoClass):
    """Yang et al.: `ℓ_floor = −atanh(r)/τ`, `ℓ_ceil = −atanh(1 − r)/τ`."""

    name = "sga"

    def default_schedule(self):
        return TemperatureSchedule(tau_max=0.5, rate=1e-3, t0=700.0)

    def log_weights(self, r):
        return -torch.atanh(r), -torch.atanh(1.0 - r)


@register_proxy
class SGALinear(TwoClass):
    """SGA+ linear: `ℓ_floor = log(1 − r)/τ`, `ℓ_ceil = log(r)/τ`."""

    name = "sga+linear"

    def log_weights(self, r):
        return torch.log(1.0 - r), torch.log(r)


@register_proxy
class SGACosine(TwoClass):
    """SGA+ cosine: `ℓ_floor = log cos²(πr/2)/τ`, `ℓ_ceil = log sin²(πr/2)/τ`."""

    name = "sga+cosine"

    def log_weights(self, r):
        half_angle = 0.5 * math.pi * r
        return 2.0 * torch.log(torch.cos(half_angle).clamp_min(_EPS)), 2.0 * torch.log(torch.sin(half_angle).clamp_min(_EPS))


@register_proxy
class SGASigmoidScaledLogit(TwoClass):
    """SGA+ SSL: `ℓ_floor = log σ(−a·logit r)/τ`, `ℓ_ceil = log σ(a·logit r)/τ`; `a = 1` is linear."""

    name = "sga+ssl"
    options: ClassVar[tuple[str, ...]] = ("a", "hard")
    default_lr: ClassVar[float] = 3e-2  # benchmarks/time_to_quality.py: 3e-2 > 2e-2 > 1e-2 > 5e-3 at 500-600 steps

    def __init__(self, a: float = 2.3, hard: bool = False):
        super().__init__(hard)
        self.a = float(a)

    def log_weights(self, r):
        scaled = self.a * torch.logit(r)
        return torch.nn.functional.logsigmoid(-scaled), torch.nn.functional.logsigmoid(scaled)


class ThreeClass(GumbelAnnealing):
    """SGA+ three-class: neighbours `n−1, n, n+1` of `n = round(v)` at distances
    `d ∈ {d₀+1, d₀, d₀−1}`, `d₀ = v − n`; each class gets `ℓ_d = p · log f(s)/τ`."""

    options: ClassVar[tuple[str, ...]] = ("factor", "power", "hard")

    def __init__(self, factor: float = 0.98, power: float = 1.5, hard: bool = False):
        super().__init__(hard)
        self.factor = float(factor)
        self.power = float(power)

    def log_shape(self, distance: Tensor) -> Tensor:
        raise NotImplementedError

    def candidates_and_logits(self, v, tau):
        nearest = torch.round(v).detach()
        d0 = v - nearest
        offsets = torch.tensor([-1.0, 0.0, 1.0], device=v.device, dtype=v.dtype)
        candidates = nearest.unsqueeze(-1) + offsets
        distance = torch.abs(d0.unsqueeze(-1) - offsets)
        return candidates, self.power * self.log_shape(distance) / tau


@register_proxy
class SGALinear3(ThreeClass):
    """`f(s) = 1 − s`, `s = min(c·|d|, 1)`."""

    name = "sga+linear3"

    def log_shape(self, distance):
        s = (self.factor * distance).clamp(max=1.0)
        return torch.log((1.0 - s).clamp_min(_EPS))


@register_proxy
class SGACosine3(ThreeClass):
    """`f(s) = cos(πs/2)`, `s = min(c·|d|, 1)`."""

    name = "sga+cosine3"

    def log_shape(self, distance):
        s = (self.factor * distance).clamp(max=1.0)
        return torch.log(torch.cos(0.5 * math.pi * s).clamp_min(_EPS))


@register_proxy
class SGASigmoidScaledLogit3(ThreeClass):
    """`f(s) = σ(−a·logit s)`, `s = c·|d|/1.5`."""

    name = "sga+ssl3"
    options: ClassVar[tuple[str, ...]] = ("a", "factor", "power", "hard")

    def __init__(self, a: float = 2.3, factor: float = 0.98, power: float = 1.5, hard: bool = False):
        super().__init__(factor, power, hard)
        self.a = float(a)

    def log_shape(self, distance):
        s = (self.factor * distance / 1.5).clamp(_EPS, 1.0 - _EPS)
        return torch.nn.functional.logsigmoid(-self.a * torch.logit(s))
