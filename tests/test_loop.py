"""`latentfit.loop.optimise`: the one refinement loop, watched and steered only through its hooks."""

import pytest
import torch

from latentfit import RefinementConfig
from latentfit.loop import LoopHook, Progress, Trace, TrueLoss, optimise


class Quadratic:
    """`(v − 3)²` summed, with the true loss of `round(v)`: a problem whose best iterate is known."""

    def __init__(self, lmbda: float = 1.0):
        self.v = torch.zeros(6, requires_grad=True)
        self.variables = [self.v]
        self.lmbda = lmbda

    def proxy_loss(self, relax):
        return self.lmbda * ((relax(self.v) - 3) ** 2).sum()

    @torch.no_grad()
    def true_loss(self) -> TrueLoss:
        return TrueLoss(float(self.lmbda * ((self.v.round() - 3) ** 2).sum()), 0.0, 0.0)

    def snapshot(self):
        return [self.v.detach().clone()]


class Recorder(LoopHook):
    def __init__(self):
        self.events = []

    def on_start(self, problem, initial):
        self.events.append(("start", initial.loss))

    def on_evaluation(self, step, true, record, problem):
        self.events.append(("evaluation", step, true.loss == record.true_loss))

    def on_step(self, step, planned, record):
        self.events.append(("step", step, planned, record is not None))


@pytest.mark.parametrize("evaluations", ["every", "tail"])
def test_hooks_hear_the_start_every_step_and_exactly_the_evaluations_the_policy_asks_for(evaluations):
    config = RefinementConfig(method="ste", steps=60, lr=0.2, evaluate_every=5, evaluations=evaluations)
    recorder, trace = Recorder(), Trace()
    outcome = optimise(Quadratic(), TrueLoss(54.0, 0, 0), config, torch.Generator().manual_seed(0), hooks=[recorder, trace])
    assert recorder.events[0] == ("start", 54.0)
    steps = [e for e in recorder.events if e[0] == "step"]
    assert [e[1] for e in steps] == list(range(1, 61)) and all(e[2] == 60 for e in steps)
    evaluated = [e[1] for e in recorder.events if e[0] == "evaluation"]
    assert evaluated == [s for s in range(1, 61) if config.evaluation_due(s, 60) or s == 60]
    assert [e[1] for e in steps if e[3]] == evaluated == [r.step for r in trace.records]
    assert all(e[2] for e in recorder.events if e[0] == "evaluation")  # what the hook is told is what was traced
    assert outcome.best.loss == 0.0 and outcome.best_step in evaluated


def test_a_hook_that_steers_the_problem_changes_what_the_loop_optimises():
    """Rate control's way in: a hook may change the problem (its λ) at an evaluation."""

    class Mute(LoopHook):
        def on_evaluation(self, step, true, record, problem):
            problem.lmbda = 0.0  # nothing left to gain

    config = RefinementConfig(method="ste", steps=40, lr=0.2, evaluate_every=10, evaluations="every")
    free, steered = Quadratic(), Quadratic()
    optimise(free, TrueLoss(54.0, 0, 0), config, torch.Generator().manual_seed(0))
    optimise(steered, TrueLoss(54.0, 0, 0), config, torch.Generator().manual_seed(0), hooks=[Mute()])
    assert free.true_loss().loss == 0.0
    assert steered.lmbda == 0.0 and not torch.equal(free.v, steered.v)  # it stopped moving after step 10


def test_a_progress_callable_is_a_hook():
    calls = []
    config = RefinementConfig(method="ste", steps=7, evaluate_every=5, evaluations="every")
    optimise(Quadratic(), TrueLoss(54.0, 0, 0), config, torch.Generator().manual_seed(0),
             hooks=[Progress(lambda step, planned, record: calls.append((step, planned, record is not None)))])
    assert calls == [(1, 7, False), (2, 7, False), (3, 7, False), (4, 7, False), (5, 7, True), (6, 7, False),
                     (7, 7, True)]
