"""`latentfit.deadline.Deadline`: one clock from the command line down to a tile."""

import math

from hypothesis import given
from hypothesis import strategies as st

from latentfit.deadline import UNBOUNDED, Deadline

seconds = st.floats(0, 1e4, allow_nan=False)


@given(seconds, st.floats(0.01, 1e3), st.floats(0, 10), st.floats(0, 5))
def test_the_end_leaves_the_tail_evaluations_for_the_stages_after_refinement(started, budget, tail, evaluation):
    deadline = Deadline(started, budget, tail)
    assert deadline.end(evaluation) == started + budget - tail * evaluation
    assert deadline.end(evaluation) <= deadline.end(0.0) == started + budget
    assert deadline.fits(0.0, evaluation, now=deadline.end(evaluation))  # work that ends on time fits
    assert not deadline.fits(1e-3 + 1e-9 * abs(deadline.end(evaluation)), evaluation, now=deadline.end(evaluation))


@given(seconds, st.floats(1, 1e3), st.integers(1, 50), st.floats(0, 0.5), st.floats(0, 0.5))
def test_tiles_share_what_is_left_after_the_final_evaluation(started, budget, parts, evaluation, spent):
    deadline = Deadline(started, budget)
    now = started + spent * budget
    share = deadline.share(parts, evaluation, now=now)
    left = deadline.end(evaluation) - now - evaluation
    assert math.isclose(share.end(), now + left / parts, rel_tol=1e-12, abs_tol=1e-9)
    # every part in turn, each begun when the one before ended, ends with the final evaluation's time to spare
    for part in range(parts):
        now = deadline.share(parts - part, evaluation, now=now).end()
    assert math.isclose(now, deadline.end(evaluation) - evaluation, rel_tol=1e-9, abs_tol=1e-6)


def test_without_a_budget_there_is_always_time():
    assert UNBOUNDED.end(3.0) is None and not UNBOUNDED.bounded
    assert UNBOUNDED.fits(1e9) and UNBOUNDED.left() == math.inf
    assert UNBOUNDED.share(4, 1.0) is UNBOUNDED
    assert Deadline.start(budget=None, tail=2.5).end(1.0) is None
