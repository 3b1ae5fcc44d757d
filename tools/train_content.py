"""Fine-tune `latentfit-msh` on a content set for the content-adaptation study (issue 30): `--finetune
prior` (Campos et al.'s "+proba": hyper-encoder, hyper-decoder and entropy models; `g_a`/`g_s` frozen)
or `--finetune all` (the "specialised" model), each quality from the bundled `latentfit-msh-Q` at its
own λ, with the same number of steps for both parts.

Runs `latentfit.training.Trainer` (resumable from ROOT/PART-qQ/last.pt), validates before and after,
and exports weights (`--export-dtype`) with a card naming the model `NAME-PART` at quality Q, so that a
folder of exports can be used as `$LATENTFIT_HOME/checkpoints` (`eval --model NAME-PART`). `--seconds`
is a safety stop for a GPU lease: the run ends at `--steps` or at the deadline, whichever comes first
(the card records the steps done).

    python tools/train_content.py --finetune prior --qualities 2 --steps 2000 --train-dir D --valid-dir V \\
        --name screen --out O [--device cuda --batch-size 16 --patch-size 256 --seconds 300]
    python tools/train_content.py --restore O     # after a lease: put the base's g_a/g_s back into *.prior

A prior fine-tune's `g_a`/`g_s` are the bundled model's int8 tensors unchanged, so a GPU lease (which
returns at most 16 MiB per file) brings back only the rest (`NAME-prior-Q.prior`); `--restore` adds the
bundled `latentfit-msh-Q` tensors back, writes `NAME-prior-Q.pt` and refuses unless the result has the
weights digest the card recorded on the GPU.
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "src" / "latentfit" / "weights"


def restore(folder: Path) -> None:
    """`NAME-prior-Q.prior` (a prior export without `g_a`/`g_s`) + the bundled base's → `NAME-prior-Q.pt`,
    checked against the card's digest."""
    from latentfit.imageio import atomic_write_bytes
    from latentfit.models.registry import load_checkpoint

    for partial in sorted(folder.glob("*.prior")):
        card = json.loads(partial.with_suffix(".json").read_text())
        base = WEIGHTS / f"{card['base']['name']}-{card['base']['quality']}.pt"
        state = torch.load(base, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if k.startswith(("g_a.", "g_s."))}
        state |= torch.load(partial, map_location="cpu", weights_only=True)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        target = partial.with_suffix(".pt")
        atomic_write_bytes(target, buffer.getvalue(), force=True)
        digest = load_checkpoint(target).digest.hex()
        if digest != card["weights_digest"]:
            target.unlink()
            raise SystemExit(f"{partial}: restored weights digest {digest}, card {card['weights_digest']}")
        print(f"{target}: restored, digest {digest} as on the card", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restore", type=Path, help="restore the *.prior files of this folder and stop")
    parser.add_argument("--finetune", choices=["prior", "all"])
    parser.add_argument("--qualities", default="1,2,3,4")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=None, help="stop at this wall time even before --steps")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--drop-at", type=float, default=0.7, help="fraction of the steps after which lr x0.1")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--train-dir", action="append")
    parser.add_argument("--valid-dir")
    parser.add_argument("--valid-images", type=int, default=20)
    parser.add_argument("--valid-crop", type=int, default=512)
    parser.add_argument("--name", default="screen", help="content name; the model is NAME-PART (e.g. screen-prior)")
    parser.add_argument("--export-dtype", default="int8", choices=["fp16", "int8", "mixed"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=str(Path.home() / ".cache" / "latentfit" / "training-content"))
    parser.add_argument("--out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from latentfit.imageio import atomic_write_bytes
    from latentfit.models.weights import load_state_dict_file, round_for_storage
    from latentfit.training import TrainConfig, Trainer
    from train_ctx import validate_model  # tools/ is this script's folder, first on sys.path

    started = time.time()
    args = parse_args(argv)
    if args.restore:
        return restore(args.restore)
    if not args.finetune or not args.train_dir or not args.valid_dir or not args.out:
        raise SystemExit("--finetune, --train-dir, --valid-dir and --out are required (or --restore)")
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.name}-{args.finetune}"
    for quality in [int(q) for q in args.qualities.split(",")]:
        base_path = WEIGHTS / f"latentfit-msh-{quality}.pt"
        base_card = json.loads(base_path.with_suffix(".json").read_text())
        stage = Path(args.root) / f"{name}-q{quality}"
        stage.mkdir(parents=True, exist_ok=True)
        init = stage / "init.pt"
        if not init.is_file():
            buffer = io.BytesIO()
            torch.save(load_state_dict_file(base_path), buffer)
            atomic_write_bytes(init, buffer.getvalue(), force=True)
        config = TrainConfig(
            train_dirs=args.train_dir, valid_dir=args.valid_dir, valid_images=args.valid_images,
            valid_crop=args.valid_crop, architecture="mbt2018-mean", N=128, M=192, lmbda=float(base_card["lmbda"]),
            steps=args.steps, batch_size=args.batch_size, patch_size=args.patch_size, lr=args.lr,
            lr_drop_at=args.drop_at, validate_every=10**9, checkpoint_every=250, seed=args.seed + quality,
            init_from=str(init), trainable=args.finetune,
        )
        trainer = Trainer(config, stage, device=args.device)
        first_step = trainer.step
        if not trainer.resumed:
            trainer.history.append({"step": 0} | trainer.validate())
        deadline = None if args.seconds is None else started + args.seconds

        def on_step(step, terms, trainer=trainer, deadline=deadline):
            if deadline is not None and time.time() > deadline:
                trainer.request_stop()

        run_started = time.time()
        result = trainer.run(progress=False, on_step=on_step)
        seconds = time.time() - run_started
        if trainer.history[-1].get("step") != trainer.step:
            trainer.history.append({"step": trainer.step} | trainer.validate())
        exported = round_for_storage(trainer.model, args.export_dtype)
        exported_validation = validate_model(trainer, exported)
        card = {
            "name": name, "quality": quality,
            "base": {"name": "latentfit-msh", "quality": quality, "weights_digest": base_card.get("weights_digest")},
            "finetune": args.finetune, "content": args.name, "steps": trainer.step,
            "run": {"steps": trainer.step - first_step, "seconds": round(seconds, 1), "lr": args.lr,
                    "lr_drop": f"x0.1 from {args.drop_at:g} of {args.steps} steps", "batch_size": args.batch_size,
                    "patch_size": args.patch_size, "device": args.device,
                    "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
                    "finished": bool(result["finished"]), "seed": config.seed},
            "training_data": [Path(d).name for d in args.train_dir],
            "validation_set": f"{Path(args.valid_dir).name}: first {args.valid_images} images, centre {args.valid_crop}px",
            "validation": trainer.history, "exported_validation": exported_validation,
        }
        trainer.export(out / f"{name}-{quality}.pt", card, dtype=args.export_dtype)
        print(json.dumps({"model": name, "quality": quality, "steps": trainer.step, "seconds": round(seconds, 1),
                          "start": trainer.history[0], "end": trainer.history[-1],
                          "exported": exported_validation}), flush=True)


if __name__ == "__main__":
    main()
