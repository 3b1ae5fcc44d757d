"""Classical codecs at their best settings and their bracketing sweeps (`latentfit.evaluation.classical`)."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st


from .conftest import kodak_image


@pytest.mark.parametrize("spec", ["jpeg", "webp", "avif:speed=8", "jpegxl:effort=3", "heic:preset=ultrafast",
                                  "jpeg2000"])
def test_each_classical_codec_reports_what_an_independent_decode_measures(spec):
    import io

    import numpy as np
    import imagecodecs
    import pillow_heif
    from PIL import Image
    from pytorch_msssim import ms_ssim as reference_ms_ssim

    from latentfit.evaluation.classical import classical_record, parse_spec

    pixels = np.asarray(Image.open(kodak_image()).convert("RGB"))[:192, :256].copy()  # MS-SSIM needs > 160 px
    codec, options = parse_spec(spec)
    low, high = codec.settings
    settings = [low + (high - low) // 4, low + 3 * (high - low) // 4]
    records = [classical_record(spec, s, pixels) for s in settings]
    assert records[0]["bpp"] < records[1]["bpp"] and records[0]["psnr"] < records[1]["psnr"], spec
    for setting, record in zip(settings, records):
        data, _ = codec.encode(pixels, setting, options)  # deterministic encoders: the same file again
        assert len(data) == record["bytes"] and record["bpp"] == pytest.approx(8 * len(data) / (192 * 256))
        if codec.name == "jpegxl":
            decoded = imagecodecs.jpegxl_decode(data)[..., :3]
        elif codec.name == "jpeg2000":
            decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # Pillow's OpenJPEG, not imagecodecs
        elif codec.name == "heic":
            heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
            decoded = np.asarray(heif.to_pillow().convert("RGB"))
        else:
            decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        mse = np.mean((pixels.astype(np.float64) - decoded.astype(np.float64)) ** 2)
        assert record["psnr"] == pytest.approx(10 * np.log10(255.0**2 / mse), abs=1e-6)
        as_tensor = [torch.from_numpy(a.copy()).permute(2, 0, 1)[None].double() for a in (pixels, decoded)]
        expected = float(reference_ms_ssim(*as_tensor, data_range=255))
        assert record["ms_ssim"] == pytest.approx(expected, abs=1e-3)
        assert record["codec_options"] == options and record["setting"] == setting


def test_options_override_the_best_compression_defaults_and_bad_specs_are_refused():
    from latentfit.errors import LatentfitError
    from latentfit.evaluation.classical import parse_spec

    assert parse_spec("avif")[1]["speed"] == 0 and parse_spec("jpegxl")[1]["effort"] == 9
    assert parse_spec("avif:speed=6")[1]["speed"] == 6
    for bad in ["bpg", "avif:speed", "avif:=3"]:
        with pytest.raises(LatentfitError):
            parse_spec(bad)


@settings(max_examples=200)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=40), st.integers(0, 1300), st.integers(0, 1300))
def test_the_bracketing_bisection_brackets(steps, a, b):
    from latentfit.evaluation.classical import bracket

    sizes = list(itertools.accumulate(steps))  # a non-decreasing size per setting
    smallest, largest = min(a, b), max(a, b)
    calls = []

    def size(setting):
        calls.append(setting)
        return sizes[setting]

    low, high = bracket(size, 0, len(sizes) - 1, smallest, largest)
    assert low <= high
    if sizes[0] <= smallest:  # the highest setting at or below the smallest target
        assert sizes[low] <= smallest and (low == len(sizes) - 1 or sizes[low + 1] > smallest)
    else:
        assert low == 0
    if sizes[-1] >= largest and sizes[low] < largest:  # the lowest setting at or above the largest target
        assert sizes[high] >= largest and sizes[high - 1] < largest
    assert len(set(calls)) <= 2 * (len(sizes).bit_length() + 1)


def test_a_sweep_brackets_the_learned_range_on_a_real_image():
    import numpy as np
    from PIL import Image

    from latentfit.evaluation.classical import CLASSICAL_CODECS, SWEEP_LEVELS, sweep

    pixels = np.asarray(Image.open(kodak_image()).convert("RGB"))[:128, :192].copy()
    for spec in ("jpeg", "webp", "jpeg2000"):
        low, high = CLASSICAL_CODECS[spec].settings
        records = sweep(spec, pixels, (28.0, 36.0))
        assert [r["quality"] for r in records] == list(range(SWEEP_LEVELS))
        quality = [r["psnr"] for r in records]
        assert quality == sorted(quality), spec
        # bracketed, where the knob allows (WebP's lowest quality gives 33 dB on this smooth crop)
        assert quality[0] <= 28.0 or records[0]["setting"] == low, spec
        assert quality[-1] >= 36.0 or records[-1]["setting"] == high, spec
        assert records[0]["setting"] < records[-1]["setting"]
        assert records[0]["probes"] <= 2 * 8  # bisection, not a scan of the knob
