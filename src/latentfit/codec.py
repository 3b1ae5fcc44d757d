"""Image in, `.lfc` bytes out, and back: the codec users call.

`encode` pads the image to the model's stride (replicating edges), refines the latents, entropy-codes
them into a `Bitstream`, then decodes its own output so that every reported figure (bytes, bpp,
PSNR, MS-SSIM) describes the real file. `decode` needs only the bytes and the same model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from . import bitstream
from .bitstream import Bitstream, BitstreamError
from .config import resolve_precision
from .errors import LatentfitError
from .imageio import LoadedImage, to_uint8
from .metrics import bits_per_pixel, ms_ssim, psnr
from .models.adapter import LatentModel
from .refine import ENCODE_TAIL_EVALUATIONS, RefinementConfig, RefinementResult, refine_latents

if TYPE_CHECKING:
    from .rate_control import Target


#: Pillow modes whose decoded output is written back as a grayscale image.
GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L"})


@dataclass
class EncodeResult:
    data: bytes
    stream: Bitstream
    refinement: RefinementResult
    decoded: np.ndarray
    stats: dict = field(default_factory=dict)


def encode(
    image: LoadedImage,
    model: LatentModel | Sequence[LatentModel],
    config: RefinementConfig | None = None,
    progress: Callable | None = None,
    started: float | None = None,
    target: "Target | None" = None,
) -> EncodeResult:
    """Encode `image` with `model`, refining its latents as `config` says (default: sga+ssl, 500 steps).

    `config.time_budget` bounds this whole call, counted from `started` (a `time.perf_counter()`
    value; default: now; the CLI passes the moment it began reading the image): refinement stops
    early enough that entropy coding, the check decode and the metrics fit too.

    `target` (`latentfit.Target("bytes", 40_000)`, `"bpp"`, or `"psnr"`) asks for a file size or a
    quality instead: `model` may then be a family (`load_family()`, every quality of a model), and
    the quality and λ are chosen to meet it (`latentfit.rate_control`).
    """
    if target is not None:
        from .rate_control import encode_to_target

        return encode_to_target(image, model, target, config, progress, started)
    if not isinstance(model, LatentModel):
        raise LatentfitError("encode takes one model, or a family of models together with a target")
    config = config or RefinementConfig()
    started = time.perf_counter() if started is None else started
    began = time.perf_counter()
    result = refine_latents(model, image.tensor, config, progress=progress,  # pads to the stride itself
                            clock_started=started, reserve_evaluations=ENCODE_TAIL_EVALUATIONS)
    coding_started = time.perf_counter()
    stream, data = entropy_code(image, model, result.latents)
    check_started = time.perf_counter()
    decoded = decode_stream(stream, model)
    stats = encode_stats(image, model, config, result, data, decoded, started, began, coding_started, check_started)
    return EncodeResult(data, stream, result, decoded, stats)


def entropy_code(image: LoadedImage, model: LatentModel, latents) -> tuple[Bitstream, bytes]:
    """The `.lfc` stream of `latents` for `image` and its bytes: what the file will hold."""
    strings, shapes, index_checksum = model.compress(latents)
    stream = Bitstream(
        model_name=model.name, quality=model.quality, digest=model.digest, height=image.height, width=image.width,
        latent_shapes=shapes, strings=strings, grayscale=image.source_mode in GRAYSCALE_MODES,
        index_checksum=index_checksum,
    )
    return stream, bitstream.to_bytes(stream)


def encode_stats(image: LoadedImage, model: LatentModel, config: RefinementConfig, result: RefinementResult,
                 data: bytes, decoded: np.ndarray, started: float, began: float, coding_started: float,
                 check_started: float) -> dict:
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
        "config": config.to_dict(),  # the whole configuration: `RefinementConfig.from_dict` re-runs it
    }
    if model.encoder:  # a fine-tuned encoder over a base model: the file is the base model's, and decodes with it
        stats["decoder"] = model.name
    finished = time.perf_counter()
    stats |= {
        "seconds": finished - started,
        "read_seconds": began - started,
        "refine_seconds": result.seconds,
        "coding_seconds": check_started - coding_started,
        "check_seconds": finished - check_started,
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
    if len(stream.strings) != model.arch.string_count:
        raise BitstreamError(f"{source}: {len(stream.strings)} coded strings, but {model.architecture} files have "
                             f"{model.arch.string_count}")


def decode_stream(stream: Bitstream, model: LatentModel, source: str = "bitstream") -> np.ndarray:
    """(H, W, 3) uint8 pixels of a parsed stream."""
    check_stream_matches(stream, model, source)
    try:
        x_hat = model.decompress(stream.strings, stream.latent_shapes, stream.index_checksum, stream.version)
    except BitstreamError as exc:
        raise BitstreamError(f"{source}: {exc}") from None
    return to_uint8(x_hat[..., : stream.height, : stream.width])


def decode(data: bytes, model: LatentModel, source: str = "bitstream") -> np.ndarray:
    """(H, W, 3) uint8 pixels of `.lfc` bytes."""
    return decode_stream(bitstream.from_bytes(data, source), model, source)
