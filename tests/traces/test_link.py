"""Link: per-step budgets, over-budget drops, random loss, latency."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bwgym.traces import BandwidthTrace, Delivery, Link, LinkStep
from bwgym.traces.generators import constant, lognormal_walk, steps


def test_budget_of_a_constant_trace() -> None:
    link = Link(constant(100_000.0), step_seconds=0.04)
    assert link.peek_budget_bits() == 4000
    assert link.peek_bandwidth_bps() == pytest.approx(100_000.0)
    step = link.transmit("frame", 3000)
    assert step == LinkStep(4000, step.bandwidth_bps, 3000, False, False, (Delivery(0, "frame"),))
    assert link.step_index == 1 and link.time_s == pytest.approx(0.04)


def test_budgets_sum_to_the_integral() -> None:
    trace = lognormal_walk(3e3, 0.8, 100.0, 30e3, duration_s=10.0, dt_s=0.013, seed=0)
    link = Link(trace, step_seconds=0.04)
    link.reset(start_s=3.3)
    n = 1000  # 40 s: loops four times
    budgets = [link.transmit(None, 0).budget_bits for _ in range(n)]
    exact = trace.bits_between(3.3, 3.3 + n * 0.04)
    assert sum(budgets) == math.floor(exact + 1e-6)
    assert all(b >= 0 for b in budgets)
    # Per step the floor never strays from the exact share by a whole bit.
    shares = trace.bits_between(3.3 + np.arange(n) * 0.04, 3.3 + np.arange(1, n + 1) * 0.04)
    assert np.max(np.abs(np.array(budgets) - shares)) < 1.0


def test_fractional_bits_are_not_lost() -> None:
    # 10 bit/s, 0.04 s steps: 0.4 bits per step, so budgets go 0, 0, 1, 0, 1, ...
    link = Link(constant(10.0, 10.0), step_seconds=0.04)
    budgets = [link.transmit(None, 0).budget_bits for _ in range(250)]
    assert sum(budgets) == 100
    assert set(budgets) == {0, 1}


def test_over_budget_is_dropped_and_not_charged() -> None:
    link = Link(constant(100_000.0), step_seconds=0.04)
    step = link.transmit("big", 4001)
    assert step.over_budget and not step.lost
    assert step.bits_sent == 0 and step.delivered == ()
    exact = link.transmit("fits", 4000)
    assert not exact.over_budget and exact.delivered == (Delivery(1, "fits"),)


def test_empty_payload_is_nothing_sent() -> None:
    link = Link(constant(0.0), step_seconds=0.04, loss_prob=0.99, seed=0)
    for _ in range(20):
        step = link.transmit("empty", 0)
        assert (step.budget_bits, step.bits_sent, step.over_budget, step.lost, step.delivered) == (
            0,
            0,
            False,
            False,
            (),
        )


def test_zero_bandwidth_stretch() -> None:
    trace = steps([(0, 1e5), (1, 0.0), (2, 1e5)], duration_s=3.0)
    link = Link(trace, step_seconds=0.04)
    budgets = [link.transmit("x", 100).budget_bits for _ in range(75)]
    assert budgets[:25] == [4000] * 25
    assert budgets[25:50] == [0] * 25
    assert budgets[50:] == [4000] * 25
    link.reset(start_s=1.0)
    step = link.transmit("x", 1)
    assert step.over_budget and step.delivered == () and step.bandwidth_bps == 0.0


def test_latency_delivers_k_steps_later() -> None:
    link = Link(constant(1e6), step_seconds=0.04, latency_steps=3)
    arrivals = [link.transmit(f"frame {k}", 10).delivered for k in range(8)]
    assert arrivals[:3] == [(), (), ()]
    for k in range(3, 8):
        assert arrivals[k] == (Delivery(k - 3, f"frame {k - 3}"),)
    assert link.in_flight == 3
    link.reset()
    assert link.in_flight == 0 and link.step_index == 0
    assert link.transmit("after reset", 0).delivered == ()


def test_latency_keeps_order_and_skips_drops() -> None:
    link = Link(
        steps([(0, 1e6), (0.08, 0.0), (0.12, 1e6)], duration_s=1.0), step_seconds=0.04, latency_steps=1
    )
    out = [link.transmit(k, 1000) for k in range(5)]
    assert out[2].over_budget  # the outage step
    delivered = [d.item for step in out for d in step.delivered]
    assert delivered == [0, 1, 3]
    assert out[4].delivered == (Delivery(3, 3),)


def _losses(seed: int | None, n: int = 400, loss_prob: float = 0.3) -> list[bool]:
    link = Link(constant(1e6), step_seconds=0.04, loss_prob=loss_prob, seed=seed)
    return [link.transmit(k, 100).lost for k in range(n)]


def test_loss_is_seeded() -> None:
    a, b, c = _losses(1), _losses(1), _losses(2)
    assert a == b and a != c
    assert np.mean(a) == pytest.approx(0.3, abs=0.07)


def test_lost_items_are_charged_and_never_delivered() -> None:
    link = Link(constant(1e6), step_seconds=0.04, loss_prob=0.5, seed=0)
    for k in range(100):
        step = link.transmit(k, 100)
        assert step.bits_sent == 100
        assert (step.delivered == ()) == step.lost


def test_loss_pattern_does_not_depend_on_what_is_sent() -> None:
    # One coin per step: the same seed gives the same losses to two codecs of different sizes.
    link_a = Link(constant(1e6), step_seconds=0.04, loss_prob=0.3, seed=5)
    link_b = Link(constant(1e6), step_seconds=0.04, loss_prob=0.3, seed=5)
    sizes_b = [0, 50, 10**9, 2000] * 50
    lost_a = [link_a.transmit("a", 100).lost for _ in sizes_b]
    lost_b = [link_b.transmit("b", s).lost for s in sizes_b]
    for la, lb, s in zip(lost_a, lost_b, sizes_b, strict=True):
        if 0 < s <= 40_000:
            assert la == lb


def test_reset_reseeds() -> None:
    link = Link(constant(1e6), step_seconds=0.04, loss_prob=0.3, seed=9)
    first = [link.transmit(k, 1).lost for k in range(50)]
    link.reset(seed=9)
    assert [link.transmit(k, 1).lost for k in range(50)] == first
    link.reset()  # no seed: keeps drawing, like Gymnasium's reset(seed=None)
    assert [link.transmit(k, 1).lost for k in range(50)] != first


def test_reset_start_time_and_no_loop() -> None:
    trace = BandwidthTrace([0.0, 1.0], [1000.0, 5000.0], duration_s=2.0, loop=False)
    link = Link(trace, step_seconds=0.5)
    link.reset(start_s=1.5)
    assert link.time_s == 1.5
    assert [link.transmit(None, 0).budget_bits for _ in range(4)] == [2500] * 4  # holds 5 kbit/s
    with pytest.raises(ValueError, match="start_s >= 0"):
        link.reset(start_s=-1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"step_seconds": 0.0}, r"expected step_seconds in \(0, 86400\]"),
        ({"step_seconds": float("inf")}, "expected step_seconds in"),
        ({"step_seconds": 1e300}, "MAX_STEP_SECONDS"),
        (
            {"step_seconds": 0.04, "latency_steps": -1},
            r"expected latency_steps to be an integer in \[0, 100,000\]",
        ),
        ({"step_seconds": 0.04, "latency_steps": 10**9}, "MAX_LATENCY_STEPS"),
        ({"step_seconds": 0.04, "latency_steps": 1.5}, "latency_steps"),
        ({"step_seconds": 0.04, "loss_prob": 1.0}, r"expected 0 <= loss_prob < 1, got 1.0"),
        ({"step_seconds": 0.04, "loss_prob": -0.1}, "loss_prob"),
    ],
)
def test_argument_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Link(constant(1e3), **kwargs)


def test_nbits_validation() -> None:
    link = Link(constant(1e3), step_seconds=0.04)
    for bad in (-1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="nbits"):
            link.transmit(None, bad)  # type: ignore[arg-type]
    assert link.step_index == 0
    assert link.transmit(None, np.int64(3)).bits_sent == 3
