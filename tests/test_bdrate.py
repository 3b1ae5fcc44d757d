"""BD-rate and BD-PSNR (`latentfit.evaluation.bdrate`, through the `bjontegaard` package)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentfit.errors import LatentfitError
from latentfit.evaluation import bd_psnr, bd_rate
from latentfit.evaluation.runner import summarise

from .conftest import CURVE


def test_bd_rate_of_a_curve_against_itself_is_zero():
    assert bd_rate(CURVE, CURVE) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(CURVE, CURVE) == pytest.approx(0.0, abs=1e-9)


@given(factor=st.floats(min_value=0.6, max_value=1.6))
@settings(max_examples=30, deadline=None)
def test_bd_rate_recovers_a_known_rate_factor(factor):
    shifted = [(bpp * factor, psnr) for bpp, psnr in CURVE]
    assert bd_rate(CURVE, shifted) == pytest.approx((factor - 1) * 100, abs=0.05)


def test_quality_overlap_measures_the_shared_psnr_range_and_low_overlap_is_flagged(tmp_path):
    from latentfit.evaluation.bdrate import quality_overlap

    assert quality_overlap(CURVE, CURVE) == pytest.approx(1.0)
    higher = [(bpp * 2, psnr + 3.25) for bpp, psnr in CURVE]  # 27..33.5 vs 30.25..36.75: 3.25 of 9.75 dB
    assert quality_overlap(CURVE, higher) == pytest.approx(3.25 / 9.75)
    assert quality_overlap(CURVE, [(b, p + 10) for b, p in CURVE]) == 0.0
    records = [{"model": "m", "method": method, "steps": steps, "quality": q, "bpp": bpp, "psnr": psnr,
                "ms_ssim": 0.9, "seconds": 1.0}
               for method, steps, curve in (("none", 0, CURVE), ("far", 500, higher), ("apart", 500,
                                            [(b, p + 10) for b, p in CURVE]))
               for q, (bpp, psnr) in enumerate(curve, 1)]
    rows = {row["method"]: row for row in summarise(records, tmp_path)["bd_rates"]}
    assert rows["far"]["psnr_overlap"] == pytest.approx(1 / 3) and rows["far"]["bd_rate"] is not None
    assert rows["apart"]["bd_rate"] is None  # disjoint: no BD value rather than NaN
    table = (tmp_path / "summary.md").read_text()
    assert "33.3% (low)" in table and "100.0% (low)" not in table


def test_bd_psnr_recovers_a_known_quality_offset():
    assert bd_psnr(CURVE, [(bpp, psnr + 0.7) for bpp, psnr in CURVE]) == pytest.approx(0.7, abs=1e-6)


def test_a_single_point_is_a_clear_error():
    with pytest.raises(LatentfitError, match="at least 2 points"):
        bd_rate(CURVE, CURVE[:1])
