"""Train `latentfit-ctx` on the CPU, resumably: the checkerboard context model on top of each bundled
`latentfit-msh` quality (its transforms and hyperprior frozen), at that quality's λ (issue 29).

Each quality's context networks start from zero (exactly `latentfit-msh`'s rates) or, when this
folder's `--out` already holds a `latentfit-ctx-Q.context.pt`, from it (a run on a new machine
continues the committed one). Within a machine, an interrupted stage resumes from
`ROOT/qQ/last.pt`. After each stage the context networks (the only weights that differ from
`latentfit-msh-Q`) are written to `--out` as fp16 with a JSON card: commit that folder.

    python tools/train_ctx.py --steps 1500 --qualities 2,3,1,4 [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("LATENTFIT_DATA", ROOT.parent / "shared" / "data"))
WEIGHTS = ROOT / "src" / "latentfit" / "weights"
CONTEXT_PREFIX = "latentfit-ctx"


def context_state(model) -> dict[str, torch.Tensor]:
    from latentfit.models.checkerboard import context_parameters  # noqa: F401 (documents what is kept)

    return {k: v.detach().half() for k, v in model.state_dict().items()
            if k.startswith(("latent_codec.y.context_prediction.", "latent_codec.y.entropy_parameters."))
            and v.is_floating_point() and not k.endswith(".mask")}


def main() -> None:
    from latentfit.imageio import atomic_write_bytes
    from latentfit.models.checkerboard import MeanScaleCheckerboard
    from latentfit.models.weights import load_state_dict_file, weights_digest
    from latentfit.training import TrainConfig, Trainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="steps per quality in this run")
    parser.add_argument("--qualities", default="2,3,1,4")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default=str(Path.home() / ".cache" / "latentfit" / "training-ctx"))
    parser.add_argument("--out", default=str(ROOT / "results" / "training" / "latentfit-ctx"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for quality in [int(q) for q in args.qualities.split(",")]:
        base_path = WEIGHTS / f"latentfit-msh-{quality}.pt"
        base_card = json.loads(base_path.with_suffix(".json").read_text())
        delta_path = out / f"{CONTEXT_PREFIX}-{quality}.context.pt"
        card_path = delta_path.with_suffix(".json")
        previous = json.loads(card_path.read_text()) if card_path.is_file() else {}
        stage = Path(args.root) / f"q{quality}"
        stage.mkdir(parents=True, exist_ok=True)
        init = stage / "init.pt"
        if not init.is_file():  # latentfit-msh-Q plus the committed context networks, if any
            model = MeanScaleCheckerboard.from_mean_scale(load_state_dict_file(base_path))
            if delta_path.is_file():
                model.load_state_dict(load_state_dict_file(delta_path), strict=False)
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            atomic_write_bytes(init, buffer.getvalue(), force=True)
        config = TrainConfig(
            train_dirs=[str(DATA / "train" / "cid22-train"), str(DATA / "train" / "bsds500")],
            valid_dir=str(DATA / "train" / "cid22-valid"), architecture="mbt2018-mean-checkerboard",
            N=128, M=192, lmbda=float(base_card["lmbda"]), steps=args.steps, batch_size=8, patch_size=128,
            lr=args.lr, lr_drop_at=0.8, validate_every=500, checkpoint_every=100, seed=quality,
            init_from=str(init), trainable="context",
        )
        trainer = Trainer(config, stage)
        result = trainer.run(progress=False)
        state = context_state(trainer.model)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(delta_path, buffer.getvalue(), force=True)
        runs = previous.get("runs", []) + [{"steps": trainer.step, "lr": args.lr, "batch_size": 8, "patch_size": 128,
                                            "validation": trainer.history}]
        card = {
            "name": CONTEXT_PREFIX, "quality": quality, "architecture": "mbt2018-mean-checkerboard",
            "lmbda": config.lmbda, "base": base_path.name, "base_weights_digest": base_card.get("weights_digest"),
            "trainable": "context", "steps": sum(r["steps"] for r in runs), "runs": runs,
            "training_data": ["cid22-train", "bsds500"],
            "note": "context networks only (fp16); the other weights are latentfit-msh-Q's, frozen",
        }
        atomic_write_bytes(card_path, (json.dumps(card, indent=1) + "\n").encode(), force=True)
        print(json.dumps({"quality": quality, "step": trainer.step, "finished": result["finished"],
                          "last_validation": trainer.history[-1] if trainer.history else None}), flush=True)
        if not result["finished"]:
            break


if __name__ == "__main__":
    main()
