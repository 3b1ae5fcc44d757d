"""Train the four bundled `latentfit-msh` qualities side by side on one GPU, in timed phases.

A GPU lease is short (minutes per command), so training runs in phases of `--seconds` each. All four
qualities train at once as separate processes on the same GPU (one small model leaves most of an
H100 idle). A phase that is not `--final` trains at a constant learning rate and records each
quality's measured steps per second; the `--final` phase sets the run's total step count so that it
ends inside the phase, with the learning-rate drop (×0.1) over its last `--drop-fraction` of steps.
Every phase resumes from `<root>/q<Q>/last.pt` (model, optimisers, step, random state); a quality
without a checkpoint starts from `<init-dir>/latentfit-msh-<Q>.pt` (or the quality that `--init-qualities`
maps it to, for a new λ set). Each phase exports fp16 weights
and a model card to `--export-dir` (SIGTERM makes the trainer checkpoint and export).

Usage: python tools/train_bundled_gpu.py --data DIR [--data DIR2] --seconds 500 [--final]
           [--root /tmp/latentfit-train] [--init-dir src/latentfit/weights] [--export-dir OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

# λ per quality: one step of CompressAI's ladder below the first GPU runs (0.0067 … 0.0483), so the
# four qualities cover about 0.25–1.0 bpp on Kodak (the range).
QUALITIES = {1: 0.0035, 2: 0.0067, 3: 0.013, 4: 0.025}


def checkpoint_step(path: Path) -> int:
    if not path.exists():
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=True)["step"])


def modified(path: Path) -> float | None:
    return path.stat().st_mtime if path.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", action="append", required=True, help="training image folder (repeatable)")
    parser.add_argument("--seconds", type=float, required=True, help="wall time of this phase")
    parser.add_argument("--final", action="store_true", help="end the run inside this phase, with the lr drop")
    parser.add_argument("--rate", type=float, default=5.0, help="steps/s assumed where no earlier phase measured it")
    parser.add_argument("--drop-fraction", type=float, default=0.3)
    parser.add_argument("--root", default="/tmp/latentfit-train")
    parser.add_argument("--init-dir", default="src/latentfit/weights")
    parser.add_argument("--export-dir", default=os.environ.get("OUT", "export"))
    parser.add_argument("--qualities", default="1,2,3,4")
    parser.add_argument("--init-qualities", default="",
                        help="which committed quality each new quality starts from, e.g. 1,1,2,3 (default: its own)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()

    root, export = Path(args.root), Path(args.export_dir)
    export.mkdir(parents=True, exist_ok=True)
    started = time.time()
    processes = {}
    qualities = [int(q) for q in args.qualities.split(",")]
    init_from = dict(zip(qualities, [int(q) for q in args.init_qualities.split(",")] if args.init_qualities else qualities))
    for quality in qualities:
        directory = root / f"q{quality}"
        directory.mkdir(parents=True, exist_ok=True)
        step = checkpoint_step(directory / "last.pt")
        rate_file = directory / "rate.json"
        steps, drop_at = 10**8, 0.99
        if args.final:
            rate = json.loads(rate_file.read_text())["steps_per_second"] if rate_file.exists() else args.rate
            planned = int(rate * args.seconds * 0.95)
            steps = step + planned
            drop_at = (step + (1 - args.drop_fraction) * planned) / steps
        command = [sys.executable, "-m", "latentfit.cli", "train", "--device", args.device, "--checkpoint-dir",
                   str(directory), "--architecture", "mbt2018-mean", "--N", "128", "--M", "192",
                   "--lmbda", str(QUALITIES[quality]), "--steps", str(steps), "--lr-drop-at", f"{drop_at:.6f}",
                   "--lr", str(args.lr), "--batch-size", str(args.batch_size), "--patch-size", str(args.patch_size),
                   "--checkpoint-every", "500", "--validate-every", str(10**9), "--seed", str(quality),
                   "--threads", "3", "--export", str(export / f"latentfit-msh-{quality}.pt"),
                   "--name", "latentfit-msh", "--quality", str(quality)]
        for folder in args.data:
            command += ["--train-dir", folder]
        if step == 0:
            command += ["--init-from", str(Path(args.init_dir) / f"latentfit-msh-{init_from[quality]}.pt")]
        log = open(directory / "log.txt", "a")
        processes[quality] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), step, steps, log)
        print(f"q{quality}: from step {step} to {steps} (lr drop at step {int(drop_at * steps)})", flush=True)

    # (time, step) at each new checkpoint, so the rate the next phase plans with excludes start-up time.
    seen = {quality: [] for quality in processes}
    mtimes = {quality: modified(root / f"q{quality}" / "last.pt") for quality in processes}
    deadline = started + args.seconds
    while time.time() < deadline and any(p.poll() is None for p, *_ in processes.values()):
        time.sleep(2)
        for quality in processes:
            path = root / f"q{quality}" / "last.pt"
            if modified(path) != mtimes[quality]:
                mtimes[quality] = modified(path)
                try:
                    seen[quality].append((time.time(), checkpoint_step(path)))
                except Exception:  # replaced while being read: the next poll reads it
                    mtimes[quality] = None
    for process, *_ in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for quality, (process, step, steps, log) in processes.items():
        process.wait()
        log.close()
        directory = root / f"q{quality}"
        now = checkpoint_step(directory / "last.pt")
        elapsed = time.time() - started
        rate = (now - step) / elapsed
        if len(seen[quality]) >= 2 and seen[quality][-1][1] > seen[quality][0][1]:
            (t0, s0), (t1, s1) = seen[quality][0], seen[quality][-1]
            rate = (s1 - s0) / (t1 - t0)
        (directory / "rate.json").write_text(json.dumps({"steps_per_second": rate}))
        tail = (directory / "log.txt").read_text().splitlines()[-3:]
        print(f"q{quality}: step {step} -> {now} in {elapsed:.0f} s ({rate:.1f} step/s), exit {process.returncode}; "
              f"{' | '.join(line[-160:] for line in tail)}", flush=True)


if __name__ == "__main__":
    main()
