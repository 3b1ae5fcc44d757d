"""Build the content sets of the content-adaptation study (#30) on this machine, from nothing
downloaded at run time.

    python tools/make_content_sets.py screen      # screen content: Python's HTML docs through headless Chromium
    python tools/make_content_sets.py resolution  # CLIC 2025 validation photos at full size and halved
    python tools/make_content_sets.py lease       # their lossless WebP copies for tools/content_study_gpu.sh

**screen**: pages of the HTML documentation that Debian's `python3-doc` installs
(`apt-get install python3-doc chromium`), rendered by headless Chromium in a 1280x2160 window
(device scale 1, no scroll bars); each image is the 1280x720 band below the page's first screen
(the body text, code and tables a reader sees after scrolling once), or the first screen when that
band is nearly blank. The pages (index, search and module-index pages left out) are shuffled with
`--seed` and split by page into a disjoint `test` set (`--test`, default 32) and a `finetune` set
(`--finetune`, default 300). `manifest.json` records every image's page, band and split, the docs
package's and Chromium's versions, and the settings, so that the split can be rebuilt.

**resolution**: the photos of `clic2025-valid8` (about 2048 px on the long side) as they are (`full/`,
a link to each original) and downscaled by 2 with Pillow's Lanczos filter (`half/`, PNG), the two
halves of Campos et al.'s resolution experiment (a model trained at one scale, used at another).

Images go under `--out` (default `data/content-sets/`, ignored by git: never commit images);
re-running skips what is already there and fails on a manifest of other settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from latentfit.shared_data import PROJECT, data_dir  # noqa: E402

DOCS = Path("/usr/share/doc/python3-doc/html")
WINDOW = (1280, 2160)
BAND = 720
#: A band with fewer non-white pixels than this share is "nearly blank" (the end of a short page).
MIN_INK = 0.03
SKIPPED = ("genindex", "py-modindex", "search", "contents", "404")
SKIPPED_DIRS = ("_sources", "_static", "_images", "_downloads")


def fail(message: str) -> None:
    print(f"make_content_sets: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def package_version(name: str) -> str:
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        for folder in os.environ.get("PATH", "").split(os.pathsep):
            if (Path(folder) / name).is_file():
                return str(Path(folder) / name)
    fail("no chromium on PATH (apt-get install chromium)")


def pages(docs: Path) -> list[str]:
    """Every documentation page, relative to `docs`, sorted; index-like pages left out."""
    found = []
    for path in docs.rglob("*.html"):
        relative = path.relative_to(docs)
        if relative.parts[0] in SKIPPED_DIRS or path.stem.startswith(SKIPPED):
            continue
        found.append(relative.as_posix())
    return sorted(found)


def ink(pixels: np.ndarray) -> float:
    """Share of pixels that are not (near) white."""
    return float((pixels.min(axis=2) < 235).mean())


def render(browser: str, page: Path, scratch: Path) -> np.ndarray:
    shot = scratch / "shot.png"
    shot.unlink(missing_ok=True)
    command = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--force-device-scale-factor=1", f"--window-size={WINDOW[0]},{WINDOW[1]}",
               f"--screenshot={shot}", page.as_uri()]
    subprocess.run(command, capture_output=True, timeout=120, cwd=scratch)
    if not shot.exists():
        fail(f"{page}: chromium wrote no screenshot")
    with Image.open(shot) as image:
        return np.asarray(image.convert("RGB"))


def band(pixels: np.ndarray) -> tuple[int, np.ndarray]:
    """(offset, the 1280x720 band): the second screen, else the first."""
    second = pixels[BAND:2 * BAND]
    if second.shape[0] == BAND and ink(second) >= MIN_INK:
        return BAND, second
    return 0, pixels[:BAND]


def save_png(path: Path, pixels: np.ndarray) -> None:
    partial = path.with_name(path.name + ".partial")
    Image.fromarray(pixels).save(partial, format="PNG")
    os.replace(partial, path)


def check_manifest(path: Path, settings: dict) -> dict:
    if not path.exists():
        return {}
    manifest = json.loads(path.read_text())
    if manifest.get("settings") != settings:
        fail(f"{path}: made with other settings {manifest.get('settings')}; use another --out")
    return manifest


def screen(args) -> None:
    docs = Path(args.docs)
    if not docs.is_dir():
        fail(f"{docs}: no HTML docs there (apt-get install python3-doc)")
    browser = chromium()
    settings = {"docs": str(docs), "seed": args.seed, "test": args.test, "finetune": args.finetune,
                "window": list(WINDOW), "band": BAND, "min_ink": MIN_INK}
    out = Path(args.out) / "screen-content"
    manifest_path = out / "manifest.json"
    manifest = check_manifest(manifest_path, settings) or {
        "settings": settings, "python3_doc": package_version("python3-doc"),
        "chromium": subprocess.run([browser, "--version"], capture_output=True, text=True).stdout.strip(),
        "images": {}}
    order = pages(docs)
    random.Random(args.seed).shuffle(order)
    if len(order) < args.test + args.finetune:
        fail(f"{docs}: {len(order)} pages, fewer than --test {args.test} + --finetune {args.finetune}")
    splits = [("test", order[:args.test]), ("finetune", order[args.test:args.test + args.finetune])]
    with tempfile.TemporaryDirectory() as scratch:
        for split, chosen in splits:
            (out / split).mkdir(parents=True, exist_ok=True)
            for index, page in enumerate(chosen):
                name = f"{split}/{index:03d}-" + page.removesuffix(".html").replace("/", "-") + ".png"
                if name in manifest["images"] and (out / name).exists():
                    continue
                offset, pixels = band(render(browser, docs / page, Path(scratch)))
                save_png(out / name, np.ascontiguousarray(pixels))
                manifest["images"][name] = {"page": page, "split": split, "band_offset": offset,
                                            "sha256": hashlib.sha256((out / name).read_bytes()).hexdigest()}
                manifest_path.write_text(json.dumps(manifest, indent=1))
                print(f"{name} ({offset})", flush=True)
    print(f"{out}: {sum(1 for v in manifest['images'].values() if v['split'] == 'test')} test and "
          f"{sum(1 for v in manifest['images'].values() if v['split'] == 'finetune')} fine-tuning images")


def resolution(args) -> None:
    source = data_dir("clic2025-valid8")
    photos = sorted(source.glob("*.png"))
    if not photos:
        fail(f"{source}: no CLIC photos")
    out = Path(args.out) / "clic-resolution"
    settings = {"source": "clic2025-valid8", "factor": 2, "filter": "lanczos"}
    manifest_path = out / "manifest.json"
    manifest = check_manifest(manifest_path, settings) or {"settings": settings, "images": {}}
    for folder in ("full", "half"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for photo in photos:
        full, half = out / "full" / photo.name, out / "half" / photo.name
        if not full.exists():
            full.symlink_to(photo.resolve())
        with Image.open(photo) as image:
            image = image.convert("RGB")
            size = image.size
            if not half.exists():
                reduced = image.resize((size[0] // 2, size[1] // 2), Image.Resampling.LANCZOS)
                save_png(half, np.asarray(reduced))
        manifest["images"][photo.name] = {"full": list(size), "half": [size[0] // 2, size[1] // 2]}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    print(f"{out}: {len(photos)} photos, full/ and half/")


def lease(args) -> None:
    """The GPU lease's copies (`tools/content_study_gpu.sh`) in `.gpu-data/content`: lossless WebP (a
    quarter of the screenshots' PNG bytes), so that they fit the lease's 64 MiB beside the code and the
    bundled `latentfit-msh`: fine-tuning pages 0–199 for training and 280–299 for validation, the CLIC
    photos full and halved, and kodim23 for the step-speed benchmark."""
    sets, target = Path(args.out), PROJECT / ".gpu-data" / "content"
    finetune = sorted((sets / "screen-content" / "finetune").glob("*.png"))
    if len(finetune) < 300:
        fail(f"{sets / 'screen-content' / 'finetune'}: {len(finetune)} pages, 300 needed (run `screen` first)")
    jobs = [(p, target / "screen-train") for p in finetune[:200]] + [(p, target / "screen-valid") for p in finetune[280:300]]
    for size in ("full", "half"):
        jobs += [(p, target / f"clic-{size}") for p in sorted((sets / "clic-resolution" / size).glob("*.png"))]
    for source, folder in jobs:
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{source.stem}.webp"
        if not out.exists():
            with Image.open(source) as image:
                pixels = image.convert("RGB")
            pixels.save(out, lossless=True, method=4, quality=100)
            with Image.open(out) as check:
                if not np.array_equal(np.asarray(check.convert("RGB")), np.asarray(pixels)):
                    fail(f"{out}: not lossless")
    shutil.copyfile(data_dir("kodak") / "kodim23.png", target / "kodim23.png")
    print(f"{target}: {len(jobs)} images and kodim23.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("set", choices=["screen", "resolution", "lease"])
    parser.add_argument("--out", default=str(PROJECT / "data" / "content-sets"))
    parser.add_argument("--docs", default=str(DOCS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test", type=int, default=32)
    parser.add_argument("--finetune", type=int, default=300)
    args = parser.parse_args()
    {"screen": screen, "resolution": resolution, "lease": lease}[args.set](args)


if __name__ == "__main__":
    main()
