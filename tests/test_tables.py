"""The summary's tables and figures from journal records (`latentfit.evaluation.tables`, `plots`, `runner.summarise`)."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentfit.evaluation.runner import summarise

from .conftest import CURVE


def test_summary_writes_compressai_results_and_bd_table(tmp_path):
    records = []
    for quality, (bpp, psnr) in enumerate(CURVE[:3], 1):
        for method, factor in (("none", 1.0), ("sga+ssl", 0.9)):
            records.append({"model": "m", "method": method, "steps": 0 if method == "none" else 500,
                            "quality": quality, "bpp": bpp * factor, "psnr": psnr, "ms_ssim": 0.9, "seconds": 1.0})
    summary = summarise(records, tmp_path)
    document = json.loads((tmp_path / "m-sga+ssl-500.json").read_text())
    assert document["name"] == "m-sga+ssl-500" and set(document["results"]) >= {"bpp", "psnr-rgb", "ms-ssim-rgb"}
    assert summary["bd_rates"][0]["bd_rate"] == pytest.approx(-10.0, abs=0.05)
    assert not math.isnan(json.loads((tmp_path / "bd_rates.json").read_text())[0]["bd_psnr"])
    row = next(line for line in (tmp_path / "summary.md").read_text().splitlines() if "| sga+ssl | 500 |" in line)
    assert "-10.0" in row and "| m none |" in row


def test_gain_share_follows_the_best_true_loss_so_far():
    from latentfit.evaluation.tables import gain_share

    # L_true falls linearly 1.0 -> 0.0 over 100 steps, with a worse point at step 60 (best-so-far stays)
    trace = [{"step": s, "true_loss": 1.0 - s / 100} for s in range(0, 101, 10)]
    trace[6]["true_loss"] = 2.0
    assert gain_share(trace, 50) == pytest.approx(0.5)
    assert gain_share(trace, 60) == pytest.approx(0.5)
    assert gain_share(trace, 100) == pytest.approx(1.0)
    assert gain_share(trace, 200) is None  # the run did not get that far
    assert gain_share([{"step": 0, "true_loss": 1.0}, {"step": 10, "true_loss": 1.5}], 10) is None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.1, 10.0), min_size=2, max_size=30), st.integers(0, 300))
def test_gain_share_is_a_share_and_grows_with_the_step(losses, step):
    from latentfit.evaluation.tables import gain_share

    trace = [{"step": 10 * i, "true_loss": loss} for i, loss in enumerate(losses)]
    share, later = gain_share(trace, step), gain_share(trace, step + 10)
    if share is not None:
        assert 0.0 <= share <= 1.0 + 1e-12
        assert later is None or later >= share


def test_early_gain_table_averages_reductions_and_shares_over_cells():
    from latentfit.evaluation.tables import early_gain_table, loss_reduction

    fast = [{"step": 0, "true_loss": 2.0}, {"step": 50, "true_loss": 1.2}, {"step": 250, "true_loss": 1.0}]
    slow = [{"step": 0, "true_loss": 1.0}, {"step": 50, "true_loss": 0.9}, {"step": 250, "true_loss": 0.5}]
    assert loss_reduction(fast, 50) == pytest.approx(0.4) and loss_reduction(slow, 300) is None
    records = [{"method": "a", "steps": 250, "trace": fast}, {"method": "a", "steps": 250, "trace": slow},
               {"method": "none", "steps": 0, "trace": fast}]
    rows = [line for line in early_gain_table(records, steps=(50,)).splitlines() if line.startswith("| a |")]
    # by step 50: reductions 40 % and 10 % (shares 80 % and 20 %); at the end 50 % and 50 %
    assert rows == ["| a | 250 | 25.00% (50%) | 50.00% (100%) | 2 |"]
    # a tail-evaluated run's trace is sparse early: it counts at the end, not by step 50
    tail = {"method": "a", "steps": 250, "trace": slow, "config": {"stopping": {"evaluations": "tail"}}}
    rows = [line for line in early_gain_table(records[:1] + [tail], steps=(50,)).splitlines() if line.startswith("| a |")]
    assert rows == ["| a | 250 | 40.00% (80%) | 50.00% (100%) | 2 |"]


def test_an_unfinished_image_is_left_out_of_every_curve_instead_of_skewing_some_points(tmp_path):
    """A run cut short has an image at some qualities only: averaging it into those points alone would
    bend the curve. The summary must equal the one of the finished images, and name the left-out one."""
    def records_for(image, curve, methods=(("none", 0, 1.0), ("sga+ssl", 500, 0.8))):
        return [{"model": "m", "method": method, "steps": steps, "quality": q, "image": image,
                 "bpp": bpp * factor, "psnr": psnr, "ms_ssim": 0.9, "seconds": 1.0}
                for method, steps, factor in methods for q, (bpp, psnr) in enumerate(curve, 1)]

    finished = records_for("a.png", CURVE) + records_for("b.png", [(b * 1.3, p + 1) for b, p in CURVE])
    # c.png: `none` at every quality, the refined method only at the two lowest, far off the others
    unfinished = records_for("c.png", [(b * 5, p - 6) for b, p in CURVE], methods=(("none", 0, 1.0),))
    unfinished += records_for("c.png", [(b * 5, p - 6) for b, p in CURVE[:2]], methods=(("sga+ssl", 500, 0.5),))
    clean = summarise(finished, tmp_path / "clean")["bd_rates"]
    mixed = summarise(finished + unfinished, tmp_path / "mixed")["bd_rates"]
    assert len(clean) == len(mixed) == 1
    assert mixed[0]["bd_rate"] == pytest.approx(clean[0]["bd_rate"]) and mixed[0]["images"] == 2
    assert mixed[0]["left_out"] == ["c.png"] and clean[0]["left_out"] == []
    summary = (tmp_path / "mixed" / "summary.md").read_text()
    assert "c.png" in summary and "| m | sga+ssl | 500 | m none | 2 |" in summary
    # the `none` curve on its own averages all three images: c.png is finished there
    anchor = json.loads((tmp_path / "mixed" / "m-none-0.json").read_text())
    assert anchor["images"] == 3


def test_convergence_figures_and_seconds_count_only_the_images_a_curve_finished(tmp_path):
    """The true-loss table and seconds per cell must describe the same images as the BD rows: a
    half-finished image (slow, with a far steeper trace) changes neither."""
    def records_for(image, qualities, seconds, final_loss):
        trace = [{"step": 0, "true_loss": 1.0}, {"step": 50, "true_loss": final_loss}, {"step": 500, "true_loss": final_loss}]
        return [{"model": "m", "method": method, "steps": steps, "quality": q, "image": image, "bpp": bpp * factor,
                 "psnr": psnr, "ms_ssim": 0.9, "seconds": seconds, "trace": trace if steps else []}
                for method, steps, factor in (("none", 0, 1.0), ("sga+ssl", 500, 0.8))
                for q, (bpp, psnr) in enumerate(CURVE, 1) if q in qualities or method == "none"]

    finished = records_for("a.png", (1, 2, 3, 4), 2.0, 0.9) + records_for("b.png", (1, 2, 3, 4), 2.0, 0.9)
    unfinished = records_for("c.png", (1, 2), 90.0, 0.2)
    summarise(finished, tmp_path / "clean")
    summarise(finished + unfinished, tmp_path / "mixed")
    clean, mixed = ((tmp_path / name / "summary.md").read_text() for name in ("clean", "mixed"))
    assert "| sga+ssl | 500 | 10.00% (100%) | 10.00% (100%) | 10.00% (100%) | 10.00% (100%) | 8 |" in mixed
    assert "| 2.0 |" in mixed and "90.0" not in mixed
    assert mixed.split("## How fast")[1] == clean.split("## How fast")[1]


def test_seconds_per_cell_is_the_median_so_one_slow_session_does_not_move_it():
    """A journal resumed on a slower machine: 9 of 10 finished cells took 2 s, one took 200 s. The
    table shows the typical cell (2.0 s), not the mean (21.8 s) that the slow one drags up."""
    from latentfit.evaluation.tables import bd_rate_table

    records = [{"model": "m", "method": "sga+ssl", "steps": 500, "quality": q, "image": f"{i}.png",
                "seconds": 200.0 if (i, q) == (0, 1) else 2.0} for i in range(2) for q in range(1, 6)]
    row = {"model": "m", "method": "sga+ssl", "steps": 500, "anchor": "m none", "images": 2,
           "bd_rate": -10.0, "bd_psnr": 0.5, "psnr_overlap": 0.9}
    table = bd_rate_table(records, [row])
    assert "median seconds per cell" in table.splitlines()[0]
    assert table.splitlines()[-1].endswith("| 2.0 | — |")  # the last column: BD-rate in MS-SSIM, not measured


def test_bd_rows_carry_median_seconds_per_megapixel_and_the_gain_per_second_plot_is_drawn(tmp_path):
    """Images of two sizes: seconds per megapixel puts their cells on one axis (the median of each
    cell's rate, not total seconds over total pixels), for the refined curve and for its anchor."""
    sizes = {"small.png": (256, 256), "big.png": (768, 512)}  # 0.065536 and 0.393216 MP
    refined = {"small.png": [41.0, 42.0, 43.0, 44.0], "big.png": [45.0, 46.0, 47.0, 200.0]}  # one slow cell
    records = []
    for image, (width, height) in sizes.items():
        megapixels = width * height / 1e6
        for quality, (bpp, psnr) in enumerate(CURVE[:4], 1):
            for method, steps, factor, per_mp in (("none", 0, 1.0, 2.0 + quality),
                                                  ("sga+ssl", 50, 0.9, refined[image][quality - 1])):
                records.append({"model": "m", "method": method, "steps": steps, "quality": quality, "image": image,
                                "bpp": bpp * factor, "psnr": psnr, "ms_ssim": 0.9, "width": width, "height": height,
                                "seconds": per_mp * megapixels})
    row, = summarise(records, tmp_path)["bd_rates"]
    # the median of the 8 cells' rates (44.5): not their mean (66.0), nor total seconds over total
    # megapixels (about 80, the big image weighing 6x)
    assert row["seconds_per_megapixel"] == pytest.approx(44.5)
    assert row["anchor_seconds_per_megapixel"] == pytest.approx(4.5)
    assert (tmp_path / "gain_per_second.png").stat().st_size > 1000
    table = (tmp_path / "summary.md").read_text()
    assert "| median s/MP |" in table and "| 44.5 |" in table
    untimed = [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    row, = summarise(untimed, tmp_path / "untimed")["bd_rates"]
    assert row["seconds_per_megapixel"] is None and not (tmp_path / "untimed" / "gain_per_second.png").exists()


def test_a_missing_ms_ssim_is_never_averaged_as_zero():
    from latentfit.evaluation.runner import mean_curve

    by_quality = {1: [{"image": "a", "ms_ssim": 0.9, "bpp": 0.2}, {"image": "b", "ms_ssim": None, "bpp": 0.4}],
                  2: [{"image": "a", "ms_ssim": 0.95, "bpp": 0.5}, {"image": "b", "ms_ssim": 0.97, "bpp": 0.7}]}
    assert mean_curve(by_quality, {"a", "b"}, "ms_ssim") == [None, pytest.approx(0.96)]
    assert mean_curve(by_quality, {"a", "b"}, "bpp") == [pytest.approx(0.3), pytest.approx(0.6)]


def test_a_curve_with_a_decoder_update_or_another_distortion_has_its_own_seconds():
    """The table finds each curve's cells by the curve's name, so an `adapt` or `distortion` curve
    shows its own cells' seconds (it once showed 0.0: its cells were filed under the plain method)."""
    from latentfit.evaluation.tables import bd_rate_table

    records = [{"model": "m", "method": "sga+ssl", "steps": 500, "quality": 1, "image": "a.png", "seconds": 2.0},
               {"model": "m", "method": "sga+ssl", "steps": 500, "quality": 1, "image": "a.png", "seconds": 7.0,
                "adapt": "decoder"},
               {"model": "m", "method": "sga+ssl", "steps": 500, "quality": 1, "image": "a.png", "seconds": 5.0,
                "distortion": "ms-ssim"}]
    rows = [{"model": "m", "method": method, "steps": 500, "anchor": "m none", "images": 1, "bd_rate": -1.0,
             "bd_psnr": 0.1, "psnr_overlap": 0.9} for method in
            ("sga+ssl", "sga+ssl adapt=decoder", "sga+ssl distortion=ms-ssim")]
    table = {line.split(" | ")[1]: line for line in bd_rate_table(records, rows).splitlines()[2:]}
    assert "| 2.0 |" in table["sga+ssl"] and "| 7.0 |" in table["sga+ssl adapt=decoder"]
    assert "| 5.0 |" in table["sga+ssl distortion=ms-ssim"]
