"""The refinement's schedules and training's fine-tuning kinds as registered strategies
(`latentfit.schedules`, `latentfit.strategies`)."""

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latentfit.errors import LatentfitError
from latentfit.schedules import (
    EVALUATION_POLICIES, LR_SCHEDULES, TAU_SCHEDULES, BudgetTemperature, CosineLearningRate, TailEvaluation,
    TemperatureSchedule,
)
from latentfit.training import FINETUNES

REGISTRIES = [TAU_SCHEDULES, LR_SCHEDULES, EVALUATION_POLICIES, FINETUNES]


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.kind)
def test_every_registered_strategy_survives_its_dict_and_unknown_names_are_one_line_errors(registry):
    assert registry.names()
    for name in registry.names():
        strategy = registry.get(name)
        assert registry.from_dict(strategy.to_dict()) == strategy
        assert strategy.to_dict()["name"] == name
    with pytest.raises(LatentfitError, match=rf"unknown {registry.kind} 'nope' \(use {', '.join(registry.names())}\)"):
        registry.get("nope")


@given(st.floats(0.2, 5), st.floats(0.01, 0.19), st.integers(1, 5000))
def test_a_budget_schedule_anneals_from_its_start_to_its_end_within_the_steps(start, end, steps):
    papers = TemperatureSchedule(tau_max=0.5, rate=1e-3, t0=700)
    schedule = BudgetTemperature(start, end).for_run(papers, steps)
    assert schedule(0) == pytest.approx(start * 0.5) and schedule(steps) == pytest.approx(end * 0.5)
    assert TAU_SCHEDULES.get("papers").for_run(papers, steps) is papers
    assert BudgetTemperature(start, end).record() == {"budget_tau": [start, end]}


@given(st.floats(0, 1), st.integers(1, 2000), st.floats(1e-4, 1))
def test_the_cosine_lr_falls_from_lr_to_its_floor_and_constant_stays(fraction, steps, lr):
    cosine = CosineLearningRate(fraction)
    assert cosine(0, steps, lr) == pytest.approx(lr)
    assert cosine(steps, steps, lr) == pytest.approx(fraction * lr)
    assert all(cosine(t + 1, steps, lr) <= cosine(t, steps, lr) + 1e-15 for t in range(0, steps, max(1, steps // 50)))
    assert LR_SCHEDULES.get("constant")(steps // 2, steps, lr) == lr
    with pytest.raises(LatentfitError, match="final fraction"):
        LR_SCHEDULES.get("cosine", final_fraction=1.5)


def test_a_new_strategy_is_one_registered_class(monkeypatch):
    """What the registries promise: a class, registered, is selectable by name from the configuration."""
    from latentfit import RefinementConfig

    @dataclasses.dataclass(frozen=True)
    class Halving(TailEvaluation):
        name = "halving"
        sparse: int = 2

    monkeypatch.setitem(EVALUATION_POLICIES.entries, "halving", Halving)
    config = RefinementConfig(steps=100, evaluations="halving")
    due = [s for s in range(1, 101) if config.evaluation_due(s, 100)]
    assert due == [20, 40, 60, 80, 90, 100]
    with pytest.raises(LatentfitError, match="unknown evaluation policy 'sometimes'"):
        RefinementConfig(evaluations="sometimes")
