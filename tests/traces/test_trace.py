"""BandwidthTrace: validation, exact integrals, looping, slicing, scaling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from bwgym.traces import BandwidthTrace, concatenate


@pytest.fixture
def on_off() -> BandwidthTrace:
    # 1 kbit/s for 1 s, outage for 1 s, 3 kbit/s for 2 s: 7 kbit per 4 s period.
    return BandwidthTrace([0.0, 1.0, 2.0], [1000.0, 0.0, 3000.0], name="on-off", duration_s=4.0)


def test_basic_properties(on_off: BandwidthTrace) -> None:
    assert on_off.duration_s == 4.0
    assert on_off.total_bits == 7000.0
    assert on_off.mean_bps == 1750.0
    assert len(on_off) == 3
    assert on_off.min_bps == 0.0 and on_off.max_bps == 3000.0
    assert on_off.outage_fraction == 0.25
    np.testing.assert_array_equal(on_off.edges_s, [0, 1, 2, 4])


def test_edges_or_starts_are_equivalent() -> None:
    a = BandwidthTrace([0, 1, 3], [5.0, 6.0])
    b = BandwidthTrace([0, 1], [5.0, 6.0], duration_s=3)
    assert a == b and hash(a) == hash(b)
    # Without duration_s the last segment lasts as long as the one before it.
    assert BandwidthTrace([0, 2, 4], [1.0, 1.0, 1.0]).duration_s == 6.0


def test_immutable(on_off: BandwidthTrace) -> None:
    with pytest.raises(ValueError):
        on_off.bps[0] = 5.0
    with pytest.raises(AttributeError):
        on_off.name = "x"  # type: ignore[misc]
    source = np.array([1.0, 2.0])
    trace = BandwidthTrace([0, 1], source, duration_s=2)
    source[0] = 99.0
    assert trace.bps[0] == 1.0


def test_pickle_round_trip(on_off: BandwidthTrace) -> None:
    again = pickle.loads(pickle.dumps(on_off))
    assert again == on_off
    assert not again.bps.flags.writeable


@pytest.mark.parametrize(
    ("times", "rates", "kwargs", "match"),
    [
        ([0, 1], [1.0, -1.0], {}, r"bps\[1\]=-1"),
        ([0, 1], [1.0, np.nan], {}, r"bps\[1\]=nan"),
        ([0, 1], [1.0, np.inf], {}, r"bps\[1\]=inf"),
        ([0, 2, 1], [1.0, 1.0, 1.0], {}, "strictly increasing"),
        ([0, 1, 1], [1.0, 1.0, 1.0], {}, "strictly increasing"),
        ([0, np.nan], [1.0, 1.0], {}, "finite times"),
        ([1, 2], [1.0, 1.0], {}, r"times_s\[0\] == 0"),
        ([0], [1.0], {}, "duration_s"),
        ([0, 1], [1.0], {"duration_s": 2.0}, "either"),
        ([0], [1.0], {"duration_s": 0.0}, "strictly increasing"),
        ([], [], {}, "at least one segment"),
        ([0, 1, 2, 3], [1.0], {}, "len"),
    ],
)
def test_validation(times: list[float], rates: list[float], kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BandwidthTrace(times, rates, **kwargs)


def test_zero_rate_is_valid() -> None:
    trace = BandwidthTrace([0.0], [0.0], duration_s=1.0)
    assert trace.mean_bps == 0.0 and trace.bits_between(0, 10) == 0.0


def test_bps_at(on_off: BandwidthTrace) -> None:
    assert on_off.bps_at(0.0) == 1000.0
    assert on_off.bps_at(1.0) == 0.0  # segments are [start, end)
    assert on_off.bps_at(3.999) == 3000.0
    np.testing.assert_array_equal(on_off.bps_at([4.0, 5.5, 6.5, -1.0]), [1000.0, 0.0, 3000.0, 3000.0])
    held = on_off.replace(loop=False)
    assert held.bps_at(100.0) == 3000.0
    with pytest.raises(ValueError, match="loop=False"):
        held.bps_at(-1.0)


def test_exact_integrals_within_one_period(on_off: BandwidthTrace) -> None:
    assert on_off.bits_between(0.0, 4.0) == 7000.0
    assert on_off.bits_between(0.5, 1.5) == 500.0
    assert on_off.bits_between(1.0, 2.0) == 0.0
    assert on_off.bits_between(1.5, 2.5) == 1500.0
    assert on_off.bits_between(2.0, 2.0) == 0.0


def test_exact_integrals_across_loop_boundaries(on_off: BandwidthTrace) -> None:
    # [3.5, 4.5): 0.5 s at 3 kbit/s before the wrap, 0.5 s at 1 kbit/s after.
    assert on_off.bits_between(3.5, 4.5) == 2000.0
    # Three whole periods plus [0, 1): 3 * 7000 + 1000.
    assert on_off.bits_between(0.0, 13.0) == 22000.0
    assert on_off.bits_between(4.0, 8.0) == 7000.0
    assert on_off.bits_between(101.5, 102.5) == on_off.bits_between(1.5, 2.5)
    # Negative times loop too.
    assert on_off.bits_between(-0.5, 0.5) == 2000.0
    t0 = np.array([3.5, 0.0, 7.5])
    np.testing.assert_allclose(on_off.bits_between(t0, t0 + 1.0), [2000.0, 1000.0, 2000.0])


def test_integrals_hold_the_last_rate_without_loop(on_off: BandwidthTrace) -> None:
    held = on_off.replace(loop=False)
    assert held.bits_between(3.5, 4.5) == 3000.0
    assert held.bits_between(0.0, 10.0) == 7000.0 + 6 * 3000.0
    with pytest.raises(ValueError, match="loop=False"):
        held.bits_between(-1.0, 1.0)


def test_bits_between_rejects_reversed_interval(on_off: BandwidthTrace) -> None:
    with pytest.raises(ValueError, match="t1 >= t0"):
        on_off.bits_between(2.0, 1.0)


def test_integral_matches_dense_sum() -> None:
    rng = np.random.default_rng(0)
    trace = BandwidthTrace(np.cumsum(np.r_[0, rng.uniform(0.1, 1, 49)]), rng.uniform(0, 1e6, 50))
    t = np.linspace(0, 3 * trace.duration_s, 20001)
    dense = np.sum(trace.bps_at(t[:-1]) * np.diff(t))
    assert trace.bits_between(0, t[-1]) == pytest.approx(dense, rel=2e-3)


def test_bits_between_is_fast_on_a_million_segments() -> None:
    n = 1_000_000
    rates = np.random.default_rng(1).uniform(0, 1e6, n)
    trace = BandwidthTrace(np.arange(n + 1) * 0.01, rates)
    starts = np.random.default_rng(2).uniform(0, 3 * trace.duration_s, 1000)
    total = 0.0
    for t0 in starts:  # O(log n) each: a scan would take minutes here
        total += trace.bits_between(t0, t0 + 0.04)
    assert total > 0
    assert trace.bits_between(5.0, 5.02) == pytest.approx(rates[500] * 0.01 + rates[501] * 0.01)


def test_scale(on_off: BandwidthTrace) -> None:
    shared = on_off.scale(1 / 4)
    assert shared.mean_bps == on_off.mean_bps / 4
    assert shared.name == on_off.name
    with pytest.raises(ValueError, match="factor"):
        on_off.scale(-1.0)


def test_slice(on_off: BandwidthTrace) -> None:
    part = on_off.slice(0.5, 2.5)
    assert part.duration_s == 2.0
    np.testing.assert_array_equal(part.edges_s, [0.0, 0.5, 1.5, 2.0])
    np.testing.assert_array_equal(part.bps, [1000.0, 0.0, 3000.0])
    # Past the end the slice unrolls the loop; its integral matches the source's.
    long = on_off.slice(3.0, 11.0)
    assert long.duration_s == 8.0
    assert long.total_bits == on_off.bits_between(3.0, 11.0)
    held = on_off.replace(loop=False).slice(3.0, 6.0)
    assert held.total_bits == 9000.0
    with pytest.raises(ValueError):
        on_off.slice(2.0, 1.0)


def test_to_frame(on_off: BandwidthTrace) -> None:
    frame = on_off.to_frame()
    assert list(frame.columns) == ["time_s", "bps"]
    assert frame["bps"].tolist() == [1000.0, 0.0, 3000.0]
    assert frame.attrs["duration_s"] == 4.0


def test_concatenate(on_off: BandwidthTrace) -> None:
    both = concatenate([on_off, on_off.scale(2)], name="both")
    assert both.duration_s == 8.0
    assert both.total_bits == 21000.0
    with pytest.raises(ValueError):
        concatenate([])


@pytest.mark.parametrize("loop", [True, False])
def test_scalar_and_array_paths_agree(loop: bool) -> None:
    rng = np.random.default_rng(3)
    trace = BandwidthTrace(np.cumsum(np.r_[0, rng.uniform(0.01, 1, 99)]), rng.uniform(0, 1e6, 100), loop=loop)
    t = rng.uniform(0 if not loop else -50, 200, 500)
    t[:3] = [0.0, trace.duration_s, 2 * trace.duration_s]
    np.testing.assert_array_equal(trace.cumulative_bits(t), [trace.cumulative_bits(float(x)) for x in t])
    np.testing.assert_array_equal(trace.bps_at(t), [trace.bps_at(float(x)) for x in t])
    np.testing.assert_array_equal(
        trace.bits_between(t, t + 0.04), [trace.bits_between(x, x + 0.04) for x in t]
    )
    with pytest.raises(ValueError, match="finite"):
        trace.cumulative_bits(float("nan"))
