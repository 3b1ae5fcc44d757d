"""Classical codecs on the same images, for the same plots: JPEG, WebP, AVIF (Pillow), JPEG XL (imagecodecs)."""

from __future__ import annotations

import io
import time
from typing import Callable

import numpy as np
from PIL import Image

from ..metrics import bits_per_pixel, ms_ssim, psnr


def _pillow(fmt: str, **options) -> Callable[[np.ndarray, int], tuple[bytes, np.ndarray]]:
    def codec(pixels: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt, quality=quality, **options)
        data = buffer.getvalue()
        with Image.open(io.BytesIO(data)) as img:
            return data, np.asarray(img.convert("RGB"))

    return codec


def _jpegxl(pixels: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    import imagecodecs

    data = bytes(imagecodecs.jpegxl_encode(pixels, level=quality))
    return data, np.asarray(imagecodecs.jpegxl_decode(data))[..., :3]


#: name -> (encode+decode function, quality settings swept).
CLASSICAL_CODECS: dict[str, tuple[Callable, list[int]]] = {
    "jpeg": (_pillow("JPEG", subsampling="4:2:0"), [10, 20, 35, 50, 70, 85, 95]),
    "webp": (_pillow("WEBP", method=6), [5, 15, 30, 50, 70, 85, 95]),
    "avif": (_pillow("AVIF", speed=6), [15, 30, 45, 60, 75, 90]),
    "jpegxl": (_jpegxl, [15, 30, 45, 60, 75, 90]),
}


def classical_record(codec: str, quality: int, pixels: np.ndarray) -> dict:
    """bytes, bpp, PSNR and MS-SSIM of `pixels` (H, W, 3 uint8) through `codec` at `quality`."""
    function = CLASSICAL_CODECS[codec][0]
    started = time.perf_counter()
    data, decoded = function(pixels, quality)
    height, width = pixels.shape[:2]
    return {"model": codec, "method": codec, "steps": 0, "quality": quality, "bytes": len(data),
            "bpp": bits_per_pixel(len(data), height, width), "psnr": psnr(pixels, decoded),
            "ms_ssim": ms_ssim(pixels, decoded), "seconds": time.perf_counter() - started, "width": width,
            "height": height}
