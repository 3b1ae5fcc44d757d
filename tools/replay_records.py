"""Replay recorded `eval` cells and compare: the same file size and true loss from the record's own
configuration (`RefinementConfig.from_dict(record["config"])`) and weights, or the first difference.

    python tools/replay_records.py RESULTS_FOLDER [--steps 25] [--quality 2] [--limit 2]

Checks that a redesign keeps committed figures reproducible (issue 44: the crops-before and
crops-after journals of results/gain-per-second replay byte for byte). The thread count of the
record's run (one, for Ray workers) is used.
"""

from __future__ import annotations

import argparse

import torch

import latentfit
from latentfit.config import RefinementConfig
from latentfit.evaluation.classical import is_classical
from latentfit.evaluation.runner import journal_records
from latentfit.imageio import center_crop
from latentfit.shared_data import data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--quality", type=int, default=2)
    parser.add_argument("--limit", type=int, default=2)
    args = parser.parse_args()
    records = [r for r in journal_records(args.results) if r.get("steps") == args.steps
               and r.get("quality") == args.quality and "config" in r and not is_classical(r["method"])]
    same = 0
    for record in records[: args.limit]:
        torch.set_num_threads(1)
        model = latentfit.load_model(record.get("model", "latentfit-msh"), record["quality"])
        if model.digest.hex() != record["weights_digest"]:
            raise SystemExit(f"{record['cell']}: made with other weights ({record['weights_digest']})")
        image = latentfit.load_image(data_dir(record["image"]))
        if (image.width, image.height) != (record["width"], record["height"]):
            image = center_crop(image, (record["width"], record["height"]))
        stats = latentfit.encode(image, model, RefinementConfig.from_dict(record["config"])).stats
        match = (stats["bytes"], stats["true_loss_final"]) == (record["bytes"], record["true_loss_final"])
        same += match
        print(f"{record['cell']}: recorded {record['bytes']} bytes, true loss {record['true_loss_final']:.6f}; "
              f"now {stats['bytes']} bytes, {stats['true_loss_final']:.6f} {'(same)' if match else '(DIFFERS)'}")
    print(f"{same} of {min(len(records), args.limit)} records replay exactly")


if __name__ == "__main__":
    main()
