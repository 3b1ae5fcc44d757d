"""Quality metrics that the optimiser never sees, so that a gain is not the objective being gamed:
SSIMULACRA2 (the `ssimulacra2` package; 100 is lossless, 90 visually lossless, 50 medium quality) and
ColorVideoVDP (`cvvdp`, its default metric and `standard_4k` display, offline; JOD, 10 is no visible
difference). Both take the 8-bit files' pixels, as PSNR and MS-SSIM do (`latentfit.metrics`).

`eval --metric ssimulacra2,cvvdp` adds them to every cell's record (learned and classical, on the
decoded file), and BD-rates in each to the summary (`runner.summarise`); PSNR and MS-SSIM are always
measured. Each costs about 1–1.5 s a Kodak image on one core.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Callable

import numpy as np

from ..errors import LatentfitError

__all__ = ["METRICS", "PERCEPTUAL_METRICS", "check_metrics", "cvvdp_jod", "perceptual_scores", "ssimulacra2_score"]


def ssimulacra2_score(reference: np.ndarray, decoded: np.ndarray) -> float:
    """SSIMULACRA2 of two (H, W, 3) uint8 images (higher is better)."""
    from PIL import Image
    from ssimulacra2 import compute_ssimulacra2

    def png(pixels: np.ndarray) -> io.BytesIO:  # the package reads images the way Pillow opens them
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
        buffer.seek(0)
        return buffer

    return float(compute_ssimulacra2(png(reference), png(decoded)))


@lru_cache(maxsize=1)
def _cvvdp():
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime" on CPUs
    import pycvvdp

    import torch

    return pycvvdp.cvvdp(display_name="standard_4k", heatmap=None, device=torch.device("cpu"))


def cvvdp_jod(reference: np.ndarray, decoded: np.ndarray) -> float:
    """ColorVideoVDP (JOD units, higher is better) of two (H, W, 3) uint8 sRGB images on cvvdp's default
    display, on the CPU."""
    import torch

    with torch.no_grad():
        quality, _ = _cvvdp().predict(decoded, reference, dim_order="HWC")
    return float(quality)


#: The metrics `eval --metric` can add: record key -> scorer.
PERCEPTUAL_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "ssimulacra2": ssimulacra2_score, "cvvdp": cvvdp_jod}
#: The module each perceptual metric imports.
_PACKAGES = {"ssimulacra2": "ssimulacra2", "cvvdp": "pycvvdp"}
#: Every metric a summary can compare in (PSNR and MS-SSIM are always measured).
METRICS = ("psnr", "ms-ssim", *PERCEPTUAL_METRICS)


def check_metrics(names: list[str]) -> list[str]:
    """The perceptual metrics among `names` (psnr and ms-ssim are always there); an unknown one is a
    one-line error naming the choices."""
    import importlib.util

    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise LatentfitError(f"unknown metric {', '.join(unknown)} (use {', '.join(METRICS)})")
    chosen = [name for name in names if name in PERCEPTUAL_METRICS]
    missing = [name for name in chosen if importlib.util.find_spec(_PACKAGES[name]) is None]
    if missing:
        raise LatentfitError(f"metric {', '.join(missing)} needs its package: pip install 'latentfit[metrics]'")
    return chosen


def perceptual_scores(names: list[str], reference: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    """The record fields of the perceptual metrics `names` for one decoded image."""
    return {name: PERCEPTUAL_METRICS[name](reference, decoded) for name in names}
