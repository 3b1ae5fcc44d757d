"""Train `latentfit-ctx` resumably (issue 29): `latentfit-msh`'s architecture plus a checkerboard
context (`mbt2018-mean-checkerboard`), fine-tuned from each bundled `latentfit-msh` quality at that
quality's λ, on the CPU or (with `--device cuda`) a GPU.

A quality starts from the export in `--out` (`latentfit-ctx-Q.pt`, `--export-dtype`)
when there is one, else from the bundled `latentfit-ctx-Q` (unless `--from-base`), else from
`latentfit-msh-Q` with a context that adds nothing yet (its entropy-parameter network is
residual with a zero last layer: exactly `latentfit-msh`'s rates). Within a machine an interrupted
stage resumes from `ROOT/qQ/last.pt` (run the same command again); each stage's end (or an
interrupt) exports to `--out`, with a card recording every run;
`tools/finalize_bundled.py OUT --name=latentfit-ctx` measures an export on Kodak and installs it
into the package. `--trainable context` freezes the transforms and the hyperprior
(measured: with them frozen the context over-fits and validation rate does not fall; BENCHMARKS.md,
"Context models").

`--seconds S` runs by time instead of `--steps` (for a GPU lease): training stops S seconds after
the start, less `--reserve` for the final validation and export, and the lr drops ×0.1 for the last
`--drop-fraction` of that time.

    python tools/train_ctx.py --steps 3000 --qualities 2 [--threads 1]
    python tools/train_ctx.py --device cuda --seconds 400 --qualities 1 --batch-size 16 --patch-size 256 \\
        --train-dir D1 --train-dir D2 --valid-dir V --valid-images 41 --valid-crop 512 --from-base --out O
"""

from __future__ import annotations

import argparse
import io
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from latentfit.shared_data import data_dir

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "src" / "latentfit" / "weights"
NAME = "latentfit-ctx"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="steps per quality in this run")
    parser.add_argument("--seconds", type=float, default=None,
                        help="plan the run's steps to end this many seconds after the start (replaces --steps)")
    parser.add_argument("--reserve", type=float, default=25.0, help="seconds of --seconds kept for validation and export")
    parser.add_argument("--qualities", default="2")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--context-lr", type=float, default=1e-3)
    parser.add_argument("--drop-fraction", type=float, default=0.2, help="share of the steps at lr x0.1, at the end")
    parser.add_argument("--trainable", default="all", choices=["all", "context"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--train-dir", action="append", default=None,
                        help="training folder (repeatable; default: CID22 train and BSDS500 in the shared data)")
    parser.add_argument("--valid-dir", default=None, help="validation folder (default: CID22 valid)")
    parser.add_argument("--valid-images", type=int, default=16)
    parser.add_argument("--valid-crop", type=int, default=256)
    parser.add_argument("--validate-every", type=int, default=250)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--from-base", action="store_true", help="start from latentfit-msh even if --out has an export")
    parser.add_argument("--variant", default="", help="a label for this recipe, recorded in the card")
    parser.add_argument("--export-dtype", default="mixed", choices=["fp16", "int8", "mixed"],
                        help="mixed (default): int8 kernels except g_a/g_s (fp16); all-int8 cost this model 6 %% "
                             "validation loss (BENCHMARKS.md)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default=str(Path.home() / ".cache" / "latentfit" / "training-ctx"))
    parser.add_argument("--out", default=str(ROOT / "results" / "training" / NAME))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from latentfit.imageio import atomic_write_bytes
    from latentfit.models.architectures.checkerboard import MeanScaleCheckerboard
    from latentfit.models.weights import load_state_dict_file, round_for_storage
    from latentfit.training import TrainConfig

    started = time.time()
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed crop sizes: let cuDNN pick its fastest kernels
    train_dirs = args.train_dir or [str(data_dir() / "train" / "cid22-train"), str(data_dir() / "train" / "bsds500")]
    valid_dir = args.valid_dir or str(data_dir() / "train" / "cid22-valid")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for quality in [int(q) for q in args.qualities.split(",")]:
        base_path = WEIGHTS / f"latentfit-msh-{quality}.pt"
        base_card = json.loads(base_path.with_suffix(".json").read_text())
        export = out / f"{NAME}-{quality}.pt"
        stage = Path(args.root) / f"q{quality}"
        stage.mkdir(parents=True, exist_ok=True)
        init = stage / "init.pt"
        bundled = WEIGHTS / f"{NAME}-{quality}.pt"
        start = None if args.from_base else next((p for p in (export, bundled) if p.is_file()), None)
        if not init.is_file():
            if start is not None:
                model = MeanScaleCheckerboard.from_state_dict(load_state_dict_file(start))
            else:
                model = MeanScaleCheckerboard.from_mean_scale(load_state_dict_file(base_path))
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            atomic_write_bytes(init, buffer.getvalue(), force=True)
        config = TrainConfig(
            train_dirs=train_dirs, valid_dir=valid_dir, valid_images=args.valid_images, valid_crop=args.valid_crop,
            architecture="mbt2018-mean-checkerboard", N=128, M=192, lmbda=float(base_card["lmbda"]),
            steps=args.steps, batch_size=args.batch_size, patch_size=args.patch_size, lr=args.lr,
            context_lr=args.context_lr, lr_drop_at=1 - args.drop_fraction, validate_every=args.validate_every,
            checkpoint_every=args.checkpoint_every, seed=quality, init_from=str(init), trainable=args.trainable,
        )
        if args.seconds is not None:
            trainer, result, first_step = timed_run(config, stage, args, deadline=started + args.seconds - args.reserve)
        else:
            trainer, first_step = started_trainer(config, stage, args.device)
            result = trainer.run(progress=False)
        # this run's own steps: a stage resumed from its last.pt continues a run the card already counts
        run = {"steps": trainer.step - first_step, "lr": args.lr, "context_lr": args.context_lr, "trainable": args.trainable,
               "batch_size": args.batch_size, "patch_size": args.patch_size, "lr_drop": f"x0.1 over the last {args.drop_fraction:g} of the time" if args.seconds is not None
               else f"x0.1 from {1 - args.drop_fraction:g} of the steps",
               "device": args.device, "variant": args.variant,
               "validation_set": f"{Path(valid_dir).name}: first {args.valid_images} images, centre {args.valid_crop}px",
               "validation": trainer.history}
        previous = json.loads(start.with_suffix(".json").read_text()) if start is not None else {}
        runs = previous.get("runs", []) + [run]
        # The exported weights (rounded to their storage type) validated too: int8 kernels once cost 6 %
        # here unnoticed, since the training's own validation ran on the float weights.
        run["exported_validation"] = validate_model(trainer, round_for_storage(trainer.model, args.export_dtype))
        trainer.export(export, {
            "name": NAME, "quality": quality, "base": base_path.name,
            "base_weights_digest": base_card.get("weights_digest"), "steps": sum(r["steps"] for r in runs),
            "runs": runs, "training_data": [Path(d).name for d in train_dirs],
        }, dtype=args.export_dtype)
        print(json.dumps({"quality": quality, "variant": args.variant, "step": trainer.step,
                          "finished": result["finished"],
                          "last_validation": trainer.history[-1] if trainer.history else None}), flush=True)
        if not result["finished"]:
            break


def timed_run(config, stage: Path, args: argparse.Namespace, deadline: float):
    """Train until `deadline` (a `time.time()` value), dropping the lr ×0.1 once the last
    `--drop-fraction` of the time from the first step to the deadline begins: a drop by time, not by
    step, so that a pace that changes (other processes on the same GPU starting or ending) cannot
    push the drop past the end. Returns the trainer, validated at its last step, its `run()` result
    and the step it started at."""
    trainer, first_step = started_trainer(replace(config, steps=10**9, lr_drop_at=1.0, validate_every=10**9), stage,
                                          args.device)
    first: list[float] = []

    def on_step(step, terms):
        now = time.time()
        if not first:
            first.append(now)
        if trainer.config.lr_drop_at > 0 and now > first[0] + (1 - args.drop_fraction) * (deadline - first[0]):
            trainer.config = replace(trainer.config, lr_drop_at=0.0)  # every later step at lr × 0.1
            trainer.history.append({"step": step, "event": "lr drop"})
        if now > deadline:
            trainer.request_stop()

    result = trainer.run(progress=False, on_step=on_step)
    return validated(trainer), result, first_step


def started_trainer(config, stage: Path, device: str):
    """The stage's trainer and the step it starts at; a fresh stage's starting point is validated
    first, so that the card shows the trend from it."""
    from latentfit.training import Trainer

    trainer = Trainer(config, stage, device=device)
    if not trainer.resumed:
        trainer.history.append({"step": 0} | trainer.validate())
    return trainer, trainer.step


def validate_model(trainer, model) -> dict:
    """`trainer.validate()` on another model (e.g. the weights as exported)."""
    own, trainer.model = trainer.model, model.to(trainer.device)
    try:
        return trainer.validate()
    finally:
        trainer.model = own


def validated(trainer):
    """`trainer`, its validation at its last step recorded (a run stopped by the deadline has none)."""
    last = trainer.history[-1] if trainer.history else {}
    if "loss" not in last or last["step"] != trainer.step:
        trainer.history.append({"step": trainer.step} | trainer.validate())
    return trainer


if __name__ == "__main__":
    main()
