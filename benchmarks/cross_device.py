"""Decode determinism across processes, thread counts and devices (not a test: needs a GPU for the
device part).

Every file is encoded once per encoder (cpu with 1 and 2 threads, cuda when present) and decoded in
fresh subprocesses by every decoder (cpu 1 thread, cpu 2 threads, cuda). For each pair it prints
whether the decoder refused the file (index checksum mismatch), and otherwise how many pixels differ
from the encoder's own reconstruction and by how much.

Usage: python benchmarks/cross_device.py [--images DIR] [--limit 4] [--method none,sga+ssl] [--steps 30] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from latentfit.shared_data import data_dir

DECODE = """
import sys, json, numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
import latentfit
from latentfit.bitstream import from_bytes
data = open(sys.argv[1], 'rb').read()
stream = from_bytes(data, sys.argv[1])
model = latentfit.load_model(stream.model_name, stream.quality, device=sys.argv[2])
try:
    pixels = latentfit.decode(data, model, sys.argv[1])
    np.save(sys.argv[4], pixels)
    print(json.dumps({"ok": True}))
except latentfit.BitstreamError as error:
    print(json.dumps({"ok": False, "error": str(error)}))
"""


def main() -> None:
    import latentfit

    parser = argparse.ArgumentParser()
    parser.add_argument("--images", default=str(data_dir("kodak")))
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--method", default="none,sga+ssl")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", default="1,2", help="CPU thread counts to encode and decode with")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    encoders = [("cpu", int(t)) for t in args.threads.split(",")] + [("cuda", 1)] * ("cuda" in devices)
    decoders = encoders
    images = sorted(Path(args.images).glob("*.png"))[: args.limit]
    summary = {"pairs": 0, "identical": 0, "refused": 0, "differing": 0, "max_abs": 0, "differing_pixels": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for path in images:
            image = latentfit.load_image(path)
            for method in args.method.split(","):
                for device, threads in encoders:
                    torch.set_num_threads(threads)
                    model = latentfit.load_model(device=device)
                    config = latentfit.RefinementConfig(method=method, steps=args.steps, seed=0, tile=None)
                    result = latentfit.encode(image, model, config)
                    file = Path(tmp) / f"{path.stem}-{method}-{device}{threads}.lfc"
                    file.write_bytes(result.data)
                    for dec_device, dec_threads in decoders:
                        out = Path(tmp) / "decoded.npy"
                        reply = subprocess.run([sys.executable, "-c", DECODE, str(file), dec_device, str(dec_threads), str(out)],
                                               capture_output=True, text=True, check=True)
                        answer = json.loads(reply.stdout.strip().splitlines()[-1])
                        summary["pairs"] += 1
                        tag = f"{path.stem} {method:8s} enc {device}/{threads} -> dec {dec_device}/{dec_threads}:"
                        if not answer["ok"]:
                            summary["refused"] += 1
                            print(tag, "refused:", answer["error"])
                            continue
                        decoded = np.load(out)
                        diff = np.abs(decoded.astype(np.int16) - result.decoded.astype(np.int16))
                        count = int((diff > 0).sum())
                        summary["identical"] += count == 0
                        summary["differing"] += count > 0
                        summary["max_abs"] = max(summary["max_abs"], int(diff.max()))
                        summary["differing_pixels"] += count
                        print(tag, "identical" if count == 0 else
                              f"{count} of {diff.size} values differ (max {int(diff.max())})", flush=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
