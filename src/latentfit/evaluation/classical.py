"""Classical codecs on the same images, for the same plots and BD tables.

Each codec is a `ClassicalCodec` in `CLASSICAL_CODECS`: one quality knob (an integer setting whose
file size grows with it) and its best-compression options by default. A spec `name` or
`name:option=value[:option=value...]` (e.g. `avif:speed=6`) selects a codec and overrides options, for the faster
presets; a record stores the codec, its setting and its options.

The points of a codec on an image are chosen by bisection on the knob (`sweep`): the highest
setting whose PSNR is at most the lowest PSNR of that image's learned cells and the lowest whose
PSNR is at least their highest bracket the learned cells' quality range (BD-rate integrates over
the PSNR range two curves share), and `levels` settings spread between them are the curve's points.
Curves average point k over the images, as learned curves average quality q, so each classical
curve covers the learned range image by image.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import LatentfitError
from ..metrics import bits_per_pixel, ms_ssim, psnr
from .records import ClassicalRecord

#: encode(pixels (H, W, 3) uint8, setting, options) -> (file bytes, decoded pixels)
Codec = Callable[[np.ndarray, int, dict], tuple[bytes, np.ndarray]]


def _pillow(fmt: str) -> Codec:
    def codec(pixels: np.ndarray, setting: int, options: dict) -> tuple[bytes, np.ndarray]:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt, quality=setting, **options)
        data = buffer.getvalue()
        with Image.open(io.BytesIO(data)) as img:
            return data, np.asarray(img.convert("RGB"))

    return codec


def _avif(pixels: np.ndarray, setting: int, options: dict) -> tuple[bytes, np.ndarray]:
    """AVIF (libavif through Pillow); `tune` (psnr, ssim, iq: libaom's tuning; libavif's default is
    iq for still images) goes to the codec as an advanced option."""
    options = dict(options)
    tune = options.pop("tune", None)
    return _pillow("AVIF")(pixels, setting, options | ({"advanced": (("tune", str(tune)),)} if tune else {}))


def _heic(pixels: np.ndarray, setting: int, options: dict) -> tuple[bytes, np.ndarray]:
    """HEVC intra (x265 through libheif), the codec inside BPG."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="HEIF", quality=setting, enc_params=dict(options))
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as img:
        return data, np.asarray(img.convert("RGB"))


def _jpegxl(pixels: np.ndarray, setting: int, options: dict) -> tuple[bytes, np.ndarray]:
    import imagecodecs

    data = bytes(imagecodecs.jpegxl_encode(pixels, level=setting, **options))
    return data, np.asarray(imagecodecs.jpegxl_decode(data))[..., :3]


def _jpeg2000(pixels: np.ndarray, setting: int, options: dict) -> tuple[bytes, np.ndarray]:
    """JPEG 2000 (OpenJPEG); the setting is OpenJPEG's target PSNR in dB (fixed-quality mode)."""
    import imagecodecs

    data = bytes(imagecodecs.jpeg2k_encode(pixels, level=setting, **options))
    return data, np.asarray(imagecodecs.jpeg2k_decode(data))[..., :3]


@dataclass(frozen=True)
class ClassicalCodec:
    name: str
    encode: Codec
    #: The knob's range, low to high file size.
    settings: tuple[int, int]
    #: Best-compression options (overridable per spec).
    defaults: dict = field(default_factory=dict)
    knob: str = "quality"


CLASSICAL_CODECS: dict[str, ClassicalCodec] = {
    codec.name: codec for codec in [
        ClassicalCodec("jpeg", _pillow("JPEG"), (1, 95), {"subsampling": "4:2:0", "optimize": True}),
        ClassicalCodec("webp", _pillow("WEBP"), (0, 100), {"method": 6}),
        ClassicalCodec("avif", _avif, (0, 100), {"speed": 0}),
        ClassicalCodec("jpegxl", _jpegxl, (1, 100), {"effort": 9}),
        ClassicalCodec("heic", _heic, (0, 100), {"preset": "veryslow", "tune": "psnr", "chroma": "420"}),
        ClassicalCodec("jpeg2000", _jpeg2000, (15, 60), {}, knob="target PSNR (dB)"),
    ]
}

#: Points per classical curve (settings per image within the bracket, ends included).
SWEEP_LEVELS = 6


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[ClassicalCodec, dict]:
    """`name` or `name:key=value[:key=value...]` -> the codec and its options (defaults overridden)."""
    name, _, rest = spec.strip().partition(":")
    codec = CLASSICAL_CODECS.get(name)
    if codec is None:
        raise LatentfitError(f"unknown classical codec '{name}' (known: {', '.join(CLASSICAL_CODECS)})")
    options = dict(codec.defaults)
    for item in filter(None, rest.split(":")):
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise LatentfitError(f"classical codec option '{item}' is not key=value (in '{spec}')")
        options[key.strip()] = _value(value.strip())
    return codec, options


def describe_codecs() -> str:
    """Every codec with its default options, for help texts: `jpeg (subsampling=4:2:0, ...), webp (method=6), ...`."""
    return ", ".join(name + (" (" + ", ".join(f"{k}={v}" for k, v in codec.defaults.items()) + ")" if codec.defaults else "")
                     for name, codec in CLASSICAL_CODECS.items())


def is_classical(method: str) -> bool:
    return method.partition(":")[0] in CLASSICAL_CODECS


def classical_record(spec: str, setting: int, pixels: np.ndarray, keep: dict | None = None) -> dict:
    """bytes, bpp, PSNR and MS-SSIM of `pixels` (H, W, 3 uint8) through codec `spec` at `setting`
    (`keep`: where to leave the decoded pixels, under the setting)."""
    codec, options = parse_spec(spec)
    started = time.perf_counter()
    data, decoded = codec.encode(pixels, setting, options)
    if keep is not None:
        keep[setting] = decoded
    height, width = pixels.shape[:2]
    return {"model": spec, "method": spec, "steps": 0, "setting": setting, "codec": codec.name,
            "codec_options": options, "bytes": len(data), "bpp": bits_per_pixel(len(data), height, width),
            "psnr": psnr(pixels, decoded), "ms_ssim": ms_ssim(pixels, decoded),
            "seconds": time.perf_counter() - started, "width": width, "height": height}


def bracket(size: Callable[[int], float], low: int, high: int, smallest: float, largest: float) -> tuple[int, int]:
    """Settings `(a, b)` in `[low, high]` with `size(a) <= smallest` and `size(b) >= largest` where the
    knob allows (else the range's end): the highest such `a` and the lowest such `b`, by bisection,
    for a `size` (file size, PSNR) that does not decrease with the setting."""
    def last_at_most(target: float) -> int:
        if size(low) > target:
            return low
        lo, hi = low, high  # invariant: size(lo) <= target
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if size(mid) <= target else (lo, mid - 1)
        return lo

    def first_at_least(target: float) -> int:
        if size(high) < target:
            return high
        lo, hi = low, high  # invariant: size(hi) >= target
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if size(mid) >= target else (mid + 1, hi)
        return hi

    a = last_at_most(smallest)
    return a, max(a, first_at_least(largest))


def sweep(spec: str, pixels: np.ndarray, psnr_range: tuple[float, float],
          levels: int = SWEEP_LEVELS, metrics: list[str] = ()) -> list[ClassicalRecord]:
    """`levels` records of `spec` on `pixels` whose PSNR bracket `psnr_range` (see the module
    docstring); record `level` k is the curve's point k. Every probe is encoded once; the perceptual
    `metrics` (`perceptual.PERCEPTUAL_METRICS`) are measured on the chosen points only."""
    from .perceptual import perceptual_scores

    codec, _ = parse_spec(spec)
    cache: dict[int, dict] = {}
    decoded: dict[int, np.ndarray] = {}

    def record(setting: int) -> dict:
        if setting not in cache:
            cache[setting] = classical_record(spec, setting, pixels, decoded if metrics else None)
        return cache[setting]

    low, high = codec.settings
    a, b = bracket(lambda s: record(s)["psnr"], low, high, *psnr_range)
    settings = [int(round(a + (b - a) * k / (levels - 1))) for k in range(levels)]
    probes = len(cache)
    return [record(s) | {"quality": k, "probes": probes} | perceptual_scores(list(metrics), pixels, decoded.get(s))
            for k, s in enumerate(settings)]
