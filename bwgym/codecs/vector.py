"""Codecs for vector views (sensor measurements): per-sensor scalar quantisation and predictive coding.

Both send every view's symbols in one entropy-coded stream (one range-coder pass, so a payload
is byte-aligned once, not once per sensor) and emit real bytes through :mod:`bwgym.codecs.entropy`;
``compress`` never exceeds the budget.

* :class:`ScalarCodec` (``scalar``, wire id 10): every component of every view is quantised with a
  uniform step and coded with a fixed zero-mean Gaussian model of the measurement's spread (its
  prior). No memory: the baseline any other vector codec must beat.
* :class:`PredictiveCodec` (``predictive``, wire id 11): the classic networked-estimation scheme.
  Sender and receiver run the same Kalman filter of the process; each step every sensor codes only
  its *innovation* ``y_k - C_k x_{t|t-1}`` against the receiver's prediction, with a model of the
  innovation's spread ``C_k P C_k' + R_k``; both ends then update the filter with the decoded
  measurements (quantisation noise ``step^2 / 12`` added to ``R_k``). The input ``u`` is not
  modelled (estimate mode has none): in control mode the prediction misses it, which costs bits,
  never correctness (both ends share the same prediction).

The budget left after the container's header is split over the views: by the allocation when one
is given (``split_budget``); otherwise equally (scalar) or, for the predictive codec, greedily by
where a bit most reduces the fusion node's posterior variance (the precise sensors first); each view takes the finest step whose *expected* bits fit its
share (a share of 0: not sent, rate byte 255), then the stream is coded for real and every step
made one notch coarser until it fits. Steps are powers ``2 ** (k / 8)`` on the entropy coder's
scale grid, sent as one byte per view relative to the view's largest spread. After decoding,
:attr:`ScalarCodec.last_steps` / :attr:`PredictiveCodec.last_steps` give each view's step, so a
fusion node can weigh a decoded measurement by its quantisation noise.

Predictive coding and drops
---------------------------
Decoding is only correct while the receiver's filter equals the sender's. The sender updates its
filter with what it sent, so a payload the link drops (lost at random, or still in flight when
the next one is decoded out of order) desynchronises them. The codec therefore:

1. numbers every step (16 bits) and every non-empty frame (8 bits) in the payload header, so the
   receiver *detects* a missing frame: a frame counter that is not the one it expects;
2. after a detected gap, decodes nothing (its views are absent, so the wrapper holds the last
   ones and a Kalman fusion agent uses its time update) until a *key frame* arrives;
3. sends a key frame every ``key_interval`` steps, and on the next step after the sender learns of
   a drop through :meth:`PredictiveCodec.acknowledge` (a link-layer ack); a key frame carries the
   sender's predicted state, quantised with step ``sigma / 8`` of the canonical covariance
   ``P_key`` (the steady-state prediction covariance plus that quantisation noise), and both ends
   restart from ``(x_key, P_key)``.

So a drop costs at most ``key_interval`` steps of held measurements without acks, and one step
with them. Empty payloads (nothing fitted) never desynchronise: the sender did not update either.
Sender and receiver state live in the same object (the wrapper compresses and decompresses with
one codec); :meth:`PredictiveCodec.reset` restarts both at the prior (call it at an episode start
when you can: without it the codec stays in sync and only pays a larger first innovation). The two
ends compute the model scales from float covariances: they agree bit for bit when they run the
same arithmetic (one process, as in bwgym's simulation); a decoder on other hardware would need
fixed-point filters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bwgym.codecs.base import Codec, Payload, PayloadError, ViewSpec, split_budget
from bwgym.codecs.entropy import (
    MAX_SCALE_INDEX,
    MIN_SCALE_INDEX,
    SCALE_STEPS_PER_OCTAVE,
    dequantize,
    get_coder,
    quantize_symbols,
    scale_index,
    step_from_index,
)
from bwgym.codecs.registry import register_codec
from bwgym.common.kalman import LinearGaussianModel, RiccatiError, kalman_steady_state

__all__ = ["PredictiveCodec", "ScalarCodec", "as_linear_system"]

#: Rate byte of a view that was not sent.
NOT_SENT = 255
#: Rate byte = (reference scale index - step index) + _REL_OFFSET, in 0..254: steps from
#: ``2 ** 8`` times the view's largest spread (all zeros) down to ``2 ** -23.75`` of it.
_REL_OFFSET = 64
_REL_MAX = 254 - _REL_OFFSET
_REL_MIN = -_REL_OFFSET
#: Key-frame state step: sigma / 8 of the canonical covariance (3 octaves finer).
_KEY_REL = 3 * SCALE_STEPS_PER_OCTAVE
_FLAG_KEY = 1


def _float_views(views: Sequence[ViewSpec]) -> tuple[ViewSpec, ...]:
    views = tuple(views)
    if not views:
        raise ValueError("a vector codec needs at least one view")
    for v in views:
        if len(v.shape) != 1 or v.shape[0] < 1 or np.dtype(v.dtype).kind != "f":
            raise ValueError(
                f"vector codecs take 1-D float views (sensor measurements); view {v.name!r} is "
                f"{v.dtype}{tuple(v.shape)}"
            )
    if len(views) > 250:
        raise ValueError(f"vector codecs take at most 250 views, got {len(views)}")
    return views


def as_linear_system(system: Any, views: Sequence[ViewSpec]) -> LinearGaussianModel:
    """Validate a process model against the views: one ``C_k`` of ``d_k`` rows per view.

    Args:
        system: an object or mapping with ``A, Q, C, R, initial_mean, initial_cov`` (``C`` and ``R``
            one matrix per sensor).
        views: the codec's views, in sensor order.

    Raises:
        ValueError: a key is missing, or shapes do not match the state or the views.
    """

    def get(key: str) -> Any:
        value = system.get(key) if isinstance(system, Mapping) else getattr(system, key, None)
        if value is None:
            raise ValueError(
                f"system: missing {key!r}; expected A, Q, C, R, initial_mean, initial_cov "
                "(e.g. env.unwrapped.model of bwgym/SensorNetwork-v0)"
            )
        return value

    A = np.atleast_2d(np.asarray(get("A"), dtype=np.float64))
    n = A.shape[0]
    if A.shape != (n, n):
        raise ValueError(f"system.A must be square, got shape {A.shape}")
    Q = np.atleast_2d(np.asarray(get("Q"), dtype=np.float64))
    mean = np.asarray(get("initial_mean"), dtype=np.float64).reshape(-1)
    cov = np.atleast_2d(np.asarray(get("initial_cov"), dtype=np.float64))
    if Q.shape != (n, n) or cov.shape != (n, n) or mean.shape != (n,):
        raise ValueError(
            f"system: Q and initial_cov must be ({n}, {n}) and initial_mean ({n},) for a state of "
            f"dimension {n}, got {Q.shape}, {cov.shape}, {mean.shape}"
        )
    Cs = [np.atleast_2d(np.asarray(c, dtype=np.float64)) for c in get("C")]
    Rs = [np.atleast_2d(np.asarray(r, dtype=np.float64)) for r in get("R")]
    views = tuple(views)
    if len(Cs) != len(views) or len(Rs) != len(views):
        raise ValueError(
            f"system has {len(Cs)} sensors (C) and {len(Rs)} noise covariances (R), the codec has "
            f"{len(views)} views {[v.name for v in views]}: one per view expected"
        )
    for k, (c, r, v) in enumerate(zip(Cs, Rs, views, strict=True)):
        d = v.shape[0]
        if c.shape != (d, n) or r.shape != (d, d):
            raise ValueError(
                f"system sensor {k} (view {v.name!r}, {d} values): C_k must be ({d}, {n}) and R_k "
                f"({d}, {d}), got {c.shape} and {r.shape}"
            )
    return LinearGaussianModel(A, np.zeros((n, 0)), Q, tuple(Cs), tuple(Rs), mean, cov)


# ---------------------------------------------------------------------------------------------
# Per-view coding: the finest step whose real stream fits
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Coded:
    """One frame's views, coded in one stream: rate byte, reconstruction and step per view."""

    rate_bytes: tuple[int, ...]
    data: bytes
    decoded: tuple[np.ndarray | None, ...]  # float64 reconstruction (None: not sent)
    steps: tuple[float, ...]


_EXPECTED_BITS: np.ndarray | None = None


def _choose_step(sigma_idx: np.ndarray, share_bits: float, lo: int, hi: int) -> int | None:
    """Finest step index in ``[lo, hi]`` whose expected bits fit ``share_bits`` (one table lookup).

    Same answer as :func:`bwgym.codecs.entropy.choose_step_index`, vectorised over every candidate.
    """
    global _EXPECTED_BITS
    if _EXPECTED_BITS is None:
        _EXPECTED_BITS = get_coder("gaussian").expected_bits(np.arange(MIN_SCALE_INDEX, MAX_SCALE_INDEX + 1))
    ks = np.arange(lo, hi + 1)
    idx = np.clip(sigma_idx.reshape(-1, 1) - ks[None, :], MIN_SCALE_INDEX, MAX_SCALE_INDEX) - MIN_SCALE_INDEX
    fits = np.flatnonzero(_EXPECTED_BITS[idx].sum(0) <= share_bits)
    return None if fits.size == 0 else int(ks[fits[0]])


def _encode_views(
    values: Sequence[np.ndarray],
    means: Sequence[np.ndarray],
    sigma_idx: Sequence[np.ndarray],
    shares: Sequence[int],
    body_bits: int,
    prefix: tuple[np.ndarray, np.ndarray] | None = None,
) -> _Coded | None:
    """Quantise every view at the finest step its share affords, in one stream of <= ``body_bits``.

    Each view's step is the finest whose *expected* bits fit its share (views with a share of 0 are
    not sent); the stream is then coded for real and, while it is longer than ``body_bits``, every
    step is made one grid notch coarser. ``prefix`` (symbols, scale indices) is coded first in the
    same pass (a key frame's state). None when nothing at all fits.
    """
    coder = get_coder("gaussian")
    refs = [int(s.max()) for s in sigma_idx]
    # Aim one byte above the body: the stream is byte-aligned and often shorter than the model's
    # expected bits, so the finest steps that still fit are found by coarsening from there.
    inflate = (body_bits + 8) / body_bits if body_bits > 0 else 1.0
    ks: list[int | None] = []
    for sig, ref, share in zip(sigma_idx, refs, shares, strict=True):
        k = None
        if share > 0:
            k = _choose_step(sig, share * inflate, ref - _REL_MAX, ref - _REL_MIN)
        ks.append(k)
    residuals = [np.asarray(v, dtype=np.float64).reshape(-1) - m for v, m in zip(values, means, strict=True)]
    head = [] if prefix is None else [prefix]
    for _ in range(_REL_MAX - _REL_MIN + 2):
        steps = [0.0 if k is None else float(step_from_index(k)) for k in ks]
        sent = [i for i, k in enumerate(ks) if k is not None]
        symbols = [quantize_symbols(residuals[i], steps[i]) for i in sent]
        idx = [sigma_idx[i] - ks[i] for i in sent]  # type: ignore[operator]
        if not head and not sent:
            return None
        data = coder.encode(
            np.concatenate([h[0] for h in head] + symbols), np.concatenate([h[1] for h in head] + idx)
        )
        if 8 * len(data) <= body_bits:
            decoded: list[np.ndarray | None] = [None] * len(ks)
            for i, sym in zip(sent, symbols, strict=True):
                decoded[i] = means[i] + dequantize(sym, steps[i])
            rates = tuple(
                NOT_SENT if k is None else ref - k + _REL_OFFSET for k, ref in zip(ks, refs, strict=True)
            )
            return _Coded(rates, data, tuple(decoded), tuple(steps))
        if all(k is None or k >= ref - _REL_MIN for k, ref in zip(ks, refs, strict=True)):
            ks = [None] * len(ks)  # even the coarsest steps do not fit: send the prefix alone
        else:
            ks = [None if k is None else min(k + 1, ref - _REL_MIN) for k, ref in zip(ks, refs, strict=True)]
    return None


def _decode_symbols(
    data: bytes,
    rate_bytes: Sequence[int],
    sigma_idx: Sequence[np.ndarray],
    prefix_idx: np.ndarray | None = None,
) -> tuple[np.ndarray | None, list[np.ndarray | None], list[float]]:
    """Invert :func:`_encode_views`' stream: prefix symbols, each view's symbols (None: not sent), steps."""
    ks = [
        None if r == NOT_SENT else int(s.max()) - (r - _REL_OFFSET)
        for r, s in zip(rate_bytes, sigma_idx, strict=True)
    ]
    sent = [i for i, k in enumerate(ks) if k is not None]
    out: list[np.ndarray | None] = [None] * len(ks)
    steps = [0.0] * len(ks)
    head = [] if prefix_idx is None else [np.asarray(prefix_idx, dtype=np.int64)]
    if not sent and not head:
        return None, out, steps
    idx = np.concatenate(head + [sigma_idx[i] - ks[i] for i in sent])  # type: ignore[operator]
    symbols = get_coder("gaussian").decode(data, idx)
    pos = 0 if not head else head[0].size
    for i in sent:
        n = sigma_idx[i].size
        steps[i] = float(step_from_index(ks[i]))  # type: ignore[arg-type]
        out[i] = symbols[pos : pos + n]
        pos += n
    return (symbols[: head[0].size] if head else None), out, steps


def _reconstruct(
    symbols: Sequence[np.ndarray | None], steps: Sequence[float], means: Sequence[np.ndarray]
) -> list[np.ndarray | None]:
    return [
        None if s is None else m + dequantize(s, st) for s, st, m in zip(symbols, steps, means, strict=True)
    ]


def _fit(make: Any, budget_bits: int) -> Payload | None:
    """Call ``make(slack)`` with growing slack until its payload fits (varint lengths may grow)."""
    slack = 0
    for _ in range(6):
        payload = make(slack)
        if payload is None or payload.nbits <= budget_bits:
            return payload
        slack += payload.nbits - budget_bits + 8
    return None


# ---------------------------------------------------------------------------------------------
# Scalar quantisation (baseline)
# ---------------------------------------------------------------------------------------------


@register_codec(
    "scalar",
    wire_id=10,
    description="vector views: per-sensor uniform scalar quantisation + Gaussian entropy coding (baseline)",
)
class ScalarCodec(Codec):
    """Per-sensor uniform scalar quantisation with a fixed Gaussian model of each component.

    Args:
        views: 1-D float views (one per sensor).
        mean: per view, the model's mean (default 0).
        scale: per view, the model's standard deviation per component (default 1).

    Build it with :meth:`from_views`; with ``system=`` (the env's process model) the mean and spread
    are the measurement's prior, largest over ``horizon`` steps (a random walk keeps growing).
    """

    name = "scalar"
    #: The scenario factory passes ``system=env.unwrapped.model`` to codecs that set this.
    uses_system_model = True
    #: Quantisation step of each view in the last decoded payload (a fusion node's noise model:
    #: the decoded value is the measurement plus ~uniform noise of variance step^2 / 12).
    last_steps: dict[str, float] = {}

    def __init__(
        self,
        views: Sequence[ViewSpec],
        mean: Mapping[str, np.ndarray] | None = None,
        scale: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.views = _float_views(views)
        self._mean = {}
        self._sigma_idx = {}
        for v in self.views:
            m = np.zeros(v.shape) if mean is None else np.asarray(mean[v.name], dtype=np.float64)
            s = np.ones(v.shape) if scale is None else np.asarray(scale[v.name], dtype=np.float64)
            m, s = np.broadcast_to(m, v.shape).copy(), np.broadcast_to(s, v.shape).copy()
            if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s) & (s > 0))):
                raise ValueError(f"view {v.name!r}: mean must be finite and scale positive, got {m}, {s}")
            self._mean[v.name] = m
            self._sigma_idx[v.name] = scale_index(s).astype(np.int64)

    @classmethod
    def from_views(
        cls,
        views: Sequence[ViewSpec],
        scale: float | Sequence[float] | None = None,
        system: Any = None,
        horizon: int = 200,
        **kwargs: Any,
    ) -> ScalarCodec:
        """Build for ``views``; the model from ``scale`` (one std, or one per view) or ``system``.

        Raises:
            TypeError: unknown options.
            ValueError: views that are not 1-D float vectors, or a system that does not match them.
        """
        if kwargs:
            raise TypeError(
                f"ScalarCodec got unexpected options {sorted(kwargs)}; expected scale, system, horizon"
            )
        views = _float_views(views)
        if scale is not None:
            s = np.broadcast_to(np.asarray(scale, dtype=np.float64).reshape(-1), (len(views),))
            return cls(views, scale={v.name: s[i] for i, v in enumerate(views)})
        if system is None:
            return cls(views)
        sys_ = as_linear_system(system, views)
        means, scales = _measurement_prior(sys_, int(horizon))
        return cls(
            views,
            mean={v.name: means[i] for i, v in enumerate(views)},
            scale={v.name: scales[i] for i, v in enumerate(views)},
        )

    @property
    def stream_names(self) -> tuple[str, ...]:
        """The payload's one stream: every view's symbols in one range-coder pass."""
        return ("joint",)

    def _compress(
        self, views: Mapping[str, np.ndarray], budget_bits: int, allocation: Mapping[str, float] | None
    ) -> Payload:
        """Finest step per view that its share of the budget affords; empty when nothing fits.

        Payload: one stream (all views' symbols), header = one rate byte per view (255: not sent).
        """
        names = self.view_names
        overhead = Payload(self.name, (b"",), bytes(len(names))).nbits

        def make(slack: int) -> Payload | None:
            body = max(budget_bits - overhead - slack, 0)
            shares = split_budget(body, names, allocation)
            coded = _encode_views(
                [views[n] for n in names],
                [self._mean[n] for n in names],
                [self._sigma_idx[n] for n in names],
                [shares[n] for n in names],
                body,
            )
            return None if coded is None else Payload(self.name, (coded.data,), bytes(coded.rate_bytes))

        payload = _fit(make, budget_bits)
        return Payload.empty(self.name) if payload is None else payload

    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        """Decode every view that was sent."""
        if payload.codec != self.name:
            raise PayloadError(f"payload of codec {payload.codec!r}, expected {self.name!r}")
        if payload.is_empty:
            return {}
        names = self.view_names
        if len(payload.streams) != 1 or len(payload.meta) != len(names):
            raise PayloadError(
                f"scalar payload has {len(payload.streams)} streams and {len(payload.meta)} rate bytes, "
                f"expected 1 and {len(names)}"
            )
        _, symbols, steps = _decode_symbols(
            payload.streams[0], payload.meta, [self._sigma_idx[n] for n in names]
        )
        decoded = _reconstruct(symbols, steps, [self._mean[n] for n in names])

        self.last_steps = {n: st for n, d, st in zip(names, decoded, steps, strict=True) if d is not None}
        return {n: d.astype(np.float32) for n, d in zip(names, decoded, strict=True) if d is not None}


def _measurement_prior(
    system: LinearGaussianModel, horizon: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Mean and largest std over the horizon of each sensor's measurement under the prior."""
    A, Q = system.A, system.Q
    mean, cov = system.initial_mean.copy(), system.initial_cov.copy()
    peak_var = [np.zeros(c.shape[0]) for c in system.C]
    for _ in range(max(int(horizon), 1) + 1):
        for k, (C, R) in enumerate(zip(system.C, system.R, strict=True)):
            peak_var[k] = np.maximum(peak_var[k], np.diag(C @ cov @ C.T + R))
        mean, cov = A @ mean, A @ cov @ A.T + Q
    means = [C @ system.initial_mean for C in system.C]
    return means, [np.sqrt(v) for v in peak_var]


# ---------------------------------------------------------------------------------------------
# Predictive coding against the receiver's Kalman prediction
# ---------------------------------------------------------------------------------------------


@dataclass
class _FilterState:
    """One end's Kalman filter and frame bookkeeping."""

    mean: np.ndarray
    cov: np.ndarray
    step: int = 0  # steps since reset (16-bit on the wire)
    frame: int = 0  # next non-empty frame number (8-bit on the wire)
    started: bool = False  # sender: a first step was coded; receiver: unused
    synced: bool = True  # receiver: its filter equals the sender's
    last_key: int = 0  # sender: step of the last key frame (or reset)
    key_pending: bool = False  # sender: a drop was acknowledged


def _update(
    mean: np.ndarray,
    cov: np.ndarray,
    Cs: Sequence[np.ndarray],
    Rs: Sequence[np.ndarray],
    ys: Sequence[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    if not Cs:
        return mean, cov
    C = np.vstack(Cs)
    R = np.zeros((C.shape[0], C.shape[0]))
    i = 0
    for r in Rs:
        d = r.shape[0]
        R[i : i + d, i : i + d] = r
        i += d
    y = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in ys])
    S = C @ cov @ C.T + R
    K = np.linalg.solve(S, C @ cov).T
    mean = mean + K @ (y - C @ mean)
    P = cov - K @ C @ cov
    return mean, 0.5 * (P + P.T)


@register_codec(
    "predictive",
    wire_id=11,
    description="vector views: innovation against the receiver's Kalman prediction, key frames resync",
)
class PredictiveCodec(Codec):
    """Predictive coding of each sensor's innovation against the receiver's Kalman prediction.

    See the module docstring for the scheme and its resynchronisation after drops.

    Args:
        views: 1-D float views, one per sensor, in the system's sensor order.
        system: the process model (:func:`as_linear_system`).
        key_interval: steps between key frames (0: only after acknowledged drops).

    Payload: one range-coded stream (on key frames the quantised state first, then every sent
    view's innovation symbols); header (meta) = flags (1 byte, bit 0: key frame) | step counter
    (u16) | frame counter (u8) | one rate byte per view (255: not sent).
    """

    name = "predictive"
    uses_system_model = True
    #: Quantisation step of each view in the last decoded payload (see :attr:`ScalarCodec.last_steps`).
    last_steps: dict[str, float] = {}

    def __init__(self, views: Sequence[ViewSpec], system: Any, key_interval: int = 25) -> None:
        self.views = _float_views(views)
        self.system = as_linear_system(system, self.views)
        if isinstance(key_interval, bool) or int(key_interval) != key_interval or key_interval < 0:
            raise ValueError(
                f"key_interval must be an integer >= 0 (0: no periodic key frames), got {key_interval!r}"
            )
        self.key_interval = int(key_interval)
        s = self.system
        try:
            A, C = s.A, np.vstack(s.C)
            R = np.zeros((C.shape[0], C.shape[0]))
            i = 0
            for r in s.R:
                R[i : i + r.shape[0], i : i + r.shape[0]] = r
                i += r.shape[0]
            P_key = kalman_steady_state(A, C, s.Q, R)[0]
        except RiccatiError:
            P_key = s.initial_cov.copy()
        sigma = np.sqrt(np.clip(np.diag(P_key), 1e-300, None))
        self._key_sigma_idx = scale_index(sigma).astype(np.int64)
        key_step = step_from_index(self._key_sigma_idx - _KEY_REL)
        self._key_steps = key_step
        self._P_key = P_key + np.diag(key_step**2 / 12.0)
        # the key state's symbols: the state's prior spread in key steps (never finer than 8 steps)
        spread = np.sqrt(np.diag(s.initial_cov)) / key_step
        self._key_scale_idx = np.maximum(scale_index(spread), _KEY_REL).astype(np.int64)
        self.reset()

    @classmethod
    def from_views(
        cls, views: Sequence[ViewSpec], system: Any = None, key_interval: int = 25, **kwargs: Any
    ) -> PredictiveCodec:
        """Build for ``views`` with the process model ``system`` (required).

        Raises:
            TypeError: unknown options.
            ValueError: no system, or one that does not match the views.
        """
        if kwargs:
            raise TypeError(
                f"PredictiveCodec got unexpected options {sorted(kwargs)}; expected system, key_interval"
            )
        if system is None:
            raise ValueError(
                "the predictive codec needs the process model: pass system=env.unwrapped.model "
                "(the scenario factory does this for bwgym/SensorNetwork-v0)"
            )
        return cls(views, system, key_interval=key_interval)

    @property
    def stream_names(self) -> tuple[str, ...]:
        """The payload's one stream: the key state (key frames only), then every view's innovation."""
        return ("joint",)

    def reset(self) -> None:
        """Restart sender and receiver at the prior (start of an episode)."""
        s = self.system
        self._tx = _FilterState(s.initial_mean.copy(), s.initial_cov.copy())
        self._rx = _FilterState(s.initial_mean.copy(), s.initial_cov.copy())

    def acknowledge(self, delivered: bool) -> None:
        """Tell the sender whether its last non-empty payload arrived; a drop forces a key frame next."""
        if not delivered:
            self._tx.key_pending = True

    @property
    def receiver_synced(self) -> bool:
        """Whether the receiver's filter is in step with the sender's (False after a detected gap)."""
        return self._rx.synced

    def _predict(self, state: _FilterState, steps: int = 1) -> None:
        A, Q = self.system.A, self.system.Q
        for _ in range(steps):
            state.mean = A @ state.mean
            state.cov = A @ state.cov @ A.T + Q

    def _predicted_cov(self, state: _FilterState, steps: int) -> np.ndarray:
        A, Q = self.system.A, self.system.Q
        cov = state.cov
        for _ in range(steps):
            cov = A @ cov @ A.T + Q
        return cov

    def _innovation_model(self, mean: np.ndarray, cov: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for C, R in zip(self.system.C, self.system.R, strict=True):
            S = C @ cov @ C.T + R
            out.append((C @ mean, scale_index(np.sqrt(np.clip(np.diag(S), 1e-300, None))).astype(np.int64)))
        return out

    def _meta(self, key: bool, step: int, frame: int, rates: Sequence[int]) -> bytes:
        return bytes((_FLAG_KEY if key else 0, (step >> 8) & 0xFF, step & 0xFF, frame & 0xFF, *rates))

    def _frame(
        self,
        views: Mapping[str, np.ndarray],
        budget_bits: int,
        allocation: Mapping[str, float] | None,
        key: bool,
    ) -> tuple[Payload, np.ndarray, np.ndarray] | None:
        """Build a frame from the sender's state; return it with the state after its update."""
        tx = self._tx
        names = self.view_names
        mean, cov = tx.mean, tx.cov
        prefix = None
        if key:
            symbols = quantize_symbols(mean, self._key_steps)
            prefix = (symbols, self._key_scale_idx)
            mean, cov = dequantize(symbols, self._key_steps), self._P_key.copy()
        overhead = Payload(self.name, (b"",), self._meta(key, 0, 0, [0] * len(names))).nbits
        model = self._innovation_model(mean, cov)
        best: list[_Coded] = []

        def make(slack: int) -> Payload | None:
            body = max(budget_bits - overhead - slack, 0)
            if allocation is None:  # the codec's own split: where a bit helps the fusion most
                shares = dict(zip(names, self._fusion_shares(cov, body), strict=True))
            else:
                shares = split_budget(body, names, allocation)
            coded = _encode_views(
                [views[n] for n in names],
                [pred for pred, _ in model],
                [sig for _, sig in model],
                [shares[n] for n in names],
                body,
                prefix=prefix,
            )
            if coded is None:
                return None
            best[:] = [coded]
            return Payload(self.name, (coded.data,), self._meta(key, tx.step, tx.frame, coded.rate_bytes))

        payload = _fit(make, budget_bits)
        if payload is None:
            return None
        coded = best[0]
        sent = [k for k, d in enumerate(coded.decoded) if d is not None]
        mean, cov = _update(
            mean,
            cov,
            [self.system.C[k] for k in sent],
            [self._noisy_R(k, coded.steps[k]) for k in sent],
            [coded.decoded[k] for k in sent],
        )
        return payload, mean, cov

    def _fusion_shares(self, cov: np.ndarray, body_bits: int) -> list[int]:
        """Split ``body_bits`` over the sensors greedily, one bit per component at a time.

        Each bit goes to the sensor whose measurement, coded one bit finer, most reduces the
        trace of the fused posterior covariance; a sensor coded with ``b`` bits per component is
        modelled as its measurement plus noise ``S_kk (pi e / 6) 2^(-2b)`` (entropy-coded uniform
        quantisation of its innovation, variance ``S_kk``). The decoder needs none of this: the
        rate bytes carry each view's step.
        """
        s = self.system
        K = len(s.C)
        info0 = np.linalg.inv(cov)
        S_diag = [np.diag(C @ cov @ C.T + R) for C, R in zip(s.C, s.R, strict=True)]
        dims = [C.shape[0] for C in s.C]
        bits = [0] * K

        def trace_with(b: list[int]) -> float:
            info = info0.copy()
            for k in range(K):
                if b[k] > 0:
                    per = b[k] / dims[k]
                    q = S_diag[k] * (np.pi * np.e / 6.0) * 2.0 ** (-2.0 * per)
                    info += s.C[k].T @ np.linalg.inv(s.R[k] + np.diag(q)) @ s.C[k]
            return float(np.trace(np.linalg.inv(info)))

        left = int(body_bits)
        current = trace_with(bits)
        while left > 0:
            best, best_trace = None, current
            for k in range(K):
                step = min(dims[k], left)
                trial = list(bits)
                trial[k] += step
                value = trace_with(trial)
                if value < best_trace - 1e-15:
                    best, best_trace = k, value
            if best is None:
                break
            take = min(dims[best], left)
            bits[best] += take
            left -= take
            current = best_trace
        return bits

    def _noisy_R(self, sensor: int, step: float) -> np.ndarray:
        """Noise of a decoded measurement: the sensor's own plus uniform quantisation noise."""
        R = self.system.R[sensor]
        return R + np.eye(R.shape[0]) * (step * step / 12.0)

    def _compress(
        self, views: Mapping[str, np.ndarray], budget_bits: int, allocation: Mapping[str, float] | None
    ) -> Payload:
        """Code this step's innovations within ``budget_bits``; advance the sender one step.

        A key frame is sent when one is due (``key_interval`` steps since the last, or a drop was
        acknowledged) and fits; otherwise, or when it does not fit, an ordinary frame.
        """
        tx = self._tx
        if tx.started:
            self._predict(tx)
            tx.step = (tx.step + 1) & 0xFFFF
        tx.started = True
        due = tx.key_pending or (
            self.key_interval > 0 and (tx.step - tx.last_key) % 0x10000 >= self.key_interval
        )
        built = self._frame(views, budget_bits, allocation, key=True) if due else None
        if built is not None:
            tx.key_pending = False
            tx.last_key = tx.step
        else:
            built = self._frame(views, budget_bits, allocation, key=False)
        if built is None:
            return Payload.empty(self.name)
        payload, tx.mean, tx.cov = built
        tx.frame = (tx.frame + 1) & 0xFF
        return payload

    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        """Decode a frame at the receiver; ``{}`` while desynchronised (until a key frame)."""
        if payload.codec != self.name:
            raise PayloadError(f"payload of codec {payload.codec!r}, expected {self.name!r}")
        if payload.is_empty:
            return {}
        n_views = len(self.views)
        meta = payload.meta
        if len(meta) != 4 + n_views:
            raise PayloadError(f"predictive payload header has {len(meta)} bytes, expected {4 + n_views}")
        key = bool(meta[0] & _FLAG_KEY)
        step, frame, rates = (meta[1] << 8) | meta[2], meta[3], meta[4:]
        if len(payload.streams) != 1:
            raise PayloadError(f"predictive payload has {len(payload.streams)} streams, expected 1")
        rx = self._rx
        if frame != rx.frame:
            rx.synced = False  # a non-empty frame was lost: our filter is not the sender's
        gap = (step - rx.step) % 0x10000
        rx.step, rx.frame = step, (frame + 1) & 0xFF
        if not (key or rx.synced):
            return {}
        cov = self._P_key if key else self._predicted_cov(rx, gap)
        sigma_idx = [sig for _, sig in self._innovation_model(rx.mean, cov)]  # scales: covariance only
        head, symbols, steps = _decode_symbols(
            payload.streams[0], rates, sigma_idx, self._key_scale_idx if key else None
        )
        if key:
            rx.mean, rx.cov = dequantize(head, self._key_steps), self._P_key.copy()
            rx.synced = True
        else:
            self._predict(rx, gap)
        decoded = _reconstruct(symbols, steps, [pred for pred, _ in self._innovation_model(rx.mean, rx.cov)])
        sent = [k for k, d in enumerate(decoded) if d is not None]
        out = {self.view_names[k]: decoded[k].astype(np.float32) for k in sent}  # type: ignore[union-attr]
        self.last_steps = {self.view_names[k]: steps[k] for k in sent}
        Cs = [self.system.C[k] for k in sent]
        Rs = [self._noisy_R(k, steps[k]) for k in sent]
        ys = [decoded[k] for k in sent]
        rx.mean, rx.cov = _update(rx.mean, rx.cov, Cs, Rs, ys)
        return out
