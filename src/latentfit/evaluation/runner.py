"""Resumable evaluation: every (image, quality, method, steps) cell is encoded to a real file,
decoded, measured, and appended at once as one JSON line to `cells.jsonl`.

A re-run skips the cells already recorded; an interrupt loses at most the cell in progress. The
configuration that defines the numbers (model, λ, lr, crop, seed, latentfit version) is hashed into
every record, and records of another configuration in the same folder are refused, never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..codec import encode
from ..errors import LatentfitError
from ..imageio import LoadedImage, atomic_write_bytes, list_images, load_image, to_uint8
from ..models.registry import load_model
from ..refine import RefinementConfig
from .bdrate import bd_psnr, bd_rate
from .classical import CLASSICAL_CODECS, classical_record
from .plots import convergence_plot, rd_plot


@dataclass
class EvalConfig:
    datasets: list[str]
    model: str | None = None
    qualities: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    methods: list[str] = field(default_factory=lambda: ["none", "sga+ssl"])
    steps: list[int] = field(default_factory=lambda: [500])
    lmbda: float | None = None
    lr: float = 5e-3
    crop: tuple[int, int] | None = None
    limit: int | None = None
    seed: int = 0
    evaluate_every: int = 10
    classical: list[str] = field(default_factory=list)

    def identity(self) -> str:
        """Hash of everything that changes a cell's numbers (not which cells are run)."""
        from .. import __version__

        keys = {"model": self.model, "lmbda": self.lmbda, "lr": self.lr, "crop": self.crop, "seed": self.seed,
                "evaluate_every": self.evaluate_every, "version": __version__}
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    image: str
    quality: int
    method: str
    steps: int

    @property
    def key(self) -> str:
        return f"{self.image}|q{self.quality}|{self.method}|{self.steps}"


def center_crop(image: LoadedImage, crop: tuple[int, int] | None) -> LoadedImage:
    if crop is None:
        return image
    width, height = min(crop[0], image.width), min(crop[1], image.height)
    top, left = (image.height - height) // 2, (image.width - width) // 2
    return LoadedImage(image.tensor[..., top : top + height, left : left + width].contiguous(), image.source_mode)


def cells(config: EvalConfig) -> Iterator[tuple[Cell, Path]]:
    """Every cell, grouped by quality (one model load each); `none` runs once, at 0 steps."""
    images = [path for folder in config.datasets for path in list_images(folder)]
    if config.limit:
        images = images[: config.limit]
    if not images:
        raise LatentfitError(f"no images in {', '.join(config.datasets)}")
    for codec in config.classical:
        if codec not in CLASSICAL_CODECS:
            raise LatentfitError(f"unknown classical codec '{codec}' (known: {', '.join(CLASSICAL_CODECS)})")
        for setting in CLASSICAL_CODECS[codec][1]:
            for path in images:
                yield Cell(f"{Path(path).parent.name}/{path.name}", setting, codec, 0), path
    for quality in config.qualities:
        for path in images:
            for method in config.methods:
                for steps in [0] if method == "none" else config.steps:
                    yield Cell(f"{Path(path).parent.name}/{path.name}", quality, method, steps), path


def cell_file(results_dir: Path, cell: Cell) -> Path:
    """Where the `.lfc` file of a learned cell is kept (for the report's crop viewer)."""
    folder = results_dir / "files"
    folder.mkdir(exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in cell.key)
    return folder / f"{safe}.lfc"


def read_records(results_dir: Path, identity: str) -> dict[str, dict]:
    path = results_dir / "cells.jsonl"
    records: dict[str, dict] = {}
    if not path.exists():
        return records
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash: that cell simply runs again
        if record.get("config_id") != identity:
            raise LatentfitError(
                f"{path}:{number}: results of another configuration ({record.get('config_id')}); "
                f"use another results folder"
            )
        records[record["cell"]] = record
    return records


def run_evaluation(config: EvalConfig, results_dir: str | os.PathLike, device: str = "cpu",
                   progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """Run every missing cell, appending each record to `results_dir/cells.jsonl`; returns all records."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    identity = config.identity()
    done = read_records(results_dir, identity)
    todo = [(cell, path) for cell, path in cells(config) if cell.key not in done]
    total = len(done) + len(todo)
    models: dict[int, object] = {}
    with open(results_dir / "cells.jsonl", "a") as journal:
        for cell, path in todo:
            image = center_crop(load_image(path), config.crop)
            if cell.method in CLASSICAL_CODECS:
                record = {"cell": cell.key, "config_id": identity, "image": cell.image} | classical_record(
                    cell.method, cell.quality, to_uint8(image.tensor))
                _append(journal, record)
                done[cell.key] = record
                if progress is not None:
                    progress(len(done), total)
                continue
            if cell.quality not in models:
                models.clear()
                models[cell.quality] = load_model(config.model, cell.quality, device=device)
            model = models[cell.quality]
            refinement = RefinementConfig(method=cell.method, steps=cell.steps, lr=config.lr, lmbda=config.lmbda,
                                          seed=config.seed, evaluate_every=config.evaluate_every)
            result = encode(image, model, refinement)
            atomic_write_bytes(cell_file(results_dir, cell), result.data, force=True)
            record = {"cell": cell.key, "config_id": identity} | asdict(cell) | result.stats | {
                "trace": result.refinement.trace_dicts()}
            _append(journal, record)
            done[cell.key] = record
            if progress is not None:
                progress(len(done), total)
    return list(done.values())


def _append(journal, record: dict) -> None:
    journal.write(json.dumps(record) + "\n")
    journal.flush()
    os.fsync(journal.fileno())


def summarise(records: list[dict], results_dir: str | os.PathLike) -> dict:
    """Write one CompressAI-format JSON per (model, method, steps) and `bd_rates.json` against `none`."""
    results_dir = Path(results_dir)
    groups: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        groups[(record["model"], record["method"], record["steps"])][record["quality"]].append(record)
    curves = {}
    for (model, method, steps), by_quality in sorted(groups.items()):
        qualities = sorted(by_quality)
        mean = lambda key: [sum(r[key] or 0.0 for r in by_quality[q]) / len(by_quality[q]) for q in qualities]  # noqa: E731
        name = f"{model}-{method}-{steps}"
        document = {"name": name, "description": f"latentfit {method}, {steps} steps, on {model}",
                    "results": {"quality": qualities, "bpp": mean("bpp"), "psnr-rgb": mean("psnr"),
                                "ms-ssim-rgb": mean("ms_ssim"), "encoding_time": mean("seconds")}}
        atomic_write_bytes(results_dir / f"{name}.json", json.dumps(document, indent=2).encode(), force=True)
        curves[(model, method, steps)] = list(zip(document["results"]["bpp"], document["results"]["psnr-rgb"]))
    table = []
    anchors = {model: curve for (model, method, _), curve in curves.items() if method == "none" and len(curve) >= 2}
    for (model, method, steps), curve in curves.items():
        if method == "none" or len(curve) < 2:
            continue
        # a learned curve is compared with its own model's `none`; a classical codec with every model's
        for anchor_model in [model] if model in anchors else ([] if method != model else sorted(anchors)):
            anchor = anchors[anchor_model]
            try:
                rate, quality = bd_rate(anchor, curve), bd_psnr(anchor, curve)
            except Exception:  # curves whose PSNR ranges do not overlap have no BD value
                rate = quality = None
            table.append({"model": model, "method": method, "steps": steps, "anchor": f"{anchor_model} none",
                          "bd_rate": rate, "bd_psnr": quality})
    atomic_write_bytes(results_dir / "bd_rates.json", json.dumps(table, indent=2).encode(), force=True)
    labelled = {(f"{m} {meth} {st}" if meth != m else m): c for (m, meth, st), c in curves.items()}
    rd_plot(labelled, results_dir / "rd.png")
    convergence_plot(records, results_dir / "convergence.png")
    return {"curves": {"|".join(map(str, k)): v for k, v in curves.items()}, "bd_rates": table}
