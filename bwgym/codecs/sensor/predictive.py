"""Codecs for vector views (sensor measurements): per-sensor scalar quantisation and predictive coding.

Both send every view's symbols in one entropy-coded body (one range-coder pass) as a *lean frame*
(:mod:`bwgym.codecs.core.protocol`): what does not change during an episode (the codec, its views and model)
is agreed once in a :class:`~bwgym.codecs.core.protocol.Session` header that ``BandwidthLimited`` sends at
the start of the episode (88 bits), and each step costs only a 16-bit overhead (one header byte and
a CRC-8) on top of its body. ``compress`` never exceeds the budget.

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

Steps are powers ``2 ** (k / 8)`` on the entropy coder's scale grid. A view's *relative rate*
``rel = ref - k`` counts grid notches below its largest spread ``ref`` (a view's step is
``2 ** (-rel / 8)`` times that spread).

Frames (``header u8 | body | crc8``)
------------------------------------
**Codec split** (``allocation=None``, session split 0): the header byte alone sets every view's
step, so a budget search is a search over one number and nothing else is sent about rates:

* scalar: ``header = rel + 16`` (0..159), the same relative step for every view (rate 0: a step 4
  times the view's spread);
* predictive: ``header = key << 7 | parity << 6 | h``; ``h`` (0..63) sets a Lagrange multiplier
  ``lambda = 2 ** (-h / 2) / (4 r_min)`` and sensor k's quantisation noise ``q_k`` solves
  ``q_k / (r_k + q_k)^2 = lambda`` (the optimum of the fused information ``sum 1 / (r_k + q_k)``
  for a total rate ``sum 1/2 log2(S_k / q_k)``): precise sensors get finer steps, and a sensor
  with ``lambda > 1 / (4 r_k)`` is not sent. Its step is the grid step nearest ``sqrt(12 q_k)``.

**Explicit split** (an allocator's fractions, session split 1): each view takes the finest step
whose *expected* bits fit its share (``split_budget``), then every step is made one notch coarser
until the real frame fits. The body starts with the views sent (a binary phase: their count, then
one Bernoulli flag each) and each sent view's rate as an offset from the first one's (Gaussian,
std 2 notches), whose rate is in the header (scalar: ``rel + 16``; predictive: bits 0-5,
``(rel + 16) / 2``).

After decoding, :attr:`ScalarCodec.last_steps` / :attr:`PredictiveCodec.last_steps` give each
view's step, so a fusion node can weigh a decoded measurement by its quantisation noise.

Predictive coding and drops
---------------------------
Decoding is only correct while the receiver's filter equals the sender's. The sender updates its
filter with what it sent, so a payload the link drops (lost at random, or still in flight when
the next one is decoded out of order) desynchronises them. The codec therefore:

1. numbers its non-empty frames (header bit 6: the frame counter's parity), so the receiver
   *detects* a missing frame (an odd number of them; an even run goes unnoticed until the next key
   frame), and starts every ordinary frame's body with the number of time updates since the last
   frame, as its change from the previous frame's (after a reset or a key frame, which needs no
   gap, the gap itself; ~0.25 bit when it
   repeats, as on a link that carries a frame every step or every n-th, ~6-8 bits when it
   changes: steps with nothing sent are not frames);
2. after a detected gap, decodes nothing (its views are absent, so the wrapper holds the last
   ones and a Kalman fusion agent uses its time update) until a *key frame* arrives;
3. sends a key frame every ``key_interval`` steps and after more than 8 steps without a frame
   (an ordinary frame when the key frame does not fit), and after the sender learns of a drop through :meth:`PredictiveCodec.acknowledge` (a
   link-layer ack) sends key frames only (nothing while none fits). A key frame (header bit 7)
   carries the sender's predicted state, quantised with step ``sigma / 8`` of the canonical
   covariance ``P_key`` (the steady-state prediction covariance plus that quantisation noise),
   and both ends restart from ``(x_key, P_key)``.

So with acks a drop costs one step of held measurements when the key frame fits. Empty payloads
(nothing fitted) never desynchronise: the sender did not update either. Sender and receiver state
live in the same object (the wrapper compresses and decompresses with one codec);
:meth:`PredictiveCodec.reset` restarts both at the prior (call it at an episode start when you can:
without it the codec stays in sync and only pays a larger first innovation). The two ends compute
the model scales and the sensors' steps from floats: they agree bit for bit when they run the same
arithmetic (one process, as in bwgym's simulation); a decoder on other hardware would need
fixed-point filters.

Format history: until this version both codecs sent a self-describing container-v1 payload per
step (~100-170 bits of headers and one rate byte per view, more than the measurements at
narrowband budgets); wire ids 10 and 11 now name the lean frames only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bwgym.codecs.core.entropy import (
    MAX_SCALE_INDEX,
    MIN_SCALE_INDEX,
    SCALE_STEPS_PER_OCTAVE,
    dequantize,
    get_coder,
    quantize_symbols,
    scale_index,
    step_from_index,
)
from bwgym.codecs.core.protocol import (
    FRAME_OVERHEAD_BITS,
    Codec,
    Payload,
    PayloadError,
    Session,
    ViewSpec,
    split_budget,
)
from bwgym.codecs.core.registry import register_codec
from bwgym.common.kalman import LinearGaussianModel, RiccatiError, kalman_steady_state

__all__ = ["PredictiveCodec", "ScalarCodec", "as_linear_system"]

#: Relative rate of header value 0: a step 2 octaves above the view's largest spread.
_REL_OFFSET = 16
#: Largest relative rate (finest step, 2 ** -17.9 of the spread) and the explicit split's smallest.
_REL_MAX = 143
_REL_MIN = -_REL_OFFSET
#: Largest scalar header (codec split).
_SCALAR_H_MAX = _REL_MAX + _REL_OFFSET
#: Predictive header: key-frame flag, frame parity, 6-bit rate.
_FLAG_KEY = 0x80
_FLAG_PARITY = 0x40
_H_MASK = 0x3F
#: Lagrange multiplier grid of the predictive codec split: 2 ** (-h / 2) / (4 r_min), h = 0..63.
_LAMBDA_STEPS_PER_OCTAVE = 2
#: Key-frame state step: sigma / 8 of the canonical covariance (3 octaves finer).
_KEY_REL = 3 * SCALE_STEPS_PER_OCTAVE
#: Scale indices of the gap's change since the last frame: its sign (std 0.35: ~0.25 bit when the
#: gap repeats, ~3.7 bits otherwise), then its size minus one when not 0 (std 1: 1.4 bits for 1, 2
#: for 2, 4 for 3). Without a reference (after a reset or a key frame) the gap minus one is sent
#: alone with std 1.
_GAP_SCALE_IDX = -12
_GAP_SIZE_SCALE_IDX = 0
#: After more steps than this without a frame a key frame is tried first (it needs no gap).
_MAX_KEY_GAP = 8
#: Scale index of a view's rate offset in the explicit split (std 2 notches).
_OFFSET_SCALE_IDX = SCALE_STEPS_PER_OCTAVE
#: Finer rates tried once a frame fits.
_MAX_TRIES = 12


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


def pop_system(options: dict[str, Any]) -> Any:
    """Take a loader's ``system`` option (None when absent) and its ``horizon`` out of ``options``.

    A learned sensor codec's checkpoint holds its own model: the env's process only has to match
    its views (:func:`check_system`).
    """
    options.pop("horizon", None)
    return options.pop("system", None)


def check_system(system: Any, views: Sequence[ViewSpec]) -> None:
    """Refuse a process model of other sensors than ``views`` (None: nothing to check)."""
    if system is not None:
        as_linear_system(system, views)


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
# Frame coding shared by both codecs
# ---------------------------------------------------------------------------------------------

_EXPECTED_BITS: np.ndarray | None = None


def _expected_table() -> np.ndarray:
    global _EXPECTED_BITS
    if _EXPECTED_BITS is None:
        _EXPECTED_BITS = get_coder("gaussian").expected_bits(np.arange(MIN_SCALE_INDEX, MAX_SCALE_INDEX + 1))
    return _EXPECTED_BITS


def _symbol_idx(sigma_idx: np.ndarray, k: int) -> np.ndarray:
    """Scale indices of a view's symbols at step index ``k`` (clipped to the coder's grid)."""
    return np.clip(np.asarray(sigma_idx, dtype=np.int64) - k, MIN_SCALE_INDEX, MAX_SCALE_INDEX)


def _expected_bits(sigma_idx: Sequence[np.ndarray], ks: Sequence[int | None]) -> float:
    """Expected bits of the views sent at step indices ``ks`` under their models."""
    table = _expected_table()
    return float(
        sum(
            table[_symbol_idx(s, k) - MIN_SCALE_INDEX].sum()
            for s, k in zip(sigma_idx, ks, strict=True)
            if k is not None
        )
    )


def _choose_step(sigma_idx: np.ndarray, share_bits: float, lo: int, hi: int) -> int | None:
    """Finest step index in ``[lo, hi]`` whose expected bits fit ``share_bits`` (one table lookup)."""
    ks = np.arange(lo, hi + 1)
    idx = np.clip(sigma_idx.reshape(-1, 1) - ks[None, :], MIN_SCALE_INDEX, MAX_SCALE_INDEX) - MIN_SCALE_INDEX
    fits = np.flatnonzero(_expected_table()[idx].sum(0) <= share_bits)
    return None if fits.size == 0 else int(ks[fits[0]])


def _fingerprint(*parts: Any) -> bytes:
    """4 bytes of the sha256 of ``parts`` (arrays by dtype, shape and bytes; the rest by repr)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            arr = np.ascontiguousarray(part)
            digest.update(f"{arr.dtype.str}:{arr.shape}:".encode())
            digest.update(arr.tobytes())
        else:
            digest.update(repr(part).encode())
    return digest.digest()[:4]


class _Frame:
    """A coded frame: header byte, body, and per view the reconstruction and step (None / 0: not sent)."""

    __slots__ = ("decoded", "header", "data", "steps")

    def __init__(
        self, header: int, data: bytes, decoded: list[np.ndarray | None], steps: list[float]
    ) -> None:
        self.header, self.data, self.decoded, self.steps = header, data, decoded, steps


def _encode_body(
    phases: list[tuple[Any, ...]],
    values: Sequence[np.ndarray],
    means: Sequence[np.ndarray],
    sigma_idx: Sequence[np.ndarray],
    ks: Sequence[int | None],
) -> tuple[bytes, list[np.ndarray | None], list[float]]:
    """Code ``phases``, then every sent view's symbols (``k`` None: not sent), in one stream."""
    steps = [0.0 if k is None else float(step_from_index(k)) for k in ks]
    sent = [i for i, k in enumerate(ks) if k is not None]
    symbols = [
        quantize_symbols(np.asarray(values[i], dtype=np.float64).reshape(-1) - means[i], steps[i])
        for i in sent
    ]
    phases = list(phases)
    if sent:
        idx = [_symbol_idx(sigma_idx[i], ks[i]) for i in sent]  # type: ignore[arg-type]
        phases.append((np.concatenate(symbols), np.concatenate(idx)))
    data = get_coder("gaussian").encode_phases(phases)
    decoded: list[np.ndarray | None] = [None] * len(ks)
    for i, sym in zip(sent, symbols, strict=True):
        decoded[i] = means[i] + dequantize(sym, steps[i])
    return data, decoded, steps


def _search(make: Any, expected: Any, room: int, lo: int, hi: int) -> _Frame | None:
    """The largest real frame of header rate ``h`` in ``[lo, hi]`` whose body fits ``room`` bits.

    ``expected(h)`` (non-decreasing in ``h``) predicts the body's bits; bisection finds the largest
    ``h`` predicted to fit (with a byte of slack: the stream is byte-aligned and often shorter than
    predicted). When that frame fits for real, finer rates are tried while they fit; when it does
    not, a bisection over real frames below it finds one that does. ``make(h)`` returns a frame or
    None (nothing to send at that rate).
    """

    def fits(frame: _Frame | None) -> bool:
        return frame is not None and 8 * len(frame.data) <= room

    a, b = lo - 1, hi + 1  # expected(a) fits (a = lo - 1: none known), expected(b) does not
    while b - a > 1:
        mid = (a + b) // 2
        if expected(mid) <= room + 8:
            a = mid
        else:
            b = mid
    guess = max(a, lo)
    frame = make(guess)
    if fits(frame):
        best = frame
        for h in range(guess + 1, min(hi, guess + _MAX_TRIES) + 1):
            frame = make(h)
            if not fits(frame):
                break
            best = frame
        return best
    best, a, b = None, lo - 1, guess  # real frames: a fits (or none yet), b does not
    while b - a > 1:
        mid = (a + b) // 2
        frame = make(mid)
        if fits(frame):
            a, best = mid, frame
        else:
            b = mid
    return best


def _gap_phases(gap: int, last_gap: int | None) -> list[tuple[Any, ...]]:
    """The phases coding the gap: its change from ``last_gap`` (sign, then size when not 0), or itself."""
    if last_gap is None:
        return [(np.array([gap - 1], dtype=np.int64), np.array([_GAP_SIZE_SCALE_IDX], dtype=np.int64))]
    change = gap - last_gap
    sign = (change > 0) - (change < 0)
    out = [(np.array([sign], dtype=np.int64), np.array([_GAP_SCALE_IDX], dtype=np.int64))]
    if sign:
        out.append(
            (np.array([abs(change) - 1], dtype=np.int64), np.array([_GAP_SIZE_SCALE_IDX], dtype=np.int64))
        )
    return out


def _split_head(ks: Sequence[int | None], refs: Sequence[int]) -> tuple[int, list[tuple[Any, ...]]]:
    """Explicit split: the first sent view's relative rate, and the phases naming every view's rate."""
    sent = [i for i, k in enumerate(ks) if k is not None]
    rels = [refs[i] - ks[i] for i in sent]  # type: ignore[operator]
    flags = np.array([k is not None for k in ks], dtype=np.int64)
    offsets = np.array([r - rels[0] for r in rels[1:]], dtype=np.int64)
    return (rels[0] if rels else 0), [("binary", flags), (offsets, np.full(offsets.size, _OFFSET_SCALE_IDX))]


def _split_ks(flags: np.ndarray, offsets: np.ndarray, refs: Sequence[int], rel0: int) -> list[int | None]:
    """Invert :func:`_split_head`: each view's step index (None: not sent)."""
    sent = np.flatnonzero(flags)
    rels = [rel0] + [rel0 + int(o) for o in offsets]
    ks: list[int | None] = [None] * len(refs)
    for i, rel in zip(sent.tolist(), rels, strict=False):
        if not _REL_MIN <= rel <= _REL_MAX:
            raise PayloadError(f"view {i}: relative rate {rel} outside [{_REL_MIN}, {_REL_MAX}] (corrupt)")
        ks[i] = refs[i] - rel
    return ks


def _explicit_frame(
    make: Any,
    sigma_idx: Sequence[np.ndarray],
    refs: Sequence[int],
    shares: Sequence[int],
    room: int,
    rel_max: int,
) -> _Frame | None:
    """Explicit split: the finest step per view that its share affords, coarsened until the frame fits.

    ``make(ks)`` codes a frame with step indices ``ks`` (None: not sent); ``rel_max`` is the finest
    relative rate the header can name for the first sent view.
    """
    inflate = (room + 8) / room if room > 0 else 1.0
    ks: list[int | None] = []
    for sig, ref, share in zip(sigma_idx, refs, shares, strict=True):
        k = None
        if share > 0:
            k = _choose_step(sig, share * inflate, ref - min(_REL_MAX, rel_max), ref - _REL_MIN)
        ks.append(k)
    for _ in range(_REL_MAX - _REL_MIN + 2):
        frame = make(ks)
        if frame is not None and 8 * len(frame.data) <= room:
            return frame
        if all(k is None or k >= ref - _REL_MIN for k, ref in zip(ks, refs, strict=True)):
            if all(k is None for k in ks):
                return None
            ks = [None] * len(ks)  # even the coarsest steps do not fit: a key frame's state alone
        else:
            ks = [None if k is None else min(k + 1, ref - _REL_MIN) for k, ref in zip(ks, refs, strict=True)]
    return None


class _LeanVectorCodec(Codec):
    """What both vector codecs share: lean frames under a session of one joint stream."""

    uses_sessions: ClassVar[bool] = True
    #: The scenario factory passes ``system=env.unwrapped.model`` to codecs that set this.
    uses_system_model = True

    @property
    def stream_names(self) -> tuple[str, ...]:
        """The payload's one stream: every view's symbols in one range-coder pass."""
        return ("joint",)

    @property
    def session(self) -> Session:
        """The session of frames the codec splits itself (``allocation=None``)."""
        return Session(self.name, self.fingerprint, 1, 0)

    def session_for(self, allocation: Mapping[str, float] | None = None) -> Session:
        """The session of frames compressed with ``allocation``: an explicit split when one is given."""
        return Session(self.name, self.fingerprint, 1, int(allocation is not None))

    @property
    def fingerprint(self) -> bytes:
        """4 bytes identifying the views and the model (the session id)."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            cached = self.__dict__["_fingerprint"] = _fingerprint(
                self.name, [(v.name, tuple(v.shape), str(v.dtype)) for v in self.views], *self._model_arrays()
            )
        return cached

    def _model_arrays(self) -> list[np.ndarray]:
        raise NotImplementedError

    def _check_session(self, payload: Payload) -> None:
        if payload.codec != self.name:
            raise PayloadError(f"payload of codec {payload.codec!r}, expected {self.name!r}")
        if payload.session is None:
            if payload.is_empty:
                return
            raise PayloadError(
                f"codec {self.name!r} reads lean frames, and this payload has no session: parse the bytes "
                "with Payload.from_bytes(data, session=...) using the session header received at the start "
                "of the episode"
            )
        payload.session.check(Session(self.name, self.fingerprint, 1, payload.session.split))

    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        """Decode every view the frame carries (``{}`` for an empty payload, or while desynchronised).

        Raises:
            PayloadError: another codec or session, no session, or a corrupt header or body.
        """
        self._check_session(payload)
        if payload.is_empty:
            return {}
        return self._decode(payload, payload.meta[0], payload.session.split)

    def _decode(self, payload: Payload, header: int, split: int) -> dict[str, np.ndarray]:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Scalar quantisation (baseline)
# ---------------------------------------------------------------------------------------------


@register_codec(
    "scalar",
    wire_id=10,
    description="vector views: per-sensor uniform scalar quantisation + Gaussian entropy coding (baseline)",
)
class ScalarCodec(_LeanVectorCodec):
    """Per-sensor uniform scalar quantisation with a fixed Gaussian model of each component.

    Args:
        views: 1-D float views (one per sensor).
        mean: per view, the model's mean (default 0).
        scale: per view, the model's standard deviation per component (default 1).

    Build it with :meth:`from_views`; with ``system=`` (the env's process model) the mean and spread
    are the measurement's prior, largest over ``horizon`` steps (a random walk keeps growing).

    Frame: ``header u8 | body | crc8`` (module docstring); codec split: ``header = rel + 16``,
    the same relative step for every view.
    """

    name = "scalar"
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

    def _model_arrays(self) -> list[np.ndarray]:
        names = self.view_names
        return [self._mean[n] for n in names] + [self._sigma_idx[n] for n in names]

    def _compress(
        self, views: Mapping[str, np.ndarray], budget_bits: int, allocation: Mapping[str, float] | None
    ) -> Payload:
        """The finest steps whose frame fits; empty when nothing fits (see the module docstring)."""
        session = self.session_for(allocation)
        room = budget_bits - FRAME_OVERHEAD_BITS
        if room < 8:
            return Payload.empty(self.name, session)
        names = self.view_names
        values = [views[n] for n in names]
        means = [self._mean[n] for n in names]
        sig = [self._sigma_idx[n] for n in names]
        refs = [int(s.max()) for s in sig]
        if allocation is None:

            def at(h: int) -> list[int | None]:
                return [ref + _REL_OFFSET - h for ref in refs]

            def make(h: int) -> _Frame:
                return _Frame(h, *_encode_body([], values, means, sig, at(h)))

            frame = _search(make, lambda h: _expected_bits(sig, at(h)), room, 0, _SCALAR_H_MAX)
        else:

            def make_split(ks: list[int | None]) -> _Frame | None:
                if all(k is None for k in ks):
                    return None
                rel0, head = _split_head(ks, refs)
                return _Frame(rel0 + _REL_OFFSET, *_encode_body(head, values, means, sig, ks))

            shares = split_budget(room, names, allocation)
            frame = _explicit_frame(make_split, sig, refs, [shares[n] for n in names], room, _REL_MAX)
        if frame is None:
            return Payload.empty(self.name, session)
        return Payload(self.name, (frame.data,), bytes((frame.header,)), session, (8 * len(frame.data),))

    def _decode(self, payload: Payload, header: int, split: int) -> dict[str, np.ndarray]:
        names = self.view_names
        sig = [self._sigma_idx[n] for n in names]
        refs = [int(s.max()) for s in sig]
        ks: list[int | None] = []
        if not split:
            if header > _SCALAR_H_MAX:
                raise PayloadError(
                    f"scalar frame header {header}: rate finer than the codec's finest (corrupt)"
                )
            ks = [ref + _REL_OFFSET - header for ref in refs]

        def phases(out: list[np.ndarray]) -> object | None:
            if split and len(out) == 0:
                return ("binary", len(names))
            if split and len(out) == 1:
                return np.full(max(int(out[0].sum()) - 1, 0), _OFFSET_SCALE_IDX)
            if len(out) == (2 if split else 0):
                if split:
                    ks[:] = _split_ks(out[0], out[1], refs, header - _REL_OFFSET)
                sent = [i for i, k in enumerate(ks) if k is not None]
                if not sent:
                    raise PayloadError("scalar frame sends no view (corrupt)")
                return np.concatenate([_symbol_idx(sig[i], ks[i]) for i in sent])  # type: ignore[arg-type]
            return None

        decoded_phases = get_coder("gaussian").decode_phases(payload.streams[0], phases)
        symbols = decoded_phases[-1]
        out, self.last_steps, pos = {}, {}, 0
        for i, (name, k) in enumerate(zip(names, ks, strict=True)):
            if k is None:
                continue
            n = sig[i].size
            step = float(step_from_index(k))
            out[name] = (self._mean[name] + dequantize(symbols[pos : pos + n], step)).astype(np.float32)
            self.last_steps[name] = step
            pos += n
        return out


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
    step: int = 0  # sender: steps since reset (for periodic key frames)
    frame: int = 0  # sender: next non-empty frame number (its parity is on the wire); receiver: expected one
    gap: int = 0  # sender: time updates since the last non-empty frame
    last_gap: int | None = None  # both ends: the gap of the last frame (None after a reset or key frame)
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


class _FrameReader:
    """The receiver's side of one predictive frame's phases, called by the coder's ``decode_phases``.

    Given the symbols of the phases decoded so far, it answers with the next phase's scale indices
    (``None``: the frame ends): the gap since the last frame (its change, or its size after a key
    frame), the split's flags and offsets, a key frame's state prefix, then the measurements'
    innovations. Once the header phases are in, :attr:`state` holds the prior (``mean``, ``cov``),
    the innovation model (``preds``, ``sig``), the step index per view (``ks``) and the ``gap``.
    """

    def __init__(self, codec: PredictiveCodec, key: bool, split: int, h: int) -> None:
        self.codec, self.key, self.split, self.h = codec, key, split, h
        #: The header phases, named in order (they depend on what the first ones say).
        self.plan: list[str] = []
        self.state: dict[str, Any] = {}

    def _plan_of(self, out: list[np.ndarray]) -> list[str]:
        if self.key:
            gap = []
        elif self.codec._rx.last_gap is None:
            gap = ["gap_abs"]
        else:
            gap = ["gap"] + (["gap_size"] if out and int(out[0][0]) != 0 else [])
        return gap + (["flags", "offsets"] if self.split else []) + (["prefix"] if self.key else [])

    def __call__(self, out: list[np.ndarray]) -> object | None:
        i = len(out)
        self.plan[:] = self._plan_of(out)
        if i < len(self.plan):
            part = self.plan[i]
            if part == "gap":
                return np.array([_GAP_SCALE_IDX], dtype=np.int64)
            if part in ("gap_size", "gap_abs"):
                return np.array([_GAP_SIZE_SCALE_IDX], dtype=np.int64)
            if part == "flags":
                return ("binary", len(self.codec.views))
            if part == "offsets":
                return np.full(max(int(out[i - 1].sum()) - 1, 0), _OFFSET_SCALE_IDX)
            return self.codec._key_scale_idx
        if i > len(self.plan):
            return None
        named = dict(zip(self.plan, out, strict=False))
        mean, cov = self._prior(named)
        preds, sig = self.codec._innovation_model(mean, cov)
        refs = [int(s.max()) for s in sig]
        if self.split:
            ks = _split_ks(named["flags"], named["offsets"], refs, 2 * self.h - _REL_OFFSET)
        else:
            ks = self.codec._h_ks[self.h]
        self.state.update(mean=mean, cov=cov, preds=preds, sig=sig, ks=ks)
        sent = [j for j, k in enumerate(ks) if k is not None]
        if not sent:
            return None
        return np.concatenate([_symbol_idx(sig[j], ks[j]) for j in sent])  # type: ignore[arg-type]

    def _prior(self, named: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The state before this frame's measurements, and ``state["gap"]`` (None for a key frame).

        A key frame's prefix, else the receiver's filter predicted over the frame's gap.
        """
        codec, rx = self.codec, self.codec._rx
        if self.key:
            self.state["gap"] = None
            return dequantize(named["prefix"], codec._key_steps), codec._P_key.copy()
        if rx.last_gap is None:
            gap = int(named["gap_abs"][0]) + 1
        else:
            sign = int(named["gap"][0])
            if sign not in (-1, 0, 1):
                raise PayloadError(f"predictive frame: gap change sign {sign} (corrupt)")
            gap = rx.last_gap + (sign * (int(named["gap_size"][0]) + 1) if sign else 0)
        self.state["gap"] = gap
        if not 0 <= gap <= 0xFFFF:
            raise PayloadError(f"predictive frame: gap of {gap} steps (corrupt)")
        probe = _FilterState(rx.mean, rx.cov)
        codec._predict(probe, gap)
        return probe.mean, probe.cov


@register_codec(
    "predictive",
    wire_id=11,
    description="vector views: innovation against the receiver's Kalman prediction, key frames resync",
)
class PredictiveCodec(_LeanVectorCodec):
    """Predictive coding of each sensor's innovation against the receiver's Kalman prediction.

    See the module docstring for the scheme, the frame and the resynchronisation after drops.

    Args:
        views: 1-D float views, one per sensor, in the system's sensor order.
        system: the process model (:func:`as_linear_system`).
        key_interval: steps between key frames (0: only after acknowledged drops).

    Frame: ``header u8 | body | crc8``; header = key flag (bit 7) | frame parity (bit 6) | rate
    (bits 0-5); body = the gap since the last frame (ordinary frames only: its change, or itself),
    [explicit split: views sent and their rates], [key frames: the quantised state], then every
    sent view's innovation symbols.
    """

    name = "predictive"
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
        self._h_ks = self._lagrange_steps()
        self.reset()

    def _lagrange_steps(self) -> list[list[int | None]]:
        """Each sensor's step index at every codec-split rate ``h`` (None: not sent); see the module docstring."""
        r = np.array([float(np.max(np.diag(R))) for R in self.system.R])
        out = []
        for h in range(_H_MASK + 1):
            lam = 2.0 ** (-h / _LAMBDA_STEPS_PER_OCTAVE) / (4.0 * float(r.min()))
            ks: list[int | None] = []
            for r_k in r.tolist():
                x = lam * r_k
                if x > 0.25:
                    ks.append(None)
                    continue
                q = 2.0 * lam * r_k * r_k / ((1.0 - 2.0 * x) + np.sqrt(max(1.0 - 4.0 * x, 0.0)))
                ks.append(int(np.rint(SCALE_STEPS_PER_OCTAVE * np.log2(np.sqrt(12.0 * q)))))
            out.append(ks)
        return out

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

    def _model_arrays(self) -> list[np.ndarray]:
        s = self.system
        return [s.A, s.Q, s.initial_mean, s.initial_cov, *s.C, *s.R]

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

    def _innovation_model(
        self, mean: np.ndarray, cov: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        preds, sig = [], []
        for C, R in zip(self.system.C, self.system.R, strict=True):
            S = C @ cov @ C.T + R
            preds.append(C @ mean)
            sig.append(scale_index(np.sqrt(np.clip(np.diag(S), 1e-300, None))).astype(np.int64))
        return preds, sig

    def _frame(
        self,
        views: Mapping[str, np.ndarray],
        room: int,
        allocation: Mapping[str, float] | None,
        key: bool,
    ) -> tuple[_Frame, np.ndarray, np.ndarray] | None:
        """Build a frame from the sender's state; return it with the state after its update."""
        tx = self._tx
        names = self.view_names
        mean, cov = tx.mean, tx.cov
        head: list[tuple[Any, ...]] = []
        tail: list[tuple[Any, ...]] = []
        prefix_bits = 0.0
        if key:
            symbols = quantize_symbols(mean, self._key_steps)
            tail = [(symbols, self._key_scale_idx)]
            prefix_bits = get_coder("gaussian").estimate_bits(symbols, self._key_scale_idx)
            mean, cov = dequantize(symbols, self._key_steps), self._P_key.copy()
        else:
            head = _gap_phases(tx.gap, tx.last_gap)
        values = [views[n] for n in names]
        preds, sig = self._innovation_model(mean, cov)
        refs = [int(s.max()) for s in sig]
        flags = (_FLAG_KEY if key else 0) | (_FLAG_PARITY if tx.frame & 1 else 0)
        if allocation is None:

            def make(h: int) -> _Frame | None:
                ks = self._h_ks[h]
                if not key and all(k is None for k in ks):
                    return None
                return _Frame(flags | h, *_encode_body(head + tail, values, preds, sig, ks))

            frame = _search(
                make, lambda h: prefix_bits + _expected_bits(sig, self._h_ks[h]), room, 0, _H_MASK
            )
        else:

            def make_split(ks: list[int | None]) -> _Frame | None:
                if not key and all(k is None for k in ks):
                    return None
                ks = list(ks)
                sent = [i for i, k in enumerate(ks) if k is not None]
                if sent:  # the header names the first sent view's rate in 2-notch units
                    i = sent[0]
                    rel = min(refs[i] - ks[i], 2 * _H_MASK - _REL_OFFSET)  # type: ignore[operator]
                    ks[i] = refs[i] - (rel - (rel + _REL_OFFSET) % 2)
                rel0, split_phases = _split_head(ks, refs)
                h = (rel0 + _REL_OFFSET) // 2 if sent else 0
                return _Frame(flags | h, *_encode_body(head + split_phases + tail, values, preds, sig, ks))

            shares = split_budget(max(room - int(prefix_bits), 0), names, allocation)
            frame = _explicit_frame(
                make_split, sig, refs, [shares[n] for n in names], room, 2 * _H_MASK - _REL_OFFSET
            )
        if frame is None:
            return None
        sent = [k for k, d in enumerate(frame.decoded) if d is not None]
        mean, cov = _update(
            mean,
            cov,
            [self.system.C[k] for k in sent],
            [self._noisy_R(k, frame.steps[k]) for k in sent],
            [frame.decoded[k] for k in sent],
        )
        return frame, mean, cov

    def _noisy_R(self, sensor: int, step: float) -> np.ndarray:
        """Noise of a decoded measurement: the sensor's own plus uniform quantisation noise."""
        R = self.system.R[sensor]
        return R + np.eye(R.shape[0]) * (step * step / 12.0)

    def _compress(
        self, views: Mapping[str, np.ndarray], budget_bits: int, allocation: Mapping[str, float] | None
    ) -> Payload:
        """Code this step's innovations within ``budget_bits``; advance the sender one step.

        A key frame is sent when one is due (``key_interval`` steps since the last, or a drop was
        acknowledged) and fits. When a periodic one does not fit, an ordinary frame goes instead;
        after an acknowledged drop nothing does (the receiver could not decode it).
        """
        tx = self._tx
        if tx.started:
            self._predict(tx)
            tx.step = (tx.step + 1) & 0xFFFF
            tx.gap += 1
        tx.started = True
        session = self.session_for(allocation)
        room = budget_bits - FRAME_OVERHEAD_BITS
        if room < 8:
            return Payload.empty(self.name, session)
        due = (
            tx.key_pending
            or tx.gap > _MAX_KEY_GAP  # after a long outage a key frame is cheaper than the gap
            or (self.key_interval > 0 and (tx.step - tx.last_key) % 0x10000 >= self.key_interval)
        )
        built = self._frame(views, room, allocation, key=True) if due else None
        if built is not None:
            tx.key_pending = False
            tx.last_key = tx.step
        elif not tx.key_pending:
            built = self._frame(views, room, allocation, key=False)
        if built is None:
            return Payload.empty(self.name, session)
        frame, tx.mean, tx.cov = built
        tx.frame = (tx.frame + 1) & 0xFF
        tx.last_gap = None if frame.header & _FLAG_KEY else tx.gap
        tx.gap = 0
        return Payload(self.name, (frame.data,), bytes((frame.header,)), session, (8 * len(frame.data),))

    def _decode(self, payload: Payload, header: int, split: int) -> dict[str, np.ndarray]:
        # {} while desynchronised (after a detected loss, until a key frame)
        key, parity, h = bool(header & _FLAG_KEY), int(bool(header & _FLAG_PARITY)), header & _H_MASK
        rx = self._rx
        if parity != rx.frame & 1:
            rx.synced = False  # a non-empty frame was lost: our filter is not the sender's
        rx.frame = parity + 1
        if not (key or rx.synced):
            return {}
        reader = _FrameReader(self, key, split, h)
        decoded_phases = get_coder("gaussian").decode_phases(payload.streams[0], reader)
        state = reader.state
        if "ks" not in state:
            raise PayloadError("predictive frame ends before its measurements (corrupt)")
        symbols = decoded_phases[-1] if len(decoded_phases) > len(reader.plan) else np.zeros(0, np.int64)
        out: dict[str, np.ndarray] = {}
        steps: dict[int, float] = {}
        decoded: dict[int, np.ndarray] = {}
        pos = 0
        for j, k in enumerate(state["ks"]):
            if k is None:
                continue
            n = state["sig"][j].size
            steps[j] = float(step_from_index(k))
            decoded[j] = state["preds"][j] + dequantize(symbols[pos : pos + n], steps[j])
            out[self.view_names[j]] = decoded[j].astype(np.float32)
            pos += n
        self.last_steps = {self.view_names[j]: st for j, st in steps.items()}
        rx.mean, rx.cov = _update(
            state["mean"],
            state["cov"],
            [self.system.C[j] for j in decoded],
            [self._noisy_R(j, steps[j]) for j in decoded],
            list(decoded.values()),
        )
        rx.last_gap = state["gap"]
        if key:
            rx.synced = True
        return out
