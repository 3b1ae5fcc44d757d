"""Train the four `latentfit-ctx` qualities on one GPU in one timed lease, trying several lr recipes
side by side, and keep per quality the recipe with the lowest validation loss (issue 29).

Every (quality, recipe) pair is one `tools/train_ctx.py --device cuda --seconds S --from-base` process
on the same GPU (one small model leaves most of it idle). Each starts from `latentfit-msh-Q` with a
context that adds nothing yet, measures its pace, plans its steps to end inside the lease with the lr
drop at the end, validates on the whole validation images, float and as exported, and exports
`mixed` weights (int8 kernels except `g_a`/`g_s`; 15.6 MB, under a lease's 16 MiB per returned file)
with a card. The winner's export and card (which lists every recipe's final validation) are copied to
`--out`; `tools/finalize_bundled.py OUT --name=latentfit-ctx` measures and installs them.

The run of 2026-12-04 (one H200, `--seconds 420`, then `--recipes a:2e-5:3e-4 --drop-fraction 0.5
--seconds 210` continuing the same stages): BENCHMARKS.md, "Context models". The working tree must
carry the data (64 MiB in all with the repository): `--prepare DIR` writes it here first, CID22
train and every second BSDS500 photo as JPEG q90 and CID22 valid as JPEG q95 (32 MB).

    python tools/train_ctx_gpu.py --prepare .gpu-data        # here, before the lease
    python tools/train_ctx_gpu.py --data D1 --data D2 --valid-dir V --seconds 400 \\
        --recipes a:2e-5:3e-4,b:5e-5:1e-3 [--qualities 1,2,3,4] [--out $OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent


def prepare(folder: Path) -> None:
    """The lease's data set under `folder`: compact JPEG copies of the shared training photos."""
    from PIL import Image

    from latentfit.imageio import list_images
    from latentfit.shared_data import data_dir

    train = data_dir() / "train"
    for name, images, quality in (("cid22-train", list_images(train / "cid22-train"), 90),
                                  ("bsds500", list_images(train / "bsds500")[::2], 90),
                                  ("cid22-valid", list_images(train / "cid22-valid"), 95)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for path in images:
            with Image.open(path) as image:
                image.convert("RGB").save(folder / name / f"{Path(path).stem}.jpg", quality=quality)
        print(f"{folder / name}: {len(images)} images", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", type=Path, help="write the lease's training data into this folder and stop")
    parser.add_argument("--data", action="append", help="training image folder (repeatable)")
    parser.add_argument("--valid-dir")
    parser.add_argument("--valid-images", type=int, default=41)
    parser.add_argument("--valid-crop", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=420.0, help="wall time of each training process")
    parser.add_argument("--recipes", default="a:2e-5:3e-4,b:5e-5:1e-3", help="NAME:LR:CONTEXT_LR,...")
    parser.add_argument("--qualities", default="1,2,3,4")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--drop-fraction", type=float, default=0.3)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--work", default="/tmp/latentfit-ctx")
    parser.add_argument("--out", default=os.environ.get("OUT", "export"))
    args = parser.parse_args()
    if args.prepare:
        return prepare(args.prepare)
    if not args.data or not args.valid_dir:
        parser.error("--data and --valid-dir are required (or --prepare)")

    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipes = [r.split(":") for r in args.recipes.split(",")]
    processes = []
    for name, lr, context_lr in recipes:
        for quality in args.qualities.split(","):
            command = [sys.executable, str(TOOLS / "train_ctx.py"), "--qualities", quality, "--device", args.device,
                       "--seconds", str(args.seconds), "--from-base", "--variant", name, "--lr", lr,
                       "--context-lr", context_lr, "--drop-fraction", str(args.drop_fraction),
                       "--batch-size", str(args.batch_size), "--patch-size", str(args.patch_size),
                       "--valid-dir", args.valid_dir, "--valid-images", str(args.valid_images),
                       "--valid-crop", str(args.valid_crop), "--checkpoint-every", "1000", "--threads", "2",
                       "--root", str(work / name / "stage"), "--out", str(work / name / "export")]
            for folder in args.data:
                command += ["--train-dir", folder]
            log_path = work / name / f"q{quality}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "w")
            processes.append((name, quality, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    for name, quality, process, log in processes:
        process.wait()
        log.close()
        tail = (work / name / f"q{quality}.log").read_text().splitlines()[-4:]
        print(f"{name} q{quality}: exit {process.returncode}: " + " | ".join(line[-400:] for line in tail), flush=True)

    for quality in args.qualities.split(","):
        finals = {}
        for name, *_ in recipes:
            card = work / name / "export" / f"latentfit-ctx-{quality}.json"
            if card.is_file():
                finals[name] = json.loads(card.read_text())["runs"][-1]["validation"]
        if not finals:
            print(f"q{quality}: no recipe exported", flush=True)
            continue
        best = min(finals, key=lambda n: finals[n][-1].get("loss", float("inf")))
        source = work / best / "export" / f"latentfit-ctx-{quality}"
        card = json.loads(source.with_suffix(".json").read_text())
        card["recipe_selection"] = {"chosen": best, "by": "lowest final validation loss",
                                    "validation_by_recipe": {n: v[-1] for n, v in finals.items()},
                                    "recipes": {n: {"lr": float(lr), "context_lr": float(c)} for n, lr, c in recipes}}
        shutil.copyfile(source.with_suffix(".pt"), out / f"latentfit-ctx-{quality}.pt")
        (out / f"latentfit-ctx-{quality}.json").write_text(json.dumps(card, indent=2) + "\n")
        summary = {n: {k: round(v[-1][k], 5) for k in ("step", "loss", "bpp", "psnr") if k in v[-1]} for n, v in finals.items()}
        start = {k: round(v, 5) for k, v in next(iter(finals.values()))[0].items()}
        print(f"q{quality}: start {start}; final {summary}; chose {best}", flush=True)


if __name__ == "__main__":
    main()
