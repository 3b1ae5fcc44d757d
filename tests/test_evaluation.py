import dataclasses
import itertools
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latentfit.config import PAPERS_PROTOCOL, RefinementConfig
from latentfit.errors import LatentfitError
from latentfit.evaluation import EvalConfig, bd_psnr, bd_rate, run_evaluation
from latentfit.evaluation.runner import summarise

from .conftest import KODAK, kodak_image


def protocol(**changes) -> RefinementConfig:
    """The papers' protocol, `eval`'s default, with `changes`."""
    return dataclasses.replace(PAPERS_PROTOCOL, **changes)

CURVE = [(0.12, 27.0), (0.2, 28.6), (0.31, 30.1), (0.46, 31.8), (0.66, 33.5)]


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


@pytest.fixture
def tiny_eval():
    kodak_image()
    return EvalConfig(datasets=[str(KODAK)], qualities=[2], methods=["none", "sga+ssl"], steps=[6], crop=(64, 64),
                      limit=3, refinement=protocol(seed=1))


@pytest.mark.slow
def test_interrupted_evaluation_resumes_without_recomputing(tiny_eval, tmp_path):
    full = run_evaluation(tiny_eval, tmp_path / "straight")
    assert {r["device"] for r in full} == {"cpu"}  # each record says where its seconds were measured

    calls = []

    def stop_after_two(done, total):
        calls.append(done)
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_evaluation(tiny_eval, tmp_path / "resumed", progress=stop_after_two)
    journal = (tmp_path / "resumed" / "cells.jsonl").read_text().splitlines()
    assert len(journal) == 2
    recomputed = []
    resumed = run_evaluation(tiny_eval, tmp_path / "resumed", progress=lambda done, total: recomputed.append(done))
    assert len(recomputed) == len(full) - 2
    strip = lambda records: {r["cell"]: {k: v for k, v in r.items() if "seconds" not in k and k != "trace"}  # noqa: E731
                             for r in records}
    assert strip(resumed) == strip(full)
    assert len((tmp_path / "resumed" / "cells.jsonl").read_text().splitlines()) == len(full)


@pytest.mark.slow
def test_a_smaller_grid_on_a_bigger_folder_returns_only_its_own_cells(tiny_eval, tmp_path):
    import dataclasses

    everything = run_evaluation(tiny_eval, tmp_path)
    fewer = run_evaluation(dataclasses.replace(tiny_eval, limit=1, methods=["none"]), tmp_path)
    assert len(everything) == 6 and len(fewer) == 1
    same = next(r for r in everything if r["cell"] == fewer[0]["cell"])
    assert fewer[0]["method"] == "none" and (fewer[0]["bytes"], fewer[0]["seconds"]) == (same["bytes"], same["seconds"])
    assert len((tmp_path / "cells.jsonl").read_text().splitlines()) == 6  # nothing recomputed or dropped


def test_results_of_another_configuration_are_refused(tiny_eval, tmp_path):
    tiny_eval.limit = 1
    tiny_eval.methods = ["none"]
    run_evaluation(tiny_eval, tmp_path)
    tiny_eval.refinement = protocol(lr=1e-2)
    with pytest.raises(LatentfitError, match="another configuration"):
        run_evaluation(tiny_eval, tmp_path)


def test_journal_identity_follows_what_the_named_schedules_mean(monkeypatch):
    """A `budget`/`cosine` run is keyed by the constants those names stand for, so a journal made
    before a measurement moved them is not mixed in; the papers' protocol does not depend on them."""
    from latentfit.schedules import TAU_SCHEDULES, BudgetTemperature

    from .test_config import _hotter

    papers = EvalConfig(datasets=["d"])
    budget = EvalConfig(datasets=["d"], refinement=protocol(lr=3e-2, lr_schedule="cosine", schedule="budget"))
    before = papers.identity(), budget.identity()
    monkeypatch.setitem(TAU_SCHEDULES.entries, "budget", _hotter(BudgetTemperature.start + 0.5))
    assert papers.identity() == before[0] and budget.identity() != before[1]
    moved = budget.identity()
    floor = {"lr_final_fraction": 0.5}  # as if the cosine floor's default moved
    assert EvalConfig(datasets=["d"], refinement=protocol(**floor)).identity() == before[0]  # constant lr: no floor
    floored = EvalConfig(datasets=["d"], refinement=dataclasses.replace(budget.refinement, **floor))
    assert floored.identity() not in before + (moved,)


@pytest.mark.parametrize("recorded", ["0123456789abcdef", None])
def test_results_made_with_other_weights_are_refused(tiny_eval, tmp_path, recorded):
    tiny_eval.limit = 1
    tiny_eval.methods = ["none"]
    journal = tmp_path / "cells.jsonl"
    (first,) = run_evaluation(tiny_eval, tmp_path)
    assert len(first["weights_digest"]) == 16
    run_evaluation(tiny_eval, tmp_path)  # the same weights resume
    record = json.loads(journal.read_text()) | {"weights_digest": recorded}
    journal.write_text(json.dumps(record) + "\n")
    with pytest.raises(LatentfitError, match="quality 2 cells were made with other model weights"):
        run_evaluation(tiny_eval, tmp_path)


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


def test_the_published_vtm_curve_is_drawn_only_for_full_kodak_images():
    from latentfit.evaluation.references import KODAK_VTM_LABEL, references_for

    full = [{"image": "kodak/kodim01.png", "width": 768, "height": 512}]
    assert KODAK_VTM_LABEL in references_for(full)
    assert references_for([{"image": "kodak/kodim01.png", "width": 256, "height": 256}]) == {}
    assert references_for([{"image": "clic/x.png", "width": 768, "height": 512}]) == {}


def test_evaluation_with_a_classical_codec_writes_plots_and_bd_rows(tmp_path):
    kodak_image()
    config = EvalConfig(datasets=[str(KODAK)], qualities=[1, 2], methods=["none"], crop=(64, 64), limit=1,
                        classical=["jpeg"])
    records = run_evaluation(config, tmp_path)
    from latentfit.evaluation.classical import SWEEP_LEVELS

    jpeg = [r for r in records if r["method"] == "jpeg"]
    assert len(jpeg) == SWEEP_LEVELS
    learned = [r["psnr"] for r in records if r["method"] == "none"]
    assert jpeg[0]["psnr"] <= min(learned) and jpeg[-1]["psnr"] >= max(learned)
    summary = summarise(records, tmp_path)
    assert (tmp_path / "rd.png").stat().st_size > 1000 and (tmp_path / "convergence.png").exists()
    rows = [r for r in summary["bd_rates"] if r["method"] == "jpeg"]
    assert rows and rows[0]["anchor"] == "latentfit-msh none"


def _chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.slow
def test_html_report_opens_in_headless_chromium_without_errors(tmp_path):
    import subprocess

    from latentfit.evaluation.report import write_report

    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium installed (.ci/run installs Debian's chromium)")
    kodak_image()
    config = EvalConfig(datasets=[str(KODAK)], qualities=[2], methods=["none", "sga+ssl"], steps=[4], crop=(64, 64),
                        limit=2, classical=["jpeg"])
    records = run_evaluation(config, tmp_path)
    report = write_report(records, summarise(records, tmp_path), config, tmp_path, crop=48)
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=3000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    # 2 plots + 2 images x 3 crops, every one decoded by the browser (the page writes the count in its title)
    assert "<title>latentfit evaluation: 8/8 images shown</title>" in proc.stdout
    assert "BD-rate against no refinement" in proc.stdout


def test_report_skips_a_file_it_cannot_decode_and_shows_the_next_image(tmp_path):
    """A results folder can hold files made on another machine that refuse to decode here (scale
    indexes that differ): the report must still be written, name the image it cannot show, and show
    another image in its place, instead of the whole `eval` failing after all its cells ran."""
    from latentfit.evaluation.report import write_report
    from latentfit.evaluation.runner import Cell, cell_file

    kodak_image()
    config = EvalConfig(datasets=[str(KODAK)], qualities=[2], methods=["none", "sga+ssl"], steps=[3], crop=(64, 64),
                        limit=2)
    records = run_evaluation(config, tmp_path)
    first = sorted({r["image"] for r in records})[0]
    broken = cell_file(tmp_path, Cell(first, 2, "none", 0))
    broken.write_bytes(broken.read_bytes()[:-7] + b"garbage")  # fails its CRC, like a refused file
    html = write_report(records, summarise(records, tmp_path), config, tmp_path, viewer_images=1, crop=32).read_text()
    assert f"{first}: not shown" in html
    second = sorted({r["image"] for r in records})[1]
    assert f"<h3>{second}</h3>" in html and html.count('class="viewer"') == 1


@pytest.mark.slow
def test_ray_and_in_process_paths_give_identical_numbers(tmp_path):
    pytest.importorskip("ray")
    kodak_image()
    config = EvalConfig(datasets=[str(KODAK)], qualities=[2], methods=["none", "sga+ssl"], steps=[5], crop=(64, 64),
                        limit=2, refinement=protocol(seed=4), threads=1)
    local = run_evaluation(config, tmp_path / "local")
    distributed = run_evaluation(config, tmp_path / "ray", workers=2)
    strip = lambda records: {r["cell"]: {k: v for k, v in r.items() if "seconds" not in k and k != "trace"}  # noqa: E731
                             for r in records}
    assert len(distributed) == 4
    assert strip(distributed) == strip(local)
    for name in (p.name for p in (tmp_path / "local" / "files").iterdir()):
        assert (tmp_path / "ray" / "files" / name).read_bytes() == (tmp_path / "local" / "files" / name).read_bytes()


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
    assert table.splitlines()[-1].endswith("| 2.0 |")


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


@pytest.mark.slow
def test_local_ray_workers_run_at_normal_priority(monkeypatch):
    import os

    import ray

    from latentfit.parallel import start_ray

    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    start_ray(None, 1)
    try:
        niceness = ray.get(ray.remote(lambda: os.nice(0)).remote())
    finally:
        ray.shutdown()
    assert niceness == os.nice(0)  # Ray's default would be 15 above ours


def test_evaluating_a_checkpoint_file_runs_its_weights_at_its_quality(tmp_path):
    from latentfit import load_model
    from latentfit.evaluation.runner import eval_model
    from latentfit.models.registry import BUNDLED_DIR

    kodak_image()
    weights = BUNDLED_DIR / "latentfit-msh-1.pt"  # a weights file with its model card beside it
    config = EvalConfig(datasets=[str(KODAK)], qualities=[1], methods=["none"], crop=(64, 64), limit=1,
                        checkpoint=str(weights))
    assert config.identity() != EvalConfig(datasets=[str(KODAK)], qualities=[1], methods=["none"], crop=(64, 64),
                                           limit=1).identity()
    records = run_evaluation(config, tmp_path)
    assert [(r["model"], r["quality"]) for r in records] == [("latentfit-msh", 1)]
    assert records[0]["weights_digest"] == load_model("latentfit-msh", 1).digest.hex() == eval_model(config, 1).digest.hex()


def test_a_lmbda_axis_refines_at_each_multiple_and_resumes(tiny_eval, tmp_path):
    import dataclasses

    from latentfit.evaluation.runner import lmbda_curves

    config = dataclasses.replace(tiny_eval, limit=1, lmbda_points=["x0.5", "", "x2"])
    records = run_evaluation(config, tmp_path)
    refined = {r["lmbda_point"]: r for r in records if r["method"] == "sga+ssl"}
    assert len(records) == 4 and set(refined) == {"x0.5", "", "x2"}  # `none` once: its file ignores λ
    own = refined[""]["lmbda"]
    assert refined["x0.5"]["lmbda"] == pytest.approx(own / 2) and refined["x2"]["lmbda"] == pytest.approx(own * 2)
    # the cell at the model's own λ is the same cell as without an axis, so earlier journals are reused
    plain = run_evaluation(dataclasses.replace(tiny_eval, limit=1), tmp_path)
    assert len((tmp_path / "cells.jsonl").read_text().splitlines()) == 4 and len(plain) == 2
    # one quality, three λ: one curve along λ, written as CompressAI-format JSON with a λ column
    assert lmbda_curves(records) == {("latentfit-msh", "sga+ssl", 6)}
    summarise(records, tmp_path)
    curve = json.loads((tmp_path / "latentfit-msh-sga+ssl-6-lambda-q2.json").read_text())
    assert curve["results"]["lmbda"] == sorted(r["lmbda"] for r in refined.values())


@pytest.mark.parametrize("spec, expected", [("sga+ssl3:a=1.4:power=1.4", ("sga+ssl3", {"a": 1.4, "power": 1.4})),
                                            ("sga", ("sga", {}))])
def test_method_specs_carry_proxy_options(spec, expected):
    from latentfit.relaxations import parse_method

    assert parse_method(spec) == expected


@pytest.mark.parametrize("spec", ["sga:a=2", "sga+ssl:a", "sga+ssl:a=x", "nope"])
def test_bad_method_specs_are_refused(spec):
    from latentfit.relaxations import parse_method

    with pytest.raises(LatentfitError):
        parse_method(spec)


def test_an_evaluated_method_spec_refines_with_its_options(tmp_path):
    kodak_image()
    config = EvalConfig(datasets=[str(KODAK)], qualities=[2], methods=["sga+ssl3", "sga+ssl3:a=1.4:power=1.4"],
                        steps=[4], crop=(64, 64), limit=1)
    records = {r["method"]: r for r in run_evaluation(config, tmp_path)}
    assert records["sga+ssl3:a=1.4:power=1.4"]["proxy_options"] == {"a": 1.4, "power": 1.4}
    assert records["sga+ssl3"]["proxy_options"] == {}
    assert records["sga+ssl3"]["true_loss_final"] != records["sga+ssl3:a=1.4:power=1.4"]["true_loss_final"]
    assert records["sga+ssl3:a=1.4:power=1.4"]["config"]["proxy"] | {"hard": False} == {
        "method": "sga+ssl3", "a": 1.4, "factor": 0.98, "power": 1.4, "hard": False}
    summarise(list(records.values()), tmp_path / "summary")
    names = sorted(p.name for p in (tmp_path / "summary").glob("latentfit-msh-*.json"))
    assert names == ["latentfit-msh-sga+ssl3-4.json", "latentfit-msh-sga+ssl3_a_1.4_power_1.4-4.json"]  # no ':' '='


def test_an_old_journal_is_carried_over_to_the_new_identity_and_nothing_else_changes(tmp_path):
    """tools/migrate_journal.py rewrites only `config_id`, and only from the old identity of the
    settings given; a record of other settings stops it with nothing written."""
    import sys

    from .conftest import ROOT

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from migrate_journal import main, old_identity
    finally:
        sys.path.remove(str(ROOT / "tools"))

    def tool(*options):
        sys.argv = ["migrate_journal.py", str(tmp_path), *options]
        main()

    crops = EvalConfig(datasets=[], crop=(64, 64))
    journal = tmp_path / "cells.jsonl"
    records = [{"cell": f"k/a.png|q{q}|none|0", "config_id": old_identity(crops), "psnr": 30.0 + q / 3, "trace": []}
               for q in (1, 2)]
    journal.write_text("".join(json.dumps(r) + "\n" for r in records))
    argv = sys.argv
    try:
        tool("--crop", "64x64")
        before = journal.read_bytes()
        with pytest.raises(SystemExit, match="nothing written"):
            tool("--lr", "1e-2")
    finally:
        sys.argv = argv
    assert journal.read_bytes() == before
    migrated = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["config_id"] for r in migrated] == [crops.identity()] * 2 != [old_identity(crops)] * 2
    assert [{k: v for k, v in r.items() if k != "config_id"} for r in migrated] == [
        {k: v for k, v in r.items() if k != "config_id"} for r in records]


@pytest.mark.parametrize("broken, complaint", [
    ({"bpp": None}, "'bpp' should be float"), ({"quality": "2"}, "'quality' should be int"), ({"psnr": ...}, "without 'psnr'"),
])
def test_a_journal_line_that_is_not_a_record_is_named(tmp_path, broken, complaint):
    from latentfit.evaluation.runner import read_records

    identity = EvalConfig(datasets=[]).identity()
    good = {"cell": "k/a.png|q1|none|0", "config_id": identity, "image": "k/a.png", "quality": 1, "method": "none",
            "steps": 0, "bytes": 100, "bpp": 0.5, "psnr": 30.0}
    bad = {k: v for k, v in (good | broken).items() if v is not ...} | {"cell": "k/b.png|q1|none|0"}
    (tmp_path / "cells.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(LatentfitError, match=rf"cells.jsonl:2: results record.*{complaint}"):
        read_records(tmp_path, identity)
    (tmp_path / "cells.jsonl").write_text(json.dumps(good) + "\n")
    assert list(read_records(tmp_path, identity)) == [good["cell"]]


def test_journal_records_reads_every_configuration_and_skips_a_torn_line(tmp_path):
    """The benchmarks' reader: whole records of any configuration, a line still being written skipped,
    a line that is not a record, or a folder without a journal, a one-line error naming the file."""
    from latentfit.evaluation.runner import journal_records, read_records

    def record(config_id, quality):
        return {"cell": f"kodak/a.png|q{quality}|none|0", "config_id": config_id, "image": "kodak/a.png",
                "quality": quality, "method": "none", "steps": 0, "bytes": 100 * quality, "bpp": 0.1 * quality,
                "psnr": 30.0 + quality}

    results = tmp_path / "results"
    results.mkdir()
    lines = [json.dumps(record("aaa", 1)), json.dumps(record("bbb", 2))]
    (results / "cells.jsonl").write_text("\n".join(lines) + "\n" + lines[0][:40])
    assert [(r["config_id"], r["quality"]) for r in journal_records(results)] == [("aaa", 1), ("bbb", 2)]
    with pytest.raises(LatentfitError, match="another configuration"):
        read_records(results, "aaa")  # a run resuming the folder still refuses the mixture
    (results / "cells.jsonl").write_text(lines[0] + "\n[1, 2]\n")
    with pytest.raises(LatentfitError, match=r"cells.jsonl:2: not a results record"):
        journal_records(results)
    with pytest.raises(LatentfitError, match="no cells.jsonl"):
        journal_records(tmp_path)
