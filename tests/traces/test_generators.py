"""Generators: seeded determinism, bounds, registry."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bwgym.common.registry import TRACE_GENERATORS
from bwgym.traces import BandwidthTrace, generate
from bwgym.traces.generators import constant, drive, gilbert_elliott, lognormal_walk, pensieve_markov, steps

STOCHASTIC: dict[str, dict[str, Any]] = {
    "lognormal_walk": {
        "mean_bps": 100e3,
        "sigma": 0.8,
        "min_bps": 20e3,
        "max_bps": 300e3,
        "duration_s": 120.0,
    },
    "pensieve_markov": {
        "min_bps": 0.2e6,
        "max_bps": 4e6,
        "n_states": 6,
        "mean_stay_s": 5.0,
        "duration_s": 120.0,
    },
    "gilbert_elliott": {"good_bps": 500e3, "bad_bps": 0.0, "duration_s": 60.0, "dt_s": 0.04},
    "drive": {"min_bps": 1e3, "max_bps": 1e6, "duration_s": 200.0, "mean_segment_s": 20.0},
}
BOUNDS = {
    "lognormal_walk": (20e3, 300e3),
    "pensieve_markov": (0.2e6, 4e6),
    "gilbert_elliott": (0.0, 500e3),
    "drive": (1e3, 1e6),
}


@pytest.mark.parametrize("kind", sorted(STOCHASTIC))
def test_seeded_determinism_and_bounds(kind: str) -> None:
    params = STOCHASTIC[kind]
    a = generate(kind, seed=7, **params)
    b = generate(kind, seed=7, **params)
    c = generate(kind, seed=8, **params)
    assert isinstance(a, BandwidthTrace)
    assert a == b
    assert a != c
    low, high = BOUNDS[kind]
    assert low <= a.min_bps and a.max_bps <= high
    assert a.duration_s == pytest.approx(params["duration_s"])


def test_lognormal_walk_mean_and_spread() -> None:
    trace = lognormal_walk(100e3, 0.5, 1.0, 1e9, duration_s=20000.0, dt_s=1.0, correlation_s=5.0, seed=0)
    assert trace.mean_bps == pytest.approx(100e3, rel=0.05)
    log_rates = np.log(trace.bps_at(np.arange(20000) + 0.5))
    assert np.std(log_rates) == pytest.approx(0.5, rel=0.1)


def test_gilbert_elliott_bad_share() -> None:
    trace = gilbert_elliott(1.0, 0.0, 0.1, 0.3, duration_s=20000.0, dt_s=1.0, seed=0)
    assert trace.outage_fraction == pytest.approx(0.1 / 0.4, abs=0.02)
    never_bad = gilbert_elliott(1.0, 0.0, 0.0, 0.3, duration_s=100.0, seed=0)
    assert never_bad.min_bps in (0.0, 1.0)  # may start bad, then recovers and stays good
    assert never_bad.bps_at(99.9) == 1.0


def test_pensieve_markov_stays_about_mean_stay() -> None:
    trace = pensieve_markov(
        1e5, 1e7, n_states=8, mean_stay_s=20.0, noise=0.0, duration_s=20000.0, dt_s=1.0, seed=1
    )
    # Without noise every segment is one stay in a state (a jump always changes state).
    assert 20000.0 / len(trace) == pytest.approx(20.0, rel=0.15)
    levels = np.geomspace(1e5, 1e7, 8)
    assert np.all(np.isin(trace.bps, np.round(levels)))


def test_constant_and_steps() -> None:
    assert constant(5e3, 10.0).bits_between(0, 10) == 5e4
    trace = steps([(0, 1e6), (10, 0), (15, 5e4)], duration_s=20.0)
    assert trace.bps_at(12.0) == 0.0
    assert trace.total_bits == 1e7 + 5 * 5e4
    with pytest.raises(ValueError, match="duration_s > the last step"):
        steps([(0, 1.0), (5, 2.0)], duration_s=5.0)


def test_drive_explicit_segments() -> None:
    segments = [("constant", 10.0, {"bps": 1e5}), ("gilbert_elliott", 5.0, {"good_bps": 1e4, "bad_bps": 0.0})]
    trace = drive(segments=segments, seed=3)
    assert trace.duration_s == 15.0
    assert trace.bps_at(5.0) == 1e5
    assert trace == drive(segments=segments, seed=3)


def test_partial_last_sample() -> None:
    trace = lognormal_walk(1e5, duration_s=2.5, dt_s=1.0, seed=0)
    assert trace.duration_s == 2.5


@pytest.mark.parametrize(
    ("kind", "params", "match"),
    [
        ("constant", {"bps": -1.0}, "expected bps >= 0"),
        ("constant", {"bps": 1.0, "duration_s": 0.0}, "expected duration_s > 0"),
        ("lognormal_walk", {"mean_bps": 0.0}, "expected mean_bps > 0"),
        ("lognormal_walk", {"mean_bps": 10.0, "min_bps": 5.0, "max_bps": 1.0}, "max_bps >= min_bps"),
        ("gilbert_elliott", {"p_good_to_bad": 1.5}, r"p_good_to_bad in \[0, 1\]"),
        (
            "gilbert_elliott",
            {"p_good_to_bad": 0.0, "p_bad_to_good": 0.0},
            "p_good_to_bad \\+ p_bad_to_good > 0",
        ),
        ("pensieve_markov", {"n_states": 0}, "n_states >= 1"),
        ("pensieve_markov", {"mean_stay_s": 0.1}, "mean_stay_s >= dt_s"),
        ("drive", {"kinds": ["warp"]}, "kinds among"),
        ("lognormal_walk", {"mean": 5.0}, "Did you mean 'mean_bps'"),
        ("walk", {}, r"unknown trace generator 'walk'.*expected one of"),
        ("constant", {}, "constant: missing required key 'bps'"),
        ("pensieve_markov", {"n_states": 2.5}, "n_states: expected int, got 2.5"),
    ],
)
def test_bad_parameters(kind: str, params: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate(kind, **params)


def test_registry() -> None:
    assert set(TRACE_GENERATORS.names()) >= {
        "constant",
        "steps",
        "lognormal_walk",
        "pensieve_markov",
        "gilbert_elliott",
        "drive",
    }
