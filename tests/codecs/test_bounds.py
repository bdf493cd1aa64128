import math

import numpy as np
import pytest

from bwgym.codecs.bounds import (
    ceo_distortion_floor,
    ceo_rates_gaussian,
    ceo_sum_rate_gaussian,
    ceo_sum_rate_gaussian_symmetric,
    rate_distortion_gaussian,
    wyner_ziv_gaussian,
)


# ------------------------------------------------------------------ R(D) and R_WZ(D): hand-computed values
@pytest.mark.parametrize(
    ("variance", "distortion", "bits"),
    [
        (1.0, 0.25, 1.0),
        (1.0, 1 / 16, 2.0),
        (4.0, 1.0, 1.0),
        (2.0, 2.0, 0.0),
        (2.0, 3.0, 0.0),
        (1.0, 0.5, 0.5),
    ],
)
def test_rate_distortion_gaussian_hand_values(variance, distortion, bits):
    assert rate_distortion_gaussian(variance, distortion) == pytest.approx(bits, abs=1e-12)


def test_rate_distortion_is_infinite_at_zero_distortion():
    assert rate_distortion_gaussian(1.0, 0.0) == math.inf
    assert wyner_ziv_gaussian(0.5, 0.0) == math.inf


def test_wyner_ziv_paper_001_gaussian():
    # paper 001: Y = X + N, X ~ N(0, 1), N ~ N(0, 0.01); sigma^2_{X|Y} = 0.01 / 1.01
    conditional = 1.0 * 0.01 / (1.0 + 0.01)
    assert wyner_ziv_gaussian(conditional, conditional / 4) == pytest.approx(1.0)
    assert wyner_ziv_gaussian(conditional, 0.001) == pytest.approx(0.5 * math.log2(conditional / 0.001))
    assert wyner_ziv_gaussian(conditional, conditional) == 0.0
    # side information saves 1/2 log2(sigma_X^2 / sigma^2_{X|Y}) = 1/2 log2(101) bits at every D below it
    gain = rate_distortion_gaussian(1.0, 0.001) - wyner_ziv_gaussian(conditional, 0.001)
    assert gain == pytest.approx(0.5 * math.log2(101))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: rate_distortion_gaussian(0.0, 0.1), "variance must be a positive"),
        (lambda: rate_distortion_gaussian(-1.0, 0.1), "variance must be a positive"),
        (lambda: rate_distortion_gaussian(1.0, -0.1), "distortion must be >= 0"),
        (lambda: wyner_ziv_gaussian(0.0, 0.1), "conditional_variance must be a positive"),
        (lambda: ceo_sum_rate_gaussian(1.0, [0.1, 0.0], 0.5), "noise_variances must all be positive"),
        (lambda: ceo_sum_rate_gaussian(1.0, [], 0.5), "non-empty"),
        (lambda: ceo_sum_rate_gaussian(math.inf, [0.1], 0.5), "source_variance must be a positive"),
        (lambda: ceo_sum_rate_gaussian_symmetric(1.0, 0.1, 0, 0.5), "n_sensors must be an integer"),
    ],
)
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------ CEO
def noisy_source_rate(source_variance, noise_variance, distortion):
    """Remote-source rate-distortion of X from Y = X + N (hand formula)."""
    d_min = source_variance * noise_variance / (source_variance + noise_variance)
    return 0.5 * math.log2((source_variance - d_min) / (distortion - d_min))


@pytest.mark.parametrize(
    ("sx", "sn", "d"), [(1.0, 0.1, 0.2), (1.0, 0.01, 0.05), (4.0, 1.0, 1.0), (1.0, 1.0, 0.9)]
)
def test_ceo_with_one_sensor_is_the_noisy_source_rate(sx, sn, d):
    assert ceo_sum_rate_gaussian(sx, [sn], d) == pytest.approx(noisy_source_rate(sx, sn, d), rel=1e-12)


def test_ceo_hand_computed_value():
    # sigma_X^2 = 1, two sensors of noise 1, D = 1/2: c = 1/D - 1 = 1, mu = (2 - 1) / 2 = 1/2,
    # r_k = -1/2 log2(1/2) = 1/2, R = 1/2 log2(2) + 2 * 1/2 = 1.5 bits
    assert ceo_sum_rate_gaussian(1.0, [1.0, 1.0], 0.5) == pytest.approx(1.5)
    assert ceo_sum_rate_gaussian_symmetric(1.0, 1.0, 2, 0.5) == pytest.approx(1.5)
    # a very noisy third sensor gets no rate: sigma^2 = 1, noises (0.5, 100), D = 0.5: only the first
    # is active: mu = 2 - 1 = 1 -> r = -1/2 log2(0.5) = 1/2; 100 mu >= 1 so the second stays silent
    total, rates = ceo_rates_gaussian(1.0, [0.5, 100.0], 0.5)
    assert rates[1] == 0.0
    assert total == pytest.approx(1.0)


def test_ceo_floor_and_source_variance_limits():
    noise = [0.1, 0.3, 1.0]
    floor = ceo_distortion_floor(1.0, noise)
    assert floor == pytest.approx(1.0 / (1.0 + 10.0 + 1 / 0.3 + 1.0))
    assert ceo_sum_rate_gaussian(1.0, noise, floor) == math.inf
    assert ceo_sum_rate_gaussian(1.0, noise, floor * 0.5) == math.inf
    assert ceo_sum_rate_gaussian(1.0, noise, 0.0) == math.inf
    assert math.isfinite(ceo_sum_rate_gaussian(1.0, noise, floor * 1.0001))
    assert ceo_sum_rate_gaussian(1.0, noise, 1.0) == 0.0
    assert ceo_sum_rate_gaussian(1.0, noise, 5.0) == 0.0
    assert ceo_sum_rate_gaussian_symmetric(1.0, 0.1, 3, 0.1 / 3.1) == math.inf


@pytest.mark.parametrize("k", [1, 2, 4, 8])
@pytest.mark.parametrize("sn", [0.01, 0.1, 1.0])
def test_symmetric_closed_form_equals_the_general_solver(k, sn):
    floor = ceo_distortion_floor(1.0, [sn] * k)
    for d in np.geomspace(floor * 1.001, 0.999, 12):
        general = ceo_sum_rate_gaussian(1.0, [sn] * k, d)
        assert ceo_sum_rate_gaussian_symmetric(1.0, sn, k, d) == pytest.approx(general, rel=1e-9, abs=1e-12)


def test_ceo_is_above_the_centralised_bounds_and_decreasing():
    noise = np.array([0.05, 0.1, 0.2, 0.4])
    floor = ceo_distortion_floor(1.0, noise)
    previous = math.inf
    for d in np.geomspace(floor * 1.01, 0.99, 25):
        rate = ceo_sum_rate_gaussian(1.0, noise, d)
        assert rate < previous
        previous = rate
        # a single encoder that sees every sensor: the remote-source rate with the combined observation
        combined = 1.0 / np.sum(1.0 / noise)
        assert rate >= noisy_source_rate(1.0, combined, d) - 1e-12
        assert rate >= rate_distortion_gaussian(1.0, d)


def test_ceo_water_filling_brute_force():
    # the solver's split beats (or ties) any other feasible split of the same constraint
    noise = np.array([0.05, 0.3, 2.0])
    d = 0.08
    total, rates = ceo_rates_gaussian(1.0, noise, d)
    c = 1 / d - 1
    assert np.sum((1 - 2.0 ** (-2 * rates)) / noise) == pytest.approx(c)
    rng = np.random.default_rng(0)
    for _ in range(300):
        r = rates + rng.normal(scale=0.3, size=3)
        r[:2] = np.maximum(r[:2], 0)
        # solve the last rate from the constraint
        rest = c - np.sum((1 - 2.0 ** (-2 * r[:2])) / noise[:2])
        s = 1 - rest * noise[2]
        if not 0 < s <= 1:
            continue
        r[2] = -0.5 * math.log2(s)
        assert 0.5 * math.log2(1 / d) + r.sum() >= total - 1e-9
