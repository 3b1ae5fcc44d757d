"""The evaluation grid: cells, the resumable journal and its identity, Ray (`latentfit.evaluation.runner`)."""

import dataclasses
import json

import pytest

from latentfit.config import PAPERS_PROTOCOL, RefinementConfig
from latentfit.errors import LatentfitError
from latentfit.evaluation import EvalConfig, run_evaluation
from latentfit.evaluation.runner import summarise

from .conftest import KODAK, kodak_image


def protocol(**changes) -> RefinementConfig:
    """The papers' protocol, `eval`'s default, with `changes`."""
    return dataclasses.replace(PAPERS_PROTOCOL, **changes)


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


@pytest.mark.slow
def test_an_adapt_axis_adds_cells_for_refining_methods_only_and_reuses_the_others(tiny_eval, tmp_path):
    config = dataclasses.replace(tiny_eval, limit=1, adapts=["none", "postfilter"])
    plain = run_evaluation(dataclasses.replace(config, adapts=["none"]), tmp_path)
    records = run_evaluation(config, tmp_path)  # the journal's cells are reused: only the adapt cell runs
    assert len(plain) == 2 and len(records) == 3 and config.identity() == tiny_eval.identity()
    assert len((tmp_path / "cells.jsonl").read_text().splitlines()) == 3
    adapted = [r for r in records if r.get("adapt") == "postfilter"]
    assert len(adapted) == 1 and adapted[0]["method"] == "sga+ssl" and adapted[0]["cell"].endswith("|adapt=postfilter")
    assert adapted[0]["config"]["adapt"]["name"] == "postfilter" and "update_parameters" in adapted[0]
    summarise(records, tmp_path)
    assert (tmp_path / "latentfit-msh-sga+ssl_adapt_postfilter-6.json").exists()  # its own curve


@pytest.mark.slow
def test_a_distortion_axis_has_its_own_cells_and_curves_and_bd_rates_in_ms_ssim(tiny_eval, tmp_path):
    config = dataclasses.replace(tiny_eval, limit=1, qualities=[1, 2], crop=(192, 192), distortions=["mse", "ms-ssim"])
    records = run_evaluation(config, tmp_path)
    assert config.identity() == dataclasses.replace(config, distortions=["mse"]).identity()
    assert len(records) == 6  # none and sga+ssl per quality, and the ms-ssim cells
    objective = [r for r in records if r.get("distortion") == "ms-ssim"]
    assert len(objective) == 2 and all(r["cell"].endswith("|distortion=ms-ssim") for r in objective)
    assert all(r["config"]["distortion"] == {"name": "ms-ssim"} for r in objective)
    by_cell = {(r["quality"], r.get("distortion"), r["method"]): r for r in records}
    for q in (1, 2):  # refined for MS-SSIM: a higher MS-SSIM per byte than refined for MSE, a lower PSNR
        ms, mse = by_cell[(q, "ms-ssim", "sga+ssl")], by_cell[(q, "mse", "sga+ssl")]
        assert ms["psnr"] < mse["psnr"]
    rows = {row["method"]: row for row in summarise(records, tmp_path)["bd_rates"]}
    assert set(rows) == {"sga+ssl", "sga+ssl distortion=ms-ssim"}
    assert all(row["bd_rate_ms_ssim"] is not None for row in rows.values())
    assert (tmp_path / "latentfit-msh-sga+ssl_distortion_ms-ssim-6.json").exists()
    assert (tmp_path / "rd_ms-ssim.png").exists() and not (tmp_path / "rd_cvvdp.png").exists()


@pytest.mark.slow
def test_perceptual_metrics_are_measured_on_every_cell_and_summarised(tiny_eval, tmp_path):
    config = dataclasses.replace(tiny_eval, limit=1, qualities=[1, 4], crop=(96, 96), classical=["webp"],
                                 metrics=["ssimulacra2", "cvvdp"])
    records = run_evaluation(config, tmp_path)
    assert config.identity() == dataclasses.replace(config, metrics=[]).identity()  # metrics do not change a file
    assert all(isinstance(r["ssimulacra2"], float) and 0 < r["cvvdp"] <= 10 for r in records)
    learned = sorted((r for r in records if r["method"] == "none"), key=lambda r: r["quality"])
    assert learned[0]["cvvdp"] < learned[1]["cvvdp"]  # the higher quality is seen as better
    rows = {row["method"]: row for row in summarise(records, tmp_path)["bd_rates"]}
    assert rows["sga+ssl"]["bd_rate_cvvdp"] is not None and rows["sga+ssl"]["bd_rate_ssimulacra2"] is not None
    assert rows["webp"]["bd_rate_cvvdp"] is not None
    header = (tmp_path / "summary.md").read_text()
    assert "BD-rate (SSIMULACRA2) | BD-rate (CVVDP)" in header
    assert (tmp_path / "rd_cvvdp.png").exists() and (tmp_path / "rd_ssimulacra2.png").exists()
    curve = json.loads((tmp_path / "latentfit-msh-sga+ssl-6.json").read_text())["results"]
    assert len(curve["cvvdp"]) == 2 and curve["cvvdp"][0] < curve["cvvdp"][1]  # the CompressAI-format curve too


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
