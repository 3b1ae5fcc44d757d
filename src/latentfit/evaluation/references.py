"""Published R-D curves drawn as references where we cannot run the codec (not measured here).

`KODAK_VTM`: VTM (H.266/VVC intra) on the 24 full Kodak images, PSNR-RGB against bpp, as CompressAI
publishes it (`results/image/kodak/vtm.json` in InterDigitalInc/CompressAI).
"""

from __future__ import annotations

KODAK_VTM_LABEL = "VTM (published by CompressAI, not measured)"
KODAK_VTM: list[tuple[float, float]] = list(zip(
    [0.04824490017361111, 0.11249542236328125, 0.24581654866536465, 0.4905454847547744, 0.8748101128472224,
     1.43084971110026, 2.3246070014105906, 3.6326090494791665],
    [26.14484539430146, 28.493021754424603, 31.199873720014093, 34.26153257289846, 37.419793158067485,
     40.42444421698711, 43.505766973634486, 46.59176008512777],
))


def references_for(records: list[dict]) -> dict[str, list[tuple[float, float]]]:
    """The published curves that describe the same images: VTM when every record is a full-size
    (768x512 or 512x768) Kodak image."""
    full_kodak = records and all(str(r.get("image", "")).startswith("kodak/")
                                 and {r.get("width"), r.get("height")} == {768, 512} for r in records)
    return {KODAK_VTM_LABEL: KODAK_VTM} if full_kodak else {}
