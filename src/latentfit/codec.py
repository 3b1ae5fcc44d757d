"""Latents to `.lfc` bytes and back: the encode pipeline's last stages, and `decode`.

`entropy_code` turns given latents into a `Bitstream` and its bytes; `decode_stream` (the pipeline's
"verify" stage, and `decode`) checks a stream against the model and decodes it; `encode_stats` is
what `encode --json` reports of the real file. `decode` needs only the bytes and the same model.
The stages before (analysis, closed-loop passes, refinement) are `latentfit.refine`'s; the pipeline
that runs them all in order is `latentfit.pipeline`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import bitstream
from .bitstream import Bitstream, BitstreamError
from .config import resolve_precision
from .imageio import LoadedImage, to_uint8
from .metrics import bits_per_pixel, ms_ssim, psnr, rd_loss
from .config import RefinementConfig
from .distortion import Measure
from .loop import RefinementResult
from .models.adapter import LatentModel
from .models.update import Update, decode_update, update_form


@dataclass
class EncodeResult:
    """An encode's file (`data`, and `stream` parsed), its refinement, its decoded pixels and `stats`
    (what `encode --json` prints)."""

    data: bytes
    stream: Bitstream
    refinement: RefinementResult
    decoded: np.ndarray
    stats: dict = field(default_factory=dict)


#: Pillow modes whose decoded output is written back as a grayscale image.
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L"})


def entropy_code(image: LoadedImage, model: LatentModel, latents) -> tuple[Bitstream, bytes]:
    """The `.lfc` stream of `latents` for `image` and its bytes: what the file will hold (with a
    decoder update section when `latents.update` has a value that is not zero)."""
    strings, shapes, index_checksum = model.compress(latents)
    stream = Bitstream(
        model_name=model.name, quality=model.quality, digest=model.digest, height=image.height, width=image.width,
        latent_shapes=shapes, strings=strings, grayscale=image.source_mode in GRAYSCALE_MODES,
        index_checksum=index_checksum, update=None if latents.update is None else latents.update.section(),
    )
    return stream, bitstream.to_bytes(stream)


def file_loss(image: LoadedImage, data: bytes, decoded: np.ndarray, lmbda: float,
              distortion: Measure | None = None) -> float:
    """The loss of a real file: its bytes per pixel plus λ·255²·MSE of its decoded pixels against the
    image's (both as 8-bit pixels), or with `distortion` (`latentfit.distortion`) that measure of them."""
    reference = to_uint8(image.tensor)
    if distortion is None:
        d = float(np.mean((decoded.astype(np.float64) - reference.astype(np.float64)) ** 2)) / 255.0**2
    else:
        def tensor(pixels: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)

        d = float(distortion(tensor(decoded), tensor(reference)))
    return float(rd_loss(bits_per_pixel(len(data), image.height, image.width), d, lmbda))


class StageClock:
    """When each stage of an encode began (`time.perf_counter()` values), for `--json`'s time parts:
    `started` (the encode, from reading the image), `began` (its first stage, once the image was
    read), `coding` (entropy coding) and `check` (the check decode and the metrics)."""

    def __init__(self, started: float):
        self.started = started
        self.began = self.coding = self.check = started

    def mark(self, stage: str) -> None:
        setattr(self, stage, time.perf_counter())


def encode_stats(image: LoadedImage, model: LatentModel, config: RefinementConfig, result: RefinementResult,
                 data: bytes, decoded: np.ndarray, clock: StageClock) -> dict:
    """What `encode --json` reports: the file's real size and quality, the refinement, the time parts."""
    reference = to_uint8(image.tensor)
    size = len(data)
    stats = {
        "model": model.encoder or model.name,
        "quality": model.quality,
        "weights_digest": model.digest.hex(),
        "width": image.width,
        "height": image.height,
        "bytes": size,
        "bpp": bits_per_pixel(size, image.height, image.width),
        "psnr": psnr(reference, decoded),
        "ms_ssim": ms_ssim(reference, decoded),
        "true_loss_initial": result.initial.loss,
        "true_loss_final": result.final.loss,
        "true_bpp_initial": result.initial.bpp,
        "true_bpp_final": result.final.bpp,
        "true_psnr_initial": result.initial.psnr,
        "true_psnr_final": result.final.psnr,
        "method": result.method,
        "steps": config.steps if config.proxy().refines else 0,
        "steps_run": result.steps_run,
        "closed_loop": config.closed_loop,
        "best_step": result.best_step,
        "stopped_by": result.stopped_by,
        "tiles": result.tiles,
        "lr": result.lr,
        "lmbda": result.lmbda,
        "seed": result.seed,
        "time_budget": config.time_budget,
        "precision": resolve_precision(config.precision, model.device),  # of the proxy pass; the file is fp32
        "adapt": config.adapt,
        "distortion": config.distortion,
        "roi": image.roi is not None,
        "config": config.to_dict(),  # the whole configuration: `RefinementConfig.from_dict` re-runs it
    }
    if model.encoder:  # a fine-tuned encoder over a base model: the file is the base model's, and decodes with it
        stats["decoder"] = model.name
    finished = time.perf_counter()
    stats |= {
        "seconds": finished - clock.started,
        "read_seconds": clock.began - clock.started,
        "refine_seconds": result.seconds,
        "coding_seconds": clock.check - clock.coding,
        "check_seconds": finished - clock.check,
        "notes": list(image.notes),
    }
    return stats


def check_stream_matches(stream: Bitstream, model: LatentModel, source: str = "bitstream") -> None:
    """Refuse a stream made by other weights or whose latent shapes disagree with its image size."""
    if stream.digest != model.digest:
        raise BitstreamError(
            f"{source}: made with other weights ({stream.model_name} q{stream.quality}, digest "
            f"{stream.digest.hex()}) than the loaded model ({model.name} q{model.quality}, digest {model.digest.hex()})"
        )
    stride = model.stride
    padded = (-(-stream.height // stride) * stride, -(-stream.width // stride) * stride)
    expected = model.latent_shapes(*padded)
    if [tuple(s) for s in stream.latent_shapes] != expected:
        raise BitstreamError(f"{source}: latent shapes {stream.latent_shapes} do not match a {stream.width}x{stream.height} image")
    expected = model.arch.string_count(model.model)
    if len(stream.strings) != expected:
        raise BitstreamError(f"{source}: {len(stream.strings)} coded strings, but {model.architecture} files have "
                             f"{expected}")


def stream_update(stream: Bitstream, model: LatentModel, source: str = "bitstream") -> Update | None:
    """The decoder update a stream holds, checked against the model's decoder (None without one)."""
    if stream.update is None:
        return None
    form = update_form(stream.update, source)
    expected = form.parameter_count(model.model.g_s)
    if stream.update.count != expected:
        raise BitstreamError(f"{source}: a {form.name} update of {stream.update.count} values, but this decoder "
                             f"takes {expected}")
    return Update(form, torch.from_numpy(decode_update(stream.update, source)).float())


def decode_stream(stream: Bitstream, model: LatentModel, source: str = "bitstream") -> np.ndarray:
    """(H, W, 3) uint8 pixels of a parsed stream."""
    check_stream_matches(stream, model, source)
    update = stream_update(stream, model, source)
    try:
        x_hat = model.decompress(stream.strings, stream.latent_shapes, stream.index_checksum, stream.version, update)
    except BitstreamError as exc:
        raise BitstreamError(f"{source}: {exc}") from None
    return to_uint8(x_hat[..., : stream.height, : stream.width])


def decode(data: bytes, model: LatentModel, source: str = "bitstream") -> np.ndarray:
    """(H, W, 3) uint8 pixels of `.lfc` bytes."""
    return decode_stream(bitstream.from_bytes(data, source), model, source)
