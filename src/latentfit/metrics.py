"""Image quality metrics on 8-bit images (what users see), via pytorch-msssim for MS-SSIM."""

from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_msssim import ms_ssim as _ms_ssim

#: MS-SSIM with 5 scales and an 11-pixel window needs sides above (11 - 1) * 2**4 = 160 pixels.
MS_SSIM_MIN_SIDE = 161


def psnr_from_mse(mse) -> float:
    """PSNR in dB of an MSE of [0, 1] images (a float or a tensor): `−10·log10(MSE)`; inf for 0.

    The logarithm is taken in float32, as the refinement always has: its true PSNR steers rate
    control (`--target-psnr`), so these last bits are part of what a seed reproduces."""
    mse = float(mse)
    return math.inf if mse <= 0 else -10.0 * torch.log10(torch.tensor(mse, dtype=torch.float32)).item()


def mse_from_psnr(psnr_db: float) -> float:
    """The MSE of [0, 1] images a PSNR stands for (the inverse of `psnr_from_mse`); 0 for inf."""
    return 10.0 ** (-psnr_db / 10.0)


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB between two uint8 images, as files are measured: `10·log10(255² / MSE)` in float64;
    inf when identical."""
    mse = float(np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float | None:
    """MS-SSIM of two (H, W, 3) uint8 images; None when the image is too small for 5 scales."""
    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)

    return float(ms_ssim_of(tensor(reference), tensor(decoded), data_range=255.0))


def ms_ssim_of(x_hat: torch.Tensor, x: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """MS-SSIM (pytorch-msssim: 5 scales, 11-pixel Gaussian window) of two (N, 3, H, W) images of
    values in [0, `data_range`], in float32, differentiable: the one place every MS-SSIM is computed
    (files' metric, the refinement's loss, rate control's steering)."""
    return _ms_ssim(x_hat.float(), x.float(), data_range=data_range)


def rd_loss(bpp, mse, lmbda: float):
    """`L = R/P + λ·255²·MSE` (CompressAI's convention, MSE of [0, 1] images): the rate-distortion loss
    that training, refinement and tiling all minimise (floats or tensors)."""
    return bpp + lmbda * 255.0**2 * mse


def bits_per_pixel(num_bytes: int, height: int, width: int) -> float:
    return 8.0 * num_bytes / (height * width)
