"""`BandwidthTrace`: an immutable, piecewise-constant link rate over time.

A trace is ``n`` segments. Segment ``i`` carries ``bps[i]`` bits per second on the half-open
interval ``[edges_s[i], edges_s[i + 1])``. The clock of every trace starts at 0
(``edges_s[0] == 0``) and its last segment ends at ``duration_s``. Past the end the trace loops
(``loop=True``, the default, as Mahimahi and Pensieve replay their traces) or holds its last rate
(``loop=False``).

Integrals are exact for the piecewise-constant rate (up to float64 rounding): the trace keeps a
cumulative-bits array over its edges, so ``bits_between`` costs two ``np.searchsorted`` calls,
O(log n), whatever the trace length.

Limits, so that no input can make a trace exhaust memory or overflow a float:
:data:`MAX_TRACE_SAMPLES` segments (about 80 MB per float64 array), rates up to :data:`MAX_BPS`
and times up to :data:`MAX_TIME_S`. The loaders, the generators and :meth:`BandwidthTrace.slice`
check them before they allocate, and their messages give the number needed and the limit.

Example:
    >>> from bwgym.traces import BandwidthTrace
    >>> trace = BandwidthTrace([0.0, 1.0], [1000.0, 0.0], name="on-off", duration_s=2.0)
    >>> trace.bits_between(0.5, 1.5)
    500.0
    >>> trace.bits_between(1.5, 2.5)  # loops: 0.5 s of outage, then 0.5 s at 1 kbit/s
    500.0
    >>> trace.mean_bps
    500.0

"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MAX_BPS",
    "MAX_TIME_S",
    "MAX_TRACE_SAMPLES",
    "BandwidthTrace",
    "check_samples",
    "concatenate",
    "is_finite_number",
    "is_integer",
    "is_number",
]

MAX_TRACE_SAMPLES = 10_000_000
"""Most segments (or samples, bins, written lines) one trace may have.

At the limit a trace holds three float64 arrays of 80 MB each; a generator or a file that would
need more (a Mahimahi file stamped up to 10^12 ms, ``duration_s=1e12``, a plot or slice spanning
10^9 s) is refused before anything is allocated, with the number it would need in the message.
10^7 covers 1 ms bins for 2.7 hours, 40 ms env steps for 4.6 days, 1 s samples for 115 days."""

MAX_BPS = 1e12
"""Highest rate a trace may hold, in bit/s (1 Tbit/s, far above any real link).

Larger values are typos or unit mistakes (bits vs kbit), and 1e300 would overflow to ``inf`` in
the cumulative integral; they are refused."""

MAX_TIME_S = 1e12
"""Largest time (an edge, a duration, a file's timestamp after conversion to seconds) a trace
accepts, in seconds (~31,700 years). Unix times in seconds (~1.7e9) and in milliseconds read as
seconds stay below it; anything beyond is garbage, and beyond 2^53 s times lose their integers."""

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]


# Plain Python / numpy scalars take the fast path of the query methods.
_SCALARS = (int, float, np.integer, np.floating)


def check_samples(needed: float, what: str) -> None:
    """Refuse a size above :data:`MAX_TRACE_SAMPLES` before it is allocated.

    Args:
        needed: How many samples (segments, bins, lines) the operation would allocate.
        what: What is being built, for the message (e.g. ``"a mahimahi trace of 500 ms bins"``).

    Raises:
        ValueError: ``needed`` exceeds the limit; the message gives both numbers.

    """
    if not needed <= MAX_TRACE_SAMPLES:  # also refuses NaN
        shown = f"{needed:.4g}" if isinstance(needed, float) else f"{needed:,}"
        raise ValueError(
            f"{what} would need {shown} samples, more than the limit MAX_TRACE_SAMPLES="
            f"{MAX_TRACE_SAMPLES:,} (bwgym.traces.MAX_TRACE_SAMPLES); expected a shorter trace, "
            "a longer sampling period or bin, or a shorter span"
        )


def is_number(x: Any) -> bool:
    """Whether ``x`` is a real number: a Python or numpy int or float, not a bool."""
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def is_finite_number(x: Any) -> bool:
    """Whether ``x`` is a finite real number (an int beyond float range is not)."""
    try:
        return is_number(x) and math.isfinite(x)
    except OverflowError:  # a Python int beyond float range
        return False


def is_integer(x: Any) -> bool:
    """Whether ``x`` is a Python or numpy integer, not a bool."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _readonly(values: np.ndarray) -> FloatArray:
    out = np.array(values, dtype=np.float64, copy=True)
    out.flags.writeable = False
    return out


def _edges(times: FloatArray, n: int, duration_s: float | None) -> FloatArray:
    """The ``n + 1`` segment edges from ``n + 1`` edges, or from ``n`` start times and ``duration_s``."""
    if times.size == n + 1:
        if duration_s is not None:
            raise ValueError(
                "expected either n + 1 edges in times_s or n start times with duration_s, got both "
                f"{times.size} edges for {n} rates and duration_s={duration_s}"
            )
        return times
    if times.size != n:
        raise ValueError(
            f"expected len(times_s) == len(bps) (start times) or len(bps) + 1 (edges), "
            f"got {times.size} times for {n} rates"
        )
    if duration_s is None:
        if n < 2:
            raise ValueError(
                "expected duration_s for a one-segment trace (its length cannot be inferred), "
                "got duration_s=None"
            )
        # A regularly sampled trace: the last segment lasts as long as the one before it.
        duration_s = float(times[-1] + (times[-1] - times[-2]))
    try:
        return np.append(times, float(duration_s))
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"expected a number for duration_s, got {duration_s!r}") from None


def _check_edges(edges: FloatArray) -> None:
    """Refuse edges that are not finite, beyond :data:`MAX_TIME_S`, not from 0 or not increasing."""
    n = edges.size - 1

    def label(i: int) -> str:  # the last edge is duration_s (or the inferred end)
        return "duration_s" if i == n else f"times_s[{i}]"

    if not np.all(np.isfinite(edges)):
        bad = int(np.flatnonzero(~np.isfinite(edges))[0])
        raise ValueError(f"expected finite times, got {label(bad)}={edges[bad]}")
    if edges[-1] > MAX_TIME_S:
        bad = int(np.flatnonzero(edges > MAX_TIME_S)[0])
        raise ValueError(
            f"expected times <= MAX_TIME_S={MAX_TIME_S:g} s (bwgym.traces.MAX_TIME_S), got {label(bad)}={edges[bad]:g}"
        )
    if edges[0] != 0.0:
        raise ValueError(
            f"expected times_s[0] == 0 (a trace's clock starts at 0), got {edges[0]}; "
            "subtract times_s[0] from every time first"
        )
    steps = np.diff(edges)
    if np.any(steps <= 0):
        bad = int(np.flatnonzero(steps <= 0)[0])
        raise ValueError(
            f"expected strictly increasing times, got {label(bad + 1)}={edges[bad + 1]} "
            f"after times_s[{bad}]={edges[bad]}"
        )


def _check_rates(rates: FloatArray) -> None:
    """Refuse rates that are not finite, negative or above :data:`MAX_BPS`."""
    if not np.all(np.isfinite(rates)) or np.any(rates < 0):
        bad = int(np.flatnonzero(~(np.isfinite(rates) & (rates >= 0)))[0])
        raise ValueError(f"expected finite rates >= 0 bps, got bps[{bad}]={rates[bad]}")
    if np.any(rates > MAX_BPS):
        bad = int(np.flatnonzero(rates > MAX_BPS)[0])
        raise ValueError(
            f"expected rates <= MAX_BPS={MAX_BPS:g} bit/s (bwgym.traces.MAX_BPS), got bps[{bad}]={rates[bad]:g}"
        )


class BandwidthTrace:
    """Immutable piecewise-constant bandwidth trace.

    Args:
        times_s: Segment start times in seconds, strictly increasing, starting at 0. Either ``n``
            start times (one per rate) or ``n + 1`` edges, the last one being the end of the trace.
        bps: Rate of each segment in bits per second, finite and ``>= 0`` (0 is an outage).
        name: Free-form label shown in tables and plots.
        duration_s: End of the last segment, in seconds. Only with ``n`` start times; when omitted
            the last segment lasts as long as the one before it (the sampling period of a
            regularly sampled trace). Required for a one-segment trace given by its start only.
        loop: Past ``duration_s`` the trace repeats from 0 (``True``) or holds its last rate.

    Raises:
        ValueError: On empty, non-finite, non-increasing or negative input; the message says
            which element and what was expected.

    """

    __slots__ = ("_edges_s", "_bps", "_cum_bits", "_name", "_loop", "_period_s", "_period_bits", "_last_bps")

    _edges_s: FloatArray
    _bps: FloatArray
    _cum_bits: FloatArray
    _name: str
    _loop: bool
    # Python floats of the hot constants: the scalar path avoids numpy 0-d arithmetic.
    _period_s: float
    _period_bits: float
    _last_bps: float

    def __init__(
        self,
        times_s: ArrayLike,
        bps: ArrayLike,
        name: str = "",
        *,
        duration_s: float | None = None,
        loop: bool = True,
    ) -> None:
        try:
            times = np.asarray(times_s, dtype=np.float64)
            rates = np.asarray(bps, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as err:
            raise ValueError(
                f"expected numeric times_s and bps, got values that are not numbers ({err})"
            ) from None
        if times.ndim != 1 or rates.ndim != 1:
            raise ValueError(f"expected 1-D times_s and bps, got shapes {times.shape} and {rates.shape}")
        if rates.size == 0:
            raise ValueError("expected at least one segment, got an empty bps array")
        check_samples(rates.size, "a BandwidthTrace")
        edges = _edges(times, rates.size, duration_s)
        _check_edges(edges)
        _check_rates(rates)
        cum = np.concatenate(([0.0], np.cumsum(rates * np.diff(edges))))
        fields = {
            "_edges_s": _readonly(edges),
            "_bps": _readonly(rates),
            "_cum_bits": _readonly(cum),
            "_name": str(name),
            "_loop": bool(loop),
            "_period_s": float(edges[-1]),
            "_period_bits": float(cum[-1]),
            "_last_bps": float(rates[-1]),
        }
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    # Immutability: traces are shared between envs, links and plots, so nobody may edit one.
    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"BandwidthTrace is immutable; cannot set {key!r} (use replace())")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"BandwidthTrace is immutable; cannot delete {key!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild through __init__ so unpickled arrays are validated and read-only again.
        return (_rebuild, (self._edges_s, self._bps, self._name, self._loop))

    # ------------------------------------------------------------------ properties
    @property
    def times_s(self) -> FloatArray:
        """Segment start times in seconds (read-only, ``n`` values, first is 0)."""
        return self._edges_s[:-1]

    @property
    def edges_s(self) -> FloatArray:
        """Segment edges in seconds (read-only, ``n + 1`` values, last is ``duration_s``)."""
        return self._edges_s

    @property
    def bps(self) -> FloatArray:
        """Rate of each segment in bits per second (read-only)."""
        return self._bps

    @property
    def cumulative_edges_bits(self) -> FloatArray:
        """Bits carried from 0 to each edge (read-only, ``n + 1`` values)."""
        return self._cum_bits

    @property
    def name(self) -> str:
        """Label of the trace."""
        return self._name

    @property
    def loop(self) -> bool:
        """Whether the trace repeats past ``duration_s`` (else it holds its last rate)."""
        return self._loop

    @property
    def duration_s(self) -> float:
        """End of the last segment, in seconds: the loop period."""
        return float(self._edges_s[-1])

    @property
    def total_bits(self) -> float:
        """Bits carried over one period ``[0, duration_s)``."""
        return float(self._cum_bits[-1])

    @property
    def mean_bps(self) -> float:
        """Time-averaged rate over one period, in bits per second."""
        return self.total_bits / self.duration_s

    @property
    def min_bps(self) -> float:
        """Lowest segment rate, in bits per second."""
        return float(self._bps.min())

    @property
    def max_bps(self) -> float:
        """Highest segment rate, in bits per second."""
        return float(self._bps.max())

    @property
    def outage_fraction(self) -> float:
        """Fraction of the period during which the rate is 0."""
        lengths = np.diff(self._edges_s)
        return float(lengths[self._bps == 0].sum() / self.duration_s)

    def __len__(self) -> int:
        """Return the number of segments."""
        return int(self._bps.size)

    # ------------------------------------------------------------------ queries
    def _wrap(self, t: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Split times into (whole periods before t, time within the period or held past the end)."""
        period = self.duration_s
        if self._loop:
            k = np.floor(t / period)
            # Rounding can leave r a hair outside [0, period]; clipping keeps the lookup in range.
            r = np.clip(t - k * period, 0.0, period)
            return k, r
        if np.any(t < 0):
            bad = float(np.min(t))
            raise ValueError(f"expected times >= 0 for a trace with loop=False, got {bad}")
        return np.zeros_like(t), t

    def _wrap_scalar(self, t: float) -> float:
        if not math.isfinite(t):
            raise ValueError(f"expected a finite time, got {t}")
        if self._loop:
            r = t - math.floor(t / self._period_s) * self._period_s
            return min(max(r, 0.0), self._period_s)
        if t < 0:
            raise ValueError(f"expected times >= 0 for a trace with loop=False, got {t}")
        return t

    def _segment_scalar(self, r: float) -> int:
        i = int(np.searchsorted(self._edges_s, r, side="right")) - 1
        return min(max(i, 0), self._bps.size - 1)

    def _cumulative_scalar(self, t: float) -> float:
        """Scalar twin of :meth:`cumulative_bits`: same arithmetic, ~10x less overhead per call."""
        if not math.isfinite(t):
            raise ValueError(f"expected a finite time, got {t}")
        period = self._period_s
        if self._loop:
            k = math.floor(t / period)
            inside = min(max(t - k * period, 0.0), period)
            base = k * self._period_bits
        else:
            if t < 0:
                raise ValueError(f"expected times >= 0 for a trace with loop=False, got {t}")
            inside = min(t, period)
            base = max(t - period, 0.0) * self._last_bps
        i = self._segment_scalar(inside)
        return base + float(self._cum_bits[i]) + float(self._bps[i]) * (inside - float(self._edges_s[i]))

    def _segment(self, r: FloatArray) -> npt.NDArray[np.intp]:
        i = np.searchsorted(self._edges_s, r, side="right") - 1
        return np.clip(i, 0, self._bps.size - 1)

    @overload
    def bps_at(self, t: float) -> float: ...

    @overload
    def bps_at(self, t: npt.NDArray[Any] | Sequence[float]) -> FloatArray: ...

    def bps_at(self, t: ArrayLike) -> float | FloatArray:
        """Rate in bits per second at time(s) ``t`` (seconds; looping or holding past the end).

        Args:
            t: A time or an array of times, in seconds.

        Returns:
            A float for a scalar ``t``, else an array shaped like ``t``.

        """
        if isinstance(t, _SCALARS):
            r = self._wrap_scalar(float(t))
            if not self._loop and r >= self._period_s:
                return self._last_bps
            return float(self._bps[self._segment_scalar(r)])
        ta = np.asarray(t, dtype=np.float64)
        _, r = self._wrap(ta)
        out = self._bps[self._segment(r)]
        if not self._loop:
            out = np.where(ta >= self.duration_s, self._bps[-1], out)
        return float(out) if out.ndim == 0 else out

    @overload
    def cumulative_bits(self, t: float) -> float: ...

    @overload
    def cumulative_bits(self, t: npt.NDArray[Any] | Sequence[float]) -> FloatArray: ...

    def cumulative_bits(self, t: ArrayLike) -> float | FloatArray:
        """Bits carried from time 0 to time(s) ``t``: the integral of the rate.

        Negative times are allowed for a looping trace (the integral is then negative).

        Args:
            t: A time or an array of times, in seconds.

        Returns:
            A float for a scalar ``t``, else an array shaped like ``t``.

        """
        if isinstance(t, _SCALARS):
            return self._cumulative_scalar(float(t))
        ta = np.asarray(t, dtype=np.float64)
        if not np.all(np.isfinite(ta)):
            raise ValueError(f"expected finite times, got {ta[~np.isfinite(ta)].flat[0]}")
        k, r = self._wrap(ta)
        if self._loop:
            inside = r
            out = k * self.total_bits
        else:
            inside = np.minimum(r, self.duration_s)
            out = np.maximum(r - self.duration_s, 0.0) * self._bps[-1]
        i = self._segment(inside)
        out = out + self._cum_bits[i] + self._bps[i] * (inside - self._edges_s[i])
        return float(out) if out.ndim == 0 else out

    @overload
    def bits_between(self, t0: float, t1: float) -> float: ...

    @overload
    def bits_between(self, t0: ArrayLike, t1: ArrayLike) -> float | FloatArray: ...

    def bits_between(self, t0: ArrayLike, t1: ArrayLike) -> float | FloatArray:
        """Exact number of bits the trace carries on ``[t0, t1]``, in O(log n).

        Past ``duration_s`` the trace loops (or holds its last rate when ``loop=False``).

        Args:
            t0: Start time(s) in seconds.
            t1: End time(s) in seconds, ``>= t0`` (broadcast against ``t0``).

        Returns:
            A float for scalar inputs, else an array of the broadcast shape.

        Raises:
            ValueError: If some ``t1 < t0``.

        """
        if isinstance(t0, _SCALARS) and isinstance(t1, _SCALARS):
            if t1 < t0:
                raise ValueError(f"expected t1 >= t0, got t0={t0!r}, t1={t1!r}")
            return self._cumulative_scalar(float(t1)) - self._cumulative_scalar(float(t0))
        a = np.asarray(t0, dtype=np.float64)
        b = np.asarray(t1, dtype=np.float64)
        if np.any(b < a):
            raise ValueError(f"expected t1 >= t0, got t0={t0!r}, t1={t1!r}")
        out = np.asarray(self.cumulative_bits(b)) - np.asarray(self.cumulative_bits(a))
        return float(out) if out.ndim == 0 else out

    # ------------------------------------------------------------------ derived traces
    def replace(self, *, name: str | None = None, loop: bool | None = None) -> BandwidthTrace:
        """Return a copy with a new ``name`` and/or ``loop``."""
        return BandwidthTrace(
            self._edges_s,
            self._bps,
            self._name if name is None else name,
            loop=self._loop if loop is None else loop,
        )

    def scale(self, factor: float, name: str | None = None) -> BandwidthTrace:
        """Multiply every rate by ``factor`` (e.g. ``1 / n_robots`` sharing one uplink).

        Args:
            factor: Finite, ``>= 0``.
            name: Name of the result; defaults to this trace's name.

        """
        if not (math.isfinite(factor) and factor >= 0):
            raise ValueError(f"expected a finite factor >= 0, got {factor}")
        return BandwidthTrace(
            self._edges_s, self._bps * factor, self._name if name is None else name, loop=self._loop
        )

    def slice(self, t0: float, t1: float, name: str | None = None) -> BandwidthTrace:
        """Return the part of the trace on ``[t0, t1)``, re-timed to start at 0.

        ``t1`` may lie past ``duration_s``: the slice then unrolls the loop (or holds the last rate
        when ``loop=False``). The slice keeps this trace's ``loop`` flag.

        Args:
            t0: Start in seconds (``>= 0``).
            t1: End in seconds (``> t0``).
            name: Name of the result; defaults to this trace's name.

        """
        if not (math.isfinite(t0) and math.isfinite(t1) and 0 <= t0 < t1):
            raise ValueError(f"expected finite 0 <= t0 < t1, got t0={t0}, t1={t1}")
        starts = self._edges_s[:-1]
        n = starts.size
        period = self.duration_s
        if self._loop:
            first, last = math.floor(t0 / period), math.ceil(t1 / period)
            check_samples((last - first) * n, f"slicing {self._name or 'a trace'!r} to [{t0:g}, {t1:g}) s")
            ks = np.arange(first, last)
            points = (starts[None, :] + ks[:, None] * period).ravel()
            index = np.tile(np.arange(n), ks.size)
        else:
            points, index = starts, np.arange(n)
        keep = (points > t0) & (points < t1)
        new_starts = np.concatenate(([t0], points[keep])) - t0
        new_bps = np.concatenate(([self.bps_at(t0)], self._bps[index[keep]]))
        return BandwidthTrace(
            np.append(new_starts, t1 - t0),
            new_bps,
            self._name if name is None else name,
            loop=self._loop,
        )

    def to_frame(self) -> pd.DataFrame:
        """Return the segments as a DataFrame with columns ``time_s`` (start) and ``bps``.

        ``duration_s``, ``name`` and ``loop`` are stored in ``DataFrame.attrs``.
        """
        import pandas as pd

        frame = pd.DataFrame({"time_s": np.array(self.times_s), "bps": np.array(self._bps)})
        frame.attrs.update(name=self._name, duration_s=self.duration_s, loop=self._loop)
        return frame

    # ------------------------------------------------------------------ dunder
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BandwidthTrace):
            return NotImplemented
        return (
            self._name == other._name
            and self._loop == other._loop
            and np.array_equal(self._edges_s, other._edges_s)
            and np.array_equal(self._bps, other._bps)
        )

    def __hash__(self) -> int:
        return hash((self._name, self._loop, self._edges_s.tobytes(), self._bps.tobytes()))

    def __repr__(self) -> str:
        return (
            f"BandwidthTrace(name={self._name!r}, segments={len(self)}, "
            f"duration_s={self.duration_s:g}, mean_bps={self.mean_bps:g}, loop={self._loop})"
        )


def _rebuild(edges: FloatArray, bps: FloatArray, name: str, loop: bool) -> BandwidthTrace:
    return BandwidthTrace(edges, bps, name, loop=loop)


def concatenate(traces: Iterable[BandwidthTrace], name: str = "", *, loop: bool = True) -> BandwidthTrace:
    """Play ``traces`` one after the other (each for its own ``duration_s``).

    Args:
        traces: At least one trace.
        name: Name of the result.
        loop: ``loop`` flag of the result.

    """
    parts = list(traces)
    if not parts:
        raise ValueError("expected at least one trace to concatenate, got none")
    for i, part in enumerate(parts):
        if not isinstance(part, BandwidthTrace):
            raise ValueError(f"expected BandwidthTrace parts, got {type(part).__name__} at index {i}")
    check_samples(sum(len(p) for p in parts), f"concatenating {len(parts)} traces")
    offsets = np.cumsum([0.0] + [p.duration_s for p in parts])
    starts = np.concatenate([p.times_s + off for p, off in zip(parts, offsets[:-1], strict=True)])
    rates = np.concatenate([p.bps for p in parts])
    return BandwidthTrace(np.append(starts, offsets[-1]), rates, name, loop=loop)
