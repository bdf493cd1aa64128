"""Synthetic bandwidth traces, for the cases no recorded trace covers.

Every stochastic generator draws from ``np.random.default_rng(seed)``: the same seed gives the same
trace, bit for bit, in any process. Without a seed the trace is fresh randomness, so callers that
need reproducible runs give one; :func:`derive_seed` turns a run's seed and a name into a stable
per-trace seed (the scenario layer gives a generator without ``params.seed`` the seed
``derive_seed(run.seed, "trace")``). Rates are sampled on a grid of ``dt_s`` seconds (the last
sample is shortened to end at ``duration_s``), rounded to whole bit/s (files stay small) and kept
within the given bounds; runs of equal samples are merged into one segment.

Every generator is an entry of :data:`~bwgym.common.registry.TRACE_GENERATORS`, so that the CLI
(``bwgym traces generate``, ``bwgym traces generators``) and YAML scenarios (``trace.generator``)
can name it. An entry's options dataclass lists its parameters with their types and defaults (this
module's generators take theirs from their signatures; ``seed`` is not an option, every generator
that takes one gets it from :func:`generate`). :func:`generate` fills the options from keyword
parameters, so an unknown or missing parameter or a value of the wrong type is a one-line
``OptionError``, then calls the function with them as keywords. A generator of your own, from your
own module::

    @dataclass(frozen=True)
    class SquareOptions:
        high_bps: float = 1e6
        duration_s: float = 10.0

    @register_trace_generator("square", description="on-off square wave", options=SquareOptions)
    def square(high_bps: float = 1e6, duration_s: float = 10.0) -> BandwidthTrace: ...

:func:`drive` picks its random segments among the registered generators that name their
segment's parameters with :func:`drive_segment`.

Every parameter is checked before anything is drawn: an out-of-range, non-finite or mistyped
value is a ``ValueError`` naming the parameter, the value and the valid range. Sizes are bounded:
``duration_s / dt_s`` at most :data:`~bwgym.traces.trace.MAX_TRACE_SAMPLES` samples, rates at most
:data:`~bwgym.traces.trace.MAX_BPS`, :data:`MAX_MARKOV_STATES` states and
:data:`MAX_DRIVE_SEGMENTS` drive segments, so that no parameter can exhaust memory or run for hours.

Example:
    >>> from bwgym.traces.generators import gilbert_elliott
    >>> trace = gilbert_elliott(200e3, 5e3, duration_s=30.0, seed=0)
    >>> 5e3 <= trace.min_bps and trace.max_bps <= 200e3
    True

"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from bwgym.common.registry import TRACE_GENERATORS, DuplicateNameError, Entry, options_from_signature
from bwgym.traces.trace import (
    MAX_BPS,
    MAX_TIME_S,
    BandwidthTrace,
    check_samples,
    concatenate,
    is_finite_number,
    is_integer,
)

__all__ = [
    "GENERATORS",
    "MAX_DRIVE_SEGMENTS",
    "MAX_MARKOV_STATES",
    "MAX_SEED",
    "constant",
    "DriveSegment",
    "derive_seed",
    "drive",
    "drive_segment",
    "generate",
    "gilbert_elliott",
    "lognormal_walk",
    "pensieve_markov",
    "steps",
    "takes_seed",
]

SeedLike = int | np.random.SeedSequence | None
F = TypeVar("F", bound=Callable[..., Any])

MAX_SEED = 2**64 - 1
"""Largest integer seed a generator accepts (seeds are integers in ``[0, MAX_SEED]``)."""

MAX_MARKOV_STATES = 1000
"""Most states of :func:`pensieve_markov` (each jump weighs every state; Pensieve uses ~10)."""

MAX_DRIVE_SEGMENTS = 10_000
"""Most segments of a :func:`drive` trace (each is a generator call, ~0.2 ms): ``duration_s /
max(mean_segment_s, dt_s)`` random segments or ``len(segments)`` explicit ones."""

_MAX_SIGMA = 10.0  # log-rate spread of lognormal_walk: e^10 is a factor of 22,000 already


# ---------------------------------------------------------------------------------------- helpers
def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...({len(text):,} characters)"


def _check(condition: bool, name: str, expected: str, got: Any) -> None:
    """Raise ``ValueError("name=<got> is out of range; expected <expected>")`` unless ``condition``."""
    if not condition:
        raise ValueError(f"{name}={_show(got)} is out of range; expected {expected}")


def _check_duration(duration_s: float, dt_s: float | None = None) -> None:
    _check(
        is_finite_number(duration_s) and 0 < duration_s <= MAX_TIME_S,
        "duration_s",
        f"duration_s > 0 and <= MAX_TIME_S={MAX_TIME_S:g} s (finite)",
        duration_s,
    )
    if dt_s is not None:
        _check(is_finite_number(dt_s) and dt_s > 0, "dt_s", "dt_s > 0 (finite)", dt_s)


def _check_rate(label: str, value: float, positive: bool = False) -> None:
    low = ">" if positive else ">="
    _check(
        is_finite_number(value) and (value > 0 if positive else value >= 0) and value <= MAX_BPS,
        label,
        f"{label} {low} 0 and <= MAX_BPS={MAX_BPS:g} bit/s (finite)",
        value,
    )


def _check_bounds(low: float, high: float, positive: bool = True) -> None:
    """``min_bps`` (``> 0`` when ``positive``, else ``>= 0``) and ``min_bps <= max_bps <= MAX_BPS``."""
    _check_rate("min_bps", low, positive=positive)
    _check(
        is_finite_number(high) and low <= high <= MAX_BPS,
        "max_bps",
        f"max_bps >= min_bps={low} and <= MAX_BPS={MAX_BPS:g} bit/s",
        high,
    )


def _check_prob(label: str, value: float, low_open: bool = False) -> None:
    ok = is_finite_number(value) and (0 < value if low_open else 0 <= value) and value <= 1
    _check(ok, label, f"{label} in {'(' if low_open else '['}0, 1]", value)


def _check_common(name: Any, loop: Any, seed: Any = None) -> None:
    _check(isinstance(name, str), "name", "a string", name)
    _check(isinstance(loop, (bool, np.bool_)), "loop", "true or false", loop)
    _check_seed(seed)


def _check_seed(seed: Any) -> None:
    ok = (
        seed is None
        or isinstance(seed, np.random.SeedSequence)
        or (is_integer(seed) and 0 <= seed <= MAX_SEED)
    )
    _check(ok, "seed", f"an integer in [0, {MAX_SEED}] (or none for fresh randomness)", seed)


def _sampling(
    duration_s: float, dt_s: float, name: Any, loop: Any, seed: Any
) -> tuple[int, np.random.Generator]:
    """Check the arguments every sampled generator shares; return its sample count and generator."""
    _check_common(name, loop, seed)
    return _n_samples(duration_s, dt_s), np.random.default_rng(seed)


def _n_samples(duration_s: float, dt_s: float) -> int:
    """Count the samples of ``dt_s`` covering ``duration_s``, refused beyond ``MAX_TRACE_SAMPLES``."""
    # The tolerance stops 60 / 0.1 = 600.0000000001 from adding a sliver of a sample.
    needed = duration_s / dt_s - 1e-9
    check_samples(needed, f"duration_s={duration_s:g} sampled every dt_s={dt_s:g} s")
    return max(1, math.ceil(needed))


def _from_samples(
    values: np.ndarray, duration_s: float, dt_s: float, name: str, loop: bool, low: float, high: float
) -> BandwidthTrace:
    """Build a trace holding ``values[i]`` on ``[i * dt_s, (i + 1) * dt_s)``, equal runs merged."""
    rates = np.clip(np.round(values), low, high)
    starts = np.arange(rates.size) * dt_s
    keep = np.concatenate(([True], rates[1:] != rates[:-1]))
    return BandwidthTrace(np.append(starts[keep], duration_s), rates[keep], name, loop=loop)


def _runs(rng: np.random.Generator, n: int, stay_prob: Sequence[float], first: int) -> np.ndarray:
    """States of a 2-state Markov chain for ``n`` steps, drawn as geometric run lengths.

    Drawing whole runs (``P(len = k) = (1 - p)^(k-1) p``) is the same distribution as stepping the
    chain one sample at a time, without a Python loop over samples.
    """
    out = np.empty(n, dtype=np.int64)
    state, filled = first, 0
    while filled < n:
        leave = 1.0 - stay_prob[state]
        length = n if leave <= 0 else int(rng.geometric(leave))
        out[filled : filled + length] = state
        filled += length
        state = 1 - state
    return out


# ---------------------------------------------------------------------------------------- registry
def _options_of(fn: Callable[..., BandwidthTrace]) -> type:
    """The options dataclass of a generator: its parameters but ``seed`` (required without a default)."""
    title = "".join(word.title() for word in fn.__name__.split("_"))
    return options_from_signature(fn, f"{title}Options", skip=("seed",), required=True)


def _generator(description: str) -> Callable[[F], F]:
    """Register a generator of this module under its function name, its options from its signature."""

    def decorate(fn: F) -> F:
        TRACE_GENERATORS.add(fn.__name__, fn, description=description, options=_options_of(fn))
        return fn

    return decorate


@dataclass(frozen=True)
class DriveSegment:
    """What one random segment of :func:`drive` asks of its generator.

    Attributes:
        level_bps: The segment's level, log-uniform in ``[min_bps, max_bps]``.
        min_bps: The drive's lowest rate; the segment stays at or above it.
        max_bps: The drive's highest rate; the segment stays at or below it.
        duration_s: The segment's length in seconds (whole samples, the last one cut at the end).
        dt_s: The drive's sampling period in seconds.

    """

    level_bps: float
    min_bps: float
    max_bps: float
    duration_s: float
    dt_s: float


_DRIVE_SEGMENTS: dict[str, Callable[[DriveSegment], dict[str, Any]]] = {}


def drive_segment(kind: str) -> Callable[[F], F]:
    """Decorator: ``params(segment) -> dict`` lets :func:`drive` pick the generator ``kind``.

    Each random segment of that kind is ``generate(kind, seed=..., **params(segment))``.

    Raises:
        DuplicateNameError: Another function already names ``kind``'s segment.

    """

    def decorate(params: F) -> F:
        previous = _DRIVE_SEGMENTS.get(kind)
        same = previous is not None and (previous.__module__, previous.__qualname__) == (
            params.__module__,
            params.__qualname__,
        )
        if previous is not None and not same:
            raise DuplicateNameError(
                f"drive segment {kind!r} is named twice: by {previous.__module__} ({previous.__qualname__}) "
                f"and by {params.__module__} ({params.__qualname__}); remove one"
            )
        _DRIVE_SEGMENTS[kind] = params
        return params

    return decorate


# ---------------------------------------------------------------------------------------- generators
@_generator("one rate for the whole trace")
def constant(
    bps: float, duration_s: float = 60.0, *, name: str = "constant", loop: bool = True
) -> BandwidthTrace:
    """Generate a constant rate.

    Args:
        bps: Rate in bit/s (``>= 0``; 0 is a permanent outage).
        duration_s: Length of the trace in seconds.
        name: Name of the trace.
        loop: ``loop`` flag of the trace.

    """
    _check_rate("bps", bps)
    _check_duration(duration_s)
    _check_common(name, loop)
    return BandwidthTrace([0.0], [float(bps)], name, duration_s=float(duration_s), loop=loop)


@drive_segment("constant")
def _constant_segment(segment: DriveSegment) -> dict[str, Any]:
    return {"bps": round(segment.level_bps), "duration_s": segment.duration_s}


@_generator("a schedule of (start time, rate) steps")
def steps(
    schedule: Sequence[Sequence[float]],
    duration_s: float,
    *,
    name: str = "steps",
    loop: bool = True,
) -> BandwidthTrace:
    """Generate a step schedule: ``[(t_s, bps), ...]``, each rate holding until the next time.

    Args:
        schedule: Pairs ``(start time in s, rate in bit/s)``; the first time is 0, times increase.
        duration_s: End of the last step, after the last start time.
        name: Name of the trace.
        loop: ``loop`` flag of the trace.

    Example:
        >>> steps([(0, 1e6), (10, 50e3)], duration_s=20).mean_bps
        525000.0

    """
    expected = "a non-empty list of [time_s, bps] pairs, times increasing from 0"
    _check(
        isinstance(schedule, Sequence) and not isinstance(schedule, (str, bytes)) and len(schedule) > 0,
        "schedule",
        expected,
        schedule,
    )
    check_samples(len(schedule), "a steps schedule")
    _check_duration(duration_s)
    _check_common(name, loop)
    times, rates = [], []
    for i, pair in enumerate(schedule):
        _check(
            isinstance(pair, Sequence) and not isinstance(pair, (str, bytes)) and len(pair) == 2,
            f"schedule[{i}]",
            "a [time_s, bps] pair",
            pair,
        )
        t, bps = pair
        previous = times[-1] if times else None
        ok = is_finite_number(t) and (t == 0 if previous is None else t > previous)
        _check(ok, f"schedule[{i}] time", "0 for the first step, then increasing times (s)", t)
        _check_rate(f"schedule[{i}] bps", bps)
        times.append(float(t))
        rates.append(float(bps))
    _check(times[-1] < duration_s, "duration_s", f"duration_s > the last step time {times[-1]}", duration_s)
    return BandwidthTrace(np.append(times, float(duration_s)), rates, name, loop=loop)


@_generator("a mean-reverting log-normal random walk (Ornstein-Uhlenbeck on the log-rate)")
def lognormal_walk(
    mean_bps: float = 100e3,
    sigma: float = 0.5,
    min_bps: float | None = None,
    max_bps: float | None = None,
    duration_s: float = 60.0,
    dt_s: float = 1.0,
    correlation_s: float = 10.0,
    seed: SeedLike = None,
    *,
    name: str = "lognormal_walk",
    loop: bool = True,
) -> BandwidthTrace:
    """Generate a bounded log-normal random walk (an Ornstein-Uhlenbeck process on the log-rate).

    The log-rate reverts to its mean with time constant ``correlation_s``; its stationary
    spread is ``sigma``, and its centre is chosen so that the unclipped mean rate is ``mean_bps``.
    Rates are clipped to ``[min_bps, max_bps]``. A pure random walk would drift to a bound and
    stay there; mean reversion keeps the trace wandering around ``mean_bps``.

    Args:
        mean_bps: Mean rate in bit/s (``> 0``).
        sigma: Standard deviation of the natural log of the rate (``>= 0``).
        min_bps: Lower bound; default ``mean_bps / 10``.
        max_bps: Upper bound; default ``mean_bps * 10``.
        duration_s: Length of the trace in seconds.
        dt_s: Sampling period in seconds.
        correlation_s: Time constant of the mean reversion, in seconds (``> 0``).
        seed: Seed for ``np.random.default_rng``.
        name: Name of the trace.
        loop: ``loop`` flag of the trace.

    """
    _check_rate("mean_bps", mean_bps, positive=True)
    _check(
        is_finite_number(sigma) and 0 <= sigma <= _MAX_SIGMA, "sigma", f"sigma in [0, {_MAX_SIGMA:g}]", sigma
    )
    low = mean_bps / 10 if min_bps is None else min_bps
    high = min(mean_bps * 10, MAX_BPS) if max_bps is None else max_bps
    _check_bounds(low, high, positive=False)
    _check_duration(duration_s, dt_s)
    _check(
        is_finite_number(correlation_s) and correlation_s > 0,
        "correlation_s",
        "correlation_s > 0",
        correlation_s,
    )
    n, rng = _sampling(duration_s, dt_s, name, loop, seed)
    centre = math.log(mean_bps) - sigma**2 / 2
    a = math.exp(-dt_s / correlation_s)
    noise = (rng.standard_normal(n) * sigma * math.sqrt(1 - a * a)).tolist()
    # The AR(1) recursion on Python floats: the same IEEE arithmetic as on numpy scalars, 5x faster.
    x = [0.0] * n
    prev = x[0] = centre + sigma * float(rng.standard_normal())  # start in the stationary distribution
    for i in range(1, n):
        prev = x[i] = centre + a * (prev - centre) + noise[i]
    with np.errstate(over="ignore"):
        values = np.exp(np.array(x))
    return _from_samples(values, duration_s, dt_s, name, loop, low, high)


@drive_segment("lognormal_walk")
def _lognormal_walk_segment(segment: DriveSegment) -> dict[str, Any]:
    return {
        "mean_bps": segment.level_bps,
        "sigma": 0.4,
        "min_bps": segment.min_bps,
        "max_bps": segment.max_bps,
        "duration_s": segment.duration_s,
        "dt_s": segment.dt_s,
    }


@_generator("Pensieve's Markov chain over geometrically spaced throughput levels")
def pensieve_markov(
    min_bps: float = 0.2e6,
    max_bps: float = 10e6,
    n_states: int = 10,
    mean_stay_s: float = 10.0,
    noise: float = 0.1,
    duration_s: float = 60.0,
    dt_s: float = 1.0,
    seed: SeedLike = None,
    *,
    name: str = "pensieve_markov",
    loop: bool = True,
) -> BandwidthTrace:
    """Generate Pensieve's synthetic-trace model: a Markov chain over throughput levels.

    ``n_states`` levels are spaced geometrically between ``min_bps`` and ``max_bps``. Each
    sample stays in its state with probability ``1 - 1/T`` where ``T = mean_stay_s / dt_s``
    samples; otherwise it jumps to another state, a neighbour being likelier than a distant one
    (weight ``2^-distance``). The rate is drawn from a Gaussian around the state's level with
    standard deviation ``noise * level`` and clipped to ``[min_bps, max_bps]``.

    Args:
        min_bps: Lowest level in bit/s (``> 0``).
        max_bps: Highest level in bit/s (``>= min_bps``).
        n_states: Number of levels (``>= 1``).
        mean_stay_s: Mean time spent in a state, in seconds (``>= dt_s``).
        noise: Relative standard deviation of the rate within a state (``>= 0``).
        duration_s: Length of the trace in seconds.
        dt_s: Sampling period in seconds.
        seed: Seed for ``np.random.default_rng``.
        name: Name of the trace.
        loop: ``loop`` flag of the trace.

    """
    _check_bounds(min_bps, max_bps)
    _check(
        is_integer(n_states) and 1 <= n_states <= MAX_MARKOV_STATES,
        "n_states",
        f"an integer n_states >= 1 and <= MAX_MARKOV_STATES={MAX_MARKOV_STATES}",
        n_states,
    )
    _check_duration(duration_s, dt_s)
    _check(
        is_finite_number(mean_stay_s) and mean_stay_s >= dt_s,
        "mean_stay_s",
        f"mean_stay_s >= dt_s={dt_s}",
        mean_stay_s,
    )
    _check(is_finite_number(noise) and noise >= 0, "noise", "noise >= 0 (finite)", noise)
    n, rng = _sampling(duration_s, dt_s, name, loop, seed)
    n_states = int(n_states)
    levels = np.geomspace(min_bps, max_bps, n_states)
    leave = dt_s / mean_stay_s  # 1/T with T counted in samples
    states = np.empty(n, dtype=np.int64)
    state, filled = int(rng.integers(n_states)), 0
    if n_states > 1:
        # Jump weights 2^-distance to every other state; the row cdfs are what
        # ``rng.choice(n_states, p=weights / weights.sum())`` builds on each call, precomputed:
        # the same draws, bit for bit, without its per-call checks.
        idx = np.arange(n_states)
        cdfs = []
        for s in range(n_states):
            weights = 0.5 ** np.abs(idx - s).astype(float)
            weights[s] = 0.0
            cdf = (weights / weights.sum()).cumsum()
            cdf /= cdf[-1]
            cdfs.append(cdf)
    while filled < n:
        length = n if (leave <= 0 or n_states == 1) else int(rng.geometric(leave))
        states[filled : filled + length] = state
        filled += length
        if n_states > 1:
            state = int(cdfs[state].searchsorted(rng.random(), side="right"))
    mean = levels[states]
    with np.errstate(over="ignore", invalid="ignore"):
        values = mean + noise * mean * rng.standard_normal(n)
    return _from_samples(values, duration_s, dt_s, name, loop, min_bps, max_bps)


@drive_segment("pensieve_markov")
def _pensieve_markov_segment(segment: DriveSegment) -> dict[str, Any]:
    # Levels within a factor 3 of the segment's, staying about a quarter of the segment each.
    return {
        "min_bps": max(segment.min_bps, segment.level_bps / 3),
        "max_bps": min(segment.max_bps, segment.level_bps * 3),
        "n_states": 5,
        "mean_stay_s": max(segment.dt_s, segment.duration_s / 4),
        "noise": 0.1,
        "duration_s": segment.duration_s,
        "dt_s": segment.dt_s,
    }


@_generator("a good and a bad state, switching per sample (Gilbert-Elliott)")
def gilbert_elliott(
    good_bps: float = 200e3,
    bad_bps: float = 10e3,
    p_good_to_bad: float = 0.05,
    p_bad_to_good: float = 0.3,
    duration_s: float = 60.0,
    dt_s: float = 0.1,
    seed: SeedLike = None,
    *,
    name: str = "gilbert_elliott",
    loop: bool = True,
) -> BandwidthTrace:
    """Generate a Gilbert-Elliott channel: a good and a bad state, switching per sample.

    The first sample's state is drawn from the stationary distribution, so the long-run share
    of bad time is ``p_good_to_bad / (p_good_to_bad + p_bad_to_good)``.

    Args:
        good_bps: Rate in the good state, bit/s.
        bad_bps: Rate in the bad state, bit/s (0 models an outage).
        p_good_to_bad: Per-sample probability of leaving the good state.
        p_bad_to_good: Per-sample probability of leaving the bad state.
        duration_s: Length of the trace in seconds.
        dt_s: Sampling period in seconds (bursts last whole samples).
        seed: Seed for ``np.random.default_rng``.
        name: Name of the trace.
        loop: ``loop`` flag of the trace.

    """
    _check_rate("good_bps", good_bps)
    _check_rate("bad_bps", bad_bps)
    _check_prob("p_good_to_bad", p_good_to_bad)
    _check_prob("p_bad_to_good", p_bad_to_good)
    _check(
        p_good_to_bad + p_bad_to_good > 0,
        "(p_good_to_bad, p_bad_to_good)",
        "p_good_to_bad + p_bad_to_good > 0",
        (p_good_to_bad, p_bad_to_good),
    )
    _check_duration(duration_s, dt_s)
    n, rng = _sampling(duration_s, dt_s, name, loop, seed)
    p_bad = p_good_to_bad / (p_good_to_bad + p_bad_to_good)
    first = int(rng.random() < p_bad)  # 0 = good, 1 = bad
    states = _runs(rng, n, (1 - p_good_to_bad, 1 - p_bad_to_good), first)
    values = np.where(states == 0, float(good_bps), float(bad_bps))
    return _from_samples(values, duration_s, dt_s, name, loop, min(good_bps, bad_bps), max(good_bps, bad_bps))


@drive_segment("gilbert_elliott")
def _gilbert_elliott_segment(segment: DriveSegment) -> dict[str, Any]:
    # Bursts down to the drive's floor, from a good state at the segment's level.
    return {
        "good_bps": segment.level_bps,
        "bad_bps": segment.min_bps,
        "p_good_to_bad": 0.1,
        "p_bad_to_good": 0.3,
        "duration_s": segment.duration_s,
        "dt_s": segment.dt_s,
    }


_DRIVE_KINDS = ("lognormal_walk", "pensieve_markov", "gilbert_elliott", "constant")


@_generator("segments of other generators one after the other, as on a drive between cells")
def drive(
    duration_s: float = 300.0,
    min_bps: float = 1e6,
    max_bps: float = 15e6,
    mean_segment_s: float = 30.0,
    dt_s: float = 1.0,
    seed: SeedLike = None,
    kinds: Sequence[str] = _DRIVE_KINDS,
    segments: Sequence[tuple[str, float, Mapping[str, Any]]] | None = None,
    *,
    name: str = "drive",
    loop: bool = True,
) -> BandwidthTrace:
    """Generate a drive-like trace: segments of different generators, one after the other.

    Without ``segments`` the trace is random: segment lengths are exponential with mean
    ``mean_segment_s`` (at least ``dt_s``), each segment picks a generator among ``kinds`` and a
    level log-uniform in ``[min_bps, max_bps]``, and every rate stays within those bounds (as when
    a vehicle moves between cells, tunnels and open road).

    Args:
        duration_s: Length of the trace in seconds.
        min_bps: Lowest rate in bit/s (``> 0``).
        max_bps: Highest rate in bit/s.
        mean_segment_s: Mean segment length in seconds.
        dt_s: Sampling period in seconds of the random segments.
        seed: Seed for ``np.random.default_rng``; each segment gets its own seed drawn from it.
        kinds: Generators the random segments choose from: registered generators that name their
            segment with :func:`drive_segment`.
        segments: Explicit segments ``(kind, seconds, params)`` instead of random ones; each is
            ``generate(kind, duration_s=seconds, seed=..., **params)`` (a drawn ``seed`` only for
            stochastic kinds, and only when ``params`` has none). ``duration_s`` is then their sum.
        name: Name of the trace.
        loop: ``loop`` flag of the trace.

    """
    _check_common(name, loop, seed)
    rng = np.random.default_rng(seed)
    if segments is not None:
        return concatenate(_explicit_segments(rng, segments), name, loop=loop)
    _check_bounds(min_bps, max_bps)
    _check_duration(duration_s, dt_s)
    _check_drive_kinds(kinds)
    _check(
        is_finite_number(mean_segment_s) and mean_segment_s > 0,
        "mean_segment_s",
        "mean_segment_s > 0",
        mean_segment_s,
    )
    _n_samples(duration_s, dt_s)
    expected_segments = duration_s / max(mean_segment_s, dt_s)
    _check(
        expected_segments <= MAX_DRIVE_SEGMENTS,
        "mean_segment_s",
        f"duration_s / max(mean_segment_s, dt_s) <= MAX_DRIVE_SEGMENTS={MAX_DRIVE_SEGMENTS:,} "
        f"(it would make {expected_segments:.4g} segments); a longer mean_segment_s or dt_s",
        mean_segment_s,
    )
    bounds = (min_bps, max_bps)
    return concatenate(
        _random_segments(rng, duration_s, bounds, mean_segment_s, dt_s, kinds), name, loop=loop
    )


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _explicit_segments(
    rng: np.random.Generator, segments: Sequence[tuple[str, float, Mapping[str, Any]]]
) -> list[BandwidthTrace]:
    """``drive``'s explicit segments, each seeded from ``rng`` when its kind is stochastic."""
    _check(
        _is_list(segments) and 0 < len(segments) <= MAX_DRIVE_SEGMENTS,
        "segments",
        f"a list of 1 to MAX_DRIVE_SEGMENTS={MAX_DRIVE_SEGMENTS:,} [kind, seconds, params] entries",
        segments,
    )
    parts = []
    for i, segment in enumerate(segments):
        _check(_is_list(segment) and len(segment) == 3, f"segments[{i}]", "[kind, seconds, params]", segment)
        kind, seconds, params = segment
        _check(
            isinstance(params, Mapping) and "duration_s" not in params,
            f"segments[{i}] params",
            "a mapping of generator parameters without duration_s (the segment's seconds set it)",
            params,
        )
        params = dict(params)
        try:
            if takes_seed(kind):
                params.setdefault("seed", int(rng.integers(2**63)))
            parts.append(generate(kind, duration_s=seconds, **params))
        except ValueError as err:
            raise ValueError(f"segments[{i}]: {err}") from None
    return parts


def _check_drive_kinds(kinds: Any) -> None:
    eligible = [kind for kind in _DRIVE_SEGMENTS if kind in TRACE_GENERATORS]
    expected = f"kinds among {', '.join(eligible)}"
    _check(_is_list(kinds) and len(kinds) > 0, "kinds", f"a non-empty list of {expected}", kinds)
    for kind in kinds:
        _check(isinstance(kind, str) and kind in eligible, "kinds", expected, kind)


def _random_segments(
    rng: np.random.Generator,
    duration_s: float,
    bounds: tuple[float, float],
    mean_segment_s: float,
    dt_s: float,
    kinds: Sequence[str],
) -> list[BandwidthTrace]:
    """``drive``'s random segments, drawn from ``rng`` (the order of the draws is the trace's seed contract)."""
    min_bps, max_bps = bounds
    parts: list[BandwidthTrace] = []
    elapsed = 0.0
    while elapsed < duration_s - 1e-9:
        if len(parts) >= 2 * MAX_DRIVE_SEGMENTS:  # unreachable in practice: lengths average >= the mean
            raise ValueError(
                f"drive made more than {2 * MAX_DRIVE_SEGMENTS:,} segments (2 x MAX_DRIVE_SEGMENTS); "
                "expected a longer mean_segment_s"
            )
        # Whole samples, so segment joins fall on the dt_s grid.
        length = max(dt_s, round(rng.exponential(mean_segment_s) / dt_s) * dt_s)
        length = min(length, duration_s - elapsed)
        kind = kinds[int(rng.integers(len(kinds)))]
        level = float(math.exp(rng.uniform(math.log(min_bps), math.log(max_bps))))
        sub_seed = int(rng.integers(2**63))
        params = _DRIVE_SEGMENTS[kind](DriveSegment(level, min_bps, max_bps, length, dt_s))
        parts.append(generate(kind, seed=sub_seed, **params))
        elapsed += length
    return parts


class _GeneratorTable(Mapping[str, Callable[..., BandwidthTrace]]):
    """:data:`~bwgym.common.registry.TRACE_GENERATORS` seen as ``{name: function}`` (read-only)."""

    def __getitem__(self, kind: str) -> Callable[..., BandwidthTrace]:
        if kind not in TRACE_GENERATORS:
            raise KeyError(kind)
        return TRACE_GENERATORS.get(kind).target

    def __iter__(self) -> Iterator[str]:
        return iter(TRACE_GENERATORS.names())

    def __len__(self) -> int:
        return len(TRACE_GENERATORS)


GENERATORS: Mapping[str, Callable[..., BandwidthTrace]] = _GeneratorTable()
"""The registered generators by name, a live read-only view of ``TRACE_GENERATORS`` (for callers
that want the functions; lookups by name with a "did you mean" go through ``TRACE_GENERATORS.get``)."""


def takes_seed(kind: str) -> bool:
    """Whether the generator named ``kind`` is stochastic (takes a ``seed``).

    Raises:
        UnknownNameError: No generator of that name (a ``ValueError``).

    """
    return _takes_seed(TRACE_GENERATORS.get(kind))


def _takes_seed(entry: Entry) -> bool:
    return "seed" in inspect.signature(entry.target).parameters


def derive_seed(base_seed: int, *names: str) -> int:
    """Derive a seed for one purpose from a base seed and names, stable across processes.

    The scenario layer gives a generator without ``params.seed`` the seed
    ``derive_seed(run.seed, "trace")``, so the same scenario gives the same trace in every worker,
    run and resumed run; different names give independent seeds. The value is the first 63 bits
    of ``sha256("bwgym.derive_seed", base_seed, *names)`` (Python's ``hash()`` is salted per
    process, so it is not used).

    Args:
        base_seed: An integer (e.g. the run's seed); negative values are allowed.
        *names: Strings naming the purpose (e.g. ``"trace"``, a sweep point's label).

    Returns:
        An integer in ``[0, 2**63)``, usable by every numpy, torch and Gymnasium seed.

    Example:
        >>> derive_seed(0, "trace") == derive_seed(0, "trace") != derive_seed(1, "trace")
        True

    """
    if not is_integer(base_seed):
        raise ValueError(f"base_seed={_show(base_seed)} is not an integer; expected an integer seed")
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise ValueError(f"names[{i}]={_show(name)} is not a string; expected string names")
    digest = hashlib.sha256()
    for part in ("bwgym.derive_seed", str(int(base_seed)), *names):
        data = part.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big") + data)  # length-prefixed: ("ab", "c") != ("a", "bc")
    return int.from_bytes(digest.digest()[:8], "big") >> 1


def generate(kind: str, *, seed: SeedLike = None, **params: Any) -> BandwidthTrace:
    """Call the generator named ``kind`` with keyword ``params``, checked against its options.

    ``generate(kind, seed=s, **params)`` is deterministic for an integer ``s``: the same trace in
    every process. Deterministic generators (``constant``, ``steps``) accept ``seed`` too and
    ignore it, so a caller may pass one whatever the kind (see :func:`derive_seed`).

    Raises:
        UnknownNameError: Unknown generator: the closest name and every registered one.
        OptionError: An unknown parameter (with the closest one), a missing required one or a value
            of the wrong type.
        ValueError: A parameter out of range or non-finite (the message names the parameter, its
            value and the valid range). All three are ``ValueError``s starting with ``kind``.

    """
    entry = TRACE_GENERATORS.get(kind)
    options = _make_options(entry, params)
    keywords = (
        {} if options is None else {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    )
    if _takes_seed(entry):
        keywords["seed"] = seed
    try:
        _check_seed(seed)  # for deterministic kinds too: a bad seed is a bug in the caller either way
        return entry.target(**keywords)
    except ValueError as err:
        raise ValueError(f"{kind}: {err}") from None


def _make_options(entry: Entry, params: Mapping[str, Any]) -> Any:
    """The entry's options from ``params`` (numpy scalars count as the Python numbers they hold)."""
    return entry.make_options(params, where=entry.name)
