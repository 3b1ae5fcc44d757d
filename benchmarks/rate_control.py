"""Rate control (issue 28): accuracy, R-D and cost of `encode(..., target=...)` on Kodak.

For each image (256x256 centre crops by default), the bundled family's plain encodes give the
image's range: three `bytes` targets at 1/6, 1/2 and 5/6 of the way from quality 1's file to quality
4's (geometrically), and three `psnr` targets at the same fractions of their PSNR range. Each target
is one encode at the default settings (sga+ssl, `--steps`); the baseline is the default encode of
each quality at its own λ, same steps, same processes (side by side, so the time ratio is fair).
Records go to a resumable JSONL; `--report` prints the Markdown tables.

`--kinds ms-ssim` (issue 46): three MS-SSIM targets at the same fractions of the MS-SSIM range (in dB),
each encoded as `--target-ms-ssim` does (refined for `mix:0.5`) and refined for `mse` (kind
`ms-ssim@mse`), to show what refining for the target's own measure saves.

    python benchmarks/rate_control.py --out results/rate-control/crops.jsonl --workers 2
    python benchmarks/rate_control.py --out results/rate-control/crops.jsonl --report
    python benchmarks/rate_control.py --out results/rate-control/ms-ssim.jsonl --kinds ms-ssim --no-baseline \
        --images kodim01,kodim03,kodim05,kodim07,kodim09,kodim11
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

from latentfit.evaluation.journal import Journal
from latentfit.parallel import run_tasks
from latentfit.shared_data import data_dir

ROOT = Path(__file__).resolve().parent.parent
KODAK = data_dir("kodak")
FRACTIONS = (1 / 6, 1 / 2, 5 / 6)
_FAMILY = None


def _family():
    global _FAMILY
    import torch

    import latentfit

    if _FAMILY is None:
        torch.set_num_threads(1)
        _FAMILY = latentfit.load_family()
    return _FAMILY


def _image(name: str, crop: int | None):
    import latentfit
    from latentfit.imageio import center_crop

    image = latentfit.load_image(KODAK / f"{name}.png")
    return center_crop(image, (crop, crop)) if crop else image


def _db(ms_ssim: float) -> float:
    return -10 * math.log10(1 - ms_ssim)


def targets_for(name: str, crop: int | None, fractions=FRACTIONS, kinds=("bytes", "psnr")) -> list[tuple[str, float]]:
    """The image's targets of each kind from its plain encodes at the lowest and highest quality."""
    import latentfit

    family = _family()
    image = _image(name, crop)
    config = latentfit.RefinementConfig(method="none")
    low, high = (latentfit.encode(image, family[i], config).stats for i in (0, -1))
    sizes = [round(low["bytes"] * (high["bytes"] / low["bytes"]) ** f) for f in fractions]
    psnrs = [round(low["psnr"] + (high["psnr"] - low["psnr"]) * f, 2) for f in fractions]
    dbs = [_db(low["ms_ssim"]) + (_db(high["ms_ssim"]) - _db(low["ms_ssim"])) * f for f in fractions]
    ms_ssims = [round(1 - 10 ** (-d / 10), 4) for d in dbs]
    chosen = {"bytes": [("bytes", v) for v in sizes], "psnr": [("psnr", v) for v in psnrs],
              "ms-ssim": [(k, v) for v in ms_ssims for k in ("ms-ssim", "ms-ssim@mse")]}
    return [target for kind in kinds for target in chosen[kind]]


def run_job(job: dict) -> dict:
    import latentfit

    family = _family()
    image = _image(job["image"], job["crop"])
    config = latentfit.RefinementConfig(steps=job["steps"], seed=0)
    if job["kind"] == "baseline":
        model = next(m for m in family if m.quality == job["quality"])
        stats = latentfit.encode(image, model, config).stats
    else:
        kind, _, distortion = job["kind"].partition("@")
        if kind == "ms-ssim":  # as --target-ms-ssim: refined for mix:0.5 unless told
            config = latentfit.RefinementConfig(steps=job["steps"], seed=0, distortion=distortion or "mix:0.5")
        try:
            stats = latentfit.encode(image, family, config, target=latentfit.Target(kind, job["value"])).stats
        except latentfit.LatentfitError as exc:
            return job | {"error": str(exc)}
    keep = ("bytes", "bpp", "psnr", "quality", "lmbda", "lmbda_start", "lmbda_probes", "real_encodes", "seconds",
            "refine_seconds", "steps_run", "weights_digest", "seed", "target", "achieved", "ms_ssim", "distortion")
    return job | {k: stats[k] for k in keep if k in stats}


def key(job: dict) -> str:
    return f"{job['image']}|{job['crop']}|{job['steps']}|{job['kind']}|{job.get('value', job.get('quality'))}"


def jobs_for(images: list[str], crop: int | None, steps: int, fractions=FRACTIONS, baseline=True,
             kinds=("bytes", "psnr")) -> list[dict]:
    jobs = []
    for name in images:
        base = {"image": name, "crop": crop, "steps": steps}
        jobs += [base | {"kind": "baseline", "quality": q} for q in (1, 2, 3, 4)] if baseline else []
        jobs += [base | {"kind": kind, "value": value} for kind, value in targets_for(name, crop, fractions, kinds)]
    return jobs


def run(args) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    journal = Journal(out)
    done = {key(record) for record in journal.records()}
    images = args.images.split(",") if args.images else [f"kodim{i:02d}" for i in range(1, 25)]
    crop = args.crop or None
    fractions = [float(f) for f in args.fractions.split(",")] if args.fractions else FRACTIONS
    kinds = tuple(args.kinds.split(","))
    jobs = [j for j in jobs_for(images, crop, args.steps, fractions, not args.no_baseline, kinds) if key(j) not in done]
    print(f"{len(jobs)} encodes to run", file=sys.stderr)
    with journal.writer() as append:  # each encode a task of a local Ray instance of `--workers` CPUs
        for record in run_tasks(run_job, [(job,) for job in jobs], args.workers):
            append(record)


def report(path: Path) -> None:
    from latentfit.evaluation.bdrate import bd_rate

    records = Journal(path).records()
    base = {(r["image"], r["quality"]): r for r in records if r["kind"] == "baseline"}
    tries = [r for r in records if r["kind"] != "baseline"]
    steps = sorted({r["steps"] for r in records})
    images = sorted({r["image"] for r in records})
    print(f"{len(images)} images ({'crops ' + str(records[0]['crop']) + 'px' if records[0]['crop'] else 'full size'}), "
          f"steps {steps}, sga+ssl defaults, seed 0, weights {sorted({r.get('weights_digest') for r in records} - {None})}\n")
    print("| target | encodes | met | refused / failed | median miss | worst miss | median λ probes | median real encodes |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("bytes", "psnr", "ms-ssim", "ms-ssim@mse"):
        rs = [r for r in tries if r["kind"] == kind]
        ok = [r for r in rs if "error" not in r]
        if kind == "bytes":
            miss = [(r["value"] - r["bytes"]) / r["value"] * 100 for r in ok]
            met = sum(r["bytes"] <= r["value"] for r in ok)
            unit = "% under"
        elif kind.startswith("ms-ssim"):
            miss = [_db(r["ms_ssim"]) - _db(r["value"]) for r in ok]
            met = sum(r["ms_ssim"] >= r["value"] for r in ok)
            unit = " dB (MS-SSIM) over"
        else:
            miss = [r["psnr"] - r["value"] for r in ok]
            met = sum(r["psnr"] >= r["value"] for r in ok)
            unit = " dB over"
        if not ok:
            continue
        print(f"| {kind} | {len(rs)} | {met} of {len(ok)} | {len(rs) - len(ok)} | {statistics.median(miss):.2f}{unit} | "
              f"{max(miss):.2f}{unit} | {statistics.median(r['lmbda_probes'] for r in ok):.0f} | "
              f"{statistics.median(r['real_encodes'] for r in ok):.0f} |")
    for r in tries:
        if "error" in r:
            print(f"\n- {r['image']} {r['kind']} {r['value']}: {r['error']}")
    # an MS-SSIM target refined for mix:0.5 against the same target refined for mse: the file sizes
    pairs = {(r["image"], r["value"]): r for r in tries if r["kind"] == "ms-ssim@mse" and "error" not in r}
    saved = [r["bytes"] / pairs[(r["image"], r["value"])]["bytes"] - 1 for r in tries
             if r["kind"] == "ms-ssim" and "error" not in r and (r["image"], r["value"]) in pairs]
    if saved:
        print(f"\nMS-SSIM targets refined for mix:0.5 against the same targets refined for mse: files median "
              f"{statistics.median(saved) * 100:+.1f} %, mean {statistics.mean(saved) * 100:+.1f} %, "
              f"{sum(v < 0 for v in saved)} of {len(saved)} smaller.")
    # cost: each target encode against the default encode of the quality it chose, same image
    ratios = [r["seconds"] / base[(r["image"], r["quality"])]["seconds"] for r in tries
              if "error" not in r and (r["image"], r["quality"]) in base]
    if not ratios:
        return
    print(f"\nCost: median {statistics.median(ratios):.2f}x, worst {max(ratios):.2f}x the default encode of the same "
          f"image at the quality it chose, same steps ({len(ratios)} encodes).")
    # R-D: per image, the six target points against the four qualities refined at their own λ
    rates, gains, chosen = [], [], []
    for image in images:
        anchor = sorted((base[(image, q)]["bpp"], base[(image, q)]["psnr"]) for q in (1, 2, 3, 4) if (image, q) in base)
        test = sorted((r["bpp"], r["psnr"]) for r in tries if r["image"] == image and "error" not in r)
        if len(anchor) == 4 and len(test) >= 4:
            try:
                rates.append(bd_rate(anchor, test))
            except Exception:
                pass
        for r in tries:
            if r["image"] != image or r["kind"] != "bytes" or "error" in r:
                continue
            fitting = [base[(image, q)] for q in (1, 2, 3, 4) if (image, q) in base and base[(image, q)]["bytes"] <= r["value"]]
            if fitting:
                best = max(fitting, key=lambda b: b["psnr"])
                gains.append(r["psnr"] - best["psnr"])
                chosen.append(best["bytes"] / r["value"])
    rates = [v for v in rates if math.isfinite(v)]
    print(f"\nR-D: BD-rate of the target-mode points against the four qualities refined at their own λ, per image: "
          f"mean {statistics.mean(rates):+.2f} %, median {statistics.median(rates):+.2f} % ({len(rates)} images).")
    if gains:
        print(f"At each bytes target, against the best quality whose own-λ file fits it: {statistics.mean(gains):+.3f} dB "
              f"mean ({sum(g > 0 for g in gains)} of {len(gains)} better); that file uses a median "
              f"{statistics.median(chosen) * 100:.0f} % of the target.")
    qualities = [r["quality"] for r in tries if "error" not in r]
    print(f"\nQualities chosen: {', '.join(f'q{q}: {qualities.count(q)}' for q in sorted(set(qualities)))}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/rate-control/crops.jsonl")
    parser.add_argument("--images", default="")
    parser.add_argument("--crop", type=int, default=256, help="centre crop size (0: full images)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fractions", default="", help="where in each image's range the targets lie "
                        "(default 1/6, 1/2, 5/6)")
    parser.add_argument("--no-baseline", action="store_true", help="targets only (no own-λ encodes: no cost or R-D)")
    parser.add_argument("--kinds", default="bytes,psnr", help="target kinds: bytes, psnr, ms-ssim")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        report(Path(args.out))
    else:
        run(args)


if __name__ == "__main__":
    main()
