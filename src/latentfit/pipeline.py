"""One encode, stage by stage: image in, `.lfc` bytes and every figure about them out.

An encode at a fixed λ (`encode`, the default) runs these stages in order:

1. **analyse**: the encoder's latents `(y₀, z₀)` and their true loss (`refine.analyse`);
2. **closed-loop passes** (optional, `RefinementConfig.closed_loop`): analysis by synthesis from
   there (`refine.closed_loop`);
3. **refine**: the refinement loop on the latents (`refine.refine`), watched and steered by hooks
   (`loop.LoopHook`: the progress bar, the trace; rate control's λ steering);
4. **entropy-code**: the latents into a `.lfc` stream and its bytes (`codec.entropy_code`);
5. **verify**: decode those bytes as a decoder will (`codec.decode_stream`), so every figure
   describes the real file; with a decoder update (`--adapt`), the file without it is coded and
   decoded too and the one of lower real loss kept (`keep_better`);
6. **statistics**: bytes, bpp, PSNR, MS-SSIM, the losses, the configuration, the time parts
   (`codec.encode_stats`).

One `Deadline` (`latentfit.deadline`) owns the clock of the whole encode, from reading the image (the
caller's `started`) to the bytes: stages 2 and 3 end early enough for 4–6, which cost about
`ENCODE_TAIL_EVALUATIONS` true-loss evaluations.

An encode to a target (a file size, a bitrate, a PSNR or an MS-SSIM: `rate_control`) runs a plan before stage 1
(the plain encodes of every quality, which choose the model and the starting λ, or refuse the
target), refines with a `Steering` hook, and replaces stages 4–6 with one: the best candidate whose
real file meets the target (`rate_control.best_candidate`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import torch

from . import rate_control
from .codec import EncodeResult, StageClock, decode, decode_stream, encode_stats, entropy_code, file_loss
from .config import RefinementConfig
from .deadline import Deadline
from .distortion import Measure, measure
from .errors import LatentfitError
from .imageio import LoadedImage
from .loop import LoopHook, Progress, TrueLoss
from .models.adapter import LatentModel
from .rate_control import Target
from .refine import refine_image

__all__ = ["ENCODE_TAIL_EVALUATIONS", "EncodeResult", "decode", "encode", "encode_at", "encode_to_target"]

#: With a time budget, refinement leaves this many true-loss evaluations' worth of time for the stages
#: after it: entropy coding, decoding its own file to measure it, and the metrics (measured on full
#: Kodak images on this CPU: 1.7–2.0 evaluations; BENCHMARKS.md, "Time budgets").
ENCODE_TAIL_EVALUATIONS = 2.5
#: With a decoder update, the latents-only file is coded and decoded too (`keep_better`): about two more.
ADAPT_TAIL_EVALUATIONS = 2.0


def encode(
    image: LoadedImage,
    model: LatentModel | Sequence[LatentModel],
    config: RefinementConfig | None = None,
    progress: Callable | None = None,
    started: float | None = None,
    target: Target | None = None,
) -> EncodeResult:
    """Encode `image` with `model`, refining its latents as `config` says (default: sga+ssl, 500 steps).

    `config.time_budget` bounds this whole call, counted from `started` (a `time.perf_counter()`
    value; default: now; the CLI passes the moment it began reading the image): refinement stops
    early enough that entropy coding, the check decode and the metrics fit too. `progress(step,
    planned, record)` is called after every refinement step.

    `target` (`latentfit.Target("bytes", 40_000)`, `"bpp"`, `"psnr"` or `"ms-ssim"`) asks for a file
    size or a quality instead (refined for `config.distortion`, whatever the target measures): `model` may then be a family (`load_family()`, every quality of a model), and
    the quality and λ are chosen to meet it (`latentfit.rate_control`).
    """
    hooks = [Progress(progress)] if progress is not None else []
    clock = StageClock(time.perf_counter() if started is None else started)
    if target is not None:
        return encode_to_target(image, model, target, config, hooks, clock)
    if not isinstance(model, LatentModel):
        raise LatentfitError("encode takes one model, or a family of models together with a target")
    config = config or RefinementConfig()
    tail = ENCODE_TAIL_EVALUATIONS + (ADAPT_TAIL_EVALUATIONS if config.update_form() is not None else 0.0)
    deadline = Deadline(clock.started, config.time_budget, tail)
    return encode_at(image, model, config, hooks, clock, deadline)


def encode_at(image: LoadedImage, model: LatentModel, config: RefinementConfig, hooks: Sequence[LoopHook],
              clock: StageClock, deadline: Deadline) -> EncodeResult:
    """The stages of an encode at one λ (`config.lmbda`, default the model's), in order."""
    clock.mark("began")
    lmbda = model.lmbda if config.lmbda is None else config.lmbda
    distortion = image_distortion(image, config)
    # 1-2: analyse, closed-loop passes; 3: refine
    result = refine_image(model, image.tensor, config, lmbda, deadline, hooks, distortion)
    clock.mark("coding")
    stream, data = entropy_code(image, model, result.latents)  # 4: entropy-code
    clock.mark("check")
    encoded = EncodeResult(data, stream, result, decode_stream(stream, model))  # 5: verify
    encoded, comparison = keep_better(image, model, lmbda, encoded, distortion)
    encoded.stats = encode_stats(image, model, config, encoded.refinement, encoded.data, encoded.decoded,
                                 clock) | comparison  # 6: statistics
    return encoded


def image_distortion(image: LoadedImage, config: RefinementConfig, source: str = "image") -> Measure | None:
    """What this encode's loss measures (`latentfit.distortion`): `config.distortion` with the image's
    region of interest, None for the plain MSE; an image it cannot measure is refused in one line."""
    chosen = config.distortion_measure()
    chosen.check(image.height, image.width, image.roi is not None, source)
    return measure(chosen, image.roi)


def keep_better(image: LoadedImage, model: LatentModel, lmbda: float, encoded: EncodeResult,
                distortion: Measure | None = None) -> tuple[EncodeResult, dict]:
    """With a decoder update in the file, the file of the latents alone (the refinement's `fallback`,
    the stage before the update; else the same latents without it), coded and decoded, when its real
    loss (`codec.file_loss`) is not higher: an update is only written where it pays, and a file with
    `--adapt` is never worse than the one without. The second value is what `--json` says of the
    update (nothing without one)."""
    update = encoded.refinement.latents.update
    if update is None:
        return encoded, {}
    parameters = update.values.numel()
    fallback = encoded.refinement.fallback
    if encoded.stream.update is None and (fallback is None or _same_latents(fallback.latents, encoded)):
        # refined to all zeros from the latents-only result: this file is that one, nothing to compare
        return encoded, {"update_bytes": 0, "update_parameters": parameters}
    if fallback is None:
        plain_latents = dataclasses.replace(encoded.refinement.latents, update=None)
        x = image.tensor.to(model.device)
        fallback = dataclasses.replace(encoded.refinement, latents=plain_latents,
                                       final=TrueLoss.of(model.true_rate_distortion(plain_latents, x, lmbda,
                                                                                    distortion)))
    # the fallback keeps the whole refinement's steps and time (it was part of it)
    fallback = dataclasses.replace(encoded.refinement, latents=fallback.latents, final=fallback.final,
                                   best_step=fallback.best_step, fallback=None)
    stream, data = entropy_code(image, model, fallback.latents)
    plain = EncodeResult(data, stream, fallback, decode_stream(stream, model))
    with_update, without = (file_loss(image, e.data, e.decoded, lmbda, distortion) for e in (encoded, plain))
    comparison = {"file_loss_with_update": with_update, "file_loss_without_update": without}
    if without <= with_update:
        return plain, comparison | {"update_bytes": 0, "update_parameters": parameters}
    written = 0 if encoded.stream.update is None else len(encoded.stream.update.to_bytes())
    return encoded, comparison | {"update_bytes": written, "update_parameters": parameters}


def _same_latents(latents, encoded: EncodeResult) -> bool:
    """Whether `encoded`'s latents are `latents` (the adapt stage kept its start: no step improved it)."""
    kept = encoded.refinement.latents
    return torch.equal(kept.y, latents.y) and (kept.z is None or torch.equal(kept.z, latents.z))


def encode_to_target(image: LoadedImage, models: LatentModel | Sequence[LatentModel], target: Target,
                     config: RefinementConfig | None, hooks: Sequence[LoopHook], clock: StageClock) -> EncodeResult:
    """An encode whose file meets `target`, choosing the model (from `models`, qualities of one family;
    a single model fixes the quality) and the λ of its refinement. The result's stats add `target`,
    `achieved`, `lmbda_probes` and `real_encodes`."""
    config = rate_control.protocol(config)
    distortion = image_distortion(image, config)
    deadline = Deadline(clock.started, config.time_budget, ENCODE_TAIL_EVALUATIONS)
    clock.mark("began")
    plain = dataclasses.replace(config, method="none", proxy_options={}, lmbda=None, tile=None, adapt="none")

    def encode_plain(model: LatentModel) -> EncodeResult:
        return encode_at(image, model, plain, (), StageClock(clock.started), deadline)

    plan = rate_control.plan(image, models, target, config)  # the plain curve; quality, λ and steering
    if plan.steering is None:  # a method that does not refine: the best plain file
        result = rate_control.best_plain(plan, encode_plain)
        if result is None:
            raise plan.unreachable("without refinement its files range from",
                                   *rate_control.plain_range(plan.curve, plan.log_low, plan.log_high, False))
        return result
    run_config = dataclasses.replace(config, lmbda=math.exp(plan.log_start), tile=None)
    refined = refine_image(plan.model, image.tensor, run_config, run_config.lmbda, deadline, [*hooks, plan.steering],
                           distortion)
    clock.mark("coding")
    return rate_control.best_candidate(plan, refined, config, clock, encode_plain)
