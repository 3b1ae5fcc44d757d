"""Train `latentfit-ctx` on the CPU, resumably (issue 29): `latentfit-msh`'s architecture plus a
checkerboard context (`mbt2018-mean-checkerboard`), fine-tuned from each bundled `latentfit-msh`
quality at that quality's λ.

A quality starts from the committed export in `--out` (`latentfit-ctx-Q.pt`, int8 kernels like
`latentfit-msh`) when there is one, else from `latentfit-msh-Q` with a context that adds nothing yet
(its entropy-parameter network is residual with a zero last layer: exactly `latentfit-msh`'s rates).
Within a machine an interrupted stage resumes from `ROOT/qQ/last.pt` (run the same command again);
each stage's end (or an interrupt) exports to `--out`, with a card recording every run: commit that
folder. `--trainable context` freezes the transforms and the hyperprior (measured: with them frozen
the context over-fits and validation rate does not fall; BENCHMARKS.md, "Context models").

    python tools/train_ctx.py --steps 3000 --qualities 2 [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import torch

from latentfit.shared_data import data_dir

ROOT = Path(__file__).resolve().parent.parent
DATA = data_dir()
WEIGHTS = ROOT / "src" / "latentfit" / "weights"
NAME = "latentfit-ctx"


def main() -> None:
    from latentfit.imageio import atomic_write_bytes
    from latentfit.models.architectures.checkerboard import MeanScaleCheckerboard
    from latentfit.models.weights import load_state_dict_file
    from latentfit.training import TrainConfig, Trainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="steps per quality in this run")
    parser.add_argument("--qualities", default="2")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--context-lr", type=float, default=1e-3)
    parser.add_argument("--trainable", default="all", choices=["all", "context"])
    parser.add_argument("--validate-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default=str(Path.home() / ".cache" / "latentfit" / "training-ctx"))
    parser.add_argument("--out", default=str(ROOT / "results" / "training" / NAME))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for quality in [int(q) for q in args.qualities.split(",")]:
        base_path = WEIGHTS / f"latentfit-msh-{quality}.pt"
        base_card = json.loads(base_path.with_suffix(".json").read_text())
        export = out / f"{NAME}-{quality}.pt"
        previous = json.loads(export.with_suffix(".json").read_text()) if export.is_file() else {}
        stage = Path(args.root) / f"q{quality}"
        stage.mkdir(parents=True, exist_ok=True)
        init = stage / "init.pt"
        if not init.is_file():
            if export.is_file():
                model = MeanScaleCheckerboard.from_state_dict(load_state_dict_file(export))
            else:
                model = MeanScaleCheckerboard.from_mean_scale(load_state_dict_file(base_path))
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            atomic_write_bytes(init, buffer.getvalue(), force=True)
        config = TrainConfig(
            train_dirs=[str(DATA / "train" / "cid22-train"), str(DATA / "train" / "bsds500")],
            valid_dir=str(DATA / "train" / "cid22-valid"), architecture="mbt2018-mean-checkerboard",
            N=128, M=192, lmbda=float(base_card["lmbda"]), steps=args.steps, batch_size=8, patch_size=128,
            lr=args.lr, context_lr=args.context_lr, lr_drop_at=0.8, validate_every=args.validate_every,
            checkpoint_every=50, seed=quality, init_from=str(init), trainable=args.trainable,
        )
        trainer = Trainer(config, stage)
        if not trainer.resumed:  # the starting point's validation, so the card shows the trend from it
            trainer.history.append({"step": 0} | trainer.validate())
        result = trainer.run(progress=False)
        runs = previous.get("runs", []) + [{"steps": trainer.step, "lr": args.lr, "context_lr": args.context_lr,
                                            "trainable": args.trainable, "batch_size": 8, "patch_size": 128,
                                            "validation": trainer.history}]
        trainer.export(export, {
            "name": NAME, "quality": quality, "base": base_path.name,
            "base_weights_digest": base_card.get("weights_digest"), "steps": sum(r["steps"] for r in runs),
            "runs": runs, "training_data": ["cid22-train", "bsds500"],
        }, dtype="int8")
        print(json.dumps({"quality": quality, "step": trainer.step, "finished": result["finished"],
                          "last_validation": trainer.history[-1] if trainer.history else None}), flush=True)
        if not result["finished"]:
            break


if __name__ == "__main__":
    main()
