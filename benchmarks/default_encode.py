"""The default encode of whole 768x512 Kodak images: seconds and gain, before and after (issue 31).

Each run is one `latentfit encode IMAGE --json` process with the settings of a variant, one at a time,
the variants alternating image by image so that they share the machine's state. The gain of a run is
its true-loss reduction (`true_loss_initial - true_loss_final`) as a fraction of a reference run's,
by default the fp32 500-step default of before the bf16 proxy (`--reference`).

Variants (VARIANT=extra encode options; `@NAME` environment settings as `@LATENTFIT_TUNE_MALLOC=0`):
- `before`: today's default before this change: evaluations every 10 steps, glibc's own malloc;
- `after`: the default now.

Journalled (`--out`/journal.jsonl: one line per run, a re-run skips finished runs), so an interrupted
measurement continues; prints a Markdown table and medians.

    python benchmarks/default_encode.py --images kodim05,kodim15,kodim20,kodim23 \\
        --out results/default-encode --reference "ref=--precision fp32 --threads 1"
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from latentfit.evaluation.journal import Journal
from latentfit.shared_data import data_dir

KODAK = data_dir("kodak")
VARIANTS = {
    "before": "--evaluations every @LATENTFIT_TUNE_MALLOC=0",
    "after": "",
}


def parse_variant(text: str) -> tuple[str, list[str], dict]:
    name, _, spec = text.partition("=")
    spec = VARIANTS.get(name, "") if not spec and name in VARIANTS else spec
    words = shlex.split(spec)
    env = dict(word[1:].split("=", 1) for word in words if word.startswith("@"))
    return name, [word for word in words if not word.startswith("@")], env


def run(image: str, options: list[str], env: dict) -> dict:
    latentfit = str(Path(sys.executable).with_name("latentfit"))
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([latentfit, "encode", str(KODAK / f"{image}.png"), "-o", str(Path(tmp) / "x.lfc"),
                               "--json", "--no-progress", *options], capture_output=True, text=True,
                              env=os.environ | env)
    if proc.returncode:
        sys.exit(f"{image} {options}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="kodim05,kodim15,kodim20,kodim23")
    parser.add_argument("--variants", default="before,after", help="NAME or NAME=OPTIONS, comma-separated")
    parser.add_argument("--reference", default="ref=--precision fp32 --threads 1",
                        help="NAME=OPTIONS of the run whose gain is 100 %%")
    parser.add_argument("--out", type=Path, default=Path("results/default-encode"))
    parser.add_argument("--reference-only", action="store_true", help="only the reference runs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    journal = Journal(args.out / "journal.jsonl")
    done = {(row["image"], row["variant"]): row for row in journal.records()}
    reference = parse_variant(args.reference)
    variants = [parse_variant(v) for v in args.variants.split(",")] if not args.reference_only else []
    images = args.images.split(",")
    for image in images:
        for name, options, env in [reference, *variants]:
            if (image, name) in done:
                continue
            stats = run(image, options, env)
            row = {"image": image, "variant": name, "options": options, "env": env} | {
                key: stats[key] for key in ("seconds", "refine_seconds", "coding_seconds", "check_seconds",
                                            "true_loss_initial", "true_loss_final", "bytes", "psnr", "steps_run",
                                            "best_step", "precision", "weights_digest", "seed", "config")}
            journal.append(row)
            done[(image, name)] = row
            print(f"{image} {name}: {row['seconds']:.1f} s, {row['true_loss_initial']:.4f} -> "
                  f"{row['true_loss_final']:.4f}", file=sys.stderr, flush=True)

    print("| image | variant | seconds | refine / coding / check (s) | true loss | gain vs reference | bytes |")
    print("|---|---|---|---|---|---|---|")
    fractions: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for image in images:
        ref = done.get((image, reference[0]))
        for name, _, _ in [reference, *variants]:
            row = done.get((image, name))
            if row is None:
                continue
            gain = row["true_loss_initial"] - row["true_loss_final"]
            fraction = gain / (ref["true_loss_initial"] - ref["true_loss_final"]) if ref else float("nan")
            fractions.setdefault(name, []).append(fraction)
            seconds.setdefault(name, []).append(row["seconds"])
            print(f"| {image} | {name} | {row['seconds']:.1f} | {row['refine_seconds']:.1f} / "
                  f"{row['coding_seconds']:.2f} / {row['check_seconds']:.2f} | {row['true_loss_initial']:.4f} → "
                  f"{row['true_loss_final']:.4f} | {100 * fraction:.1f} % | {row['bytes']:,} |")
    print()
    for name in seconds:
        print(f"- {name}: median {statistics.median(seconds[name]):.1f} s (max {max(seconds[name]):.1f}), "
              f"gain {100 * min(fractions[name]):.1f}–{100 * max(fractions[name]):.1f} % of the reference's")


if __name__ == "__main__":
    main()
