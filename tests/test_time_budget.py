"""`--time-budget` bounds the user's wall clock: the whole encode, not just the refinement loop."""

import time

import pytest
import torch

from latentfit import RefinementConfig, decode, encode
from latentfit.deadline import Deadline
from latentfit.loop import Trace
from latentfit.refine import TrueLoss, optimise


class SlowProblem:
    """A refinement problem whose steps and true-loss evaluations take known wall time."""

    def __init__(self, step_seconds: float, eval_seconds: float):
        self.step_seconds, self.eval_seconds = step_seconds, eval_seconds
        self.v = torch.ones(4, requires_grad=True)
        self.variables = [self.v]

    def proxy_loss(self, relax):
        time.sleep(self.step_seconds)
        return (relax(self.v) ** 2).sum()

    def true_loss(self) -> TrueLoss:
        time.sleep(self.eval_seconds)
        return TrueLoss(float((self.v.detach().round() ** 2).sum()), 0.0, 0.0)

    def snapshot(self):
        return [self.v.detach().clone()]


@pytest.mark.parametrize("budget", [3.05, *(pytest.param(b, marks=pytest.mark.slow) for b in (3.15, 3.25, 3.35))])
@pytest.mark.parametrize("steps", ["auto", pytest.param(100000, marks=pytest.mark.slow)])
def test_the_loop_ends_by_its_deadline_with_the_last_evaluation_included(steps, budget):
    # Evaluations cost 8 steps. A loop that does not look at the clock again after a scheduled
    # evaluation (as it once did) takes another step and evaluation, and overruns by up to 0.4 s
    # for some of these budgets (0.26-0.37 s measured); 0.2 s of slack absorbs a busy machine's
    # late wake-ups.
    problem = SlowProblem(step_seconds=0.05, eval_seconds=0.4)
    config = RefinementConfig(method="sga+ssl", steps=steps, evaluate_every=10, time_budget=budget)
    deadline = Deadline.start(budget)
    trace = Trace()
    outcome = optimise(problem, TrueLoss(4.0, 0, 0), config, torch.Generator().manual_seed(0), deadline, [trace],
                       eval_seconds=0.4)
    finished = time.perf_counter()
    assert finished <= deadline.end() + 0.2
    assert outcome.steps_run >= 10  # the budget was used, not given up after a step or two
    assert trace.records[-1].step == outcome.steps_run  # the last step's iterate was evaluated


def test_a_budget_smaller_than_one_step_writes_the_plain_encoders_file(bundled_model, kodak_crop):
    plain = encode(kodak_crop, bundled_model, RefinementConfig(method="none"))
    tiny = encode(kodak_crop, bundled_model, RefinementConfig(method="sga+ssl", time_budget=1e-3))
    assert tiny.stats["steps_run"] == 0 and tiny.stats["stopped_by"] == "time_budget"
    assert tiny.data == plain.data
    assert (decode(tiny.data, bundled_model) == plain.decoded).all()


@pytest.mark.slow
@pytest.mark.parametrize("adapt", ["none", "decoder"])
def test_the_whole_encode_keeps_its_budget_and_reports_where_the_time_went(bundled_model, kodak_crop, adapt):
    # The budget is sized from this machine's measured speed (about 40 steps), and the margin is
    # generous, so that a busy machine does not fail the test. With a decoder update, the budget
    # holds its two stages and the latents-only file coded beside the adapted one.
    probe = encode(kodak_crop, bundled_model, RefinementConfig(steps=10, evaluate_every=10))
    budget = max(3.0, 4 * probe.stats["seconds"])
    started = time.perf_counter()
    result = encode(kodak_crop, bundled_model, RefinementConfig(time_budget=budget, tile=None, adapt=adapt),
                    started=started)
    wall = time.perf_counter() - started
    stats = result.stats
    assert wall <= budget * 1.15
    assert stats["seconds"] == pytest.approx(wall, abs=0.05)
    parts = ["read_seconds", "refine_seconds", "coding_seconds", "check_seconds"]
    assert sum(stats[p] for p in parts) == pytest.approx(stats["seconds"], abs=0.05)
    assert stats["time_budget"] == budget
    assert stats["steps_run"] > 10
    assert stats["true_loss_final"] < stats["true_loss_initial"]
