"""Reading and writing images: every input becomes an RGB float tensor in [0, 1], every output is
written atomically (temporary file in the same folder, then rename)."""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .errors import LatentfitError

#: Refuse to decode images with more pixels than this (Pillow's bomb guard raised to 16K x 16K).
MAX_IMAGE_PIXELS = 16384 * 16384


@dataclass(frozen=True)
class LoadedImage:
    """An image as the codec sees it: `tensor` is (1, 3, H, W) float32 in [0, 1]; `roi`, a region of
    interest's per-pixel weights (1, 1, H, W) of mean 1 (`latentfit.distortion.load_roi`), or None."""

    tensor: torch.Tensor
    source_mode: str
    notes: tuple[str, ...] = ()
    roi: torch.Tensor | None = None

    @property
    def height(self) -> int:
        return int(self.tensor.shape[-2])

    @property
    def width(self) -> int:
        return int(self.tensor.shape[-1])


def _to_rgb_array(img: Image.Image, path: Path) -> tuple[np.ndarray, list[str]]:
    """uint8 RGB array of any Pillow image, with a note for each lossy conversion."""
    notes: list[str] = []
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if array.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
        gray = np.clip(np.round(array / peak * 255.0), 0, 255).astype(np.uint8)
        notes.append(f"{path.name}: {mode} image reduced to 8-bit and converted to RGB")
        return np.repeat(gray[:, :, None], 3, axis=2), notes
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8), notes
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        notes.append(f"{path.name}: alpha channel dropped (converted {mode} to RGB)")
    elif mode in ("L", "1", "P"):
        notes.append(f"{path.name}: {mode} image converted to RGB")
    else:
        notes.append(f"{path.name}: {mode} image converted to RGB")
    return np.asarray(img.convert("RGB"), dtype=np.uint8), notes


def load_image(path: str | os.PathLike) -> LoadedImage:
    """Load any image Pillow reads as an RGB tensor (1, 3, H, W) in [0, 1].

    Grayscale, palette, alpha and 16-bit inputs are converted; each conversion is reported in
    `notes`. Raises LatentfitError with a one-line message for anything that is not a readable image.
    """
    path = Path(path)
    if not path.exists():
        raise LatentfitError(f"{path}: no such file")
    if path.is_dir():
        raise LatentfitError(f"{path}: is a folder, expected an image file")
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                source_mode = img.mode
                array, notes = _to_rgb_array(img, path)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        kind = "too large" if "pixels" in str(exc) else "not a readable image"
        raise LatentfitError(f"{path}: {kind}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise LatentfitError(f"{path}: cannot read image ({exc})") from None
    if array.ndim != 3 or array.shape[0] < 1 or array.shape[1] < 1:
        raise LatentfitError(f"{path}: empty image")
    tensor = torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1).float().div_(255.0)
    return LoadedImage(tensor.unsqueeze(0), source_mode, tuple(notes))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float tensor in [0, 1] -> (H, W, 3) uint8, rounding to nearest."""
    if image.dim() == 4:
        image = image[0]
    array = image.detach().clamp(0, 1).mul(255.0).round().to(torch.uint8)
    return array.permute(1, 2, 0).cpu().numpy()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, force: bool = False) -> None:
    """Write `data` to `path` through a temporary file and a rename; refuse to overwrite unless `force`."""
    path = Path(path)
    if path.exists() and not force:
        raise LatentfitError(f"{path}: already exists (use --force to overwrite)")
    if path.is_dir():
        raise LatentfitError(f"{path}: is a folder")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise LatentfitError(f"{path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_image(path: str | os.PathLike, pixels: np.ndarray, force: bool = False, mode: str = "RGB") -> None:
    """Save an (H, W, 3) uint8 array atomically; the format follows the suffix (PNG recommended)."""
    import io

    path = Path(path)
    img = Image.fromarray(pixels, "RGB")
    if mode == "L":
        img = img.convert("L")
    buffer = io.BytesIO()
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise LatentfitError(f"{path}: unknown image format '{path.suffix}' (use .png)")
    try:
        img.save(buffer, format=fmt)
    except (OSError, KeyError, ValueError) as exc:
        raise LatentfitError(f"{path}: cannot write {fmt} ({exc})") from None
    atomic_write_bytes(path, buffer.getvalue(), force=force)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files (png, jpg, jpeg, webp, bmp, tif, tiff) directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LatentfitError(f"{folder}: not a folder")
    suffixes = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes and p.is_file())


def center_box(height: int, width: int, crop: int | tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns of the centred `crop` (an int for a square, else (width, height)) of a
    `height` x `width` image, clipped to it: `tensor[..., rows, cols]` or `array[rows, cols]`."""
    crop_w, crop_h = (crop, crop) if isinstance(crop, int) else crop
    crop_w, crop_h = min(crop_w, width), min(crop_h, height)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return slice(top, top + crop_h), slice(left, left + crop_w)


def center_crop(image: LoadedImage, crop: int | tuple[int, int] | None) -> LoadedImage:
    """The centred `crop` of `image` (see `center_box`); the image itself for None."""
    if crop is None:
        return image
    rows, cols = center_box(image.height, image.width, crop)
    roi = None if image.roi is None else image.roi[..., rows, cols].contiguous()
    return LoadedImage(image.tensor[..., rows, cols].contiguous(), image.source_mode, image.notes, roi)


def pad_to_multiple(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Pad (1, 3, H, W) on the bottom and right, replicating edges, to multiples of `stride`."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % stride, (-width) % stride
    if not pad_h and not pad_w:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
