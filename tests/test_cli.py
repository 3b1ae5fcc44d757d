"""The command line as users run it: real processes, exit codes, one-line errors, no partial files."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from .conftest import kodak_image


#: Every test here runs the real `latentfit` command in a subprocess (a few seconds each).
pytestmark = pytest.mark.slow


def run(*args, cwd=None):
    env = dict(os.environ, LATENTFIT_OFFLINE="1", OMP_NUM_THREADS=os.environ.get("LATENTFIT_TEST_THREADS", "2"))
    return subprocess.run([sys.executable, "-m", "latentfit.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def assert_clean_failure(proc, *fragments):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("latentfit: error:")]
    assert len(error_lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in error_lines[0]


def interrupt_when(ready, signal_number, *args, settle=0.0):
    """Start `latentfit ARGS` as a real process, send it `signal_number` once `ready()` holds (or after
    240 s), `settle` seconds later; returns (exit code, stderr)."""
    env = dict(os.environ, LATENTFIT_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "latentfit.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    while not ready() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(settle)
    proc.send_signal(signal_number)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


@pytest.fixture(scope="module")
def crop_png(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "crop.png"
    with Image.open(kodak_image()) as img:
        img.crop((300, 200, 492, 328)).save(path)
    return path


@pytest.fixture(scope="module")
def encoded(crop_png, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "crop.lfc"
    proc = run("encode", crop_png, "-o", out, "--method", "sga+ssl", "--steps", "20", "--seed", "7", "--json")
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def test_encode_json_reports_the_real_file(encoded):
    out, stats = encoded
    size = out.stat().st_size
    assert stats["bytes"] == size
    assert stats["bpp"] == pytest.approx(8 * size / (192 * 128))
    assert stats["true_loss_final"] < stats["true_loss_initial"]
    assert stats["seed"] == 7 and stats["method"] == "sga+ssl" and stats["steps"] == 20
    for key in ("psnr", "ms_ssim", "lmbda", "seconds"):
        assert key in stats


def test_decode_writes_the_image_encode_measured(encoded, crop_png, tmp_path):
    out, stats = encoded
    png = tmp_path / "back.png"
    proc = run("decode", out, "-o", png)
    assert proc.returncode == 0, proc.stderr
    decoded = np.asarray(Image.open(png))
    original = np.asarray(Image.open(crop_png))
    assert decoded.shape == original.shape
    mse = np.mean((decoded.astype(float) - original.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) == pytest.approx(stats["psnr"], abs=1e-9)


def test_info_needs_no_model(encoded):
    out, _ = encoded
    proc = run("info", out, "--json")
    fields = json.loads(proc.stdout)
    assert fields["width"] == 192 and fields["height"] == 128 and fields["model"] == "latentfit-msh"
    assert fields["bytes"] == out.stat().st_size


def test_existing_output_is_not_overwritten_without_force(encoded, crop_png):
    out, _ = encoded
    before = out.read_bytes()
    proc = run("encode", crop_png, "-o", out, "--steps", "0")
    assert_clean_failure(proc, str(out), "already exists")
    assert out.read_bytes() == before
    assert run("encode", crop_png, "-o", out, "--method", "none", "--force").returncode == 0
    assert out.read_bytes() != before


@pytest.mark.parametrize("content,message", [(None, "no such file"), (b"hello, not an image", "not a readable image")])
def test_bad_image_input(tmp_path, content, message):
    source = tmp_path / "in.png"
    if content is not None:
        source.write_bytes(content)
    proc = run("encode", source, "-o", tmp_path / "out.lfc")
    assert_clean_failure(proc, "in.png", message)
    assert list(tmp_path.iterdir()) == ([source] if content is not None else [])


def test_damaged_files_are_refused_without_output(encoded, tmp_path):
    out, _ = encoded
    data = out.read_bytes()
    cases = {"truncated.lfc": data[: len(data) // 2], "flipped.lfc": data[:40] + bytes([data[40] ^ 4]) + data[41:],
             "empty.lfc": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        proc = run("decode", tmp_path / name, "-o", tmp_path / "x.png")
        assert_clean_failure(proc, name)
        assert not (tmp_path / "x.png").exists()


def test_file_from_other_weights_is_refused(encoded, tmp_path):
    from latentfit.models.architectures import build_architecture
    from latentfit.models.weights import export_weights

    out, _ = encoded
    other = tmp_path / "other.pt"
    import torch

    torch.manual_seed(0)
    export_weights(build_architecture("mbt2018-mean", 128, 192), other, {"name": "latentfit-msh", "quality": 2})
    proc = run("decode", out, "-o", tmp_path / "x.png", "--checkpoint", other)
    assert_clean_failure(proc, "other weights")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16"])
def test_grayscale_alpha_and_16_bit_inputs_are_converted_and_said(tmp_path, mode):
    with Image.open(kodak_image()) as img:
        crop = img.crop((0, 0, 70, 50))
    if mode == "I;16":
        gray = np.asarray(crop.convert("L"), dtype=np.uint16) * 257
        converted = Image.fromarray(gray)
        assert converted.mode == "I;16"
    else:
        converted = crop.convert(mode)
    source = tmp_path / "in.png"
    converted.save(source)
    proc = run("encode", source, "-o", tmp_path / "o.lfc", "--method", "none")
    assert proc.returncode == 0, proc.stderr
    assert "latentfit: note:" in proc.stderr
    assert run("decode", tmp_path / "o.lfc", "-o", tmp_path / "o.png").returncode == 0
    decoded = Image.open(tmp_path / "o.png")
    assert decoded.size == (70, 50)
    assert decoded.mode == ("L" if mode in ("L", "I;16") else "RGB")


def test_file_from_an_unavailable_model_says_what_it_needs(tmp_path, crop_png):
    from latentfit.models.architectures import build_architecture
    from latentfit.models.weights import export_weights

    export_weights(build_architecture("mbt2018-mean", 16, 24), tmp_path / "mine.pt", {"name": "mine", "quality": 1})
    assert run("encode", crop_png, "-o", tmp_path / "m.lfc", "--checkpoint", tmp_path / "mine.pt",
               "--method", "none").returncode == 0
    assert_clean_failure(run("decode", tmp_path / "m.lfc", "-o", tmp_path / "m.png"), "model 'mine' quality 1",
                         "--checkpoint")
    assert run("decode", tmp_path / "m.lfc", "-o", tmp_path / "m.png", "--checkpoint", tmp_path / "mine.pt").returncode == 0


def test_a_user_checkpoint_is_a_model_by_its_card_name(tmp_path, crop_png, monkeypatch):
    """An export in $LATENTFIT_HOME/checkpoints encodes as `--model NAME`, and its files decode without
    `--checkpoint`, to the same pixels as with it."""
    from latentfit.models.architectures import build_architecture
    from latentfit.models.weights import export_weights

    folder = tmp_path / "home" / "checkpoints"
    folder.mkdir(parents=True)
    monkeypatch.setenv("LATENTFIT_HOME", str(tmp_path / "home"))
    export_weights(build_architecture("mbt2018-mean", 16, 24), folder / "mine-1.pt", {"name": "mine", "quality": 1})
    assert run("encode", crop_png, "-o", tmp_path / "m.lfc", "--model", "mine", "--quality", "1",
               "--method", "none").returncode == 0
    proc = run("decode", tmp_path / "m.lfc", "-o", tmp_path / "m.png")
    assert proc.returncode == 0, proc.stderr
    assert run("decode", tmp_path / "m.lfc", "-o", tmp_path / "n.png", "--checkpoint", folder / "mine-1.pt").returncode == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "m.png")), np.asarray(Image.open(tmp_path / "n.png")))


def test_unknown_model_and_method_are_one_line_errors(crop_png, tmp_path):
    assert_clean_failure(run("encode", crop_png, "-o", tmp_path / "a.lfc", "--model", "nope"), "unknown model 'nope'")
    assert_clean_failure(run("encode", crop_png, "-o", tmp_path / "a.lfc", "--method", "sgaa"), "unknown method")
    assert not (tmp_path / "a.lfc").exists()


@pytest.mark.parametrize("option, value, message", [("--steps", "lots", "--steps must be"),
                                                    ("--tile", "big", "--tile must be"),
                                                    ("--tile", "16", "tile must be"),
                                                    ("--schedule", "fast", "unknown temperature schedule 'fast'"),
                                                    ("--evaluations", "often", "unknown evaluation policy 'often'")])
def test_bad_speed_options_are_one_line_errors(crop_png, tmp_path, option, value, message):
    assert_clean_failure(run("encode", crop_png, "-o", tmp_path / "a.lfc", option, value), message)
    assert not (tmp_path / "a.lfc").exists()


def test_auto_steps_with_a_time_budget_and_forced_tiles(crop_png, tmp_path):
    out = tmp_path / "a.lfc"
    proc = run("encode", crop_png, "-o", out, "--steps", "auto", "--time-budget", "3", "--tile", "64",
               "--schedule", "budget", "--json")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["tiles"] == 2 * 3 and stats["steps"] == "auto"
    assert stats["refine_seconds"] < 3 + 1.5
    recorded = stats["config"]["stopping"] | stats["config"]["runtime"]
    assert recorded.items() >= {"time_budget": 3.0, "steps": "auto", "tile": 64}.items()
    assert stats["bytes"] == out.stat().st_size


def test_folder_encoding_survives_an_interrupt_and_resumes(tmp_path):
    from latentfit.bitstream import from_bytes

    source = tmp_path / "in"
    source.mkdir()
    with Image.open(kodak_image()) as img:
        for index in range(3):
            img.crop((index * 100, 0, index * 100 + 96, 64)).save(source / f"img{index}.png")
    outdir = tmp_path / "out"
    returncode, stderr = interrupt_when(lambda: (outdir / "img0.lfc").exists(), signal.SIGINT, "encode", source,
                                        "-o", outdir, "--method", "sga+ssl", "--steps", "100000", "--time-budget", "3",
                                        settle=0.5)
    assert returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    finished = sorted(outdir.iterdir())
    assert [p.name for p in finished] == ["img0.lfc"]  # nothing half-written, no temporary files
    from_bytes(finished[0].read_bytes())
    first_mtime = finished[0].stat().st_mtime_ns

    rerun = run("encode", source, "-o", outdir, "--method", "none", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert "1 of 3 already encoded" in rerun.stderr
    assert [json.loads(line)["input"].endswith(name) for line, name in
            zip(rerun.stdout.splitlines(), ["img1.png", "img2.png"])] == [True, True]
    assert sorted(p.name for p in outdir.iterdir()) == ["img0.lfc", "img1.lfc", "img2.lfc"]
    assert (outdir / "img0.lfc").stat().st_mtime_ns == first_mtime


def _three_crops(folder):
    folder.mkdir()
    with Image.open(kodak_image()) as img:
        for index in range(3):
            img.crop((index * 200, 100, index * 200 + 96, 164)).save(folder / f"img{index}.png")
    return folder


def test_a_folder_on_two_workers_gives_the_same_files_and_resumes(tmp_path):
    pytest.importorskip("ray")
    source = _three_crops(tmp_path / "in")
    one = run("encode", source, "-o", tmp_path / "one", "--steps", "20", "--seed", "3", "--threads", "1", "--json")
    assert one.returncode == 0, one.stderr
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "img1.lfc").write_bytes((tmp_path / "one" / "img1.lfc").read_bytes())  # done earlier
    two = run("encode", source, "-o", tmp_path / "two", "--steps", "20", "--seed", "3", "--workers", "2", "--json")
    assert two.returncode == 0, two.stderr
    assert "1 of 3 already encoded" in two.stderr
    reported = {json.loads(line)["input"].rsplit("/", 1)[-1]: json.loads(line) for line in two.stdout.splitlines()}
    assert sorted(reported) == ["img0.png", "img2.png"]  # the finished file was not encoded again
    for name in ("img0", "img1", "img2"):
        assert (tmp_path / "two" / f"{name}.lfc").read_bytes() == (tmp_path / "one" / f"{name}.lfc").read_bytes()
    for name, stats in reported.items():
        assert stats["bytes"] == (tmp_path / "two" / name.replace(".png", ".lfc")).stat().st_size
        assert stats["seed"] == 3 and stats["steps_run"] == 20


def test_a_parallel_folder_refines_for_the_distortion_asked_for(tmp_path):
    pytest.importorskip("ray")
    folder = tmp_path / "in"
    folder.mkdir()
    with Image.open(kodak_image()) as img:
        for index in range(2):
            img.crop((index * 200, 100, index * 200 + 176, 292)).save(folder / f"img{index}.png")
    proc = run("encode", folder, "-o", tmp_path / "out", "--steps", "5", "--distortion", "mix:0.5", "--workers", "2",
               "--json")
    assert proc.returncode == 0, proc.stderr
    stats = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(stats) == 2 and {s["distortion"] for s in stats} == {"mix:0.5"}
    assert all(s["config"]["distortion"] == {"name": "mix", "weight": 0.5} for s in stats)


def test_a_folder_takes_a_folder_of_masks_one_per_image_by_name(tmp_path):
    """`--roi MASKS/` with a folder: IN/img0.png's mask is MASKS/img0.png, the same file as encoding
    that image alone with it, sequentially and on two workers; an image without a mask is encoded
    without one (a note says so); a mask file or a folder without any mask is refused in one line."""
    source = _three_crops(tmp_path / "in")
    masks = tmp_path / "masks"
    masks.mkdir()
    levels = np.zeros((64, 96), dtype=np.uint8)
    levels[:, :32] = 255
    Image.fromarray(levels, "L").save(masks / "img0.png")
    alone = run("encode", source / "img0.png", "-o", tmp_path / "alone.lfc", "--roi", masks / "img0.png",
                "--steps", "5", "--threads", "1")
    plain = run("encode", source / "img0.png", "-o", tmp_path / "plain.lfc", "--steps", "5", "--threads", "1")
    assert alone.returncode == 0 and plain.returncode == 0, alone.stderr + plain.stderr
    assert (tmp_path / "alone.lfc").read_bytes() != (tmp_path / "plain.lfc").read_bytes()  # the mask matters
    ray = [] if _no_ray() else [["--workers", "2"]]
    for name, extra in [("one", ["--threads", "1"]), *(("two", e) for e in ray)]:
        proc = run("encode", source, "-o", tmp_path / name, "--roi", masks, "--steps", "5", "--json", *extra)
        assert proc.returncode == 0, proc.stderr
        stats = {json.loads(line)["input"].rsplit("/", 1)[-1]: json.loads(line) for line in proc.stdout.splitlines()}
        assert {k: v["roi"] for k, v in stats.items()} == {"img0.png": True, "img1.png": False, "img2.png": False}
        assert "img1.png: no mask" in proc.stderr and "img2.png: no mask" in proc.stderr
        assert (tmp_path / name / "img0.lfc").read_bytes() == (tmp_path / "alone.lfc").read_bytes()
    refused = run("encode", source, "-o", tmp_path / "bad", "--roi", masks / "img0.png")
    assert_clean_failure(refused, "img0.png", "takes a folder of masks")
    (tmp_path / "empty").mkdir()
    empty = run("encode", source, "-o", tmp_path / "bad", "--roi", tmp_path / "empty")
    assert_clean_failure(empty, "no mask for any of the 3 images")
    assert not list((tmp_path / "bad").glob("*.lfc"))


def _no_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is None


def test_a_bad_image_stops_a_parallel_folder_with_one_line_and_no_partial_file(tmp_path):
    pytest.importorskip("ray")
    source = _three_crops(tmp_path / "in")
    (source / "img1.png").write_bytes(b"not an image")
    proc = run("encode", source, "-o", tmp_path / "out", "--steps", "5", "--workers", "2")
    assert_clean_failure(proc, "img1.png", "not a readable image")
    assert proc.returncode == 2
    written = list((tmp_path / "out").iterdir())
    assert "img1.lfc" not in {p.name for p in written} and not [p for p in written if p.suffix != ".lfc"]
    refused = run("encode", source, "-o", tmp_path / "out", "--workers", "0")
    assert_clean_failure(refused, "--workers")


def test_models_json_lists_the_bundled_models_with_how_to_select_them():
    proc = run("models", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    bundled = [r for r in rows if r["source"] == "bundled"]
    assert {r["quality"] for r in bundled} >= {1, 2, 3, 4}
    assert {r["name"] for r in bundled} == {"latentfit-msh", "latentfit-ctx", "latentfit-msh-warm"}
    for row in bundled:
        assert row["select"] == {"model": row["name"], "quality": row["quality"]}
        assert row["kodak_bpp"] > 0 and row["kodak_psnr"] > 0


def test_encode_help_states_the_library_defaults_it_describes():
    """The help spells the defaults and lists the methods with their options: they must be the
    constants and the registry the refinement actually uses."""
    import typer.main

    from latentfit import cli
    from latentfit.refine import AUTO_STEPS, BUDGET_TAU_END, BUDGET_TAU_START, RefinementConfig
    from latentfit.relaxations import PROXIES, get_proxy

    encode = typer.main.get_command(cli.app).commands["encode"]
    helps = {param.name: param.help or "" for param in encode.params}
    assert f"{BUDGET_TAU_START:g}·τ_max → {BUDGET_TAU_END:g}·τ_max" in helps["schedule"]
    assert f"{RefinementConfig().lr_final_fraction:g}·lr" in helps["lr_schedule"]
    assert f"({AUTO_STEPS};" in helps["steps"]
    stated = re.search(r"default: (\S+) for sga\+ssl, (\S+), the papers'", helps["lr"])
    assert stated, helps["lr"]
    assert float(stated[1]) == get_proxy("sga+ssl").default_lr and float(stated[2]) == get_proxy("sga").default_lr
    listed = re.findall(r"([a-z0-9+-]+)(?: \(([a-z, ]+)\))?(?:,|\.$)", helps["method"].split("Methods (options): ", 1)[1])
    assert {name: tuple(filter(None, options.split(", "))) for name, options in listed} == {
        name: cls.options for name, cls in PROXIES.items()}
    defaults = {param.name: param.default for param in encode.params}
    assert defaults["method"] == RefinementConfig().method
    assert defaults["schedule"] == RefinementConfig().schedule and defaults["lr_schedule"] == RefinementConfig().lr_schedule


def test_sigterm_stops_a_ray_evaluation_like_ctrl_c(tmp_path):
    """A job scheduler's SIGTERM during a Ray evaluation: exit 130 with the one-line message (not Ray's
    stack dump), and the journal holds only whole records."""
    pytest.importorskip("ray")
    from .conftest import KODAK

    kodak_image()
    results = tmp_path / "results"
    journal = results / "cells.jsonl"
    returncode, stderr = interrupt_when(lambda: journal.exists() and journal.read_text().count("\n") > 0,
                                        signal.SIGTERM, "eval", KODAK, "--crop", "64x64", "--limit", "1",
                                        "--quality", "2", "--method", "none,sga+ssl", "--steps", "3000",
                                        "--workers", "2", "--threads", "1", "--no-progress", "-o", results)
    assert returncode == 130, stderr
    assert "interrupted" in stderr
    assert "SIGTERM received" not in stderr and "Traceback" not in stderr, stderr
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [record["method"] for record in records] == ["none"]  # the 3000-step cell was cut off, not half-written


def test_the_time_budget_counts_from_reading_the_image_to_the_file_on_disk(crop_png, tmp_path):
    out = tmp_path / "a.lfc"
    proc = run("encode", crop_png, "-o", out, "--time-budget", "0.001", "--json")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["steps_run"] == 0 and stats["stopped_by"] == "time_budget"
    assert stats["bytes"] == out.stat().st_size
    parts = ["read_seconds", "refine_seconds", "coding_seconds", "check_seconds", "write_seconds"]
    assert all(stats[p] >= 0 for p in parts)
    assert sum(stats[p] for p in parts) == pytest.approx(stats["seconds"], abs=0.05)
    decoded = run("decode", out, "-o", tmp_path / "a.png")
    assert decoded.returncode == 0, decoded.stderr


def test_train_fine_tunes_a_named_model_and_the_export_encodes(tmp_path):
    from latentfit import load_model
    from tests.conftest import DATA

    folder = DATA / "train" / "cid22-valid"
    if not folder.is_dir():
        from tests.conftest import missing_data
        missing_data(f"training data at {folder}")
    proc = run("train", "--train-dir", folder, "--checkpoint-dir", tmp_path / "run", "--init", "latentfit-msh:1",
               "--finetune", "prior", "--steps", "2", "--batch-size", "2", "--patch-size", "64",
               "--export", tmp_path / "tuned.pt", "--name", "tuned", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    card = json.loads((tmp_path / "tuned.json").read_text())
    assert (card["architecture"], card["quality"], card["lmbda"], card["trainable"]) == ("mbt2018-mean", 1, 0.0035, "prior")
    import torch

    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["model"]
    base = load_model("latentfit-msh", 1).model.state_dict()
    assert all(torch.equal(state[k], base[k]) for k in base if k.startswith(("g_a.", "g_s.")))
    assert not all(torch.equal(state[k], base[k]) for k in base if k.startswith("h_s."))
    encoded = run("encode", kodak_image(), "-o", tmp_path / "a.lfc", "--checkpoint", tmp_path / "tuned.pt",
                  "--method", "none", "--json")
    assert encoded.returncode == 0, encoded.stderr
    assert json.loads(encoded.stdout)["model"] == "tuned"
    refused = run("train", "--train-dir", folder, "--checkpoint-dir", tmp_path / "x", "--init", "latentfit-msh:one")
    assert_clean_failure(refused, "NAME:QUALITY")


def test_eval_takes_encodes_tail_evaluations_and_keeps_them_apart_from_every(tmp_path):
    """`eval --evaluations tail` measures the true loss as `encode` does by default (sparse, then every
    10 steps in the last 20 %), records it, and its journal refuses a run with the other setting."""
    from latentfit.config import RefinementConfig

    from .conftest import KODAK

    kodak_image()
    results = tmp_path / "results"
    grid = ("eval", KODAK, "--crop", "64x64", "--limit", "1", "--quality", "2", "--method", "sga+ssl", "--steps",
            "100", "--lr", "0.03", "--schedule", "budget", "--no-progress", "-o", results)
    proc = run(*grid, "--evaluations", "tail")
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in (results / "cells.jsonl").read_text().splitlines()]
    assert record["config"]["stopping"]["evaluations"] == "tail"
    tail = RefinementConfig(evaluations="tail")
    expected = [0] + [step for step in range(1, 101) if tail.evaluation_due(step, 100)]
    assert [point["step"] for point in record["trace"]] == expected == [0, 50, 90, 100]
    assert_clean_failure(run(*grid), "another configuration")  # the default, every: other numbers
    assert_clean_failure(run(*grid, "--evaluations", "often"), "unknown evaluation policy")


def test_encode_closed_loop_passes_start_lower_and_bad_counts_are_one_error(crop_png, tmp_path):
    plain = run("encode", crop_png, "-o", tmp_path / "plain.lfc", "--method", "none", "--json")
    start = run("encode", crop_png, "-o", tmp_path / "start.lfc", "--method", "none", "--closed-loop", "3", "--json")
    assert plain.returncode == 0 and start.returncode == 0, plain.stderr + start.stderr
    plain, start = json.loads(plain.stdout), json.loads(start.stdout)
    assert (plain["closed_loop"], start["closed_loop"]) == (0, 3)
    assert start["true_loss_final"] < plain["true_loss_final"]
    assert start["bytes"] == (tmp_path / "start.lfc").stat().st_size
    decoded = run("decode", tmp_path / "start.lfc", "-o", tmp_path / "start.png")
    assert decoded.returncode == 0, decoded.stderr
    refused = run("encode", crop_png, "-o", tmp_path / "bad.lfc", "--closed-loop", "-1")
    assert_clean_failure(refused, "closed-loop passes")
    assert not (tmp_path / "bad.lfc").exists()

