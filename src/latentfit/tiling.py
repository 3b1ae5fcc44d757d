"""Tile-by-tile refinement of big images: bounded memory, and no seams by construction.

The latent grid `y` (h × w) is cut into square cores of `t = tile/16` latents (and, for hyperprior
models refined jointly, the matching `t/4` cores of `z`). Each core is refined in turn (raster
order) by the same loop as a whole image (`loop.optimise`), everything else held at its current
hard-quantised value `ŷ = μ + round(y − μ)`, `ẑ = m + round(z − m)`. How far a latent reaches is
the architecture's (`Architecture.tiling`, a `TilingReach`; the hyperprior family and the
checkerboard context model have one, the raster-scan and channel-group contexts not); for the
hyperprior family:

- the rate covers every latent whose bits the core can change: the core's `y`, or, when `z` is
  refined too (`Tile(joint=True)`), the `y` within `hyper_reach` = 8 latents whose `(σ, μ) = h_s(ẑ)`
  move with the core's `z`, plus the core's `z`;
- the distortion covers every pixel those `y` can change: `g_s` is four stride-2 transposed
  convolutions (kernel 5), so a latent reaches pixels within `margin` = 2 latents (32 px); a region
  of interest's weights are those of the same pixels (a per-pixel distortion: `Measure.part`);
- the synthesis transform sees a window `halo` = 4 latents around the core's (2 wider still), so each of those pixels
  decodes exactly as in the whole image.

With a spatial context (the checkerboard's: `(σ, μ)` of a non-anchor latent from the anchors within
`context` = 2 latents), the rate also covers the `y` within that reach of the above, whose parameters
and `ŷ = μ + round(y − μ)` move with the anchors they see, computed over a box that holds every
anchor their context sees and starts where the pattern does (`period`), and the window and region
widen to match.

So a tile's true loss changes exactly as the whole image's does (`tests/test_tiling.py`): each
tile's best iterate lowers the whole image's `L_true`, and pixels at tile borders are optimised
like any others, there is nothing to blend. Memory is that of one window, whatever the image size.

MS-SSIM (`ms-ssim`, `mix`) is not a mean over pixels: its windows and its four downsamplings see
across any border. A tile measures it on a box of `MS_SSIM_CONTEXT` pixels around its region (at
least `MS_SSIM_MIN_SIDE` a side; the decoder window widened so those pixels decode exactly as in the
whole image), scaled by the box's pixels over the region's: an estimate of the tile's share, not the
exact share, so the tiled trace estimates the whole image's loss; the final loss is the whole
image's, measured, and a tiled result worse than the start is not kept (`_tiled_result`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Sequence

import torch
from torch import Tensor

from .distortion import Measure
from .metrics import MS_SSIM_MIN_SIDE, mse_from_psnr, psnr_from_mse, rd_loss
from .models.adapter import LatentModel, Latents, deterministic
from .models.entropy import bottleneck_bits, bottleneck_medians
from .config import RefinementConfig, resolve_precision
from .deadline import UNBOUNDED, Deadline
from .loop import LoopHook, RefinementResult, Start, Trace, TraceRecord, TrueLoss, optimise

#: Pixels of decoded context a tile's MS-SSIM sees around the pixels the tile can change.
MS_SSIM_CONTEXT = 64


def tile_grid(height: int, width: int, core: int) -> list[tuple[int, int, int, int]]:
    """Cores `(top, bottom, left, right)` in latent units covering an `height` x `width` latent grid."""
    return [(top, min(top + core, height), left, min(left + core, width))
            for top in range(0, height, core) for left in range(0, width, core)]


class EntropyContext:
    """The whole image's side parameters `h_s(ẑ)` and its decoded latents `ŷ` with their entropy
    parameters (`parts.Decoded`, the context's two passes included), kept current as tiles change
    `y` and `z` (`update`)."""

    def __init__(self, model: LatentModel, latents: Latents):
        self.model, self.arch = model.model, model.arch
        hyperprior = model.has_hyperprior
        self.medians = bottleneck_medians(self.arch.hyper.bottleneck(self.model)) if hyperprior else None
        self.side = None
        self.update(latents.y, latents.z if hyperprior else None)

    @torch.no_grad()
    def update(self, y: Tensor, z: Tensor | None = None) -> None:
        """After `y` changed (and `z`, if given): `h_s(ẑ)`, then the whole image's `ŷ`."""
        if z is not None:
            self.side = self.arch.hyper.side(self.model, self.medians + torch.round(z - self.medians))
        self.hat = self.arch.latent.decoded(self.model, y, self.side, torch.round)

    def z_bits(self, z_tilde: Tensor) -> Tensor:
        return bottleneck_bits(self.arch.hyper.bottleneck(self.model), z_tilde)


class Tile:
    """One core of `y`, and with `joint` the matching core of `z`, everything else held at its
    current hard-quantised value, as a `RefinementProblem` (see the module docstring).

    The rate covers the `y` whose bits or reconstruction the core can change: the core itself, the
    `y` within `hyper_reach` latents whose `(σ, μ)` move with the core's `z` (with `joint`), and those
    within the spatial context's reach (`context`) of either, whose `(σ, μ)` move with the anchors
    they see; so `ŷ = μ + round(y − μ)` there (hard, the core relaxed) is recomputed over a box `seen`
    that holds every latent their context sees. The decoder window and distortion region are
    widened by as much; `h_s` sees `ẑ` within `z_halo` of what it must compute.
    `distortion` (a `Measure`; None: the MSE) is the whole image's, measured on the tile's region
    (`Measure.part`), and with MS-SSIM in it on a box of context around the region.
    """

    def __init__(self, model: LatentModel, fast: LatentModel, x: Tensor, y: Tensor, z: Tensor | None,
                 context: EntropyContext, core: tuple[int, int, int, int], lmbda: float, joint: bool,
                 distortion: Measure | None = None):
        self.model, self.fast, self.context, self.lmbda, self.joint = model, fast, context, lmbda, joint
        top, bottom, left, right = core
        h, w = y.shape[-2:]
        height, width = x.shape[-2:]
        reach = model.arch.tiling
        s, c = reach.stride, reach.context
        a = (reach.hyper_reach if joint else 0) + c
        halo, margin, z_halo = reach.halo, reach.margin, reach.z_halo
        rate = (max(top - a, 0), min(bottom + a, h), max(left - a, 0), min(right + a, w))
        seen = (_aligned(rate[0] - c, reach.period), min(rate[1] + c, h),
                _aligned(rate[2] - c, reach.period), min(rate[3] + c, w))
        window = (max(rate[0] - halo, 0), min(rate[1] + halo, h), max(rate[2] - halo, 0), min(rate[3] + halo, w))
        self.core_box = (slice(top, bottom), slice(left, right))
        self.core_in_seen = (slice(top - seen[0], bottom - seen[0]), slice(left - seen[2], right - seen[2]))
        self.rate_in_seen = (slice(rate[0] - seen[0], rate[1] - seen[0]), slice(rate[2] - seen[2], rate[3] - seen[2]))
        rt, rb = max(rate[0] - margin, 0) * s, min((rate[1] + margin) * s, height)
        rl, rr = max(rate[2] - margin, 0) * s, min((rate[3] + margin) * s, width)
        bt, bb, bl, br = rt, rb, rl, rr  # the pixels the distortion sees: the region, or a box around it
        if distortion is not None and not distortion.per_pixel:
            (bt, bb), (bl, br) = _context(rt, rb, height), _context(rl, rr, width)
            beyond = halo - margin  # latents the decoder must see beyond a pixel's own for it to be exact
            window = (min(window[0], max(bt // s - beyond, 0)), max(window[1], min(-(-bb // s) + beyond, h)),
                      min(window[2], max(bl // s - beyond, 0)), max(window[3], min(-(-br // s) + beyond, w)))
        self.rate_in_window = (slice(rate[0] - window[0], rate[1] - window[0]),
                               slice(rate[2] - window[2], rate[3] - window[2]))
        self.box_in_window = (slice(bt - window[0] * s, bb - window[0] * s), slice(bl - window[2] * s, br - window[2] * s))
        self.region_in_box = (slice(rt - bt, rb - bt), slice(rl - bl, rr - bl))
        self.box_target = x[..., bt:bb, bl:br]
        self.target = x[..., rt:rb, rl:rr]
        self.distortion = None if distortion is None else distortion.part((slice(bt, bb), slice(bl, br)),
                                                                         self.region_in_box)
        self.pixels = max((rb - rt) * (rr - rl), 1)
        # everything outside the cores at its current hard-quantised value
        self.window_hat = context.hat.y_tilde[..., window[0]:window[1], window[2]:window[3]]
        self.y_seen = y[..., seen[0]:seen[1], seen[2]:seen[3]].detach().clone()
        self.y = y[..., self.core_box[0], self.core_box[1]].detach().clone().requires_grad_(True)
        self.variables = [self.y]
        if not joint:  # the context's side parameters over the box (`z` fixed)
            self.side = None if context.side is None else context.side[..., seen[0]:seen[1], seen[2]:seen[3]]
            return
        hz, wz = z.shape[-2:]
        zwin = (max(seen[0] // 4 - z_halo, 0), min(-(-seen[1] // 4) + z_halo, hz),
                max(seen[2] // 4 - z_halo, 0), min(-(-seen[3] // 4) + z_halo, wz))
        self.z_box = (slice(top // 4, -(-bottom // 4)), slice(left // 4, -(-right // 4)))
        self.seen_in_hyper = (slice(seen[0] - 4 * zwin[0], seen[1] - 4 * zwin[0]),
                              slice(seen[2] - 4 * zwin[2], seen[3] - 4 * zwin[2]))
        self.zcore_in_zwin = (slice(self.z_box[0].start - zwin[0], self.z_box[0].stop - zwin[0]),
                              slice(self.z_box[1].start - zwin[2], self.z_box[1].stop - zwin[2]))
        self.medians = context.medians
        with torch.no_grad():
            self.zwin_hat = self.medians + torch.round(z[..., zwin[0]:zwin[1], zwin[2]:zwin[3]] - self.medians)
        self.z = z[..., self.z_box[0], self.z_box[1]].detach().clone().requires_grad_(True)
        self.variables.append(self.z)

    def _loss(self, relax, network: torch.nn.Module, clamp: bool) -> tuple[Tensor, Tensor, Tensor]:
        """The loss with `network`'s `h_s`, context and `g_s` (the plain model's, or the proxy's fast
        copies)."""
        arch = self.model.arch
        if self.joint:
            zwin = self.zwin_hat.clone()
            zwin[..., self.zcore_in_zwin[0], self.zcore_in_zwin[1]] = self.medians + relax(self.z - self.medians)
            side = arch.hyper.side(network, zwin)[..., self.seen_in_hyper[0], self.seen_in_hyper[1]]
        else:
            side = self.side
        y_seen = self.y_seen.clone()
        y_seen[..., self.core_in_seen[0], self.core_in_seen[1]] = self.y
        decoded = arch.latent.decoded(network, y_seen, side, _in_core(relax, self.core_in_seen))
        decoded = decoded.crop(*self.rate_in_seen)
        window = self.window_hat.clone()
        window[..., self.rate_in_window[0], self.rate_in_window[1]] = decoded.y_tilde
        x_box = network.g_s(window)[..., self.box_in_window[0], self.box_in_window[1]]
        if clamp:
            x_box = x_box.clamp(0, 1)
        x_hat = x_box[..., self.region_in_box[0], self.region_in_box[1]]
        bits = arch.latent.element_bits(self.model.model, decoded).sum()
        if self.joint:
            bits = bits + self.context.z_bits(zwin[..., self.zcore_in_zwin[0], self.zcore_in_zwin[1]])
        mse = torch.nn.functional.mse_loss(x_hat, self.target)
        d = mse if self.distortion is None else self.distortion(x_box, self.box_target)
        return rd_loss(bits / self.pixels, d, self.lmbda), bits, mse

    def proxy_loss(self, relax: Callable[[Tensor], Tensor]) -> Tensor:
        return self._loss(relax, self.fast.model, clamp=False)[0]

    @torch.no_grad()
    def true_loss(self) -> TrueLoss:
        with deterministic(self.model.device):
            loss, bits, mse = self._loss(torch.round, self.model.model, clamp=True)
        return TrueLoss(float(loss), float(bits) / self.pixels, psnr_from_mse(mse))

    def snapshot(self) -> list[Tensor]:
        return [v.detach().clone() for v in self.variables]


def _in_core(relax: Callable[[Tensor], Tensor], core: tuple[slice, slice]) -> Callable[[Tensor], Tensor]:
    """`relax` on the core's offsets, hard rounding elsewhere (what the rest of the image holds)."""
    def mixed(v: Tensor) -> Tensor:
        out = torch.round(v.detach())
        out[..., core[0], core[1]] = relax(v[..., core[0], core[1]])
        return out
    return mixed


def _aligned(start: int, period: int) -> int:
    """`start` (clipped at 0) rounded down to a multiple of `period`."""
    return max(start, 0) // period * period


class WholeImageTrace:
    """The whole image's true loss while tiles are refined, from each tile's: by exact locality a
    tile's change of bits, of squared error and of distortion (summed; the distortion is the loss's,
    `(L − R/P)/(λ·255²)`, the MSE or a region of interest's weighted MSE) is the whole image's, so
    every tile evaluation is also a whole-image point, and a tiled run's trace has the same shape as
    an untiled one's (the true loss of the current iterate at every evaluation, against the
    whole-image step). With MS-SSIM in the distortion a tile's share is estimated (`Measure.part`), and
    so is this trace."""

    def __init__(self, initial: TrueLoss, pixels: int, lmbda: float):
        self.pixels, self.lmbda = pixels, lmbda
        self.sums = self._sums(initial, pixels)

    def _sums(self, loss: TrueLoss, pixels: int) -> tuple[float, float, float]:
        """Bits, squared error and distortion of `loss` summed over `pixels`."""
        distortion = (loss.loss - loss.bpp) / (self.lmbda * 255.0**2)
        return loss.bpp * pixels, mse_from_psnr(loss.psnr) * pixels, distortion * pixels

    def _moved(self, tile_pixels: int, before: TrueLoss, now: TrueLoss) -> tuple[float, float, float]:
        return tuple(whole + after - start for whole, after, start in
                     zip(self.sums, self._sums(now, tile_pixels), self._sums(before, tile_pixels)))

    def point(self, record: TraceRecord, tile_pixels: int, before: TrueLoss, seconds: float) -> TraceRecord:
        """`record` of a tile (starting from `before`) as the whole image's, at `seconds` into the run."""
        sums = self._moved(tile_pixels, before, TrueLoss(record.true_loss, record.true_bpp, record.true_psnr))
        bpp, mse, distortion = (total / self.pixels for total in sums)
        loss = float(rd_loss(bpp, distortion, self.lmbda))
        proxy = loss + record.gap * tile_pixels / self.pixels
        return TraceRecord(record.step, record.tau, proxy, loss, bpp, psnr_from_mse(mse), seconds)

    def keep(self, tile_pixels: int, before: TrueLoss, kept: TrueLoss) -> None:
        """The tile ended with `kept` (its best iterate, or `before` if nothing beat it)."""
        self.sums = self._moved(tile_pixels, before, kept)


class TileView(LoopHook):
    """The hooks of a tiled refinement, told of whole-image steps and losses: a tile's step `k` is
    step `offset + k` of the run (of `total` planned), and its records become the whole image's."""

    def __init__(self, hooks: Sequence[LoopHook], whole: "WholeImageTrace", problem: "Tile", before: TrueLoss,
                 offset: int, total: int, seconds: float):
        self.hooks, self.whole, self.problem, self.before = hooks, whole, problem, before
        self.offset, self.total, self.seconds = offset, total, seconds

    def as_whole(self, record: TraceRecord) -> TraceRecord:
        moved = dataclasses.replace(record, step=record.step + self.offset)
        return self.whole.point(moved, self.problem.pixels, self.before, self.seconds + record.seconds)

    def on_evaluation(self, step: int, true: TrueLoss, record: TraceRecord, problem) -> None:
        whole = self.as_whole(record)
        for hook in self.hooks:
            hook.on_evaluation(whole.step, TrueLoss(whole.true_loss, whole.true_bpp, whole.true_psnr), whole, problem)

    def on_step(self, step: int, planned: int, record: TraceRecord | None) -> None:
        whole = None if record is None else self.as_whole(record)
        for hook in self.hooks:
            hook.on_step(step + self.offset, self.total, whole)


def refine_tiles(model: LatentModel, x: Tensor, begin: Start, config: RefinementConfig, lmbda: float, tile: int,
                 deadline: Deadline = UNBOUNDED, hooks: Sequence[LoopHook] = (), distortion: Measure | None = None
                 ) -> RefinementResult:
    """Refine the latents core by core (`tile` pixels a side, rounded up to whole latents): `y` and
    `z` for hyperprior models with `variables="joint"`, else `y` with `z` kept (`Tile`), from `begin`
    (`refine.Start`: the whole image's latents and true loss). With a bounded `deadline`, each tile
    gets an equal share of what is left of it after the final whole-image evaluation. `distortion`: the
    whole image's (None: the MSE; with MS-SSIM in it, each tile estimates its share: `Tile`)."""
    context = EntropyContext(model, begin.latents)
    fast = model.proxy_view(channels_last=config.channels_last, compile=config.compile,
                            precision=resolve_precision(config.precision, model.device))
    generator = torch.Generator(device=model.device).manual_seed(config.seed)
    y = begin.latents.y.detach().clone()
    joint = model.has_hyperprior and config.variables == "joint"
    z = begin.latents.z.detach().clone() if joint else begin.latents.z
    cores = tile_grid(y.shape[-2], y.shape[-1], core_size(tile, joint, model.arch.tiling.stride))
    steps_each = config.planned_steps()
    steps_run, improved_tiles, stopped_by = 0, 0, "steps"
    whole = WholeImageTrace(begin.loss, x.shape[-2] * x.shape[-1], lmbda)
    trace = Trace()
    for index, core in enumerate(cores):
        if deadline.left(begin.eval_seconds) - begin.eval_seconds <= 0:
            stopped_by = "time_budget"
            break
        tile_deadline = deadline.share(len(cores) - index, begin.eval_seconds)
        problem = Tile(model, fast, x, y, z, context, core, lmbda, joint, distortion)
        evaluated = time.perf_counter()
        tile_initial = problem.true_loss()
        view = TileView([*hooks, trace], whole, problem, tile_initial, steps_run, steps_each * len(cores),
                        evaluated - begin.started)
        outcome = optimise(problem, tile_initial, config, generator, tile_deadline, [view],
                           eval_seconds=time.perf_counter() - evaluated)
        whole.keep(problem.pixels, tile_initial, outcome.best)
        if outcome.stopped_by == "time_budget":
            stopped_by = "time_budget"
        steps_run += outcome.steps_run
        if outcome.best_step > 0:
            improved_tiles += 1
            y[..., problem.core_box[0], problem.core_box[1]] = outcome.best_variables[0]
            if joint:
                z[..., problem.z_box[0], problem.z_box[1]] = outcome.best_variables[1]
            context.update(y, z if joint else None)
    return _tiled_result(model, x, begin, Latents(y, z), config, lmbda, steps_run, improved_tiles, stopped_by,
                         len(cores), trace.records, distortion)


def _context(start: int, stop: int, size: int) -> tuple[int, int]:
    """Pixels `[start, stop)` of a side of `size` widened by `MS_SSIM_CONTEXT` each way, and to at least
    `MS_SSIM_MIN_SIDE` where the image allows, within the image."""
    start, stop = max(start - MS_SSIM_CONTEXT, 0), min(stop + MS_SSIM_CONTEXT, size)
    short = MS_SSIM_MIN_SIDE - (stop - start)
    if short > 0:
        start = max(start - short, 0)
        stop = min(max(stop, start + MS_SSIM_MIN_SIDE), size)
    return start, stop


def core_size(tile: int, joint: bool, stride: int) -> int:
    """Latents a side of a core for tiles of `tile` pixels (whole `z` latents when `z` is refined too)."""
    core = max(1, -(-tile // stride))
    return -(-core // 4) * 4 if joint else core


def _tiled_result(model: LatentModel, x: Tensor, begin: Start, refined: Latents, config: RefinementConfig,
                  lmbda: float, steps_run: int, improved_tiles: int, stopped_by: str, tiles: int,
                  records: list[TraceRecord], distortion: Measure | None) -> RefinementResult:
    initial = begin.loss
    final = TrueLoss.of(model.true_rate_distortion(refined, x, lmbda, distortion))
    if final.loss > initial.loss:  # cannot happen if the locality argument holds; never return worse
        refined, final = begin.latents.detach(), initial
    first = TraceRecord(0, config.temperature(config.planned_steps())(0), float("nan"), initial.loss, initial.bpp,
                        initial.psnr, 0.0)
    return RefinementResult(
        latents=refined.detach(), initial=initial, final=final, best_step=steps_run if improved_tiles else 0,
        steps_run=steps_run, seconds=time.perf_counter() - begin.started, seed=config.seed, method=config.method,
        lmbda=lmbda, trace=[first] + records if config.record_trace else [], stopped_by=stopped_by, tiles=tiles,
        lr=config.learning_rate(),
    )
