"""The refinement's settings: one frozen object, validated once, that a result can be re-run from.

`RefinementConfig` is what `refine_latents`, `encode`, `eval` and rate control take. It builds its
proxy (`proxy()`) and resolves its temperature schedule (`temperature(steps)`) in one place each,
and `to_dict()` / `from_dict()` give it as nested, JSON-ready data (proxy and its options, optimiser,
temperature, stopping, runtime) that `encode --json` and every `eval` record carry whole.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from .errors import LatentfitError
from .relaxations import QuantizationProxy, get_proxy, parse_method
from .schedules import (
    EVALUATION_POLICIES, LR_SCHEDULES, TAU_SCHEDULES, BudgetTemperature, TemperatureSchedule,
)

#: `steps="auto"` without a time budget; the most steps `auto` plans within one.
AUTO_STEPS = 500
AUTO_MAX_STEPS = 2000
#: With `tile="auto"`, images with more pixels than this are refined tile by tile.
AUTO_TILE_PIXELS = 4_000_000
AUTO_TILE_SIZE = 768
#: The default temperature schedule's range, multiples of the method's τ_max (`schedules.BudgetTemperature`).
BUDGET_TAU_START = BudgetTemperature.start
BUDGET_TAU_END = BudgetTemperature.end

#: `closed_loop`'s first step: the share of `y − g_a(x̂)` a pass adds (on validation photos a fixed 0.1
#: over-corrected from the second pass, 0.03 needed more passes for the same gain; BENCHMARKS.md,
#: "Gain per second"); halved after a pass that does not lower the true loss.
CLOSED_LOOP_STEP = 0.05

#: Precisions of the proxy pass (`RefinementConfig.precision`).
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device) -> str:
    """The precision `precision` means on `device`: "auto" is "bf16" on a CPU with native bfloat16
    arithmetic (AVX512-BF16 or AMX), where it halves a step's time, else "fp32" (a CPU without it
    would emulate bf16 slowly; on CUDA a step is launch-bound and bf16 measured 0.89x as fast on an
    H200, BENCHMARKS.md "Per-step cost")."""
    import torch

    if precision != "auto":
        return precision
    if torch.device(device).type != "cpu":
        return "fp32"
    return "bf16" if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() else "fp32"

#: Version of `to_dict()`'s layout.
CONFIG_FORMAT = 1


@dataclass(frozen=True)
class RefinementConfig:
    """Settings of `refine_latents`. `lmbda=None` uses the model's training λ.

    The defaults (sga+ssl, 500 steps, its lr 3e-2 with cosine decay to 0.01·lr, τ annealed 1.5 → 0.2
    within the steps) were chosen from `benchmarks/time_to_quality.py` (BENCHMARKS.md): at a quarter
    of the papers' 2000 steps they get closer to the papers' final loss than the papers' own settings
    stopped at 500. The papers' protocol is `lr=5e-3, lr_schedule="constant", schedule="papers"`.

    `method`: a registered proxy's name, or a spec with its options, `"sga+ssl3:a=1.4:power=1.4"`
    (kept as the name, the options moved to `proxy_options`); an option the proxy does not take is
    an error. `schedule`: a `TemperatureSchedule`; `"papers"` (or None) for the method's own default
    (SGA: τ_max 0.5, t₀ 700; SGA+: τ_max 1, t₀ 0; rate 1e-3); `"budget"` to anneal from
    `BUDGET_TAU_START`·τ_max to `BUDGET_TAU_END`·τ_max within the step budget.
    `steps="auto"`: `AUTO_STEPS`, or with a `time_budget` as many steps as fit in it (measured
    on the first steps, at most `AUTO_MAX_STEPS`), with the schedules scaled to that count.
    `tile`: refine images larger than `AUTO_TILE_PIXELS` pixels tile by tile ("auto"), always with
    tiles of this many pixels a side (int), or never (None): see `latentfit.tiling`.
    """

    method: str = "sga+ssl"
    steps: int | Literal["auto"] = "auto"
    #: Adam's lr; None: the method's `default_lr` (3e-2 for sga+ssl, the papers' 5e-3 for the others).
    lr: float | None = None
    lmbda: float | None = None
    seed: int = 0
    evaluate_every: int = 10
    #: When the true loss is measured (`schedules.EVALUATION_POLICIES`): "every" `evaluate_every` steps
    #: throughout (the papers' practice, and `eval`'s protocol, whose convergence curves need it), or
    #: "tail": every `evaluate_every` steps in the last 20 % of the planned steps, where the best
    #: iterate almost always is, and every 5·`evaluate_every` before (an evaluation costs 1–1.5 steps).
    evaluations: Literal["tail", "every"] = "tail"
    variables: Literal["joint", "y"] = "joint"
    schedule: TemperatureSchedule | Literal["papers", "budget"] | None = "budget"
    proxy_options: dict = field(default_factory=dict)
    time_budget: float | None = None
    record_trace: bool = True
    #: "constant", or "cosine" (decay to `lr_final_fraction`·lr over the step budget): `schedules.LR_SCHEDULES`.
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    lr_final_fraction: float = 0.01
    #: Stop after this many true-loss evaluations without a relative improvement of `min_improvement`.
    patience: int | None = None
    min_improvement: float = 1e-4
    #: Run the proxy's decoder copies in channels-last layout (faster on CPU; the true loss and the
    #: file are computed by the plain model either way).
    channels_last: bool = True
    #: `torch.compile` the proxy's decoder copies (needs a C++ compiler on CPU; pays off on long runs).
    compile: bool = False
    #: Precision of the proxy's synthesis transform `g_s` (forward and backward): "fp32"; "bf16"
    #: (autocast: about 2x faster steps on a CPU with AVX512-BF16 or AMX, for the same true-loss gain,
    #: BENCHMARKS.md "Gain per second"); "auto": bf16 on such a CPU, fp32 elsewhere (`resolve_precision`).
    #: The true loss, the entropy coding and the file are always computed in fp32 by the plain model.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    tile: int | Literal["auto"] | None = "auto"
    #: Closed-loop passes before refinement (analysis by synthesis, a warm start costing no gradient
    #: step, about one decode each): each decodes the best latents so far to `x̂` and moves `y` by
    #: `closed_loop_step`·(y − g_a(x̂)), what the encoder sees the decoder lose; a pass that does not
    #: lower the true loss halves the step. The start is the best pass, so never worse than the
    #: encoder's (`LatentModel.closed_loop_analysis`). 0: the encoder's latents as they are.
    closed_loop: int = 0
    closed_loop_step: float = CLOSED_LOOP_STEP
    #: A per-image decoder update refined with the latents and sent in the file, its bits in the loss
    #: (`latentfit.models.update`): "none", "decoder" (the recommended form), or a form with options,
    #: "postfilter:kernel=5". The encoder keeps the file without it when that one is better.
    adapt: str = "none"
    #: What the loss measures besides the rate (`latentfit.distortion`): "mse" (what the models were
    #: trained for), "ms-ssim", or "mix:W" (W the MS-SSIM share); in MSE's units, so λ keeps its meaning.
    distortion: str = "mse"

    def __post_init__(self):
        name, spec_options = parse_method(self.method)
        clash = sorted(set(spec_options) & set(self.proxy_options))
        if clash:
            raise LatentfitError(f"method option {', '.join(clash)} given twice (in '{self.method}' and in proxy_options)")
        object.__setattr__(self, "method", name)
        object.__setattr__(self, "proxy_options", dict(self.proxy_options) | spec_options)
        self.proxy()  # an option the method does not take is an error now, not a silent default
        if self.steps != "auto" and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0):
            raise LatentfitError(f"steps must be an integer >= 0 or 'auto', got {self.steps!r}")
        if self.tile not in ("auto", None) and (not isinstance(self.tile, int) or self.tile < 64):
            raise LatentfitError(f"tile must be 'auto', None or an integer >= 64 pixels, got {self.tile!r}")
        if not (self.schedule is None or isinstance(self.schedule, (TemperatureSchedule, str))):
            raise LatentfitError(f"schedule must be a TemperatureSchedule or one of {', '.join(TAU_SCHEDULES.names())}, "
                                 f"got {self.schedule!r}")
        self.tau_policy()  # an unknown name is an error now
        if self.lr is not None and self.lr <= 0:
            raise LatentfitError(f"lr must be > 0, got {self.lr}")
        if self.evaluate_every < 1:
            raise LatentfitError(f"evaluate_every must be >= 1, got {self.evaluate_every}")
        self.evaluation_policy()  # an unknown policy, lr schedule or final fraction is an error now
        self.lr_policy()
        if self.variables not in ("joint", "y"):
            raise LatentfitError(f"variables must be 'joint' or 'y', got {self.variables!r}")
        if self.lmbda is not None and self.lmbda <= 0:
            raise LatentfitError(f"lmbda must be > 0, got {self.lmbda}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise LatentfitError(f"time budget must be > 0 seconds, got {self.time_budget}")
        if self.precision not in PRECISIONS:
            raise LatentfitError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.patience is not None and self.patience < 1:
            raise LatentfitError(f"patience must be >= 1 evaluations, got {self.patience}")
        if isinstance(self.closed_loop, bool) or not isinstance(self.closed_loop, int) or self.closed_loop < 0:
            raise LatentfitError(f"closed-loop passes must be an integer >= 0, got {self.closed_loop!r}")
        if not 0 < self.closed_loop_step <= 1:
            raise LatentfitError(f"closed-loop step must be in (0, 1], got {self.closed_loop_step}")
        object.__setattr__(self, "distortion", self.distortion_measure().spec())  # "mix:weight=0.50" → "mix:0.5"
        if self.update_form() is not None and self.compile:
            raise LatentfitError("a decoder update (adapt) cannot be refined with compiled proxy copies (compile)")

    def update_form(self):
        """The decoder update form `adapt` names (None for "none"): `models.update.adapt_form`."""
        from .models.update import adapt_form

        return adapt_form(self.adapt)

    def distortion_measure(self):
        """The `latentfit.distortion.Distortion` that `distortion` names (a one-line error if none)."""
        from .distortion import distortion_from

        return distortion_from(self.distortion)

    @cached_property
    def _proxy(self) -> QuantizationProxy:
        return get_proxy(self.method, **self.proxy_options)

    def proxy(self) -> QuantizationProxy:
        """The quantisation proxy `method` names, with `proxy_options` (built once)."""
        return self._proxy

    def learning_rate(self) -> float:
        """Adam's lr: `lr`, or the proxy's `default_lr` when `lr` is None."""
        return self.lr or self.proxy().default_lr

    def planned_steps(self) -> int:
        """The step count before any time budget refits it (0 for a method that does not refine)."""
        if not self.proxy().refines:
            return 0
        return AUTO_STEPS if self.steps == "auto" else self.steps

    def evaluation_policy(self):
        """The registered evaluation policy `evaluations` names (`schedules.EVALUATION_POLICIES`)."""
        return EVALUATION_POLICIES.get(self.evaluations)

    def lr_policy(self):
        """The registered lr schedule `lr_schedule` names, with this config's final fraction for cosine."""
        return LR_SCHEDULES.get(self.lr_schedule, **LR_SCHEDULES.accepted(self.lr_schedule, final_fraction=self.lr_final_fraction))

    def tau_policy(self):
        """`schedule` as a strategy: the explicit `TemperatureSchedule`, or the registered one it names."""
        if isinstance(self.schedule, TemperatureSchedule):
            return self.schedule
        return TAU_SCHEDULES.get(self.schedule or "papers")

    def evaluation_due(self, step: int, steps: int) -> bool:
        """Whether the true loss is measured after `step` (1-based) of a run planned for `steps`
        (the last step, and a run's last chance before its deadline, are measured regardless)."""
        return self.evaluation_policy().due(step, steps, self.evaluate_every)

    def evaluations_per_step(self) -> float:
        """About how many true-loss evaluations a step brings with it, to plan against a time budget."""
        return self.evaluation_policy().per_step(self.evaluate_every)

    def temperature(self, steps: int) -> TemperatureSchedule:
        """The schedule `schedule` names, for a run of `steps` steps."""
        return self.tau_policy().for_run(self.proxy().default_schedule(), steps)

    def constants(self) -> dict:
        """The constants behind the named schedules in this version of latentfit: the cosine lr's
        floor (`lr_final_fraction`) and the budget τ range (`budget_tau`, multiples of τ_max). Results
        are keyed by them, since measurements move these values while the names stay."""
        tau = {} if isinstance(self.schedule, TemperatureSchedule) else self.tau_policy().record()
        return self.lr_policy().record() | tau

    def to_dict(self) -> dict:
        """The whole configuration as nested JSON-ready data; `from_dict` rebuilds it. Settings that
        cannot change the run are left out (the cosine floor with a constant lr, the improvement
        threshold without patience), so that records differ only where runs do."""
        schedule = self.schedule
        temperature: dict = ({"schedule": dataclasses.asdict(schedule)} if isinstance(schedule, TemperatureSchedule)
                             else {"schedule": schedule or "papers"} | self.tau_policy().record())
        return {
            "format": CONFIG_FORMAT,
            "proxy": self.proxy().describe(),
            "lmbda": self.lmbda,
            "seed": self.seed,
            "variables": self.variables,
            "optimiser": {"lr": self.learning_rate(), "lr_schedule": self.lr_schedule} | self.lr_policy().record(),
            "temperature": temperature,
            "stopping": {"steps": self.steps, "evaluate_every": self.evaluate_every, "patience": self.patience,
                         "time_budget": self.time_budget}
                        | ({"min_improvement": self.min_improvement} if self.patience is not None else {})
                        | ({"evaluations": self.evaluations} if self.evaluations != "every" else {}),  # as before it existed
            "runtime": {"tile": self.tile, "channels_last": self.channels_last, "compile": self.compile,
                        "record_trace": self.record_trace}
                       | ({"precision": self.precision} if self.precision != "fp32" else {}),  # as before it existed
        } | ({"start": {"closed_loop": self.closed_loop, "closed_loop_step": self.closed_loop_step}}
             if self.closed_loop else {}) | self._adapt_record() | self._distortion_record()  # absent by default:
        # records as before

    def _adapt_record(self) -> dict:
        form = self.update_form()
        return {} if form is None else {"adapt": form.to_dict()}

    def _distortion_record(self) -> dict:
        return {} if self.distortion == "mse" else {"distortion": self.distortion_measure().to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "RefinementConfig":
        """The configuration `to_dict()` described. A `budget` schedule recorded with other constants
        than this version's becomes the explicit schedule it stood for (needs a step count)."""
        try:
            if data.get("format") != CONFIG_FORMAT:
                raise LatentfitError(f"refinement config of format {data.get('format')!r}, this version reads {CONFIG_FORMAT}")
            proxy = dict(data["proxy"])
            method = proxy.pop("method")
            optimiser, temperature = data["optimiser"], data["temperature"]
            # Records from before a setting existed ran as its then-only value (not today's default).
            stopping = {"evaluations": "every"} | data["stopping"]
            runtime = {"precision": "fp32"} | data["runtime"]
            schedule = temperature["schedule"]
            if isinstance(schedule, dict):
                schedule = TemperatureSchedule(**schedule)
            elif TAU_SCHEDULES.get(schedule).record() != {k: v for k, v in temperature.items() if k != "schedule"}:
                # a named schedule recorded with other constants than this version's: the one it ran
                if stopping["steps"] == "auto":
                    raise LatentfitError(f"this record's {schedule} schedule used {temperature} (now "
                                         f"{TAU_SCHEDULES.get(schedule).record()}) with steps auto")
                start, end = temperature["budget_tau"]
                schedule = BudgetTemperature(start, end).for_run(get_proxy(method, **proxy).default_schedule(),
                                                                 stopping["steps"])
            adapt = dict(data.get("adapt", {"name": "none"}))
            adapt = ":".join([adapt.pop("name")] + [f"{key}={value}" for key, value in adapt.items()])
            return cls(method=method, proxy_options=proxy, lmbda=data["lmbda"], seed=data["seed"],
                       variables=data["variables"], schedule=schedule, **optimiser, **stopping, **runtime,
                       **data.get("start", {}), adapt=adapt, distortion=_distortion_spec(data.get("distortion")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LatentfitError(f"not a refinement config: {type(exc).__name__} {exc}") from None


def _distortion_spec(record: dict | None) -> str:
    """The `distortion` text of a record's distortion (absent: mse, as before it existed)."""
    if record is None:
        return "mse"
    from .distortion import DISTORTIONS

    return DISTORTIONS.from_dict(record).spec()


#: The papers' protocol (lr 5e-3 constant, each method's published τ schedule, the true loss every
#: `evaluate_every` steps, an fp32 proxy): what `eval` compares methods with unless told otherwise,
#: so that they are compared as published. latentfit's own defaults are `RefinementConfig()`'s.
PAPERS_PROTOCOL = RefinementConfig(lr=5e-3, lr_schedule="constant", schedule="papers", evaluations="every",
                                   precision="fp32")
