"""Carry an eval journal made before 2026-12-04 over to the journal identity of today.

Until then a journal's identity (`config_id` on every record) hashed a flat list of eval settings,
with special cases for the settings added later; it is now a hash of the protocol as
`RefinementConfig.to_dict()` records it (`EvalConfig.identity`). The cells themselves did not
change, so their records stay valid: this rewrites `config_id` only, after checking that every record
carries the old identity of exactly the settings given (the ones the journal was made with), and
refuses otherwise with nothing written.

    python tools/migrate_journal.py results/kodak-256 --crop 256x256
    python tools/migrate_journal.py results/kodak-full      # full images, the papers' protocol
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

from latentfit import __version__
from latentfit.config import PAPERS_PROTOCOL, RefinementConfig
from latentfit.evaluation.runner import EvalConfig
from latentfit.imageio import atomic_write_bytes


def old_identity(config: EvalConfig) -> str:
    """`EvalConfig.identity()` as it was until 2026-12-04."""
    protocol = config.refinement
    keys = {"model": config.model, "lmbda": protocol.lmbda, "lr": protocol.lr, "crop": config.crop,
            "seed": protocol.seed, "evaluate_every": protocol.evaluate_every, "version": __version__}
    if config.checkpoint:
        keys["checkpoint"] = Path(config.checkpoint).name
    if (protocol.lr_schedule, protocol.schedule) != ("constant", "papers"):
        keys |= {"lr_schedule": protocol.lr_schedule, "schedule": protocol.schedule}
        keys |= RefinementConfig(lr_schedule=protocol.lr_schedule, schedule=protocol.schedule).constants()
    return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="The results folder (its cells.jsonl is rewritten).")
    parser.add_argument("--crop", default=None, help="WxH, as given to eval.")
    parser.add_argument("--model", default=None)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--lmbda", type=float, default=None)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--lr-schedule", default="constant")
    parser.add_argument("--schedule", default="papers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evaluate-every", type=int, default=10)
    args = parser.parse_args()
    crop = tuple(int(v) for v in args.crop.lower().split("x")) if args.crop else None
    protocol = dataclasses.replace(PAPERS_PROTOCOL, lmbda=args.lmbda, lr=args.lr, lr_schedule=args.lr_schedule,
                                   schedule=args.schedule, seed=args.seed, evaluate_every=args.evaluate_every)
    config = EvalConfig(datasets=[], model=args.model, checkpoint=args.checkpoint, crop=crop, refinement=protocol)
    old, new = old_identity(config), config.identity()
    journal = args.results / "cells.jsonl"
    lines = journal.read_text().splitlines()
    out, moved = [], 0
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash: eval skips it too
        if record.get("config_id") == old:
            record["config_id"], moved = new, moved + 1
        elif record.get("config_id") != new:
            raise SystemExit(f"error: {journal}:{number}: identity {record.get('config_id')} is neither the old ({old}) "
                             "nor the new one of these settings; nothing written")
        out.append(json.dumps(record))
    atomic_write_bytes(journal, ("\n".join(out) + "\n").encode(), force=True)
    print(f"{journal}: {moved} of {len(out)} records moved from {old} to {new}")


if __name__ == "__main__":
    main()
