"""`Link`: a step-slotted channel driven by a bandwidth trace.

Each call to :meth:`Link.transmit` is one env step of ``step_seconds``. The step's budget is the
number of bits the trace carries in the step's interval, floored on the *cumulative* count so that
rounding never loses bits in aggregate::

    budget(k) = floor(B(t_{k+1})) - floor(B(t_k)),   t_k = start_s + k * step_seconds

where ``B`` counts bits from the reset time ``start_s``; the budgets of steps ``0..K-1`` therefore
sum to ``floor(B(t_K))``. An item larger than its step's budget is not transmitted (and costs
nothing); an item that fits may be lost at random with probability ``loss_prob`` (it used the
channel, so its bits are charged); a transmitted item arrives ``latency_steps`` steps later.

The loss coin is tossed on every step, whatever is sent, so the loss pattern depends only on the
seed and the step index: two codecs compared under the same seed see the same losses.

Example:
    >>> from bwgym.traces import Link
    >>> from bwgym.traces.generators import constant
    >>> link = Link(constant(100_000.0), step_seconds=0.04, latency_steps=1)
    >>> link.peek_budget_bits()
    4000
    >>> first = link.transmit("frame 0", 3000)
    >>> first.delivered  # one step of latency: nothing yet
    ()
    >>> [d.item for d in link.transmit("frame 1", 5000).delivered]  # frame 1 is over budget
    ['frame 0']

"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bwgym.traces.trace import BandwidthTrace, is_finite_number, is_integer

__all__ = ["MAX_LATENCY_STEPS", "MAX_STEP_SECONDS", "Delivery", "Link", "LinkStep"]

#: Longest trace time per step a link accepts: a day. Budgets are integer bits per step, and a
#: step of 1e300 s overflowed them.
MAX_STEP_SECONDS = 86_400.0
#: Longest latency in steps: every payload in flight is held in memory until it arrives.
MAX_LATENCY_STEPS = 100_000


@dataclass(frozen=True)
class Delivery:
    """An item arriving at the receiver.

    Attributes:
        step: Step index at which the item was sent.
        item: What was sent (a ``Payload``, typically).

    """

    step: int
    item: Any


@dataclass(frozen=True)
class LinkStep:
    """What happened on the link during one step.

    Attributes:
        budget_bits: Bits the trace carries in this step's interval (floored cumulatively).
        bandwidth_bps: Mean rate over this step's interval, before flooring
            (the unfloored bit count divided by ``step_seconds``).
        bits_sent: Bits charged: the item's size when transmitted (delivered or lost), else 0.
        over_budget: The item was larger than ``budget_bits``: not transmitted, not delivered.
        lost: The item was transmitted but dropped at random (``loss_prob``).
        delivered: Items arriving at the receiver this step (sent ``latency_steps`` ago),
            oldest first.

    """

    budget_bits: int
    bandwidth_bps: float
    bits_sent: int
    over_budget: bool
    lost: bool
    delivered: tuple[Delivery, ...]


def _check_seed(seed: Any) -> None:
    if not (seed is None or (is_integer(seed) and 0 <= seed < 2**64)):
        raise ValueError(f"expected seed to be none or an integer in [0, 2**64), got {seed!r:.80}")


def _floor_bits(bits: float) -> int:
    # Snap values a float hair below an integer (9999.999999999 for 10000) before flooring, so a
    # step that starts exactly where a burst ends is not handed a spurious bit.
    return math.floor(round(bits, 6))


class Link:
    """A step-slotted channel: per-step bit budgets from a trace, losses and latency.

    Args:
        trace: The bandwidth trace (its clock in seconds; it loops unless ``trace.loop`` is False).
        step_seconds: Length of one step in seconds (finite, ``> 0``).
        latency_steps: Steps between sending and delivery (integer ``>= 0``; 0 delivers in the
            same step).
        loss_prob: Probability that a transmitted item is lost (``0 <= loss_prob < 1``).
        seed: Seed of the loss generator (``np.random.default_rng``).

    Raises:
        ValueError: An argument out of range; the message says what was expected.

    """

    def __init__(
        self,
        trace: BandwidthTrace,
        step_seconds: float,
        latency_steps: int = 0,
        loss_prob: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if not isinstance(trace, BandwidthTrace):
            raise TypeError(f"expected a BandwidthTrace, got {type(trace).__name__}")
        if not (is_finite_number(step_seconds) and 0 < step_seconds <= MAX_STEP_SECONDS):
            raise ValueError(
                f"expected step_seconds in (0, {MAX_STEP_SECONDS:g}] (MAX_STEP_SECONDS), got {step_seconds!r}"
            )
        if not (is_integer(latency_steps) and 0 <= latency_steps <= MAX_LATENCY_STEPS):
            raise ValueError(
                f"expected latency_steps to be an integer in [0, {MAX_LATENCY_STEPS:,}] (MAX_LATENCY_STEPS), "
                f"got {latency_steps!r}"
            )
        if not (is_finite_number(loss_prob) and 0.0 <= loss_prob < 1.0):
            raise ValueError(f"expected 0 <= loss_prob < 1, got {loss_prob!r}")
        _check_seed(seed)
        self._trace = trace
        self._step_seconds = float(step_seconds)
        self._latency_steps = int(latency_steps)
        self._loss_prob = float(loss_prob)
        self._rng = np.random.default_rng(seed)
        self._start_s = 0.0
        self._start_bits = 0.0
        self._step_index = 0
        self._in_flight: collections.deque[tuple[int, Delivery]] = collections.deque()
        # (step index, budget, bandwidth) of the last peek: an env peeks, then transmits.
        self._peeked: tuple[int, int, float] | None = None
        self.reset(0.0, seed)

    # ------------------------------------------------------------------ properties
    @property
    def trace(self) -> BandwidthTrace:
        """The bandwidth trace."""
        return self._trace

    @property
    def step_seconds(self) -> float:
        """Length of one step in seconds."""
        return self._step_seconds

    @property
    def latency_steps(self) -> int:
        """Steps between sending and delivery."""
        return self._latency_steps

    @property
    def loss_prob(self) -> float:
        """Probability that a transmitted item is lost."""
        return self._loss_prob

    @property
    def time_s(self) -> float:
        """Trace time at the start of the current (not yet transmitted) step, in seconds."""
        return self._time_at(self._step_index)

    @property
    def step_index(self) -> int:
        """Steps transmitted since the last reset."""
        return self._step_index

    @property
    def in_flight(self) -> int:
        """Items sent but not yet delivered."""
        return len(self._in_flight)

    # ------------------------------------------------------------------ API
    def reset(self, start_s: float = 0.0, seed: int | None = None) -> None:
        """Set the clock to ``start_s``, clear the in-flight queue and reseed the loss generator.

        Args:
            start_s: Trace time of step 0, in seconds (``>= 0`` when the trace does not loop).
            seed: New seed for the loss generator; ``None`` keeps drawing from the current one
                (as Gymnasium's ``reset(seed=None)`` does).

        """
        if not is_finite_number(start_s):
            raise ValueError(f"expected a finite start_s, got {start_s!r}")
        _check_seed(seed)
        if not self._trace.loop and start_s < 0:
            raise ValueError(f"expected start_s >= 0 for a trace with loop=False, got {start_s!r}")
        self._start_s = float(start_s)
        self._start_bits = float(self._trace.cumulative_bits(self._start_s))
        self._step_index = 0
        self._peeked = None
        self._in_flight.clear()
        if seed is not None:
            self._rng = np.random.default_rng(seed)

    def _time_at(self, k: int) -> float:
        # Multiply instead of accumulating, so step boundaries do not drift over long episodes.
        return self._start_s + k * self._step_seconds

    def _bits_to(self, k: int) -> float:
        """Bits carried from the reset time to the start of step ``k``."""
        return float(self._trace.cumulative_bits(self._time_at(k))) - self._start_bits

    def _peek(self) -> tuple[int, float]:
        k = self._step_index
        if self._peeked is not None and self._peeked[0] == k:
            return self._peeked[1], self._peeked[2]
        b0, b1 = self._bits_to(k), self._bits_to(k + 1)
        budget = max(0, _floor_bits(b1) - _floor_bits(b0))
        bandwidth = (b1 - b0) / self._step_seconds
        self._peeked = (k, budget, bandwidth)
        return budget, bandwidth

    def peek_budget_bits(self) -> int:
        """Budget of the current (not yet transmitted) step, in bits."""
        return self._peek()[0]

    def peek_bandwidth_bps(self) -> float:
        """Mean rate over the current (not yet transmitted) step, in bit/s."""
        return self._peek()[1]

    def transmit(self, item: Any, nbits: int) -> LinkStep:
        """Run one step: charge ``nbits``, maybe lose the item, queue it, advance the clock.

        Args:
            item: What to send (kept as is and handed back in a :class:`Delivery`).
            nbits: Its size in bits (integer ``>= 0``; 0 means nothing is sent this step).

        Returns:
            The step's :class:`LinkStep`.

        """
        if not (is_integer(nbits) and nbits >= 0):
            raise ValueError(f"expected nbits to be an integer >= 0, got {nbits!r}")
        nbits = int(nbits)
        budget, bandwidth = self._peek()
        # One coin per step whatever is sent: the loss pattern depends on seed and step only.
        coin = float(self._rng.random())
        step = self._step_index
        over_budget = nbits > budget
        lost = nbits > 0 and not over_budget and coin < self._loss_prob
        bits_sent = 0 if (nbits == 0 or over_budget) else nbits
        if bits_sent and not lost:
            self._in_flight.append((step + self._latency_steps, Delivery(step, item)))
        delivered = []
        while self._in_flight and self._in_flight[0][0] <= step:
            delivered.append(self._in_flight.popleft()[1])
        self._step_index += 1
        return LinkStep(
            budget_bits=budget,
            bandwidth_bps=bandwidth,
            bits_sent=bits_sent,
            over_budget=over_budget,
            lost=lost,
            delivered=tuple(delivered),
        )

    def __repr__(self) -> str:
        return (
            f"Link(trace={self._trace.name!r}, step_seconds={self._step_seconds:g}, "
            f"latency_steps={self._latency_steps}, loss_prob={self._loss_prob:g}, "
            f"time_s={self.time_s:g}, step_index={self._step_index})"
        )
