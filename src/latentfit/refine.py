"""The refinement loop: optimise one image's latents against a proxy of the true R-D loss.

Adam on `(y, z)` jointly (or on `y` with `z = h_a(y)` recomputed), model frozen, starting from the
encoder's `(y₀, z₀)`. Every `evaluate_every` steps the true loss `L_true` of the hard-quantised
iterate is measured and the best iterate kept, so the result is never worse than the plain encoder.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Literal

import torch
from torch import Tensor

from .errors import LatentfitError
from .imageio import pad_to_multiple
from .models.adapter import LatentModel, Latents, RateDistortion
from .relaxations import QuantizationProxy, get_proxy
from .schedules import TemperatureSchedule, cosine_learning_rate


@dataclass
class RefinementConfig:
    """Settings of `refine_latents`. `lmbda=None` uses the model's training λ; `schedule=None`
    the method's own default (SGA: τ_max 0.5, t₀ 700; SGA+: τ_max 1, t₀ 0; rate 1e-3)."""

    method: str = "sga+ssl"
    steps: int = 500
    lr: float = 5e-3
    lmbda: float | None = None
    seed: int = 0
    evaluate_every: int = 10
    variables: Literal["joint", "y"] = "joint"
    schedule: TemperatureSchedule | None = None
    proxy_options: dict = field(default_factory=dict)
    time_budget: float | None = None
    record_trace: bool = True
    #: "constant", or "cosine" (decay to 0.1·lr over the step budget).
    lr_schedule: Literal["constant", "cosine"] = "constant"
    #: Stop after this many true-loss evaluations without a relative improvement of `min_improvement`.
    patience: int | None = None
    min_improvement: float = 1e-4

    def __post_init__(self):
        if self.steps < 0:
            raise LatentfitError(f"steps must be >= 0, got {self.steps}")
        if self.lr <= 0:
            raise LatentfitError(f"lr must be > 0, got {self.lr}")
        if self.evaluate_every < 1:
            raise LatentfitError(f"evaluate_every must be >= 1, got {self.evaluate_every}")
        if self.variables not in ("joint", "y"):
            raise LatentfitError(f"variables must be 'joint' or 'y', got {self.variables!r}")
        if self.lmbda is not None and self.lmbda <= 0:
            raise LatentfitError(f"lmbda must be > 0, got {self.lmbda}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise LatentfitError(f"time budget must be > 0 seconds, got {self.time_budget}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise LatentfitError(f"lr schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if self.patience is not None and self.patience < 1:
            raise LatentfitError(f"patience must be >= 1 evaluations, got {self.patience}")


@dataclass
class TrueLoss:
    """`L_true` of one set of latents and its parts (bpp is the ideal rate `R/P`)."""

    loss: float
    bpp: float
    psnr: float

    @classmethod
    def of(cls, terms: RateDistortion) -> "TrueLoss":
        return cls(float(terms.loss), terms.bpp, terms.psnr)


@dataclass
class TraceRecord:
    step: int
    tau: float
    proxy_loss: float
    true_loss: float
    true_bpp: float
    true_psnr: float
    seconds: float

    @property
    def gap(self) -> float:
        """Proxy minus true loss: the diagnostic of Yang et al."""
        return self.proxy_loss - self.true_loss


@dataclass
class RefinementResult:
    latents: Latents
    initial: TrueLoss
    final: TrueLoss
    best_step: int
    steps_run: int
    seconds: float
    seed: int
    method: str
    lmbda: float
    trace: list[TraceRecord]
    stopped_by: str

    def trace_dicts(self) -> list[dict]:
        return [asdict(record) | {"gap": record.gap} for record in self.trace]


def refine_latents(
    model: LatentModel,
    x: Tensor,
    config: RefinementConfig | None = None,
    x_padded: Tensor | None = None,
    progress: Callable[[int, int, TraceRecord | None], None] | None = None,
) -> RefinementResult:
    """Refine the latents of image `x` (1, 3, H, W) in [0, 1] for `model`.

    `x_padded` is the encoder's input: `x` padded to the model's stride (by default, edges replicated).
    Returns the best latents seen (by `L_true`), both losses, and the optimisation trace.
    """
    config = config or RefinementConfig()
    proxy: QuantizationProxy = get_proxy(config.method, **config.proxy_options)
    schedule = config.schedule or proxy.default_schedule()
    lmbda = model.lmbda if config.lmbda is None else config.lmbda
    device = model.device
    x = x.to(device)
    x_padded = pad_to_multiple(x, model.stride) if x_padded is None else x_padded.to(device)
    started = time.perf_counter()

    with torch.no_grad():
        initial_latents = model.analysis(x_padded)
    initial = TrueLoss.of(model.true_rate_distortion(initial_latents, x, lmbda))
    best, best_latents, best_step = initial, initial_latents.detach(), 0
    trace: list[TraceRecord] = []
    if config.record_trace:
        trace.append(TraceRecord(0, schedule(0), float("nan"), initial.loss, initial.bpp, initial.psnr, 0.0))

    steps = config.steps if proxy.refines else 0
    generator = torch.Generator(device=device).manual_seed(config.seed)
    y = initial_latents.y.detach().clone().requires_grad_(True)
    joint = model.has_hyperprior and config.variables == "joint"
    z = initial_latents.z.detach().clone().requires_grad_(True) if joint else None
    optimizer = torch.optim.Adam([y] + ([z] if joint else []), lr=config.lr)

    def current() -> Latents:
        if not model.has_hyperprior:
            return Latents(y)
        return Latents(y, z if joint else model.hyper_analysis(y))

    stopped_by = "steps"
    step = 0
    stale = 0  # evaluations since the last real improvement
    for step in range(1, steps + 1):
        tau = schedule(step - 1)
        if config.lr_schedule == "cosine":
            for group in optimizer.param_groups:
                group["lr"] = cosine_learning_rate(step - 1, steps, config.lr)
        relax = lambda v: proxy.relax(v, tau, generator)  # noqa: E731
        proxy_terms = model.rate_distortion(current(), x, lmbda, relax)
        optimizer.zero_grad(set_to_none=True)
        proxy_terms.loss.backward()
        optimizer.step()

        out_of_time = config.time_budget is not None and time.perf_counter() - started >= config.time_budget
        if step % config.evaluate_every == 0 or step == steps or out_of_time:
            with torch.no_grad():
                candidate = current().detach()
                true = TrueLoss.of(model.true_rate_distortion(candidate, x, lmbda))
            improved = true.loss < best.loss - config.min_improvement * abs(best.loss)
            stale = 0 if improved else stale + 1
            if true.loss < best.loss:
                best, best_latents, best_step = true, candidate, step
            record = TraceRecord(
                step, tau, proxy_terms.loss.item(), true.loss, true.bpp, true.psnr, time.perf_counter() - started
            )
            if config.record_trace:
                trace.append(record)
            if progress is not None:
                progress(step, steps, record)
        elif progress is not None:
            progress(step, steps, None)
        if out_of_time:
            stopped_by = "time_budget"
            break
        if config.patience is not None and stale >= config.patience:
            stopped_by = "plateau"
            break

    return RefinementResult(
        latents=best_latents,
        initial=initial,
        final=best,
        best_step=best_step,
        steps_run=step if steps else 0,
        seconds=time.perf_counter() - started,
        seed=config.seed,
        method=proxy.name,
        lmbda=lmbda,
        trace=trace,
        stopped_by=stopped_by,
    )
