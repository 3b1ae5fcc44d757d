"""Resumable evaluation: every (image, quality, method, steps) cell is encoded to a real file,
decoded, measured, and appended at once as one JSON line to `cells.jsonl`.

A re-run skips the cells already recorded; an interrupt loses at most the cell in progress. The
configuration that defines the numbers (model, λ, lr, crop, seed, latentfit version) is hashed into
every record, and records of another configuration in the same folder are refused, never mixed in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..pipeline import encode
from ..config import PAPERS_PROTOCOL, RefinementConfig
from ..errors import LatentfitError
from ..imageio import atomic_write_bytes, center_crop, list_images, load_image, to_uint8
from ..models.registry import load_model
from ..parallel import ray_installed, run_tasks
from ..relaxations import is_plain
from .bdrate import bd_psnr, bd_rate, quality_overlap
from .classical import SWEEP_LEVELS, is_classical, parse_spec, sweep
from .journal import Journal
from .perceptual import perceptual_scores
from .records import LearnedRecord, Record, check_record
from .references import references_for
from .plots import convergence_plot, gain_per_second_plot, rd_plot
from .tables import curve_method, markdown_summary, seconds_per_megapixel  # curve_method: re-exported


@dataclass
class EvalConfig:
    """A grid of cells: images × qualities × methods × step counts × λ points, and the refinement
    settings every learned cell shares (`refinement`; each cell sets its own method, steps and λ)."""

    datasets: list[str]
    model: str | None = None
    qualities: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    #: A weights file to evaluate instead of a named model (its one quality; see `eval_model`).
    checkpoint: str | None = None
    methods: list[str] = field(default_factory=lambda: ["none", "sga+ssl"])
    steps: list[int] = field(default_factory=lambda: [500])
    #: The papers' protocol by default (`config.PAPERS_PROTOCOL`), so that methods are compared as
    #: published; its `lmbda` is every cell's λ unless the λ axis says otherwise, its `closed_loop`
    #: passes are also what `none` writes.
    refinement: RefinementConfig = PAPERS_PROTOCOL
    crop: tuple[int, int] | None = None
    limit: int | None = None
    classical: list[str] = field(default_factory=list)
    #: The λ axis: "" (each model's own λ, or `refinement.lmbda`), "x0.5" (a multiple of the model's own
    #: λ) or "0.0049" (that λ). `none` runs once, at "": its file does not depend on λ.
    lmbda_points: list[str] = field(default_factory=lambda: [""])
    #: torch threads per cell (0: leave as is in-process; Ray tasks use 1).
    threads: int = 0
    #: The decoder update axis (`RefinementConfig.adapt` of the refining cells; `none` has none).
    adapts: list[str] = field(default_factory=lambda: ["none"])
    #: The distortion axis (`RefinementConfig.distortion` of the refining cells; `none` is the encoder's).
    distortions: list[str] = field(default_factory=lambda: ["mse"])
    #: Metrics measured besides PSNR and MS-SSIM on every cell's file (`perceptual.PERCEPTUAL_METRICS`).
    metrics: list[str] = field(default_factory=list)

    def protocol(self) -> RefinementConfig:
        """The refinement settings every learned cell shares (each cell adds its method, steps and λ)."""
        return self.refinement

    def identity(self) -> str:
        """Hash of everything that changes a cell's numbers besides the cell itself (its image, quality,
        method, steps and λ point): the protocol as its `RefinementConfig.to_dict()` records it (the
        constants behind the named schedules included), the model or checkpoint, the crop and
        latentfit's version. A journal holds the cells of one identity."""
        from .. import __version__

        protocol = self.refinement.to_dict()
        for per_cell in ("proxy", "runtime"):
            del protocol[per_cell]
        del protocol["stopping"]["steps"]
        keys = {"protocol": protocol, "model": self.model, "crop": self.crop, "version": __version__,
                "checkpoint": Path(self.checkpoint).name if self.checkpoint else None}
        precision = self.refinement.precision
        if precision != "fp32":  # changes the numbers; absent for fp32, so older journals keep their identity
            keys["precision"] = precision
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    image: str
    quality: int
    method: str
    steps: int
    lmbda_point: str = ""  # see EvalConfig.lmbda_points
    adapt: str = "none"  # see EvalConfig.adapts
    distortion: str = "mse"  # see EvalConfig.distortions

    @property
    def key(self) -> str:
        return (f"{self.image}|q{self.quality}|{self.method}|{self.steps}" + (f"|λ{self.lmbda_point}" if self.lmbda_point else "")
                + (f"|adapt={self.adapt}" if self.adapt != "none" else "")
                + (f"|distortion={self.distortion}" if self.distortion != "mse" else ""))

    @classmethod
    def of(cls, record: dict) -> "Cell":
        """The cell a record was made for."""
        return cls(record["image"], record["quality"], record["method"], record["steps"],
                   record.get("lmbda_point", ""), record.get("adapt", "none"), record.get("distortion", "mse"))


def lmbda_point(text: str) -> str:
    """A λ axis entry, checked: "" / "x<multiple>" / "<λ>", both numbers > 0."""
    text = text.strip()
    number = text[1:] if text.startswith("x") else text
    if text:
        try:
            ok = float(number) > 0 and math.isfinite(float(number))
        except ValueError:
            ok = False
        if not ok:
            raise LatentfitError(f"λ axis entry must be a positive number or x<multiple>, got '{text}'")
    return text


def resolve_lmbda(point: str, model_lmbda: float, default: float | None) -> float | None:
    """The λ a cell refines at: its axis entry's, else `default` (EvalConfig.lmbda; None: the model's)."""
    if not point:
        return default
    return model_lmbda * float(point[1:]) if point.startswith("x") else float(point)


def cells(config: EvalConfig) -> Iterator[tuple[Cell, Path]]:
    """Every cell, one image after another (so a run cut short, or extended with a larger `limit`,
    leaves whole images finished); `none` runs once, at 0 steps."""
    images = [path for folder in config.datasets for path in list_images(folder)]
    if config.limit:
        images = images[: config.limit]
    if not images:
        raise LatentfitError(f"no images in {', '.join(config.datasets)}")
    for spec in config.classical:
        parse_spec(spec)  # an unknown codec or option is refused before any work
    for path in images:
        for quality in config.qualities:
            for method in config.methods:
                for steps in [0] if is_plain(method) else config.steps:
                    for point in [""] if is_plain(method) else config.lmbda_points:
                        for adapt in ["none"] if is_plain(method) else config.adapts:
                            for distortion in ["mse"] if is_plain(method) else config.distortions:
                                yield Cell(f"{Path(path).parent.name}/{path.name}", quality, method, steps, point,
                                           adapt, distortion), path
    for spec in config.classical:  # after the learned cells, whose PSNR range each image's sweep brackets
        for path in images:
            for level in range(SWEEP_LEVELS):
                yield Cell(f"{Path(path).parent.name}/{path.name}", level, spec, 0), path


def cell_file(results_dir: Path, cell: Cell) -> Path:
    """Where the `.lfc` file of a learned cell is kept (for the report's crop viewer)."""
    folder = results_dir / "files"
    folder.mkdir(exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in cell.key)
    return folder / f"{safe}.lfc"


def _journal(path: Path) -> Iterator[tuple[int, Record]]:
    """(line number, record) for each whole line of a journal; a line cut by a crash, or still being
    written, is skipped (that cell simply runs again); a line that is not a record is an error."""
    for number, record in Journal(path).lines():
        yield number, check_record(record, f"{path}:{number}")


def read_records(results_dir: Path, identity: str) -> dict[str, Record]:
    """The journal's records by cell key; a record of another identity, or not a record, is an error."""
    path = results_dir / "cells.jsonl"
    records: dict[str, Record] = {}
    if not path.exists():
        return records
    for number, record in _journal(path):
        if record.get("config_id") != identity:
            raise LatentfitError(
                f"{path}:{number}: results of another configuration ({record.get('config_id')}, now {identity}); "
                f"use another results folder (a journal of latentfit before 2026-12-04: tools/migrate_journal.py)"
            )
        records[record["cell"]] = record
    return records


def journal_records(results_dir: str | os.PathLike) -> list[Record]:
    """Every finished cell of a results folder's journal, of whatever configuration (for analyses
    across journals, e.g. the benchmarks'); torn lines are skipped as `read_records` skips them."""
    path = Path(results_dir) / "cells.jsonl"
    if not path.is_file():
        raise LatentfitError(f"{results_dir}: no cells.jsonl (not a latentfit eval results folder)")
    return [record for _, record in _journal(path)]


_MODEL_CACHE: dict[tuple, object] = {}


def check_weights(config: EvalConfig, done: dict[str, dict], journal: Path, device: str = "cpu") -> None:
    """Refuse recorded learned cells made with other weights than `config.model` now loads (a model
    name and quality can point to retrained weights), so their numbers are never mixed in."""
    recorded: dict[int, set] = defaultdict(set)
    for record in done.values():
        if not is_classical(record.get("method", "")):
            recorded[record["quality"]].add(record.get("weights_digest"))
    for quality, digests in sorted(recorded.items()):
        current = eval_model(config, quality, device).digest.hex()
        if digests != {current}:
            other = ", ".join(sorted(str(d) for d in digests - {current}))
            raise LatentfitError(
                f"{journal}: quality {quality} cells were made with other model weights (digest {other}; "
                f"now {current}); use another results folder"
            )


def eval_model(config: EvalConfig, quality: int, device: str = "cpu"):
    """The model a cell of `config` runs: `config.checkpoint`'s weights, else `config.model` at `quality`."""
    if config.checkpoint:
        return load_model(checkpoint=config.checkpoint, device=device)
    return load_model(config.model, quality, device=device)


def evaluate_cell(config: EvalConfig, cell: Cell, path: str, device: str = "cpu") -> tuple[LearnedRecord, bytes | None]:
    """One cell's record and, for learned codecs, its `.lfc` bytes. Runs in-process or as a Ray task."""
    import torch

    if config.threads:
        torch.set_num_threads(config.threads)
    image = center_crop(load_image(path), config.crop)
    key = (config.model, cell.quality, device)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()  # one model at a time bounds a worker's memory
        _MODEL_CACHE[key] = eval_model(config, cell.quality, device)
    model = _MODEL_CACHE[key]
    lmbda = resolve_lmbda(cell.lmbda_point, model.lmbda, config.refinement.lmbda)
    refinement = dataclasses.replace(config.protocol(), method=cell.method, steps=cell.steps, lmbda=lmbda,
                                     adapt=cell.adapt, distortion=cell.distortion)
    result = encode(image, model, refinement)
    scores = perceptual_scores(config.metrics, to_uint8(image.tensor), result.decoded)
    # the method as the grid names it (with its options, e.g. sga+ssl3:a=1.4), not only the proxy's name
    record = {"cell": cell.key, "config_id": config.identity()} | asdict(cell) | result.stats | {
        "method": cell.method, "proxy_options": refinement.proxy_options, "device": device,
        "trace": result.refinement.trace_dicts()} | scores
    return record, result.data


def _in_process(config: EvalConfig, todo: list, device: str) -> Iterator[tuple[dict, bytes | None]]:
    for cell, path in todo:
        yield evaluate_cell(config, cell, str(path), device)


def _with_ray(config: EvalConfig, todo: list, device: str, workers: int, address: str | None,
              gpus_per_cell: float | None) -> Iterator[tuple[dict, bytes | None]]:
    """Cells as Ray tasks on a local instance (`workers` CPUs) or the cluster at `address`."""
    import torch

    if gpus_per_cell is None:
        gpus_per_cell = 1.0 if device.startswith("cuda") and torch.cuda.is_available() else 0.0
    cell_config = config if config.threads else dataclasses.replace(config, threads=1)
    calls = [(cell_config, cell, str(path), device) for cell, path in todo]
    yield from run_tasks(evaluate_cell, calls, workers, address, gpus_per_cell)


def run_evaluation(config: EvalConfig, results_dir: str | os.PathLike, device: str = "cpu",
                   progress: Callable[[int, int], None] | None = None, workers: int = 1,
                   ray_address: str | None = None, gpus_per_cell: float | None = None) -> list[dict]:
    """Run every missing cell, appending each record to `results_dir/cells.jsonl` as it finishes.

    `workers > 1` or `ray_address` runs cells as Ray tasks (a local instance, or an existing
    cluster), one CPU and, on CUDA, one GPU each; without Ray installed it runs in-process.
    Returns the records of this configuration's cells, earlier runs' included; cells the journal
    holds beyond them (more images, other methods) stay in it but are not returned, so a summary
    describes the grid that was asked for.
    """
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    identity = config.identity()
    done = read_records(results_dir, identity)
    check_weights(config, done, results_dir / "cells.jsonl", device)
    grid = list(cells(config))
    todo = [(cell, path) for cell, path in grid if cell.key not in done]
    total = len(done) + len(todo)
    sweeps = [(cell, path) for cell, path in todo if is_classical(cell.method)]
    todo = [(cell, path) for cell, path in todo if not is_classical(cell.method)]
    use_ray = (workers > 1 or ray_address) and todo
    if use_ray and not ray_installed():
        warnings.warn("Ray is not installed: running the cells in-process (pip install ray)", stacklevel=2)
        use_ray = False
    source = (_with_ray(config, todo, device, workers, ray_address, gpus_per_cell) if use_ray
              else _in_process(config, todo, device))
    with Journal(results_dir / "cells.jsonl").writer() as append:
        for record, data in source:
            if data is not None:
                cell = Cell.of(record)
                atomic_write_bytes(cell_file(results_dir, cell), data, force=True)
            append(record)
            done[record["cell"]] = record
            if progress is not None:
                progress(len(done), total)
        for record in _classical_sweeps(config, sweeps, done, grid):
            append(record)
            done[record["cell"]] = record
            if progress is not None:
                progress(len(done), total)
    return [done[cell.key] for cell, _ in grid]


#: The PSNR range (dB) a classical sweep brackets on an image without learned cells in the grid.
DEFAULT_PSNR_RANGE = (26.0, 40.0)


def learned_psnr_range(records: list[dict], image: str) -> tuple[float, float]:
    """The lowest and highest PSNR of the learned cells of `image` (`DEFAULT_PSNR_RANGE` without any)."""
    values = [r["psnr"] for r in records if r.get("image") == image and not is_classical(r.get("method", ""))]
    return (min(values), max(values)) if values else DEFAULT_PSNR_RANGE


def _classical_sweeps(config: EvalConfig, sweeps: list, done: dict[str, dict], grid: list) -> Iterator[dict]:
    """Each (image, codec) with missing levels is swept in-process (see `classical.sweep`), bracketing
    the PSNR of that image's learned cells in this grid."""
    identity = config.identity()
    learned = [done[cell.key] for cell, _ in grid if not is_classical(cell.method) and cell.key in done]
    groups: dict[tuple[str, str], Path] = {}
    for cell, path in sweeps:
        groups.setdefault((cell.image, cell.method), path)
    for (image_key, spec), path in groups.items():
        image = center_crop(load_image(path), config.crop)
        psnr_range = learned_psnr_range(learned, image_key)
        for record in sweep(spec, to_uint8(image.tensor), psnr_range, metrics=config.metrics):
            cell = Cell(image_key, record["quality"], spec, 0)
            if cell.key not in done:
                yield {"cell": cell.key, "config_id": identity, "image": image_key, "psnr_range": list(psnr_range)} | record


def complete_images(by_quality: dict[int, list[dict]]) -> set[str]:
    """The images that have a record at every quality of a curve: only they are averaged into it, so
    a run cut short never mixes image sets across the points of one curve."""
    sets = [{record.get("image") for record in records} for records in by_quality.values()]
    return set.intersection(*sets) if sets else set()


def mean_curve(by_quality: dict[int, list[dict]], images: set[str], key: str) -> list[float | None]:
    """Per quality (ascending), the mean of `key` over the records of `images`; None where any of them
    lacks it (MS-SSIM of images too small for it): never a mean that counts a missing value as 0, nor
    one over fewer images than the curve's other points."""
    means = []
    for quality in sorted(by_quality):
        values = [record.get(key) for record in by_quality[quality] if record.get("image") in images]
        means.append(None if any(v is None for v in values) else sum(values) / len(values))
    return means


def mean_points(by_quality: dict[int, list[dict]], images: set[str], key: str = "psnr") -> list[tuple[float, float]]:
    """The (bpp, PSNR) curve averaged over the records of `images` (or bpp against another `key`)."""
    return list(zip(mean_curve(by_quality, images, "bpp"), mean_curve(by_quality, images, key)))


#: The metrics besides PSNR a summary gives BD-rates in (`bd_rate_<name>`), and the record key of each.
OTHER_METRICS = {"ms_ssim": "ms_ssim_db", "ssimulacra2": "ssimulacra2", "cvvdp": "cvvdp"}


def ms_ssim_db(value: float | None) -> float | None:
    """MS-SSIM in dB, `−10·log10(1 − MS-SSIM)` (CompressAI's plots); None where it was not measured."""
    if value is None:
        return None
    return math.inf if value >= 1 else -10.0 * math.log10(1.0 - value)


def bd_pair(anchor: list[tuple], test: list[tuple]) -> tuple[float | None, float | None]:
    """BD-rate and BD-quality of two (rate, quality) curves; None where they cannot be compared (no
    overlap, a missing or infinite point, a curve too crooked to interpolate)."""
    if any(v is None or not math.isfinite(v) for curve in (anchor, test) for point in curve for v in point):
        return None, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            values = (bd_rate(anchor, test), bd_psnr(anchor, test)) if quality_overlap(anchor, test) > 0 else (None, None)
    except Exception:  # e.g. a curve that is not monotonic enough to interpolate
        return None, None
    # the package gives NaN (and a warning) when the rate ranges are disjoint: no value, not NaN
    return tuple(v if v is not None and math.isfinite(v) else None for v in values)


def lmbda_curves(records: list[dict]) -> set[tuple]:
    """The (model, method, steps) whose curve runs along the λ axis: one quality, several λ entries (a
    model refined at other λ). The others run along the qualities, one curve per λ entry."""
    shapes: dict[tuple, tuple[set, set]] = defaultdict(lambda: (set(), set()))
    for r in records:
        qualities, points = shapes[(r["model"], curve_method(r), r["steps"])]
        qualities.add(r["quality"])
        points.add(r.get("lmbda_point", ""))
    return {key for key, (qualities, points) in shapes.items() if len(qualities) == 1 and len(points) > 1}


def curve_key(record: dict, along: set[tuple]) -> tuple:
    """(model, method, steps) of the curve `record` belongs to; `steps` carries the λ entry as
    "500|λx0.5" when curves are per λ entry, or "500|λ-q2" for quality 2's curve along λ."""
    point, steps, method = record.get("lmbda_point", ""), record["steps"], curve_method(record)
    if (record["model"], method, steps) in along:
        steps = f"{steps}|λ-q{record['quality']}"
    elif point:
        steps = f"{steps}|λ{point}"
    return record["model"], method, steps


def curve_position(record: dict, along: set[tuple]) -> float:
    """Where `record` sits on its curve: its quality, or on a curve along λ, the λ it ran at."""
    return record["lmbda"] if (record["model"], curve_method(record), record["steps"]) in along else record["quality"]


#: The R-D plot of each other metric: record key, file, axis label.
METRIC_PLOTS = [("ms_ssim_db", "rd_ms-ssim.png", "MS-SSIM (dB)"), ("ssimulacra2", "rd_ssimulacra2.png", "SSIMULACRA2"),
                ("cvvdp", "rd_cvvdp.png", "ColorVideoVDP (JOD)")]


def metric_plots(groups: dict, complete: dict, results_dir: Path) -> None:
    """An R-D plot in each metric besides PSNR whose every point the curves have (mean over each
    curve's finished images); none for a metric no cell measured."""
    for key, filename, label in METRIC_PLOTS:
        curves = {}
        for (model, method, steps), by_quality in sorted(groups.items()):
            if not complete[(model, method, steps)]:
                continue
            points = mean_points(by_quality, complete[(model, method, steps)], key)
            if points and all(q is not None and math.isfinite(q) for _, q in points):
                curves[f"{model} {method} {steps}" if method != model else model] = points
        if curves:
            rd_plot(curves, results_dir / filename, title=f"Rate-distortion ({label})", ylabel=label)


def summarise(records: list[dict], results_dir: str | os.PathLike) -> dict:
    """Write one CompressAI-format JSON per (model, method, steps), `bd_rates.json` against `none`,
    `summary.md` (the same as Markdown tables, with early convergence from the traces) and the plots.

    A curve averages the images finished at every one of its qualities; a BD row compares two curves
    over the images both have finished, so a partial run gives fewer images, never mixed ones."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    along = lmbda_curves(records)
    records = [r | {"ms_ssim_db": ms_ssim_db(r.get("ms_ssim"))} for r in records]
    for record in records:
        groups[curve_key(record, along)][curve_position(record, along)].append(record)
    curves, complete = {}, {}
    for (model, method, steps), by_quality in sorted(groups.items()):
        complete[(model, method, steps)] = images = complete_images(by_quality)
        if not images:
            continue
        name = f"{model}-{method}-{steps}".replace("|λ", "-lambda").replace("|", "-")
        name = "".join(c if c.isalnum() or c in "._+-" else "_" for c in name)  # no ':' or '=' (Windows)
        axis = "lmbda" if "|λ" in str(steps) else "quality"
        document = {"name": name, "description": f"latentfit {method}, {steps} steps, on {model}",
                    "images": len(images),
                    "results": {axis: sorted(by_quality)} | {
                        column: mean_curve(by_quality, images, key) for column, key in
                        [("bpp", "bpp"), ("psnr-rgb", "psnr"), ("ms-ssim-rgb", "ms_ssim"), ("encoding_time", "seconds")]
                        + [(key, key) for key in ("ssimulacra2", "cvvdp")  # where the cells measured them
                           if all(r.get(key) is not None for rs in by_quality.values() for r in rs)]}}
        atomic_write_bytes(results_dir / f"{name}.json", json.dumps(document, indent=2).encode(), force=True)
        curves[(model, method, steps)] = list(zip(document["results"]["bpp"], document["results"]["psnr-rgb"]))
    table = []
    anchors = {key[0]: key for key, curve in curves.items() if is_plain(key[1]) and len(curve) >= 2}
    for (model, method, steps), curve in curves.items():
        if is_plain(method) or len(curve) < 2:
            continue
        # a learned curve is compared with its own model's `none`; a classical codec with every model's
        for anchor_model in [model] if model in anchors else ([] if method != model else sorted(anchors)):
            anchor_key = anchors[anchor_model]
            images = complete[(model, method, steps)] & complete[anchor_key]
            if not images:
                continue
            anchor, test = (mean_points(groups[key], images) for key in (anchor_key, (model, method, steps)))
            overlap = quality_overlap(anchor, test)
            rate, quality = bd_pair(anchor, test)
            # the same in the other metrics, where every point has them (MS-SSIM in dB, not on images
            # under 161 pixels a side; the perceptual ones where the cells measured them)
            by_metric = {f"bd_rate_{name}": bd_pair(*(mean_points(groups[key], images, key_name)
                                                      for key in (anchor_key, (model, method, steps))))[0]
                         for name, key_name in OTHER_METRICS.items()}
            left_out = sorted({r.get("image") for key in (anchor_key, (model, method, steps))
                               for rs in groups[key].values() for r in rs} - images)
            timed = [[r for rs in groups[key].values() for r in rs if r.get("image") in images]
                     for key in ((model, method, steps), anchor_key)]
            table.append({"model": model, "method": method, "steps": steps, "anchor": f"{anchor_model} none",
                          "bd_rate": rate, "bd_psnr": quality, "psnr_overlap": overlap,
                          "images": len(images), "left_out": left_out,
                          "seconds_per_megapixel": seconds_per_megapixel(timed[0]),
                          "anchor_seconds_per_megapixel": seconds_per_megapixel(timed[1])} | by_metric)
    atomic_write_bytes(results_dir / "bd_rates.json", json.dumps(table, indent=2).encode(), force=True)
    # seconds per cell and the convergence figures, like the curves, count only finished images
    finished = [r for r in records if r.get("image") in complete[curve_key(r, along)]]
    atomic_write_bytes(results_dir / "summary.md", markdown_summary(finished, table).encode(), force=True)
    labelled = {(f"{m} {meth} {st}" if meth != m else m): c for (m, meth, st), c in curves.items()}
    rd_plot(labelled, results_dir / "rd.png", references=references_for(records))
    metric_plots(groups, complete, results_dir)
    convergence_plot(finished, results_dir / "convergence.png")
    gain_per_second_plot(table, results_dir / "gain_per_second.png")
    return {"curves": {"|".join(map(str, k)): v for k, v in curves.items()}, "bd_rates": table}
