"""The refinement config: one frozen object, a method spec with its options, and a record it can be
re-run from."""

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latentfit import LatentfitError, RefinementConfig, TemperatureSchedule, encode
from latentfit import config as refinement
from latentfit.relaxations import PROXIES
from latentfit.schedules import EVALUATION_POLICIES, TAU_SCHEDULES, BudgetTemperature, TailEvaluation

SPECS = {
    "sga+ssl": st.fixed_dictionaries({}, optional={"a": st.floats(0.5, 5.0), "hard": st.booleans()}),
    "sga+ssl3": st.fixed_dictionaries({}, optional={"a": st.floats(0.5, 5.0), "factor": st.floats(0.5, 1.0),
                                                    "power": st.floats(1.0, 2.0)}),
    "sga": st.fixed_dictionaries({}, optional={"hard": st.booleans()}),
    "uniform-noise": st.just({}),
    "none": st.just({}),
}
schedules = st.one_of(
    st.sampled_from(["budget", "papers"]),
    st.builds(TemperatureSchedule, tau_max=st.floats(0.5, 2.0), rate=st.floats(0.0, 1e-2), t0=st.floats(0, 1000),
              tau_min=st.just(0.01)),
)


@st.composite
def configs(draw):
    method = draw(st.sampled_from(sorted(SPECS)))
    return RefinementConfig(
        method=method, proxy_options=draw(SPECS[method]), steps=draw(st.one_of(st.just("auto"), st.integers(0, 3000))),
        lr=draw(st.one_of(st.none(), st.floats(1e-4, 1e-1))), lmbda=draw(st.one_of(st.none(), st.floats(1e-4, 0.1))),
        seed=draw(st.integers(0, 2**31)), evaluate_every=draw(st.integers(1, 50)),
        variables=draw(st.sampled_from(["joint", "y"])), schedule=draw(schedules),
        time_budget=draw(st.one_of(st.none(), st.floats(1, 600))), lr_schedule=draw(st.sampled_from(["constant", "cosine"])),
        lr_final_fraction=draw(st.floats(0, 1)), patience=draw(st.one_of(st.none(), st.integers(1, 20))),
        channels_last=draw(st.booleans()), tile=draw(st.sampled_from(["auto", None, 512, 768])),
        precision=draw(st.sampled_from(refinement.PRECISIONS)), evaluations=draw(st.sampled_from(EVALUATION_POLICIES.names())),
        closed_loop=draw(st.integers(0, 8)), closed_loop_step=draw(st.floats(0.001, 1.0)),
    )


@given(configs())
def test_a_config_survives_its_json_record(config):
    """Everything that decides a run comes back from the record (through JSON, as files store it);
    an lr left to the method comes back as the value it resolved to, which is the same run."""
    again = RefinementConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again.to_dict() == config.to_dict()
    assert again.proxy().describe() == config.proxy().describe()
    # what the record leaves out cannot change the run: the cosine floor with a constant lr, the
    # improvement threshold without patience
    irrelevant = {"proxy_options": again.proxy_options, "lr": config.learning_rate()}
    if config.lr_schedule == "constant":
        irrelevant["lr_final_fraction"] = again.lr_final_fraction
    if not config.closed_loop:  # the step of no passes
        irrelevant["closed_loop_step"] = again.closed_loop_step
    assert again == dataclasses.replace(config, **irrelevant)


@pytest.mark.parametrize("bad", [{"closed_loop": -1}, {"closed_loop": 1.5}, {"closed_loop": True},
                                 {"closed_loop": 2, "closed_loop_step": 0.0}, {"closed_loop_step": 1.5}])
def test_closed_loop_settings_out_of_range_are_one_error(bad):
    with pytest.raises(LatentfitError, match="closed-loop"):
        RefinementConfig(**bad)


def test_a_record_without_closed_loop_passes_is_the_record_from_before_they_existed():
    """No passes leave the record as it was (journals keep their identity); passes are recorded."""
    assert "start" not in RefinementConfig(closed_loop=0, closed_loop_step=0.2).to_dict()
    record = RefinementConfig(closed_loop=3, closed_loop_step=0.2).to_dict()
    assert record["start"] == {"closed_loop": 3, "closed_loop_step": 0.2}
    assert RefinementConfig.from_dict(record).closed_loop == 3


def test_a_record_from_before_a_setting_existed_replays_as_it_ran():
    """Records written before `precision` and `evaluations` existed ran fp32 with an evaluation every
    `evaluate_every` steps: they must replay so, not with today's defaults (auto precision, tail)."""
    record = RefinementConfig().to_dict()
    del record["runtime"]["precision"], record["stopping"]["evaluations"]
    old = RefinementConfig.from_dict(record)
    assert (old.precision, old.evaluations) == ("fp32", "every")
    assert (RefinementConfig().precision, RefinementConfig().evaluations) == ("auto", "tail")


@given(st.integers(1, 3000), st.integers(1, 50))
def test_tail_evaluations_are_every_kth_step_at_the_end_and_sparser_before(steps, every):
    tail = RefinementConfig(evaluate_every=every, evaluations="tail")
    dense = RefinementConfig(evaluate_every=every, evaluations="every")
    due_tail = [s for s in range(1, steps + 1) if tail.evaluation_due(s, steps)]
    due_dense = [s for s in range(1, steps + 1) if dense.evaluation_due(s, steps)]
    assert due_dense == list(range(every, steps + 1, every))
    assert set(due_tail) <= set(due_dense)
    # the last fifth of the run is evaluated as densely as ever
    assert [s for s in due_dense if s > 0.8 * steps] == [s for s in due_tail if s > 0.8 * steps]
    # before it, at most one evaluation in five, evenly spaced
    early = [s for s in due_tail if s <= 0.8 * steps]
    assert all(b - a == TailEvaluation.sparse * every for a, b in zip(early, early[1:]))
    assert len(due_tail) <= len(due_dense)
    if steps >= 100 * every:
        assert len(due_tail) < 0.45 * len(due_dense)


def test_a_method_spec_carries_its_options_and_refuses_unknown_ones():
    config = RefinementConfig(method="sga+ssl3:a=1.4:power=1.4")
    assert (config.method, config.proxy_options) == ("sga+ssl3", {"a": 1.4, "power": 1.4})
    assert (config.proxy().a, config.proxy().power, config.proxy().factor) == (1.4, 1.4, 0.98)
    with pytest.raises(LatentfitError, match="no option 'a'"):
        RefinementConfig(method="sga:a=2")
    with pytest.raises(LatentfitError, match="no option 'power'"):
        RefinementConfig(method="sga+ssl", proxy_options={"power": 2.0})  # once silently dropped
    with pytest.raises(LatentfitError, match="given twice"):
        RefinementConfig(method="sga+ssl:a=2", proxy_options={"a": 3.0})


def test_a_config_cannot_change_after_it_was_checked():
    config = RefinementConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = -5  # type: ignore[misc]
    with pytest.raises(LatentfitError, match="steps"):
        dataclasses.replace(config, steps=-5)


def _hotter(start: float) -> type:
    """The budget schedule as a later measurement might move it: another start, the same name."""
    return dataclasses.make_dataclass("Hotter", [("start", float, start)], bases=(BudgetTemperature,), frozen=True)


def test_a_budget_recorded_with_other_constants_replays_as_the_schedule_it_ran(monkeypatch):
    """What "budget" means moves with measurements: a record made before keeps its own τ range."""
    record = RefinementConfig(method="sga+ssl", steps=400).to_dict()
    recorded = RefinementConfig.from_dict(record).temperature(400)
    monkeypatch.setitem(TAU_SCHEDULES.entries, "budget", _hotter(3.0))
    replayed = RefinementConfig.from_dict(record)
    assert isinstance(replayed.schedule, TemperatureSchedule)
    assert replayed.temperature(400) == recorded
    assert RefinementConfig(method="sga+ssl", steps=400).temperature(400) != recorded
    auto = RefinementConfig(method="sga+ssl").to_dict() | {"temperature": record["temperature"]}
    auto["temperature"]["budget_tau"] = [9.0, 0.1]
    with pytest.raises(LatentfitError, match="steps auto"):
        RefinementConfig.from_dict(auto)


@pytest.mark.parametrize("broken", [{}, {"format": 1}, {"format": 99}, "not a dict"])
def test_a_record_that_is_not_a_config_is_one_error(broken):
    with pytest.raises(LatentfitError):
        RefinementConfig.from_dict(broken)


def test_every_registered_method_builds_from_its_name():
    for name in PROXIES:
        assert RefinementConfig(method=name).proxy().name == name


def test_an_encode_is_reproduced_from_its_own_record(bundled_model, kodak_crop):
    config = RefinementConfig(method="sga+ssl3:a=1.4", steps=6, evaluate_every=3, seed=7, schedule="papers",
                              lr_schedule="constant")
    first = encode(kodak_crop, bundled_model, config)
    stored = json.loads(json.dumps(first.stats))
    assert stored["config"]["proxy"] == {"method": "sga+ssl3", "a": 1.4, "factor": 0.98, "power": 1.5, "hard": False}
    again = encode(kodak_crop, bundled_model, RefinementConfig.from_dict(stored["config"]))
    assert again.data == first.data and first.refinement.steps_run == 6
    other_seed = encode(kodak_crop, bundled_model, dataclasses.replace(config, seed=8))
    assert other_seed.data != first.data  # the record's seed is what made those bytes


@pytest.mark.parametrize("env, outcome", [({}, "skip"), ({"CI": "true"}, "fail"), ({"CI": "false"}, "skip"),
                                          ({"LATENTFIT_REQUIRE_DATA": "1"}, "fail")])
def test_missing_data_fails_under_ci_and_skips_elsewhere(monkeypatch, env, outcome):
    from .conftest import missing_data

    for name in ("CI", "LATENTFIT_REQUIRE_DATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(expected, match="not found"):
        missing_data("the Kodak set")
