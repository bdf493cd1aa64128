"""Synthetic bandwidth traces, for the cases no recorded trace covers.

Every stochastic generator draws from ``np.random.default_rng(seed)``: the same seed gives the same
trace, bit for bit. Rates are sampled on a grid of ``dt_s`` seconds (the last sample is shortened
to end at ``duration_s``), rounded to whole bit/s (files stay small) and kept within the given
bounds; runs of equal samples are merged into one segment.

:data:`GENERATORS` maps a name to each generator so that the CLI (``bwgym traces generate``) and
YAML scenarios can name them; :func:`generate` calls one by name and checks its parameters.

Example:
    >>> from bwgym.traces.generators import gilbert_elliott
    >>> trace = gilbert_elliott(200e3, 5e3, duration_s=30.0, seed=0)
    >>> 5e3 <= trace.min_bps and trace.max_bps <= 200e3
    True

"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from bwgym.traces.trace import BandwidthTrace, concatenate

__all__ = [
    "GENERATORS",
    "constant",
    "drive",
    "generate",
    "gilbert_elliott",
    "lognormal_walk",
    "pensieve_markov",
    "steps",
]

SeedLike = int | np.random.SeedSequence | None


# ---------------------------------------------------------------------------------------- helpers
def _check(condition: bool, expected: str, got: Any) -> None:
    if not condition:
        raise ValueError(f"expected {expected}, got {got!r}")


def _finite(x: Any) -> bool:
    return (
        isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) and math.isfinite(x)
    )


def _check_duration(duration_s: float, dt_s: float | None = None) -> None:
    _check(_finite(duration_s) and duration_s > 0, "duration_s > 0 (finite)", duration_s)
    if dt_s is not None:
        _check(_finite(dt_s) and dt_s > 0, "dt_s > 0 (finite)", dt_s)


def _check_rate(label: str, value: float) -> None:
    _check(_finite(value) and value >= 0, f"{label} >= 0 bit/s (finite)", value)


def _check_prob(label: str, value: float, low_open: bool = False) -> None:
    ok = _finite(value) and (0 < value if low_open else 0 <= value) and value <= 1
    _check(ok, f"{label} in {'(' if low_open else '['}0, 1]", value)


def _n_samples(duration_s: float, dt_s: float) -> int:
    # The tolerance stops 60 / 0.1 = 600.0000000001 from adding a sliver of a sample.
    return max(1, math.ceil(duration_s / dt_s - 1e-9))


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


# ---------------------------------------------------------------------------------------- generators
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
    return BandwidthTrace([0.0], [float(bps)], name, duration_s=float(duration_s), loop=loop)


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
    pairs = [tuple(p) for p in schedule]
    _check(
        len(pairs) > 0 and all(len(p) == 2 for p in pairs),
        "a non-empty list of (time_s, bps) pairs",
        schedule,
    )
    _check_duration(duration_s)
    times = [float(t) for t, _ in pairs]
    for i, (_, bps) in enumerate(pairs):
        _check_rate(f"the rate of step {i}", bps)
    _check(times[-1] < duration_s, f"duration_s > the last step time {times[-1]}", duration_s)
    return BandwidthTrace(np.append(times, float(duration_s)), [float(b) for _, b in pairs], name, loop=loop)


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
    _check(_finite(mean_bps) and mean_bps > 0, "mean_bps > 0 (finite)", mean_bps)
    _check(_finite(sigma) and sigma >= 0, "sigma >= 0", sigma)
    low = mean_bps / 10 if min_bps is None else min_bps
    high = mean_bps * 10 if max_bps is None else max_bps
    _check_rate("min_bps", low)
    _check(_finite(high) and high >= low, f"max_bps >= min_bps={low}", high)
    _check_duration(duration_s, dt_s)
    _check(_finite(correlation_s) and correlation_s > 0, "correlation_s > 0", correlation_s)
    rng = np.random.default_rng(seed)
    n = _n_samples(duration_s, dt_s)
    centre = math.log(mean_bps) - sigma**2 / 2
    a = math.exp(-dt_s / correlation_s)
    noise = rng.standard_normal(n) * sigma * math.sqrt(1 - a * a)
    x = np.empty(n)
    x[0] = centre + sigma * rng.standard_normal()  # start in the stationary distribution
    for i in range(1, n):
        x[i] = centre + a * (x[i - 1] - centre) + noise[i]
    return _from_samples(np.exp(x), duration_s, dt_s, name, loop, low, high)


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
    _check(_finite(min_bps) and min_bps > 0, "min_bps > 0 (finite)", min_bps)
    _check(_finite(max_bps) and max_bps >= min_bps, f"max_bps >= min_bps={min_bps}", max_bps)
    _check(
        isinstance(n_states, (int, np.integer)) and not isinstance(n_states, bool) and n_states >= 1,
        "an integer n_states >= 1",
        n_states,
    )
    _check_duration(duration_s, dt_s)
    _check(_finite(mean_stay_s) and mean_stay_s >= dt_s, f"mean_stay_s >= dt_s={dt_s}", mean_stay_s)
    _check(_finite(noise) and noise >= 0, "noise >= 0", noise)
    rng = np.random.default_rng(seed)
    n = _n_samples(duration_s, dt_s)
    levels = np.geomspace(min_bps, max_bps, int(n_states))
    leave = dt_s / mean_stay_s  # 1/T with T counted in samples
    states = np.empty(n, dtype=np.int64)
    state, filled = int(rng.integers(n_states)), 0
    idx = np.arange(n_states)
    while filled < n:
        length = n if (leave <= 0 or n_states == 1) else int(rng.geometric(leave))
        states[filled : filled + length] = state
        filled += length
        if n_states > 1:
            weights = 0.5 ** np.abs(idx - state).astype(float)
            weights[state] = 0.0
            state = int(rng.choice(n_states, p=weights / weights.sum()))
    mean = levels[states]
    values = mean + noise * mean * rng.standard_normal(n)
    return _from_samples(values, duration_s, dt_s, name, loop, min_bps, max_bps)


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
        p_good_to_bad + p_bad_to_good > 0, "p_good_to_bad + p_bad_to_good > 0", (p_good_to_bad, p_bad_to_good)
    )
    _check_duration(duration_s, dt_s)
    rng = np.random.default_rng(seed)
    n = _n_samples(duration_s, dt_s)
    p_bad = p_good_to_bad / (p_good_to_bad + p_bad_to_good)
    first = int(rng.random() < p_bad)  # 0 = good, 1 = bad
    states = _runs(rng, n, (1 - p_good_to_bad, 1 - p_bad_to_good), first)
    values = np.where(states == 0, float(good_bps), float(bad_bps))
    return _from_samples(values, duration_s, dt_s, name, loop, min(good_bps, bad_bps), max(good_bps, bad_bps))


_DRIVE_KINDS = ("lognormal_walk", "pensieve_markov", "gilbert_elliott", "constant")


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
        kinds: Generators the random segments choose from (names in :data:`GENERATORS`).
        segments: Explicit segments ``(kind, seconds, params)`` instead of random ones; each is
            ``GENERATORS[kind](duration_s=seconds, seed=..., **params)`` (``seed`` only for
            stochastic kinds, and only when ``params`` has none). ``duration_s`` is then their sum.
        name: Name of the trace.
        loop: ``loop`` flag of the trace.

    """
    rng = np.random.default_rng(seed)
    parts: list[BandwidthTrace] = []
    if segments is not None:
        _check(len(segments) > 0, "at least one segment", segments)
        for i, segment in enumerate(segments):
            _check(len(segment) == 3, f"segment {i} as (kind, seconds, params)", segment)
            kind, seconds, params = segment
            params = dict(params)
            if "seed" in inspect.signature(_lookup(kind)).parameters:
                params.setdefault("seed", int(rng.integers(2**63)))
            parts.append(generate(kind, duration_s=seconds, **params))
        return concatenate(parts, name, loop=loop)
    _check(_finite(min_bps) and min_bps > 0, "min_bps > 0 (finite)", min_bps)
    _check(_finite(max_bps) and max_bps >= min_bps, f"max_bps >= min_bps={min_bps}", max_bps)
    _check_duration(duration_s, dt_s)
    _check(_finite(mean_segment_s) and mean_segment_s > 0, "mean_segment_s > 0", mean_segment_s)
    for kind in kinds:
        _check(kind in _DRIVE_KINDS, f"kinds among {', '.join(_DRIVE_KINDS)}", kind)
    _check(len(kinds) > 0, "at least one kind", kinds)
    elapsed = 0.0
    while elapsed < duration_s - 1e-9:
        # Whole samples, so segment joins fall on the dt_s grid.
        length = max(dt_s, round(rng.exponential(mean_segment_s) / dt_s) * dt_s)
        length = min(length, duration_s - elapsed)
        kind = kinds[int(rng.integers(len(kinds)))]
        level = float(math.exp(rng.uniform(math.log(min_bps), math.log(max_bps))))
        sub_seed = int(rng.integers(2**63))
        if kind == "constant":
            part = constant(round(level), length)
        elif kind == "lognormal_walk":
            part = lognormal_walk(level, 0.4, min_bps, max_bps, length, dt_s, seed=sub_seed)
        elif kind == "pensieve_markov":
            part = pensieve_markov(
                max(min_bps, level / 3),
                min(max_bps, level * 3),
                5,
                max(dt_s, length / 4),
                0.1,
                length,
                dt_s,
                seed=sub_seed,
            )
        else:
            part = gilbert_elliott(level, min_bps, 0.1, 0.3, length, dt_s, seed=sub_seed)
        parts.append(part)
        elapsed += length
    return concatenate(parts, name, loop=loop)


GENERATORS: dict[str, Callable[..., BandwidthTrace]] = {
    "constant": constant,
    "steps": steps,
    "lognormal_walk": lognormal_walk,
    "pensieve_markov": pensieve_markov,
    "gilbert_elliott": gilbert_elliott,
    "drive": drive,
}
"""Generators by name, for the CLI and YAML scenarios."""


def _lookup(kind: str) -> Callable[..., BandwidthTrace]:
    try:
        return GENERATORS[kind]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(kind), GENERATORS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"expected a generator among {', '.join(GENERATORS)}, got {kind!r}{hint}") from None


def generate(kind: str, **params: Any) -> BandwidthTrace:
    """Call the generator named ``kind`` with keyword ``params``.

    Raises:
        ValueError: Unknown generator, unknown or missing parameter (the message lists the valid
            ones), or a parameter out of range.

    """
    fn = _lookup(kind)
    signature = inspect.signature(fn)
    unknown = sorted(set(params) - set(signature.parameters))
    if unknown:
        valid = ", ".join(signature.parameters)
        hints = [difflib.get_close_matches(u, signature.parameters, n=1) for u in unknown]
        hint = "".join(f" ({u!r}: did you mean {h[0]!r}?)" for u, h in zip(unknown, hints, strict=True) if h)
        raise ValueError(f"expected parameters of {kind} among {valid}, got {', '.join(unknown)}{hint}")
    try:
        signature.bind(**params)
    except TypeError as err:
        raise ValueError(f"{kind}: {err}; its parameters are {signature}") from None
    return fn(**params)
