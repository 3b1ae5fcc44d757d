"""The self-contained HTML report (`latentfit.evaluation.report`)."""

import pytest
from PIL import Image

from latentfit.evaluation import EvalConfig, run_evaluation
from latentfit.evaluation.runner import summarise

from .conftest import KODAK, kodak_image


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


def test_report_shows_the_bd_rates_and_plots_of_the_metrics_measured(tmp_path):
    """`eval --metric`: the report's BD table gets a column per metric the summary has, and the
    metric's R-D plot; a metric nobody measured gets neither."""
    from latentfit.evaluation.report import write_report

    kodak_image()
    config = EvalConfig(datasets=[str(KODAK)], qualities=[1, 2, 3, 4], methods=["none", "sga+ssl"], steps=[3],
                        crop=(64, 64), limit=1)
    records = run_evaluation(config, tmp_path)
    summary = summarise(records, tmp_path)
    refined = next(r for r in summary["bd_rates"] if r["method"] == "sga+ssl")
    refined["bd_rate_ssimulacra2"] = -12.345
    Image.new("RGB", (8, 8), "red").save(tmp_path / "rd_ssimulacra2.png")
    html = write_report(records, summary, config, tmp_path, viewer_images=0).read_text()
    assert "<th>BD-rate, SSIMULACRA2</th>" in html and "<td>-12.35 %</td>" in html
    assert 'alt="rd_ssimulacra2.png"' in html
    assert "ColorVideoVDP" not in html and 'alt="rd_cvvdp.png"' not in html
