"""Objectives besides the MSE (`--distortion ms-ssim|mix:W`) and regions of interest (`--roi`): each
objective wins on its own measure, masks move quality into the region, bad masks and images are
refused in one line, records replay, and `mse` files stay what they were."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from latentfit.codec import file_loss
from latentfit.config import RefinementConfig
from latentfit.distortion import MS_SSIM_SCALE, distortion_from, load_roi, measure
from latentfit.errors import LatentfitError
from latentfit.imageio import LoadedImage, load_image, to_uint8
from latentfit.metrics import ms_ssim
from latentfit.pipeline import encode
from latentfit.refine import refine_latents

from .conftest import kodak_image

STEPS = 40


@pytest.fixture(scope="module")
def square_crop():
    """A 192x192 crop of kodim23 (MS-SSIM's five scales need more than 160 pixels a side)."""
    image = load_image(kodak_image())
    return LoadedImage(image.tensor[..., 160:352, 300:492].contiguous(), "RGB")


@pytest.fixture(scope="module")
def encodes(bundled_model, square_crop):
    """The crop refined for each objective, with the same steps and seed."""
    return {d: encode(square_crop, bundled_model, RefinementConfig(steps=STEPS, distortion=d))
            for d in ("mse", "ms-ssim", "mix:0.5")}


def test_distortions_are_in_mse_units_and_bad_specs_are_refused():
    x = torch.rand(1, 3, 192, 192, generator=torch.Generator().manual_seed(0))
    noisy = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    mse, msssim = distortion_from("mse")(noisy, x), distortion_from("ms-ssim")(noisy, x)
    assert float(mse) == pytest.approx(float(((noisy - x) ** 2).mean()), rel=1e-5)
    assert float(distortion_from("mix:0.25")(noisy, x)) == pytest.approx(0.25 * float(msssim) + 0.75 * float(mse),
                                                                         rel=1e-5)
    assert float(msssim) > 0 and float(distortion_from("ms-ssim")(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert MS_SSIM_SCALE == pytest.approx(1290 / 255**2)
    assert RefinementConfig(distortion="mix:weight=0.50").distortion == "mix:0.5"
    for bad, message in [("l1", "unknown distortion"), ("mix:1.5", "share must be in"), ("mix:x", "must be a number")]:
        with pytest.raises(LatentfitError, match=message):
            RefinementConfig(distortion=bad)


def test_mse_is_recorded_as_before_and_other_distortions_round_trip_through_the_record():
    assert "distortion" not in RefinementConfig().to_dict()  # every existing record and journal identity stays
    config = RefinementConfig(distortion="mix:0.8")
    assert config.to_dict()["distortion"] == {"name": "mix", "weight": 0.8}
    assert RefinementConfig.from_dict(config.to_dict()).distortion == "mix:0.8"


@pytest.mark.slow
def test_each_objective_lowers_its_own_true_loss_and_wins_on_its_own_measure(bundled_model, square_crop, encodes):
    lmbda = bundled_model.lmbda
    for name, result in encodes.items():
        assert result.stats["distortion"] == name
        assert result.refinement.final.loss < result.refinement.initial.loss, name
    # the files, measured as each objective measures them: each refinement wins on its own measure
    def loss(result, name):
        return file_loss(square_crop, result.data, result.decoded, lmbda, measure(distortion_from(name)))

    assert loss(encodes["ms-ssim"], "ms-ssim") < loss(encodes["mse"], "ms-ssim")
    assert loss(encodes["mse"], "mse") < loss(encodes["ms-ssim"], "mse")
    reference = (square_crop.tensor[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert ms_ssim(reference, encodes["ms-ssim"].decoded) > ms_ssim(reference, encodes["mse"].decoded)
    assert encodes["mse"].stats["psnr"] > encodes["ms-ssim"].stats["psnr"]


@pytest.mark.slow
def test_a_record_replays_the_same_bytes_and_mse_files_are_unchanged(bundled_model, square_crop, encodes):
    replayed = encode(square_crop, bundled_model, RefinementConfig.from_dict(encodes["ms-ssim"].stats["config"]))
    assert replayed.data == encodes["ms-ssim"].data
    default = encode(square_crop, bundled_model, RefinementConfig(steps=STEPS))
    assert default.data == encodes["mse"].data and "distortion" not in default.stats["config"]


def _mask(path, size, box):
    levels = np.zeros(size[::-1], dtype=np.uint8)
    top, bottom, left, right = box
    levels[top:bottom, left:right] = 255
    Image.fromarray(levels, "L").save(path)
    return path


@pytest.mark.slow
def test_a_region_of_interest_gains_quality_where_the_mask_is_white(bundled_model, square_crop, tmp_path):
    mask = _mask(tmp_path / "roi.png", (192, 192), (0, 192, 0, 64))  # the left third
    weights = load_roi(mask, 192, 192, ratio=16.0)
    assert float(weights.mean()) == pytest.approx(1.0, rel=1e-6)
    assert float(weights[..., 0, 0] / weights[..., 0, -1]) == pytest.approx(16.0, rel=1e-5)
    plain = encode(square_crop, bundled_model, RefinementConfig(steps=STEPS))
    roi = encode(dataclasses.replace(square_crop, roi=weights), bundled_model, RefinementConfig(steps=STEPS))
    assert roi.stats["roi"] is True and plain.stats["roi"] is False
    reference = (square_crop.tensor[0].permute(1, 2, 0).numpy() * 255).round()

    def mse(result, part):
        return float(((result.decoded.astype(np.float64) - reference)[:, part] ** 2).mean())

    inside, outside = slice(0, 64), slice(64, 192)
    assert mse(roi, inside) < mse(plain, inside)
    assert mse(roi, outside) > mse(plain, outside)


def test_bad_masks_are_refused_in_one_line(tmp_path):
    with pytest.raises(LatentfitError, match="mask is 100x100, the image 192x192"):
        load_roi(_mask(tmp_path / "small.png", (100, 100), (0, 10, 0, 10)), 192, 192)
    with pytest.raises(LatentfitError, match="all black"):
        load_roi(_mask(tmp_path / "black.png", (192, 192), (0, 0, 0, 0)), 192, 192)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(LatentfitError, match="not a readable region-of-interest mask"):
        load_roi(tmp_path / "text.png", 192, 192)
    with pytest.raises(LatentfitError, match="must be > 0"):
        load_roi(_mask(tmp_path / "ok.png", (192, 192), (0, 10, 0, 10)), 192, 192, ratio=-1.0)


def test_images_and_settings_a_distortion_cannot_measure_are_refused(bundled_model, kodak_crop, square_crop):
    # kodak_crop is 128x192: too small for MS-SSIM's five scales
    with pytest.raises(LatentfitError, match="at least 161 pixels a side"):
        encode(kodak_crop, bundled_model, RefinementConfig(steps=1, distortion="ms-ssim"))
    roi = dataclasses.replace(kodak_crop, roi=torch.ones(1, 1, 128, 192))
    with pytest.raises(LatentfitError, match="use --distortion mse or mix"):
        encode(roi, bundled_model, RefinementConfig(steps=1, distortion="ms-ssim"))
    with pytest.raises(LatentfitError, match="at least 161 pixels a side"):
        refine_latents(bundled_model, kodak_crop.tensor, RefinementConfig(steps=1, distortion="mix:0.5"))
    from latentfit import Target

    with pytest.raises(LatentfitError, match="at least 161 pixels a side"):
        encode(kodak_crop, bundled_model, RefinementConfig(steps=1), target=Target("ms-ssim", 0.95))


@pytest.mark.slow
def test_a_size_target_with_a_region_of_interest_spends_its_bytes_on_the_region(bundled_model, square_crop):
    """Rate control honours the mask: at the same byte limit the region is sharper, paid for by the rest."""
    from latentfit import Target
    from latentfit.metrics import psnr

    h, w = square_crop.height, square_crop.width
    weights = torch.ones(1, 1, h, w)
    weights[..., : h // 3, : w // 3] = 4.0
    masked = dataclasses.replace(square_crop, roi=weights / weights.mean())
    plain = encode(square_crop, bundled_model, RefinementConfig(method="none"))
    limit = len(plain.data)
    config = RefinementConfig(steps=100)
    files = [encode(image, bundled_model, config, target=Target("bytes", limit)) for image in (square_crop, masked)]
    reference = to_uint8(square_crop.tensor)
    inside = [psnr(reference[: h // 3, : w // 3], f.decoded[: h // 3, : w // 3]) for f in files]
    outside = [psnr(reference[h // 3:], f.decoded[h // 3:]) for f in files]
    assert all(len(f.data) <= limit for f in files)
    assert inside[1] > inside[0] + 0.3  # measured +0.65 dB
    assert inside[1] - outside[1] > inside[0] - outside[0] + 0.3  # the bytes moved to the region


@pytest.mark.slow
def test_cli_roi_and_distortion_refuse_bad_input_with_one_line_and_write_nothing(tmp_path):
    image = tmp_path / "crop.png"
    Image.open(kodak_image()).crop((300, 160, 492, 352)).save(image)
    good = _mask(tmp_path / "roi.png", (192, 192), (0, 192, 0, 64))
    wrong = _mask(tmp_path / "wrong.png", (100, 100), (0, 10, 0, 10))
    base = [sys.executable, "-m", "latentfit.cli", "encode", str(image), "--steps", "3", "--no-progress"]
    for extra, message in [(["--roi", str(wrong)], "wrong.png: region-of-interest mask is 100x100"),
                           (["--roi", str(tmp_path / "missing.png")], "missing.png: not a readable"),
                           (["--distortion", "ms-ssim", "--roi", str(good)], "use --distortion mse or mix"),
                           (["--distortion", "sharp"], "unknown distortion")]:
        out = tmp_path / "out.lfc"
        run = subprocess.run(base + ["-o", str(out)] + extra, capture_output=True, text=True)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert message in run.stderr and not out.exists()
    out = tmp_path / "roi.lfc"
    run = subprocess.run(base + ["-o", str(out), "--roi", str(good), "--distortion", "mix:0.5", "--json"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout)
    assert stats["roi"] is True and stats["distortion"] == "mix:0.5" and out.stat().st_size == stats["bytes"]


def test_the_independent_metrics_rank_a_cleaner_image_higher():
    from latentfit.evaluation.perceptual import check_metrics, cvvdp_jod, ssimulacra2_score

    reference = (load_image(kodak_image()).tensor[0, :, :96, :96].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    rng = np.random.default_rng(0)
    noisy = [np.clip(reference.astype(int) + rng.integers(-n, n + 1, reference.shape), 0, 255).astype(np.uint8)
             for n in (2, 10)]
    assert ssimulacra2_score(reference, reference) == pytest.approx(100.0)
    assert 100 > ssimulacra2_score(reference, noisy[0]) > ssimulacra2_score(reference, noisy[1])
    assert cvvdp_jod(reference, reference) == pytest.approx(10.0, abs=1e-3)
    assert 10 > cvvdp_jod(reference, noisy[0]) > cvvdp_jod(reference, noisy[1])
    assert check_metrics(["psnr", "cvvdp", "ms-ssim", "ssimulacra2"]) == ["cvvdp", "ssimulacra2"]
    with pytest.raises(LatentfitError, match="unknown metric lpips"):
        check_metrics(["lpips"])


@pytest.mark.slow
def test_the_context_model_refines_for_ms_ssim_too(square_crop):
    """Both bundled models: latentfit-ctx (autoregressive context) refined for MS-SSIM wins MS-SSIM
    and pays in PSNR against the same refinement for MSE."""
    from latentfit import load_model

    model = load_model("latentfit-ctx", 2)
    files = {d: encode(square_crop, model, RefinementConfig(steps=STEPS, distortion=d)) for d in ("mse", "ms-ssim")}
    assert files["ms-ssim"].stats["ms_ssim"] > files["mse"].stats["ms_ssim"]
    assert files["ms-ssim"].stats["psnr"] < files["mse"].stats["psnr"]
    assert files["ms-ssim"].refinement.final.loss < files["ms-ssim"].refinement.initial.loss


@pytest.mark.slow
def test_a_time_budget_holds_with_ms_ssim_in_the_loss(bundled_model, square_crop):
    """MS-SSIM makes each step and evaluation dearer; the budget is measured with it, so still holds."""
    import time

    probe = encode(square_crop, bundled_model, RefinementConfig(steps=10, evaluate_every=10, distortion="mix:0.5"))
    budget = max(3.0, 4 * probe.stats["seconds"])
    started = time.perf_counter()
    config = RefinementConfig(steps=100_000, time_budget=budget, distortion="mix:0.5")
    result = encode(square_crop, bundled_model, config, started=started)
    assert time.perf_counter() - started <= budget * 1.15
    assert result.stats["stopped_by"] == "time_budget" and result.stats["steps_run"] > 10
    assert result.refinement.final.loss < result.refinement.initial.loss
