"""Encoding image files, one or a folder's worth, in this process or in worker processes.

The command line's `encode` runs on these: `encode_path` reads and encodes one file, `pending_images`
lists what a folder run still has to do (finished files are checked and skipped, so a run resumes),
and `encode_task` is one image as a worker process runs it, the model loaded there from a
`ModelSource` (picklable data, not the model itself) and kept for that worker's next image.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import LatentfitError


def torch_device(name: str):
    """`cpu`, `cuda` or `cuda:N` as a torch device; one-line errors for an unknown name or a missing GPU."""
    import torch

    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise LatentfitError(f"unknown device '{name}' (use cpu or cuda)")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LatentfitError("device cuda requested but no CUDA GPU is available")
    return torch.device(name)


@dataclass(frozen=True)
class ModelSource:
    """The model an encode was asked for, as data a worker process can load again."""

    name: str | None
    quality: int | None
    checkpoint: str | None
    family: bool  #: every quality (a target without a quality chooses one)
    device: str = "cpu"

    def load(self):
        from .models.registry import load_family, load_model

        if self.family:
            return load_family(self.name, device=torch_device(self.device))
        return load_model(self.name, self.quality, self.checkpoint, device=torch_device(self.device))


def encode_path(path: Path, latent_model, config, goal, started: float, progress=None, roi: Path | None = None,
                roi_weight: float | None = None):
    """`path` read and encoded: (the image, the `EncodeResult`); an unreachable target names the file.
    A time budget counts from `started`. `roi`: a region-of-interest mask for it (`latentfit.distortion`);
    a mask or distortion that does not fit the image is refused, naming the file, before any work."""
    import dataclasses

    from .distortion import ROI_WEIGHT, load_roi
    from .pipeline import encode, image_distortion
    from .imageio import load_image
    from .rate_control import TargetUnreachableError

    image = load_image(path)
    if roi is not None:
        weights = load_roi(roi, image.height, image.width, ROI_WEIGHT if roi_weight is None else roi_weight)
        image = dataclasses.replace(image, roi=weights)
    image_distortion(image, config, str(path))
    if goal is not None:
        goal.check(image.height, image.width, str(path))
    try:
        return image, encode(image, latent_model, config, progress=progress, started=started, target=goal)
    except TargetUnreachableError as exc:
        raise LatentfitError(f"{path}: {exc}") from None


def pending_images(folder: Path, outdir: Path, force: bool) -> tuple[list[tuple[Path, Path]], int]:
    """(image, its .lfc in `outdir`) pairs still to encode, and how many of `folder`'s images are done
    (their file exists and reads as a latentfit file; a damaged one is an error, not skipped)."""
    from .bitstream import from_bytes
    from .imageio import list_images

    images = list_images(folder)
    if not images:
        raise LatentfitError(f"{folder}: no images found")
    outdir.mkdir(parents=True, exist_ok=True)
    todo = []
    for path in images:
        target = outdir / f"{path.stem}.lfc"
        if target.exists() and not force:
            from_bytes(target.read_bytes(), str(target))
            continue
        todo.append((path, target))
    return todo, len(images) - len(todo)


def folder_masks(masks: Path, todo: list[tuple[Path, Path]]) -> dict[Path, Path | None]:
    """The region-of-interest mask of each image to encode from a folder (`--roi` with a folder): the
    mask of `IN/photo.jpg` is `MASKS/photo.png`; an image without one is encoded without a region. A
    `masks` that is not a folder, or holds no mask for any of the images, is refused in one line."""
    if not masks.is_dir():
        raise LatentfitError(f"{masks}: with a folder of images, --roi takes a folder of masks "
                             "(the mask of IN/photo.jpg is ROI/photo.png)")
    found = {path: masks / f"{path.stem}.png" for path, _ in todo}
    found = {path: mask if mask.is_file() else None for path, mask in found.items()}
    if todo and not any(found.values()):
        raise LatentfitError(f"{masks}: no mask for any of the {len(todo)} images to encode "
                             "(the mask of IN/photo.jpg is ROI/photo.png)")
    return found


@functools.lru_cache(maxsize=1)
def _worker_model(source: ModelSource):
    return source.load()


def encode_task(path: str, source: ModelSource, config, goal, threads: int, roi: str | None = None,
                roi_weight: float | None = None) -> tuple[dict, bytes, list[str]]:
    """One image of a parallel folder encode, in a worker process: (stats, the file's bytes, notes on
    the input). `seconds` counts from the worker's start on the image to the bytes in memory."""
    import torch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    image, result = encode_path(Path(path), _worker_model(source), config, goal, started, None,
                                None if roi is None else Path(roi), roi_weight)
    stats = result.stats | {"seconds": time.perf_counter() - started, "input": path, "device": source.device}
    return stats, result.data, image.notes
