"""Rate control (issue 28): every guarantee and every refusal, on a small crop, fast."""

import json
import math
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import latentfit
from latentfit import Target, TargetUnreachableError
from latentfit.imageio import center_crop
from latentfit.metrics import ms_ssim, psnr
from latentfit.rate_control import Curve, PlainPoint, _interpolate, ms_ssim_db

from .conftest import kodak_image

STEPS = 30


@pytest.fixture(scope="module")
def family():
    return latentfit.load_family()


def _crop(side: int):
    return center_crop(latentfit.load_image(kodak_image("kodim23.png")), (side, side))


def _plain(family, image) -> dict:
    """bytes, PSNR and MS-SSIM of each quality's plain file (quality -> stats)."""
    none = latentfit.RefinementConfig(method="none")
    return {m.quality: latentfit.encode(image, m, none).stats for m in family}


@pytest.fixture(scope="module")
def crop():
    return _crop(128)


@pytest.fixture(scope="module")
def plain(family, crop):
    return _plain(family, crop)


def _config(**kw):
    return latentfit.RefinementConfig(steps=STEPS, **kw)


def test_family_is_every_bundled_quality_lowest_lambda_first(family):
    assert [m.quality for m in family] == [1, 2, 3, 4]
    assert [m.lmbda for m in family] == sorted(m.lmbda for m in family)


def test_bytes_target_is_never_exceeded_and_lands_close(family, crop, plain):
    limit = round((plain[2]["bytes"] * plain[3]["bytes"]) ** 0.5)  # between two qualities
    result = latentfit.encode(crop, family, _config(), target=Target("bytes", limit))
    assert len(result.data) <= limit
    assert len(result.data) >= 0.9 * limit  # not met by a needlessly small file
    stats = result.stats
    assert stats["target"] == {"kind": "bytes", "value": limit, "bytes": limit}
    assert stats["achieved"]["bytes"] == len(result.data) == stats["bytes"]
    assert stats["quality"] in (2, 3) and stats["lmbda_probes"] >= 2 and stats["real_encodes"] >= 2
    # one refinement run, λ steered within it: never more steps than asked for
    assert result.refinement.steps_run <= STEPS
    # the file decodes to what the stats say
    model = next(m for m in family if m.quality == stats["quality"])
    pixels = latentfit.decode(result.data, model)
    assert psnr(latentfit.imageio.to_uint8(crop.tensor), pixels) == pytest.approx(stats["psnr"])


@pytest.mark.slow
def test_a_bytes_target_counts_the_decoder_update(family, crop, plain):
    limit = round((plain[2]["bytes"] * plain[3]["bytes"]) ** 0.5)
    result = latentfit.encode(crop, family, _config(adapt="decoder:lr_scale=30"), target=Target("bytes", limit))
    assert len(result.data) <= limit and result.stats["config"]["adapt"]["name"] == "channels"
    model = next(m for m in family if m.quality == result.stats["quality"])
    assert psnr(latentfit.imageio.to_uint8(crop.tensor), latentfit.decode(result.data, model)) == pytest.approx(
        result.stats["psnr"])
    if result.stream.update is not None:  # its section is part of the file the target was checked on
        assert len(result.data) > sum(len(s) for s in result.stream.strings) + len(result.stream.update.payload)


def test_psnr_target_is_met_by_the_decoded_file(family, crop, plain):
    goal = round((plain[1]["psnr"] + plain[2]["psnr"]) / 2, 2)
    result = latentfit.encode(crop, family, _config(), target=Target("psnr", goal))
    model = next(m for m in family if m.quality == result.stats["quality"])
    decoded = latentfit.decode(result.data, model)
    assert psnr(latentfit.imageio.to_uint8(crop.tensor), decoded) >= goal
    assert result.stats["psnr"] < goal + 0.5  # met with the file it needs, not the largest one
    assert result.stats["target"] == {"kind": "psnr", "value": goal}


@pytest.fixture(scope="module")
def crop192():
    """A crop MS-SSIM's five scales can measure (at least 161 pixels a side)."""
    return _crop(192)


@pytest.fixture(scope="module")
def plain192(family, crop192):
    return _plain(family, crop192)


@pytest.mark.slow
def test_ms_ssim_target_is_met_by_the_decoded_file(family, crop192, plain192):
    goal = round((plain192[1]["ms_ssim"] + plain192[2]["ms_ssim"]) / 2, 4)
    result = latentfit.encode(crop192, family, _config(distortion="mix:0.5"), target=Target("ms-ssim", goal))
    decoded = latentfit.decode(result.data, family[result.stats["quality"] - 1])
    achieved = ms_ssim(latentfit.imageio.to_uint8(crop192.tensor), decoded)
    assert achieved >= goal and result.stats["achieved"]["ms_ssim"] == pytest.approx(achieved)
    assert ms_ssim_db(achieved) < ms_ssim_db(goal) + 0.5  # met with the file it needs, not the largest one
    assert result.stats["target"] == {"kind": "ms-ssim", "value": goal}
    assert result.stats["distortion"] == "mix:0.5"
    # fewer bytes than the smallest plain file that meets it
    assert len(result.data) < min(s["bytes"] for s in plain192.values() if s["ms_ssim"] >= goal)


@pytest.mark.slow
def test_bpp_target_counts_the_whole_file(family, crop, plain):
    goal = plain[2]["bpp"] * 0.95
    result = latentfit.encode(crop, family, _config(), target=Target("bpp", goal))
    assert len(result.data) * 8 / (128 * 128) <= goal
    assert result.stats["target"]["bytes"] == math.floor(goal * 128 * 128 / 8)


@pytest.mark.slow
def test_one_model_keeps_its_quality_and_moves_lambda(family, crop, plain):
    model = family[1]
    limit = int(plain[2]["bytes"] * 0.97)  # below its own plain file (refinement at its own λ adds ~1 %): only λ gets there
    result = latentfit.encode(crop, model, latentfit.RefinementConfig(steps=60), target=Target("bytes", limit))
    assert result.stats["quality"] == 2 and len(result.data) <= limit
    assert result.stats["lmbda"] < model.lmbda


def test_without_refinement_the_best_fitting_quality_is_chosen(family, crop, plain):
    limit = plain[3]["bytes"] - 1  # quality 3's file just does not fit; quality 2's does
    result = latentfit.encode(crop, family, latentfit.RefinementConfig(method="none"), target=Target("bytes", limit))
    assert result.stats["quality"] == 2 and result.data  # the largest plain file that fits
    assert len(result.data) == plain[2]["bytes"]


@pytest.mark.parametrize("target, words", [(Target("bytes", 50), "bytes"), (Target("psnr", 60), "dB"),
                                           (Target("bpp", 0.001), "bpp")])
def test_unreachable_targets_are_refused_before_refining(family, crop, monkeypatch, target, words):
    def no_refinement(*args, **kwargs):
        raise AssertionError("refinement ran for a target it could have refused")

    monkeypatch.setattr("latentfit.pipeline.refine_image", no_refinement)
    with pytest.raises(TargetUnreachableError, match=rf"out of reach .* range from about [\d.,]+ to [\d.,]+ {words}"):
        latentfit.encode(crop, family, _config(), target=target)


@pytest.mark.slow
def test_a_target_missed_after_refining_names_what_was_reached(family, crop, plain, monkeypatch):
    # just inside what the pre-check lets through, with 2 steps: refinement cannot get there
    monkeypatch.setattr("latentfit.rate_control.REFUSE_SIZE_FRACTION", 0.0)
    with pytest.raises(TargetUnreachableError, match="smallest file refinement made was"):
        latentfit.encode(crop, family, latentfit.RefinementConfig(steps=2), target=Target("bytes", plain[1]["bytes"] // 3))


@pytest.mark.parametrize("config, message", [
    (latentfit.RefinementConfig(lmbda=0.01), "chooses λ itself"),
    (latentfit.RefinementConfig(patience=3), "patience"),
    (latentfit.RefinementConfig(tile=256), "whole image"),
])
def test_settings_a_target_overrides_are_refused(family, crop, config, message):
    with pytest.raises(latentfit.LatentfitError, match=message):
        latentfit.encode(crop, family, config, target=Target("bytes", 5000))


@pytest.mark.parametrize("kind, value", [("bytes", 0), ("psnr", -3), ("bpp", float("nan")), ("size", 10),
                                         ("ms-ssim", 1.0), ("ms-ssim", 98)])
def test_bad_targets_are_refused(kind, value):
    with pytest.raises(latentfit.LatentfitError):
        Target(kind, value)


def test_a_family_without_a_target_is_refused(family, crop):
    with pytest.raises(latentfit.LatentfitError, match="with a target"):
        latentfit.encode(crop, family, _config())


@given(st.lists(st.floats(-8, -2), min_size=1, max_size=5, unique=True),
       st.lists(st.floats(0.05, 2.0), min_size=5, max_size=5), st.floats(-9, -1))
def test_curve_solve_inverts_the_curve(log_lmbdas, gaps, x):
    """Any increasing curve through the plain points: solve(at(x)) gives x back."""
    log_lmbdas = sorted(log_lmbdas)
    values = [20.0]
    for gap in gaps[: len(log_lmbdas) - 1]:
        values.append(values[-1] + gap)

    class Fake:
        def __init__(self, lmbda):
            self.lmbda = lmbda

    curve = Curve([PlainPoint(Fake(math.exp(l)), 1.0, v) for l, v in zip(log_lmbdas, values)], "psnr")
    assert curve.solve(curve.at(x), -12, 2) == pytest.approx(x, abs=1e-6)
    assert _interpolate([0.0, 1.0], [0.0, 2.0], 0.5, 1.0) == pytest.approx(1.0)


# -- the command line ---------------------------------------------------------------------------

def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "latentfit.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


@pytest.fixture(scope="module")
def small_png(crop, tmp_path_factory):
    from latentfit.imageio import save_image, to_uint8

    path = tmp_path_factory.mktemp("rc") / "crop.png"
    save_image(path, to_uint8(crop.tensor))
    return path


@pytest.mark.slow
def test_cli_target_bytes_json(small_png, tmp_path, plain):
    limit = plain[2]["bytes"]
    out = tmp_path / "a.lfc"
    proc = _cli("encode", small_png, "-o", out, "--target-bytes", limit, "--steps", STEPS, "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert out.stat().st_size == stats["bytes"] <= limit
    for key in ("target", "achieved", "lmbda", "quality", "lmbda_probes", "real_encodes"):
        assert key in stats


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--target-bytes", "50"], "out of reach"),
    (["--target-psnr", "60"], "out of reach"),
    (["--target-psnr", "30", "--lmbda", "0.01"], "leave out --lmbda"),
    (["--target-psnr", "30", "--target-bytes", "900"], "one target"),
    (["--target-bpp", "-1"], "positive"),
    (["--target-ms-ssim", "1.5"], "between 0 and 1"),
    (["--target-ms-ssim", "0.97"], "at least 161 pixels"),  # the 128² crop is too small for MS-SSIM
])
def test_cli_refusals_are_one_line_exit_2_nothing_written(small_png, tmp_path, args, message):
    out = tmp_path / "a.lfc"
    proc = _cli("encode", small_png, "-o", out, "--steps", "5", "--no-progress", *args)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    if "out of reach" in message or "161" in message:
        assert str(small_png) in proc.stderr


@pytest.mark.slow
def test_cli_ms_ssim_target_refines_for_mix_by_default(tmp_path, crop192, plain192):
    from latentfit.imageio import save_image, to_uint8

    image = tmp_path / "crop.png"
    save_image(image, to_uint8(crop192.tensor))
    goal = round((plain192[2]["ms_ssim"] + plain192[3]["ms_ssim"]) / 2, 4)
    out = tmp_path / "a.lfc"
    proc = _cli("encode", image, "-o", out, "--target-ms-ssim", goal, "--steps", STEPS, "--json", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["distortion"] == "mix:0.5" and stats["achieved"]["ms_ssim"] >= goal
    assert out.stat().st_size == stats["bytes"]


@pytest.mark.slow
def test_cli_folder_meets_the_target_for_every_image(small_png, tmp_path, crop):
    from latentfit.imageio import save_image, to_uint8

    folder = tmp_path / "in"
    folder.mkdir()
    save_image(folder / "a.png", to_uint8(crop.tensor))
    save_image(folder / "b.png", to_uint8(crop.tensor[..., :, :96]))
    proc = _cli("encode", folder, "-o", tmp_path / "out", "--target-bpp", "0.9", "--steps", "10", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    for name, pixels in (("a", 128 * 128), ("b", 128 * 96)):
        assert (tmp_path / "out" / f"{name}.lfc").stat().st_size * 8 / pixels <= 0.9
