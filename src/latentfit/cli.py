"""The `latentfit` command line: encode, decode, info, models, eval, train."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from .allocator import tune_allocator
from .batch import ModelSource, encode_path, encode_task, folder_masks, pending_images
from .batch import torch_device as _device
from .config import AUTO_STEPS, BUDGET_TAU_END, BUDGET_TAU_START, CLOSED_LOOP_STEP, PAPERS_PROTOCOL, RefinementConfig
from .distortion import MS_SSIM_TARGET_DISTORTION, ROI_WEIGHT
from .errors import LatentfitError
from .evaluation.classical import describe_codecs
from .relaxations import PROXIES, QuantizationProxy, describe_methods, parse_method
from .training import TrainConfig

CLOSED_LOOP_HELP = ("Closed-loop passes before refinement (a warm start that costs no gradient step, about "
                    "one decode each): each decodes the best latents so far and moves y by "
                    f"{CLOSED_LOOP_STEP:g}·(y − g_a(decoded)), halving that share after a pass that does not "
                    "lower the true loss; the best pass is kept. 0: off.")
#: `--method`'s help, from the proxy registry (a new method appears here by being registered).
METHOD_HELP = ("Refinement method, with its options if any as name:key=value, e.g. sga+ssl3:a=1.4:power=1.4. "
               f"Methods (options): {describe_methods()}.")

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Content-adaptive neural image compression: refine a learned codec's latents at encode time.",
)


def _check_output(path: Path, force: bool) -> None:
    """Fail before any long work when the output exists (without --force) or its folder is missing."""
    if path.exists() and not force:
        raise LatentfitError(f"{path}: already exists (use --force to overwrite)")
    if path.is_dir():
        raise LatentfitError(f"{path}: is a folder")
    if not path.parent.is_dir():
        raise LatentfitError(f"{path}: folder {path.parent} does not exist")


def _set_threads(threads: int) -> None:
    """The runtime of a command that computes: its torch threads, and malloc that keeps freed memory
    (`latentfit.allocator`: 0.75x the time of a whole encode on a 2-core CPU, the same bytes)."""
    tune_allocator()
    if threads:
        import torch

        torch.set_num_threads(threads)


def _progress_bar(enabled: bool, label: str):
    """A tqdm-backed callback for refine_latents(progress=...) and a closer."""
    from tqdm import tqdm

    bar = tqdm(total=0, desc=label, unit="step", disable=not enabled, leave=False, file=sys.stderr)

    def update(step: int, total: int, record) -> None:
        if bar.total != total:
            bar.total = total
        bar.update(step - bar.n)
        if record is not None:
            bar.set_postfix(loss=f"{record.true_loss:.4f}", bpp=f"{record.true_bpp:.3f}", psnr=f"{record.true_psnr:.2f}")

    return update, bar.close


#: Each command-line option's help, by parameter name (the defaults are the declarations':
#: `RefinementConfig` for encode, `PAPERS_PROTOCOL` for eval; `tests/test_cli.py` checks them).
HELP = {
    "method": METHOD_HELP,
    "steps": f"Optimisation steps, or 'auto' ({AUTO_STEPS}; with --time-budget, as many as fit in it).",
    "lr": f"Adam learning rate (default: {PROXIES['sga+ssl'].default_lr:g} for sga+ssl, "
          f"{QuantizationProxy.default_lr:g}, the papers', for the others).",
    "lmbda": "λ of the R-D loss (default: the model's training λ).",
    "seed": "Seed of the proxy's noise.",
    "evaluate_every": "Evaluate the true loss every k steps (best iterate kept).",
    "evaluations": "tail: every k steps in the last 20 % of the steps, every 5k before (the best iterate is "
                   "almost always late); every: every k steps throughout.",
    "variables": "'joint' refines y and z; 'y' refines y with z = h_a(y).",
    "closed_loop": CLOSED_LOOP_HELP,
    "tau_max": "Temperature schedule: τ_max.",
    "tau_rate": "Temperature schedule: decay rate r.",
    "t0": "Temperature schedule: t₀.",
    "tau_min": "Temperature schedule: τ_min.",
    "time_budget": "Finish each image's encode, from reading it to the file on disk, within this many seconds "
                   "(refinement stops early, best so far kept).",
    "anneal_to": "Anneal τ from τ_max to this value within the step budget.",
    "schedule": f"Temperature schedule: budget (anneal {BUDGET_TAU_START:g}·τ_max → {BUDGET_TAU_END:g}·τ_max "
                "within the steps) or papers (the method's published one).",
    "tile": "Refine tile by tile with tiles of this many pixels a side; 'auto' tiles images over 4 megapixels "
            "(768 px tiles), 'none' never.",
    "channels_last": "Channels-last layout for the refinement's decoder (faster on CPU).",
    "compile": "torch.compile the refinement's decoder (needs a C++ compiler; pays off on long runs).",
    "precision": "Precision of the refinement's decoder pass: auto (bf16 on a CPU with AVX512-BF16 or AMX, else "
                 "fp32), fp32, or bf16 (about 2x faster steps for the same gain; the file is fp32 either way).",
    "lr_schedule": f"cosine (decay to {RefinementConfig.lr_final_fraction:g}·lr over the steps), or constant.",
    "patience": "Stop after this many evaluations without improvement.",
    "target_bytes": "Make each file at most this many bytes (chooses the quality and λ; not with --lmbda).",
    "target_bpp": "Make each file at most this many bits per pixel.",
    "target_psnr": "Make each decoded image at least this PSNR (dB), with the smallest file found.",
    "target_ms_ssim": "Make each decoded image at least this MS-SSIM (between 0 and 1, e.g. 0.98), with the smallest "
                      "file found (refined for --distortion mix:0.5 unless --distortion says otherwise).",
    "trace": "Write the optimisation trace (JSON) here.",
    "threads": "torch CPU threads (0: PyTorch's default; 1 per worker with --workers).",
    "workers": "A folder's images in this many parallel processes (a local Ray instance; 1: one after another).",
    "ray_address": "Encode a folder's images on this existing Ray cluster (the paths must be readable there).",
    "model": "Model name (default: the bundled latentfit-msh).",
    "adapt": "After the latents, refine a per-image decoder update for a quarter of their steps more, sent in the "
             "file and paid for in its bits: none, decoder (a scale and bias per channel of the decoder's layers), or "
             "postfilter[:kernel=3|5|7]; the latents-only file is kept where that is better. Whole images only (with --tile none for images over 4 megapixels).",
    "distortion": "What the refinement minimises besides the rate: mse (the models' own; the default), ms-ssim, or "
                  "mix:W (W the MS-SSIM share, e.g. mix:0.5); MS-SSIM needs images of at least 161 pixels a side.",
    "roi": "A region-of-interest mask (greyscale image of the input's size; white counts --roi-weight times black): "
           "its pixels' squared error weighs more (mse or mix). With a folder of images, a folder of masks: "
           "the mask of IN/photo.jpg is ROI/photo.png (an image without one is encoded without).",
    "roi_weight": "How much a white pixel of the --roi mask counts against a black one (grey between).",
}
#: The encode options that are `RefinementConfig` fields of the same name (the rest are the command's own).
REFINEMENT_FIELDS = frozenset(f.name for f in dataclasses.fields(RefinementConfig))
#: Of those, the ones whose default depends on another option (None on the command line):
#: `--distortion` is `mix:0.5` with `--target-ms-ssim`, else the field's default.
DERIVED_DEFAULTS = frozenset({"distortion"})
#: The eval options that set its protocol (`EvalConfig.refinement`); its method, steps and λ are axes.
EVAL_PROTOCOL_OPTIONS = frozenset({"lr", "lr_schedule", "schedule", "precision", "evaluations", "closed_loop", "seed"})


@app.command()
def encode(
    input: Path = typer.Argument(..., help="Image to compress (PNG, JPEG, WebP, ...), or a folder of images."),
    output: Path = typer.Option(..., "-o", "--output", help="The .lfc file to write (a folder for a folder)."),
    model: Optional[str] = typer.Option(None, help=HELP["model"]),
    quality: Optional[int] = typer.Option(None, help="Model quality (default: 2 for latentfit-msh)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Use the weights in this file instead of a named model."),
    method: str = typer.Option(RefinementConfig.method, help=HELP["method"]),
    steps: str = typer.Option(RefinementConfig.steps, help=HELP["steps"]),
    lr: Optional[float] = typer.Option(RefinementConfig.lr, help=HELP["lr"]),
    lmbda: Optional[float] = typer.Option(RefinementConfig.lmbda, help=HELP["lmbda"]),
    seed: int = typer.Option(RefinementConfig.seed, help=HELP["seed"]),
    evaluate_every: int = typer.Option(RefinementConfig.evaluate_every, help=HELP["evaluate_every"]),
    evaluations: str = typer.Option(RefinementConfig.evaluations, help=HELP["evaluations"]),
    variables: str = typer.Option(RefinementConfig.variables, help=HELP["variables"]),
    closed_loop: int = typer.Option(RefinementConfig.closed_loop, help=HELP["closed_loop"]),
    adapt: str = typer.Option(RefinementConfig.adapt, help=HELP["adapt"]),
    distortion: Optional[str] = typer.Option(None, help=HELP["distortion"]),
    roi: Optional[Path] = typer.Option(None, help=HELP["roi"]),
    roi_weight: float = typer.Option(ROI_WEIGHT, help=HELP["roi_weight"]),
    tau_max: Optional[float] = typer.Option(None, help=HELP["tau_max"]),
    tau_rate: Optional[float] = typer.Option(None, help=HELP["tau_rate"]),
    t0: Optional[float] = typer.Option(None, help=HELP["t0"]),
    tau_min: Optional[float] = typer.Option(None, help=HELP["tau_min"]),
    time_budget: Optional[float] = typer.Option(RefinementConfig.time_budget, help=HELP["time_budget"]),
    anneal_to: Optional[float] = typer.Option(None, help=HELP["anneal_to"]),
    schedule: str = typer.Option(RefinementConfig.schedule, help=HELP["schedule"]),
    tile: str = typer.Option(RefinementConfig.tile, help=HELP["tile"]),
    channels_last: bool = typer.Option(RefinementConfig.channels_last, help=HELP["channels_last"]),
    compile: bool = typer.Option(RefinementConfig.compile, "--compile", help=HELP["compile"]),
    precision: str = typer.Option(RefinementConfig.precision, help=HELP["precision"]),
    lr_schedule: str = typer.Option(RefinementConfig.lr_schedule, help=HELP["lr_schedule"]),
    patience: Optional[int] = typer.Option(RefinementConfig.patience, help=HELP["patience"]),
    target_bytes: Optional[int] = typer.Option(None, help=HELP["target_bytes"]),
    target_bpp: Optional[float] = typer.Option(None, help=HELP["target_bpp"]),
    target_psnr: Optional[float] = typer.Option(None, help=HELP["target_psnr"]),
    target_ms_ssim: Optional[float] = typer.Option(None, help=HELP["target_ms_ssim"]),
    trace: Optional[Path] = typer.Option(None, help=HELP["trace"]),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: int = typer.Option(0, help=HELP["threads"]),
    workers: int = typer.Option(1, help=HELP["workers"]),
    ray_address: Optional[str] = typer.Option(None, help=HELP["ray_address"]),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
) -> None:
    """Compress an image (or every image in a folder) into .lfc files, refining the latents first.

    With a folder as INPUT, OUTPUT is a folder; files already encoded there are skipped, so an
    interrupted run continues where it stopped (each file is written atomically). --workers or
    --ray-address spread a folder's images over processes (one thread each unless --threads); the files
    are the same bytes as one after another with the same --threads.
    """
    if distortion is None:  # an MS-SSIM target is met with fewer bytes refining for it too
        distortion = MS_SSIM_TARGET_DISTORTION if target_ms_ssim is not None else RefinementConfig.distortion
    config = _refinement_config({k: v for k, v in locals().items() if k in REFINEMENT_FIELDS},
                                tau_max, tau_rate, t0, tau_min, anneal_to)
    goal = _target(target_bytes, target_bpp, target_psnr, lmbda, target_ms_ssim)
    batch = input.is_dir()
    _check_encode_outputs(input, output, trace, force, workers)
    _set_threads(threads)
    # what loads the model, so that a worker process can load the same one
    source = ModelSource(model, quality, str(checkpoint) if checkpoint else None,
                         family=goal is not None and quality is None and checkpoint is None, device=device)
    latent_model = source.load()  # also in parallel runs: a bad name or file fails here, before any work
    if not batch:
        _report(_encode_file(input, output, latent_model, config, force, trace, progress, device, goal,
                             roi, roi_weight), as_json)
    elif workers > 1 or ray_address is not None:
        _encode_folder_parallel(input, output, source, config, force, progress, as_json, goal, threads or 1,
                                workers, ray_address, roi, roi_weight)
    else:
        _encode_folder(input, output, latent_model, config, force, progress, device, as_json, goal, roi, roi_weight)


def _refinement_config(settings: dict, tau_max, tau_rate, t0, tau_min, anneal_to) -> RefinementConfig:
    """The `RefinementConfig` of the command line's options of the same names (`steps` and `tile` as
    typed), with an explicit τ schedule when any τ option is given; bad settings refused here."""
    settings = settings | {"steps": _steps(settings["steps"]), "tile": _tile(settings["tile"])}
    config = RefinementConfig(**settings)
    explicit = _schedule(config.proxy().default_schedule(), tau_max, tau_rate, t0, tau_min, anneal_to,
                         settings["steps"])
    return config if explicit is None else dataclasses.replace(config, schedule=explicit)


def _check_encode_outputs(input: Path, output: Path, trace: Optional[Path], force: bool, workers: int) -> None:
    """Refuse, before any work, outputs that cannot be written (see `_check_output`) and bad --workers."""
    if workers < 1:
        raise LatentfitError(f"--workers must be at least 1, got {workers}")
    if input.is_dir():
        if output.exists() and not output.is_dir():
            raise LatentfitError(f"{output}: must be a folder when the input is a folder")
        if trace is not None:
            raise LatentfitError("--trace takes a single image, not a folder")
        return
    _check_output(output, force)
    if trace is not None:
        _check_output(trace, force)


def _target(target_bytes, target_bpp, target_psnr, lmbda, target_ms_ssim=None):
    """The one target asked for, or None; refused with --lmbda or with another target."""
    from .rate_control import Target

    given = {kind: value for kind, value in (("bytes", target_bytes), ("bpp", target_bpp), ("psnr", target_psnr),
                                             ("ms-ssim", target_ms_ssim)) if value is not None}
    if not given:
        return None
    if len(given) > 1:
        raise LatentfitError(f"give one target, not {' and '.join('--target-' + k for k in given)}")
    if lmbda is not None:
        raise LatentfitError("a target chooses λ itself: leave out --lmbda")
    (kind, value), = given.items()
    return Target(kind, value)


def _encode_file(input: Path, output: Path, latent_model, config, force: bool, trace: Optional[Path],
                 progress: bool, device: str, goal=None, roi: Optional[Path] = None, roi_weight: float = ROI_WEIGHT
                 ) -> dict:
    from .imageio import atomic_write_bytes

    started = time.perf_counter()  # a --time-budget counts from here to the file on disk
    update, close = _progress_bar(progress and sys.stderr.isatty(), f"{config.method} {input.name}")
    try:
        image, result = encode_path(input, latent_model, config, goal, started, update, roi, roi_weight)
    finally:
        close()
    writing = time.perf_counter()
    atomic_write_bytes(output, result.data, force=force)
    done = time.perf_counter()
    stats = result.stats | {"seconds": done - started, "write_seconds": done - writing,
                            "input": str(input), "output": str(output), "device": device}
    if trace is not None:
        atomic_write_bytes(trace, json.dumps({"settings": stats, "trace": result.refinement.trace_dicts()},
                                             indent=1).encode(), force=force)
    for note in image.notes:
        typer.echo(f"latentfit: note: {note}", err=True)
    return stats


def _report(stats: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(stats))
        return
    head = f"{stats['output']}: {stats['bytes']} bytes, {stats['bpp']:.4f} bpp, PSNR {stats['psnr']:.2f} dB"
    if stats.get("ms_ssim") is not None and (stats.get("distortion", "mse") != "mse"
                                             or stats.get("target", {}).get("kind") == "ms-ssim"):
        head += f", MS-SSIM {stats['ms_ssim']:.4f}"
    if "target" in stats:  # the true losses are at different λ: the target and where it landed say more
        target = stats["target"]
        typer.echo(f"{head} (target {target['kind']} {target['value']:g}: quality {stats['quality']}, "
                   f"λ {stats['lmbda']:.5f}, {stats['method']}, {stats['steps_run']} steps, {stats['seconds']:.1f} s)")
        return
    update = (f", decoder update {stats['update_bytes']} bytes" if stats.get("update_bytes")
              else ", no decoder update (it did not pay)" if "update_bytes" in stats else "")
    typer.echo(f"{head} (true loss {stats['true_loss_initial']:.4f} -> {stats['true_loss_final']:.4f}, "
               f"{stats['method']}, {stats['steps_run']} steps{update}, {stats['seconds']:.1f} s)")


def _encode_folder(folder: Path, outdir: Path, latent_model, config, force: bool, progress: bool, device: str,
                   as_json: bool, goal=None, roi: Optional[Path] = None, roi_weight: float = ROI_WEIGHT) -> None:
    """Encode every image of `folder` into `outdir`, skipping files a previous run completed; `roi`: a
    folder of masks (`batch.folder_masks`)."""
    from tqdm import tqdm

    todo, skipped = pending_images(folder, outdir, force)
    masks = _folder_masks(roi, todo)
    with tqdm(todo, desc="encode", unit="image", disable=not (progress and sys.stderr.isatty()),
              file=sys.stderr) as bar:
        for path, target in bar:
            _report(_encode_file(path, target, latent_model, config, force, None, False, device, goal,
                                 masks.get(path), roi_weight), as_json)
    if skipped:
        typer.echo(f"latentfit: {skipped} of {len(todo) + skipped} already encoded in {outdir}, skipped", err=True)


def _encode_folder_parallel(folder: Path, outdir: Path, source: ModelSource, config, force: bool, progress: bool,
                            as_json: bool, goal, threads: int, workers: int, address: Optional[str],
                            roi: Optional[Path] = None, roi_weight: float = ROI_WEIGHT) -> None:
    """`_encode_folder` with the images as Ray tasks; each file is written here, atomically, as it
    arrives, so an interrupted run resumes like a sequential one."""
    from tqdm import tqdm

    from .imageio import atomic_write_bytes
    from .parallel import ray_installed, run_tasks

    if not ray_installed():
        raise LatentfitError("--workers and --ray-address need Ray (pip install 'latentfit[ray]')")
    todo, skipped = pending_images(folder, outdir, force)
    masks = _folder_masks(roi, todo)
    outputs = {str(path): target for path, target in todo}
    gpus = 1.0 if source.device.startswith("cuda") else 0.0
    calls = [(str(path), source, config, goal, threads, None if masks.get(path) is None else str(masks[path]),
              roi_weight) for path, _ in todo]
    with tqdm(total=len(todo), desc="encode", unit="image", disable=not (progress and sys.stderr.isatty()),
              file=sys.stderr) as bar:
        for stats, data, notes in (run_tasks(encode_task, calls, workers, address, gpus) if calls else ()):
            output = outputs[stats["input"]]
            writing = time.perf_counter()
            atomic_write_bytes(output, data, force=force)
            write_seconds = time.perf_counter() - writing
            for note in notes:
                typer.echo(f"latentfit: note: {note}", err=True)
            _report(stats | {"seconds": stats["seconds"] + write_seconds, "write_seconds": write_seconds,
                             "output": str(output)}, as_json)
            bar.update()
    if skipped:
        typer.echo(f"latentfit: {skipped} of {len(todo) + skipped} already encoded in {outdir}, skipped", err=True)



def _folder_masks(roi: Optional[Path], todo: list) -> dict:
    """Each pending image's mask from the folder `roi` (none without `--roi`); an image without one is
    encoded without a region of interest, and a note says so."""
    if roi is None:
        return {}
    masks = folder_masks(roi, todo)
    for path, mask in masks.items():
        if mask is None:
            typer.echo(f"latentfit: note: {path}: no mask {roi / (path.stem + '.png')}, encoded without a region "
                       "of interest", err=True)
    return masks


def _steps(text) -> int | str:
    if str(text).strip() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise LatentfitError(f"--steps must be a whole number or 'auto', got '{text}'") from None


def _tile(text) -> int | str | None:
    if text is None or str(text).strip() in ("auto", "none"):
        return None if text is None or str(text).strip() == "none" else "auto"
    try:
        return int(text)
    except ValueError:
        raise LatentfitError(f"--tile must be a number of pixels, 'auto' or 'none', got '{text}'") from None


def _schedule(base, tau_max, tau_rate, t0, tau_min, anneal_to=None, steps=0):
    """An explicit schedule when any τ option is given (`base`: the method's own), else None (the
    config's named schedule)."""
    from .schedules import TemperatureSchedule

    if anneal_to is not None:
        if steps == "auto":
            raise LatentfitError("--anneal-to needs a step count; with --steps auto use --schedule budget")
        if tau_rate is not None or t0 is not None:
            raise LatentfitError("--anneal-to sets the decay itself: leave out --tau-rate and --t0")
        try:
            return TemperatureSchedule.for_budget(max(steps, 1), tau_max or base.tau_max, anneal_to)
        except ValueError as exc:
            raise LatentfitError(f"bad temperature schedule: {exc}") from None
    changes = {k: v for k, v in {"tau_max": tau_max, "rate": tau_rate, "t0": t0, "tau_min": tau_min}.items()
               if v is not None}
    if not changes:
        return None
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as exc:
        raise LatentfitError(f"bad temperature schedule: {exc}") from None


@app.command()
def decode(
    input: Path = typer.Argument(..., help="The .lfc file."),
    output: Path = typer.Option(..., "-o", "--output", help="Image to write (PNG recommended)."),
    checkpoint: Optional[Path] = typer.Option(None, help="Weights the file was made with, if not a named model."),
    device: str = typer.Option("cpu"),
    threads: int = typer.Option(0),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
) -> None:
    """Decompress a .lfc file into an image."""
    from .bitstream import from_bytes
    from .codec import decode_stream
    from .imageio import save_image
    from .models.registry import load_model

    _check_output(output, force)
    _set_threads(threads)
    stream = from_bytes(_read(input), str(input))
    try:
        latent_model = load_model(stream.model_name, stream.quality, checkpoint, device=_device(device))
    except LatentfitError as exc:
        if checkpoint is not None:
            raise
        raise LatentfitError(f"{input}: made with model '{stream.model_name}' quality {stream.quality}, which is not "
                             f"available here ({exc}); pass --checkpoint with its weights") from None
    pixels = decode_stream(stream, latent_model, str(input))
    save_image(output, pixels, force=force, mode="L" if stream.grayscale else "RGB")
    typer.echo(f"{output}: {stream.width}x{stream.height}", err=True)


def _lmbda_axis(lmbda: Optional[str], scale: Optional[str]) -> tuple[Optional[float], list[str]]:
    """`eval --lmbda` / `--lmbda-scale` -> (one λ for every cell or None, the λ axis entries)."""
    from .evaluation.runner import lmbda_point

    if lmbda is not None and scale is not None:
        raise LatentfitError("give --lmbda or --lmbda-scale, not both")
    if scale is not None:
        entries = [v.strip() for v in scale.split(",") if v.strip()]
        if not entries:
            raise LatentfitError("--lmbda-scale needs at least one number")
        points = [lmbda_point(f"x{_number(v, '--lmbda-scale'):g}") for v in entries]
        return None, list(dict.fromkeys("" if float(p[1:]) == 1 else p for p in points))
    if lmbda is None:
        return None, [""]
    entries = [v.strip() for v in lmbda.split(",") if v.strip()]
    points = [lmbda_point(f"{_number(v, '--lmbda'):g}") for v in entries]
    if len(points) == 1:
        return float(points[0]), [""]
    return None, list(dict.fromkeys(points))


def _number(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise LatentfitError(f"{option} takes numbers, got '{text}'") from None


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise LatentfitError(f"{path}: no such file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LatentfitError(f"{path}: cannot read ({exc.strerror})") from None


@app.command()
def info(
    input: Path = typer.Argument(..., help="The .lfc file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print a .lfc file's header (no model needed)."""
    from .bitstream import from_bytes
    from .metrics import bits_per_pixel

    data = _read(input)
    stream = from_bytes(data, str(input))
    fields = stream.header_fields() | {"bytes": len(data), "bpp": bits_per_pixel(len(data), stream.height, stream.width)}
    if as_json:
        typer.echo(json.dumps(fields))
    else:
        for key, value in fields.items():
            typer.echo(f"{key}: {value}")


@app.command()
def models(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
    all_zoo: bool = typer.Option(False, "--all", help="Also list zoo models whose weights are not cached."),
) -> None:
    """List the models available locally: bundled, cached CompressAI zoo, user checkpoints."""
    from .models.registry import available_models

    rows = []
    for spec in available_models(include_unavailable_zoo=all_zoo):
        kodak = spec.card.get("kodak") or {}
        rows.append({"name": spec.name, "quality": spec.quality, "source": spec.source,
                     "architecture": spec.architecture, "lmbda": spec.lmbda, "available": spec.available,
                     "kodak_bpp": kodak.get("bpp"), "kodak_psnr": kodak.get("psnr"), "path": spec.path,
                     "select": spec.selector()})
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        rd = f"{row['kodak_bpp']:.3f} bpp {row['kodak_psnr']:.2f} dB" if row["kodak_bpp"] else "R-D unknown"
        how = " ".join(f"--{k} {v}" for k, v in row["select"].items())
        state = "" if row["available"] else " (not cached)"
        typer.echo(f"{row['name']:<22} q{row['quality']:<2} {row['source']:<10} {row['architecture']:<21} {rd:<26} {how}{state}")


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise LatentfitError(f"{option} takes comma-separated integers, got '{text}'") from None


@app.command(name="eval")
def evaluate(
    datasets: List[Path] = typer.Argument(..., help="Folders of images."),
    output: Path = typer.Option(..., "-o", "--output", help="Results folder (re-running it resumes)."),
    model: Optional[str] = typer.Option(None, help=HELP["model"]),
    checkpoint: Optional[Path] = typer.Option(None, help="Evaluate the weights in this file (one quality, from its "
                                              "model card) instead of a named model."),
    quality: str = typer.Option("1,2,3,4", help="Comma-separated qualities."),
    method: str = typer.Option("none,sga+ssl", help="Comma-separated methods, each with options if any, e.g. "
                               f"sga+ssl3:a=1.4:power=1.4. Methods (options): {describe_methods()}."),
    steps: str = typer.Option("500", help="Comma-separated step counts."),
    lmbda: Optional[str] = typer.Option(None, help="λ of every cell; with several (comma-separated), a λ axis of "
                                        "absolute values."),
    lmbda_scale: Optional[str] = typer.Option(None, help="λ axis as multiples of each model's own λ, e.g. 0.5,1,2 "
                                              "(one curve per entry; with one quality, one curve along λ)."),
    lr: float = typer.Option(PAPERS_PROTOCOL.lr, help="Adam lr (default: the papers' protocol)."),
    lr_schedule: str = typer.Option(PAPERS_PROTOCOL.lr_schedule, help="constant (the papers') or cosine "
                                    "(latentfit's default)."),
    schedule: str = typer.Option(PAPERS_PROTOCOL.schedule, help="papers (each method's published τ schedule) or "
                                 "budget (latentfit's default)."),
    crop: Optional[str] = typer.Option(None, help="Centre crop WxH, e.g. 256x256."),
    precision: str = typer.Option(PAPERS_PROTOCOL.precision, help="Precision of the refinement's decoder pass: "
                                  "fp32 (the papers' protocol), bf16 or auto (see encode --help)."),
    evaluations: str = typer.Option(PAPERS_PROTOCOL.evaluations, help="every: the true loss every 10 steps (the "
                                    "convergence curves and their tables need it), or tail: encode's default."),
    closed_loop: int = typer.Option(PAPERS_PROTOCOL.closed_loop, help=CLOSED_LOOP_HELP + " Also for none, which "
                                    "is then that start."),
    limit: Optional[int] = typer.Option(None, help="Use only the first N images."),
    adapt: str = typer.Option("none", help="Comma-separated decoder updates of the refining cells (an axis; see "
                              "encode --adapt), e.g. none,decoder."),
    distortion: str = typer.Option("mse", help="Comma-separated distortions the refining cells minimise (an axis; "
                                   "see encode --distortion), e.g. mse,ms-ssim,mix:0.5."),
    metric: str = typer.Option("psnr,ms-ssim", help="Metrics of every cell's file, BD-rates and R-D plots: psnr "
                               "and ms-ssim always, and ssimulacra2, cvvdp (ColorVideoVDP, offline) if named."),
    seed: int = typer.Option(PAPERS_PROTOCOL.seed, help=HELP["seed"]),
    classical: str = typer.Option("", help="Comma-separated classical codecs, each with options overriding its "
                                  "best-compression defaults if any, e.g. avif:speed=6. Codecs (defaults): "
                                  f"{describe_codecs()}. Each image's points bracket its learned cells' PSNR range."),
    workers: int = typer.Option(1, help="Parallel cells through a local Ray instance (1: in-process)."),
    ray_address: Optional[str] = typer.Option(None, help="Run the cells on this existing Ray cluster."),
    device: str = typer.Option("cpu"),
    threads: int = typer.Option(0),
    progress: bool = typer.Option(True),
) -> None:
    """Evaluate methods on data sets: one real file per cell, resumable, with BD-rates against `none`."""
    from .evaluation.runner import EvalConfig

    single_lmbda, points = _lmbda_axis(lmbda, lmbda_scale)
    shared = {k: v for k, v in locals().items() if k in EVAL_PROTOCOL_OPTIONS}
    protocol = dataclasses.replace(PAPERS_PROTOCOL, **shared, lmbda=single_lmbda)  # refuses bad settings first
    methods = [m.strip() for m in method.split(",") if m.strip()]
    for name in methods:
        parse_method(name)
    adapts = [a.strip() for a in adapt.split(",") if a.strip()] or ["none"]
    for spec in adapts:
        dataclasses.replace(protocol, adapt=spec)  # an unknown form or option is refused before any work
    distortions = [dataclasses.replace(protocol, distortion=d.strip()).distortion  # refused here if unknown
                   for d in distortion.split(",") if d.strip()] or ["mse"]
    from .evaluation.perceptual import check_metrics

    metrics = check_metrics([m.strip() for m in metric.split(",") if m.strip()])
    _set_threads(threads)
    qualities = _int_list(quality, "--quality")
    if checkpoint is not None:
        from .models.registry import load_checkpoint

        qualities = [load_checkpoint(checkpoint).quality]  # refuses a missing or unreadable file before any work
    config = EvalConfig(datasets=[str(d) for d in datasets], model=model, qualities=qualities,
                        checkpoint=str(checkpoint) if checkpoint else None, lmbda_points=points, methods=methods,
                        steps=_int_list(steps, "--steps"), refinement=protocol, crop=_crop(crop), limit=limit,
                        classical=[c.strip() for c in classical.split(",") if c.strip()], adapts=adapts,
                        distortions=distortions, metrics=metrics)
    _run_evaluation(config, output, device, workers, ray_address, progress)


def _crop(crop: Optional[str]) -> tuple[int, int] | None:
    """`--crop WxH` as (width, height)."""
    if not crop:
        return None
    try:
        width, height = (int(v) for v in crop.lower().split("x"))
    except ValueError:
        raise LatentfitError(f"--crop takes WxH, got '{crop}'") from None
    return width, height


def _run_evaluation(config, output: Path, device: str, workers: int, ray_address: Optional[str],
                    progress: bool) -> None:
    """Run the grid with a progress bar, write the summary and report, print the BD-rates."""
    from tqdm import tqdm

    from .evaluation.report import write_report
    from .evaluation.runner import run_evaluation, summarise

    bar = tqdm(desc="eval", unit="cell", disable=not (progress and sys.stderr.isatty()), file=sys.stderr)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        records = run_evaluation(config, output, device=str(_device(device)), progress=update, workers=workers,
                                 ray_address=ray_address)
    finally:
        bar.close()
    summary = summarise(records, output)
    report = write_report(records, summary, config, output)
    for row in summary["bd_rates"]:
        figures = ("no overlap" if row["bd_rate"] is None else
                   f"BD-rate {row['bd_rate']:+.2f} % BD-PSNR "
                   f"{'—' if row['bd_psnr'] is None else format(row['bd_psnr'], '+.3f')} dB "
                   f"over {row['psnr_overlap']:.0%} of the PSNR range")
        typer.echo(f"{row['model']} {row['method']} {row['steps']} steps: {figures} vs {row['anchor']}")
    typer.echo(f"{len(records)} cells in {output}; report: {report}", err=True)


@app.command()
def train(
    train_dir: List[Path] = typer.Option(..., "--train-dir", help="Folder of training images (repeatable)."),
    checkpoint_dir: Path = typer.Option(..., help="Where the resumable checkpoint (last.pt) lives."),
    valid_dir: Optional[Path] = typer.Option(None, help="Held-out folder for periodic validation."),
    architecture: str = typer.Option(TrainConfig.architecture, help="CompressAI architecture name."),
    n: int = typer.Option(TrainConfig.N, "--N", help="Width N of the transforms."),
    m: int = typer.Option(TrainConfig.M, "--M", help="Number of latent channels M."),
    lmbda: Optional[float] = typer.Option(None, help=f"λ in loss = bpp + λ·255²·MSE (default: --init's, else {TrainConfig.lmbda:g})."),
    steps: int = typer.Option(TrainConfig.steps, help="Total optimisation steps (a resumed run continues up to this)."),
    batch_size: int = typer.Option(TrainConfig.batch_size),
    patch_size: int = typer.Option(TrainConfig.patch_size),
    lr: float = typer.Option(TrainConfig.lr),
    lr_drop_at: float = typer.Option(TrainConfig.lr_drop_at, help="Fraction of steps after which lr is multiplied by "
                                      f"{TrainConfig.lr_drop_factor:g}."),
    validate_every: int = typer.Option(TrainConfig.validate_every),
    checkpoint_every: int = typer.Option(TrainConfig.checkpoint_every),
    seed: int = typer.Option(TrainConfig.seed),
    init_from: Optional[Path] = typer.Option(None, help="Start from these weights (exported or checkpoint); a "
                                             "context architecture starts from a mean-scale hyperprior's."),
    init: Optional[str] = typer.Option(None, "--init", help="Fine-tune a model by name, NAME or NAME:QUALITY "
                                       "(bundled or zoo, e.g. latentfit-msh:2): its architecture, widths, λ and "
                                       "quality become the defaults."),
    trainable: str = typer.Option(TrainConfig.trainable, "--trainable", "--finetune",
                                  help="all; prior: only the probability model (g_a, g_s frozen); context: only "
                                       "a context model's own networks; encoder: only g_a, h_a against the true "
                                       "loss (the export is an encoder file: encode --checkpoint it; its files decode with the base "
                                       "model)."),
    export: Optional[Path] = typer.Option(None, help="Write fp16 weights + JSON model card here when the run stops."),
    name: str = typer.Option("", help="Model name recorded in the model card."),
    quality: int = typer.Option(0, help="Quality index recorded in the model card."),
    threads: int = typer.Option(0, help="torch CPU threads (0: PyTorch's default)."),
    device: str = typer.Option("cpu"),
) -> None:
    """Train a CompressAI model on a folder of images; resumes from CHECKPOINT_DIR/last.pt if present."""
    from .training import Trainer, finetune, training_images

    _set_threads(threads)
    # bad input fails here, before anything is written to CHECKPOINT_DIR
    finetune(trainable)
    training_images([str(d) for d in train_dir], patch_size)
    if valid_dir is not None:
        training_images([str(valid_dir)], 1)
    if init is not None:
        if init_from is not None:
            raise LatentfitError("give --init (a model name) or --init-from (a weights file), not both")
        architecture, n, m, base_lmbda, base_quality, init_from = _training_start(init, checkpoint_dir, architecture)
        lmbda = base_lmbda if lmbda is None else lmbda
        quality = quality or base_quality
    config = TrainConfig(
        train_dirs=[str(d) for d in train_dir], valid_dir=str(valid_dir) if valid_dir else None,
        architecture=architecture, N=n, M=m, lmbda=TrainConfig.lmbda if lmbda is None else lmbda, steps=steps,
        batch_size=batch_size, patch_size=patch_size, lr=lr, lr_drop_at=lr_drop_at, validate_every=validate_every,
        checkpoint_every=checkpoint_every, seed=seed, init_from=str(init_from) if init_from else None,
        trainable=trainable,
    )
    trainer = Trainer(config, checkpoint_dir, device=device)
    if trainer.resumed:
        typer.echo(f"resumed {checkpoint_dir / 'last.pt'} at step {trainer.step}", err=True)
    result = trainer.run(progress=True)
    if export is not None:
        card = {"name": name, "quality": quality}
        if trainable == "encoder":
            card["base"] = {"name": init.partition(":")[0] if init else Path(str(init_from)).stem, "quality": quality}
        trainer.export(export, card)
        typer.echo(f"exported {export} (step {trainer.step})", err=True)
    typer.echo(json.dumps({"step": result["step"], "finished": result["finished"]}))


def _training_start(init: str, checkpoint_dir: Path, architecture: str) -> tuple:
    """`(architecture, N, M, λ, quality, weights file)` to fine-tune the model `init` names (NAME or
    NAME:QUALITY); its weights are written once to CHECKPOINT_DIR/init.pt, so a resumed run starts
    from the same file. A context architecture asked for over a mean-scale model keeps the context."""
    import io

    import torch

    from .imageio import atomic_write_bytes
    from .models.architectures import get_architecture
    from .models.registry import load_model

    name, _, quality = init.partition(":")
    try:
        base = load_model(name, int(quality) if quality else None)
    except ValueError:
        raise LatentfitError(f"--init takes NAME or NAME:QUALITY, got '{init}'") from None
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    start = checkpoint_dir / "init.pt"
    if not start.exists():
        buffer = io.BytesIO()
        torch.save(base.model.state_dict(), buffer)
        atomic_write_bytes(start, buffer.getvalue(), force=True)
    keep = base.architecture in get_architecture(architecture).starts_from
    return (architecture if keep else base.architecture, int(base.model.N), int(base.model.M), base.lmbda,
            base.quality, start)


@app.callback()
def _root() -> None:
    """Content-adaptive neural image compression: refine a learned codec's latents at encode time."""


class Interrupted(BaseException):
    """Ctrl-C / SIGTERM, raised past the CLI framework (which would print "Aborted!" and exit 1)."""


def _interrupt(signum, frame) -> None:
    raise Interrupted()


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2, Ctrl-C exit code 130."""
    import signal

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app(standalone_mode=True)
    except LatentfitError as exc:
        typer.echo(f"latentfit: error: {exc}", err=True)
        sys.exit(2)
    except Interrupted:
        typer.echo("latentfit: interrupted (files in progress were not written)", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
