import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latentfit.errors import LatentfitError
from latentfit.relaxations import PROXIES, TwoClass, get_proxy
from latentfit.schedules import TemperatureSchedule

TWO_CLASS_SGA_PLUS = ["sga+linear", "sga+cosine", "sga+ssl"]
REFINING = [name for name, cls in PROXIES.items() if cls.refines]
ANNEALED = [name for name, cls in PROXIES.items() if cls.annealed]
fractions = st.floats(min_value=1e-3, max_value=1 - 1e-3)
reals = st.floats(min_value=-50, max_value=50, allow_nan=False)


@pytest.mark.parametrize("name", TWO_CLASS_SGA_PLUS)
@given(r=fractions, a=st.floats(min_value=0.5, max_value=5.0))
def test_sga_plus_probabilities_sum_to_one_at_unit_temperature(name, r, a):
    proxy = get_proxy(name, **({"a": a} if "a" in PROXIES[name].options else {}))
    log_floor, log_ceil = proxy.log_weights(torch.tensor([r], dtype=torch.float64))
    total = float(torch.exp(log_floor) + torch.exp(log_ceil))
    assert total == pytest.approx(1.0, abs=1e-9)


def test_sga_atanh_is_not_normalised():
    """The atanh logits of SGA are not probabilities: the reason SGA+ replaced them."""
    proxy = get_proxy("sga")
    log_floor, log_ceil = proxy.log_weights(torch.tensor([0.3], dtype=torch.float64))
    assert abs(float(torch.exp(log_floor) + torch.exp(log_ceil)) - 1.0) > 0.1


@pytest.mark.parametrize("name", ANNEALED)
@given(v=reals, tau=st.floats(min_value=0.05, max_value=2.0))
def test_class_probabilities_sum_to_one_and_prefer_nearest(name, v, tau):
    proxy = get_proxy(name)
    x = torch.tensor([v], dtype=torch.float64)
    probabilities = proxy.probabilities(x, tau)
    assert float(probabilities.sum()) == pytest.approx(1.0, abs=1e-9)
    candidates, _ = proxy.candidates_and_logits(x, tau)
    nearest = float(candidates[0, probabilities[0].argmax()])
    distance = abs(v - round(v))
    if abs(distance - 0.5) > 1e-3:
        assert nearest == round(v)


@pytest.mark.parametrize("name", REFINING)
@pytest.mark.parametrize("tau", [1.0, 0.05])
def test_gradients_finite_at_integers_and_half_integers(name, tau):
    values = torch.tensor([-3.0, -2.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 7.0, 7.5], requires_grad=True)
    generator = torch.Generator().manual_seed(0)
    out = get_proxy(name).relax(values, tau, generator)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert torch.isfinite(values.grad).all()


@pytest.mark.parametrize("name", ANNEALED)
@given(v=reals)
@settings(max_examples=60)
def test_samples_collapse_to_rounding_as_temperature_vanishes(name, v):
    if abs(abs(v - math.floor(v)) - 0.5) < 0.05:
        return  # near a tie the limit is either neighbour
    generator = torch.Generator().manual_seed(1)
    sample = get_proxy(name).relax(torch.tensor([v], dtype=torch.float64), 1e-4, generator)
    assert float(sample) == pytest.approx(round(v), abs=1e-6)


@pytest.mark.parametrize("name", ANNEALED)
def test_soft_samples_lie_between_candidates_and_hard_samples_are_integers(name):
    v = torch.linspace(-3, 3, 101, dtype=torch.float64)
    generator = torch.Generator().manual_seed(2)
    soft = get_proxy(name).relax(v, 0.7, generator)
    assert (soft >= torch.floor(v) - 1 - 1e-9).all() and (soft <= torch.ceil(v) + 1 + 1e-9).all()
    hard = get_proxy(name, hard=True).relax(v, 0.7, generator)
    assert torch.equal(hard, torch.round(hard))
    if issubclass(PROXIES[name], TwoClass):
        assert ((hard == torch.floor(v)) | (hard == torch.ceil(v))).all()


@given(r=fractions)
def test_ssl_with_unit_shape_equals_linear(r):
    x = torch.tensor([r], dtype=torch.float64)
    ssl = get_proxy("sga+ssl", a=1.0).log_weights(x)
    linear = get_proxy("sga+linear").log_weights(x)
    for got, want in zip(ssl, linear):
        assert float(got) == pytest.approx(float(want), abs=1e-9)


def test_steeper_ssl_is_more_confident():
    x = torch.tensor([0.3], dtype=torch.float64)
    p_linear = get_proxy("sga+ssl", a=1.0).probabilities(x, 1.0)[0, 0]
    p_steep = get_proxy("sga+ssl", a=3.0).probabilities(x, 1.0)[0, 0]
    assert p_steep > p_linear


def test_straight_through_rounds_forward_and_passes_gradient():
    v = torch.tensor([0.2, 1.7, -2.4], requires_grad=True)
    out = get_proxy("ste").relax(v, 1.0)
    assert torch.equal(out, torch.round(v.detach()))
    out.sum().backward()
    assert torch.equal(v.grad, torch.ones(3))


def test_uniform_noise_is_bounded_and_seeded():
    v = torch.zeros(10000)
    first = get_proxy("uniform-noise").relax(v, 1.0, torch.Generator().manual_seed(3))
    again = get_proxy("uniform-noise").relax(v, 1.0, torch.Generator().manual_seed(3))
    other = get_proxy("uniform-noise").relax(v, 1.0, torch.Generator().manual_seed(4))
    assert first.abs().max() <= 0.5 and abs(float(first.mean())) < 0.02
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_three_class_keeps_the_farthest_class_possible():
    proxy = get_proxy("sga+linear3")
    probabilities = proxy.probabilities(torch.tensor([0.49], dtype=torch.float64), 1.0)[0]
    assert (probabilities > 0).all() and probabilities[0] < probabilities[1]


def test_unknown_method_is_a_clear_error():
    with pytest.raises(LatentfitError, match=r"unknown method 'sga\+\+'"):
        get_proxy("sga++")


@given(step=st.integers(0, 100000), tau_max=st.floats(0.1, 2.0), rate=st.floats(0, 0.01), t0=st.floats(0, 1000))
def test_temperature_schedule_follows_the_clipped_exponential(step, tau_max, rate, t0):
    schedule = TemperatureSchedule(tau_max=tau_max, rate=rate, t0=t0, tau_min=0.01)
    expected = min(max(tau_max * math.exp(-rate * (step - t0)), 0.01), tau_max)
    assert schedule(step) == pytest.approx(expected)
    assert schedule(step + 1) <= schedule(step)


def test_schedule_defaults_follow_the_papers():
    assert get_proxy("sga").default_schedule() == TemperatureSchedule(0.5, 1e-3, 700.0)
    assert get_proxy("sga+ssl").default_schedule() == TemperatureSchedule(1.0, 1e-3, 0.0)


@given(steps=st.integers(1, 5000), tau_end=st.floats(0.01, 0.5))
def test_budget_schedule_reaches_its_end_temperature_at_the_last_step(steps, tau_end):
    schedule = TemperatureSchedule.for_budget(steps, 1.0, tau_end)
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(steps) == pytest.approx(tau_end)


def test_cosine_learning_rate_decays_from_lr_to_a_tenth():
    from latentfit.schedules import cosine_learning_rate

    assert cosine_learning_rate(0, 100, 5e-3, 0.1) == pytest.approx(5e-3)
    assert cosine_learning_rate(50, 100, 5e-3, 0.1) == pytest.approx(0.5 * (5e-3 + 5e-4))
    assert cosine_learning_rate(100, 100, 5e-3, 0.1) == pytest.approx(5e-4)
