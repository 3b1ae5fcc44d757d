"""Image quality metrics on 8-bit images (what users see), via pytorch-msssim for MS-SSIM."""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim

#: MS-SSIM with 5 scales and an 11-pixel window needs sides above (11 - 1) * 2**4 = 160 pixels.
MS_SSIM_MIN_SIDE = 161


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    """`10·log10(peak² / MSE)` in dB (peak 1 for [0, 1] images, 255 for 8-bit); inf for MSE 0."""
    mse = float(mse)
    return math.inf if mse <= 0 else 10.0 * math.log10(peak**2 / mse)


def mse_from_psnr(psnr_db: float, peak: float = 1.0) -> float:
    """The MSE a PSNR stands for (the inverse of `psnr_from_mse`); 0 for inf."""
    return peak**2 * 10.0 ** (-psnr_db / 10.0)


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB between two uint8 images: `10·log10(255² / MSE)`; inf when identical."""
    return psnr_from_mse(np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2), 255.0)


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float | None:
    """MS-SSIM of two (H, W, 3) uint8 images; None when the image is too small for 5 scales."""
    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)

    return float(_ms_ssim(tensor(reference), tensor(decoded), data_range=255.0))


def rd_loss(bpp, mse, lmbda: float):
    """`L = R/P + λ·255²·MSE` (CompressAI's convention, MSE of [0, 1] images): the rate-distortion loss
    that training, refinement and tiling all minimise (floats or tensors)."""
    return bpp + lmbda * 255.0**2 * mse


def bits_per_pixel(num_bytes: int, height: int, width: int) -> float:
    return 8.0 * num_bytes / (height * width)
