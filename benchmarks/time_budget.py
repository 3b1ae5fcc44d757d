"""`--time-budget` against the wall clock: whole-image CLI encodes at several budgets (issue 34).

Each cell is one `latentfit encode IN --time-budget B --json` process; `seconds` counts from reading
the image to the file on disk (process start-up and model loading, paid once per folder, are not in
it). Prints a Markdown table: seconds, seconds / budget, steps run, why it stopped, where the time went.

    python benchmarks/time_budget.py --images kodim05,kodim23 --budgets 5,8,20,60
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from latentfit.shared_data import data_dir

ROOT = Path(__file__).resolve().parent.parent
KODAK = data_dir("kodak")
PARTS = ["read_seconds", "refine_seconds", "coding_seconds", "check_seconds", "write_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="kodim05,kodim23")
    parser.add_argument("--budgets", default="5,8,20,60")
    parser.add_argument("--method", default="sga+ssl")
    args = parser.parse_args()
    latentfit = str(Path(sys.executable).with_name("latentfit"))
    print("| image | budget (s) | seconds | / budget | steps run | stopped by | read / refine / coding / check / write (s) | true loss before → after |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.images.split(","):
            for budget in args.budgets.split(","):
                out = Path(tmp) / f"{name}-{budget}.lfc"
                proc = subprocess.run([latentfit, "encode", str(KODAK / f"{name}.png"), "-o", str(out), "--method",
                                       args.method, "--time-budget", budget, "--json", "--force", "--no-progress"],
                                      capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(proc.stderr)
                s = json.loads(proc.stdout)
                parts = " / ".join(f"{s[p]:.2f}" for p in PARTS)
                print(f"| {name} | {budget} | {s['seconds']:.2f} | {s['seconds'] / float(budget):.3f} | {s['steps_run']} | "
                      f"{s['stopped_by']} | {parts} | {s['true_loss_initial']:.4f} → {s['true_loss_final']:.4f} |",
                      flush=True)


if __name__ == "__main__":
    main()
