"""Measure exported bundled-model weights on Kodak and install them into the package.

For each `<export>/<name>-<q>.pt`, re-exports it into `src/latentfit/weights/` in its storage type
(`latentfit-msh`: int8 convolution kernels with per-channel fp16 scales, 8 MB instead of 15 MB, Kodak
PSNR within ±0.03 dB of fp16; `latentfit-ctx`: `mixed`, int8 except `g_a`/`g_s`, since all-int8 cost
it 2–8 % validation loss), encodes all 24 Kodak images with method `none` (real files) using the
installed file, writes the Kodak bpp / PSNR / MS-SSIM averages and the per-image figures of kodim23
into the model card, and prints the BD-rate against CompressAI's published bmshj2018-factorized and
mbt2018-mean curves.

An encoder file (`train --finetune encoder`, e.g. `--name=latentfit-msh-warm`) is installed as it is
(it holds only `g_a`/`h_a`, over the bundled base model its card names), measured the same way, and
its BD-rate against that base model's Kodak curve printed as well.

Usage: python tools/finalize_bundled.py [EXPORT_DIR] [KODAK_DIR] [--name=latentfit-ctx]
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import bjontegaard as bd
import numpy as np

import latentfit
from latentfit.imageio import list_images
from latentfit.models.registry import BUNDLED_DIR, load_checkpoint
from latentfit.models.weights import export_weights
from latentfit.shared_data import data_dir

# CompressAI's published Kodak curves (bpp, PSNR-RGB), MSE models.
BMSHJ2018_FACTORIZED = [(0.123, 26.91), (0.189, 28.22), (0.288, 29.62), (0.440, 31.28), (0.648, 32.96),
                        (0.967, 35.38), (1.351, 37.40), (1.833, 39.62)]
MBT2018_MEAN = [(0.124, 27.70), (0.198, 29.36), (0.307, 31.13), (0.461, 32.95), (0.662, 34.97), (0.914, 36.91)]


def measure(weights: Path, kodak: Path) -> dict:
    model = load_checkpoint(weights)
    per_image = {}
    for path in list_images(kodak):
        result = latentfit.encode(latentfit.load_image(path), model, latentfit.RefinementConfig(method="none"))
        per_image[path.stem] = {k: result.stats[k] for k in ("bytes", "bpp", "psnr", "ms_ssim")}
    mean = {k: float(np.mean([v[k] for v in per_image.values()])) for k in ("bpp", "psnr", "ms_ssim")}
    return {"kodak": mean | {"images": len(per_image), "method": "none"}, "kodak_images": {"kodim23": per_image["kodim23"]}}


def bd_rate(points, anchor) -> float:
    points, anchor = sorted(points), sorted(anchor)
    return float(bd.bd_rate([p[0] for p in anchor], [p[1] for p in anchor], [p[0] for p in points],
                            [p[1] for p in points], method="akima", require_matching_points=False))


#: The storage type each bundled model is installed in (`models.weights.WEIGHT_DTYPES`).
STORAGE = {"latentfit-msh": "int8", "latentfit-ctx": "mixed"}


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--name")]
    name = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--name=")), "latentfit-msh")
    export = Path(args[0] if args else Path.home() / ".cache/latentfit/training/export")
    kodak = Path(args[1] if len(args) > 1 else data_dir("kodak"))
    points, base_points = [], []
    ours = lambda folder: [p for p in sorted(folder.glob(f"{name}-*.pt"))  # noqa: E731
                           if re.fullmatch(rf"{re.escape(name)}-\d+", p.stem)]  # not latentfit-msh-warm-2 for latentfit-msh
    for source in ours(export):
        card = json.loads(source.with_suffix(".json").read_text())
        card.setdefault("training_data", ["CID22 train (206)", "BSDS500 (500)"])
        weights = BUNDLED_DIR / source.name
        if card.get("kind") == "encoder":  # stored as trained; the decoder is the bundled base's
            shutil.copyfile(source, weights)
            weights.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
            base = json.loads((BUNDLED_DIR / f"{card['base']['name']}-{card['base']['quality']}.json").read_text())
            base_points.append((base["kodak"]["bpp"], base["kodak"]["psnr"]))
        else:
            export_weights(load_checkpoint(source).model, weights, card, dtype=STORAGE[name])
        card = json.loads(weights.with_suffix(".json").read_text()) | measure(weights, kodak)
        weights.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
        points.append((card["kodak"]["bpp"], card["kodak"]["psnr"]))
        print(f"{weights.stem}: steps {card['steps']} lambda {card['lmbda']} Kodak {card['kodak']['bpp']:.4f} bpp "
              f"{card['kodak']['psnr']:.2f} dB MS-SSIM {card['kodak']['ms_ssim']:.4f}")
    print("\n| quality | λ | training steps | Kodak bpp | PSNR-RGB (dB) | MS-SSIM | file |")
    print("|---|---|---|---|---|---|---|")
    for weights in ours(BUNDLED_DIR):
        card = json.loads(weights.with_suffix(".json").read_text())
        kodak = card["kodak"]
        print(f"| {card['quality']} | {card['lmbda']} | {card['steps']} | {kodak['bpp']:.4f} | {kodak['psnr']:.2f} | "
              f"{kodak['ms_ssim']:.4f} | {weights.stat().st_size / 1e6:.1f} MB |")
    if len(points) >= 2:
        anchors = [("bmshj2018-factorized", BMSHJ2018_FACTORIZED), ("mbt2018-mean", MBT2018_MEAN)]
        if len(base_points) == len(points):
            anchors.insert(0, ("its base model, same images", base_points))
        for label, anchor in anchors:
            try:
                print(f"BD-rate vs {label}: {bd_rate(points, anchor):+.1f} %")
            except Exception as exc:  # curves that do not overlap in PSNR
                print(f"BD-rate vs {label}: not computable ({exc})")


if __name__ == "__main__":
    main()
