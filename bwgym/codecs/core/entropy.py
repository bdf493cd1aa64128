"""Quantisation and entropy coding shared by every learned codec.

Two halves:

* **Quantisation** (torch, for training; numpy, for coding). A coefficient ``y`` is quantised with
  a uniform step ``step`` to the integer symbol ``round(y / step)``. In training the rounding is
  either straight-through (:func:`quantize_ste`: forward rounds, backward is the identity, as in
  paper 003 Sec. 3.4) or additive uniform noise (:func:`quantize_noise`), and :func:`rate_bits`
  gives a differentiable estimate of the bits the coder will spend.
* **Entropy coding** (numpy + ``constriction``). :class:`GaussianEntropyCoder` and
  :class:`LaplaceEntropyCoder` code integer symbols with a zero-mean model whose scale (standard
  deviation, in units of the quantisation step) is given per symbol as an integer *scale index*::

      scale = 2 ** (scale_idx / SCALE_STEPS_PER_OCTAVE)

  The bytes are one ``constriction`` range-coder pass, cut to the shortest byte string that lies
  in the coder's final interval (computed from the coder's state, no trial decoding).

Bit-exactness across machines: encoder and decoder must build the *same* fixed-point model, and
floating-point transcendental functions (``exp``, ``erf``) differ in the last bit between libms.
So the models are integer frequency tables (``2**24`` in total) computed with Python's
:mod:`decimal` module, whose ``exp`` and ``sqrt`` are correctly rounded and therefore identical
everywhere, and the model parameter that crosses the link (or sits in a checkpoint) is the
integer scale index, never a float. Compute scale indices once (:func:`scale_index`, e.g. when a
codec is fitted), store them as integers, and derive per-symbol indices by integer arithmetic
(``sigma_idx - step_idx``); do not recompute them from floats at the decoder.

Symbols are bounded, ``|x| <= MAX_ABS_SYMBOL = 2**31 - 1`` (:func:`quantize_symbols` saturates
to it; :meth:`EntropyCoder.encode` raises ``ValueError`` beyond it). A codec's finest step is
``2**-16`` of its largest coefficient's standard deviation, so only a coefficient more than
``2**15`` standard deviations out saturates, and the codec's step search sees that distortion.
Symbols outside the model's support still round-trip: each table reserves an *escape* symbol,
after which the value is sent with an Elias-gamma code. Scales above ``2**5`` are coded by
splitting off ``b`` uniformly coded low bits, so tables stay small (a few hundred entries) at any
scale.

Several messages can share one stream (:meth:`EntropyCoder.encode_phases` /
:meth:`EntropyCoder.decode_phases`): a later message's scale indices may depend on what an earlier
one decoded to, and a phase may be binary flags (a count, then a Bernoulli code). The latent codecs'
lean frames use this to put every stream, and their residual layer's block flags, in one body with
no length fields.

Corruption is the container's job: :class:`~bwgym.codecs.core.protocol.Payload` carries a CRC that rejects
every single-bit flip and truncation. :meth:`EntropyCoder.decode` raises
:class:`~bwgym.codecs.core.protocol.PayloadError` for bytes it cannot decode, but an entropy code has
almost no redundancy, so most corrupted streams decode to *some* symbols.

Example::

    coder = GaussianEntropyCoder()
    symbols = np.array([0, -3, 7, 120000])
    idx = np.array([8, 16, 24, 24])          # scales 2, 4, 8, 8 (the last symbol escapes)
    data = coder.encode(symbols, idx)
    assert (coder.decode(data, idx) == symbols).all()
    coder.estimate_bits(symbols, idx)        # ideal code length, -sum log2 p
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Context, Decimal, localcontext
from typing import ClassVar

import constriction
import numpy as np
import torch

from bwgym.codecs.core.protocol import PayloadError

__all__ = [
    "MAX_ABS_SYMBOL",
    "MAX_SCALE_INDEX",
    "MIN_SCALE_INDEX",
    "PROBABILITY_BITS",
    "SCALE_STEPS_PER_OCTAVE",
    "EntropyCoder",
    "GaussianEntropyCoder",
    "LaplaceEntropyCoder",
    "choose_step_index",
    "dequantize",
    "flag_bits",
    "get_coder",
    "quantize",
    "quantize_noise",
    "quantize_ste",
    "quantize_symbols",
    "rate_bits",
    "scale_from_index",
    "scale_index",
    "step_from_index",
]

#: Resolution of the scale grid: scales (and steps) are ``2 ** (idx / 8)``. A scale off by half a
#: grid step (4.4 %) costs < 0.002 bit per symbol, so a finer grid buys nothing.
SCALE_STEPS_PER_OCTAVE = 8
#: Smallest scale index: ``2 ** -4``; a symbol other than 0 then has probability < 1e-15.
MIN_SCALE_INDEX = -4 * SCALE_STEPS_PER_OCTAVE
#: Largest scale index with its own table (scale 32); wider scales split off low bits.
TABLE_MAX_INDEX = 5 * SCALE_STEPS_PER_OCTAVE
#: Largest scale index (scale ``2 ** 36``); larger indices are clipped to it.
MAX_SCALE_INDEX = 36 * SCALE_STEPS_PER_OCTAVE
#: Largest symbol magnitude (the int32 range): see the module docstring for why it suffices.
MAX_ABS_SYMBOL = (1 << 31) - 1
#: Fixed-point precision of the models: frequencies sum to ``2 ** 24`` (constriction's precision).
PROBABILITY_BITS = 24
_TOTAL = 1 << PROBABILITY_BITS
#: Frequency reserved for the escape symbol at least (probability ``2 ** -16``): costs ~2e-5 bit
#: per symbol and keeps an out-of-distribution value at ~16 bits plus its Elias-gamma code.
_ESCAPE_MIN_FREQ = 1 << (PROBABILITY_BITS - 16)
#: Bits per uniformly coded chunk (constriction's Uniform is exact for powers of two below 2**24).
_CHUNK_BITS = 16
#: Bits of the Elias-gamma length field. It could hold lengths up to 64; escapes of symbols within
#: MAX_ABS_SYMBOL need at most 31, and the decoder rejects longer ones.
_LENGTH_FIELD_BITS = 6
_MAX_ESCAPE_BITS = 31


# ---------------------------------------------------------------------------------------------
# Scale grid
# ---------------------------------------------------------------------------------------------


def scale_index(scale: np.ndarray | float) -> np.ndarray:
    """Nearest scale index of a (positive) scale: ``round(8 * log2(scale))``, clipped to the grid.

    Call this once (when fitting a codec) and store the integers: the decoder must use the very
    same indices, and a float recomputation elsewhere could round differently.

    Args:
        scale: standard deviation(s); zero or negative maps to :data:`MIN_SCALE_INDEX`.

    Returns:
        int32 array of the same shape.

    """
    scale = np.asarray(scale, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        idx = np.rint(SCALE_STEPS_PER_OCTAVE * np.log2(np.where(scale > 0, scale, 0.0)))
    idx = np.where(np.isfinite(idx), idx, MIN_SCALE_INDEX)
    return np.clip(idx, MIN_SCALE_INDEX, MAX_SCALE_INDEX).astype(np.int32)


def scale_from_index(idx: np.ndarray | int) -> np.ndarray:
    """Return the scale ``2 ** (idx / 8)`` of scale index(es) ``idx`` (float64)."""
    return np.exp2(np.asarray(idx, dtype=np.float64) / SCALE_STEPS_PER_OCTAVE)


def step_from_index(idx: np.ndarray | int) -> np.ndarray:
    """Return the quantisation step ``2 ** (idx / 8)`` of step index(es) ``idx`` (scale grid).

    The step value only scales reconstructions, so its float rounding never affects decoding.
    """
    return scale_from_index(idx)


# ---------------------------------------------------------------------------------------------
# Quantisation
# ---------------------------------------------------------------------------------------------


def quantize_ste(x: torch.Tensor, step: torch.Tensor | float = 1.0) -> torch.Tensor:
    """Round ``x`` to the grid ``step * Z`` with a straight-through gradient.

    Forward: ``step * round(x / step)``; backward: identity (the gradient of the rounding is
    replaced by 1, paper 003 Sec. 3.4), so the encoder still learns through the quantiser.
    """
    q = torch.round(x / step) * step
    return x + (q - x).detach()


def quantize_noise(
    x: torch.Tensor, step: torch.Tensor | float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add uniform noise on ``[-step/2, step/2)``: the differentiable training proxy of rounding."""
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) - 0.5
    return x + noise * step


def quantize(
    x: torch.Tensor,
    step: torch.Tensor | float = 1.0,
    mode: str = "ste",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Quantise for training or evaluation.

    Args:
        x: values to quantise.
        step: quantisation step (broadcast against ``x``).
        mode: ``"ste"`` (round, straight-through gradient), ``"noise"`` (uniform noise) or
            ``"round"`` (plain rounding, no gradient: what the coder does).
        generator: random generator for ``"noise"``.

    """
    if mode == "ste":
        return quantize_ste(x, step)
    if mode == "noise":
        return quantize_noise(x, step, generator)
    if mode == "round":
        return torch.round(x / step) * step
    raise ValueError(f"quantize mode must be 'ste', 'noise' or 'round', got {mode!r}")


def quantize_symbols(x: np.ndarray, step: np.ndarray | float) -> np.ndarray:
    """Integer symbols ``round(x / step)`` (half to even) as int64, saturated to ``MAX_ABS_SYMBOL``."""
    sym = np.rint(np.asarray(x, dtype=np.float64) / np.asarray(step, dtype=np.float64))
    if not np.all(np.isfinite(sym)):
        raise ValueError("cannot quantise non-finite values")
    return np.clip(sym, -MAX_ABS_SYMBOL, MAX_ABS_SYMBOL).astype(np.int64)


def dequantize(symbols: np.ndarray, step: np.ndarray | float) -> np.ndarray:
    """Reconstruction ``symbols * step`` (float64)."""
    return np.asarray(symbols, dtype=np.float64) * np.asarray(step, dtype=np.float64)


def rate_bits(y: torch.Tensor, scale: torch.Tensor | float, family: str = "gaussian") -> torch.Tensor:
    """Differentiable bits of quantised values under the coder's model (per element).

    ``-log2 P(y)`` where ``P`` is the mass of ``[y - 1/2, y + 1/2]`` under a zero-mean Gaussian or
    Laplace of standard deviation ``scale``; ``y`` and ``scale`` are in units of the step (pass
    ``y / step`` and ``sigma / step``). Use it with :func:`quantize_noise` or :func:`quantize_ste`
    for a rate term in a training loss; it tracks :meth:`EntropyCoder.estimate_bits` closely
    inside the table's support.
    """
    scale = torch.as_tensor(scale, dtype=y.dtype, device=y.device).clamp_min(2.0**-4)
    a = (y.abs() + 0.5) / scale
    b = (y.abs() - 0.5) / scale
    if family == "gaussian":
        # upper-tail differences via erfc stay accurate far in the tail
        p = 0.5 * (torch.special.erfc(b / math.sqrt(2.0)) - torch.special.erfc(a / math.sqrt(2.0)))
    elif family == "laplace":
        rate = math.sqrt(2.0)  # a and b are in units of the standard deviation
        # upper tails G(t) = P(X > t); a >= 0 always, b may be negative (the centre bin)
        upper_b = torch.where(
            b >= 0, 0.5 * torch.exp(-rate * b.clamp_min(0)), 1 - 0.5 * torch.exp(rate * b.clamp_max(0))
        )
        p = upper_b - 0.5 * torch.exp(-rate * a)
    else:
        raise ValueError(f"family must be 'gaussian' or 'laplace', got {family!r}")
    return -torch.log2(p.clamp_min(2.0**-PROBABILITY_BITS))


# ---------------------------------------------------------------------------------------------
# Fixed-point model tables (decimal arithmetic: identical on every machine)
# ---------------------------------------------------------------------------------------------

_DECIMAL = Context(prec=34)
_PI = Decimal("3.141592653589793238462643383279502884197")


def _decimal_scales() -> list[Decimal]:
    """Scales of the table indices MIN_SCALE_INDEX..TABLE_MAX_INDEX, by correctly rounded ops."""
    with localcontext(_DECIMAL):
        root = Decimal(2).sqrt().sqrt().sqrt()  # 2 ** (1/8); sqrt is correctly rounded
        fractions = [Decimal(1)]
        for _ in range(SCALE_STEPS_PER_OCTAVE - 1):
            fractions.append(fractions[-1] * root)
        scales = []
        for idx in range(MIN_SCALE_INDEX, TABLE_MAX_INDEX + 1):
            octave, frac = divmod(idx, SCALE_STEPS_PER_OCTAVE)
            power = Decimal(2) ** octave if octave >= 0 else Decimal(1) / (Decimal(2) ** -octave)
            scales.append(power * fractions[frac])
    return scales


def _gaussian_upper_tail(x: Decimal) -> Decimal:
    """``1 - Phi(x)`` for ``x >= 0`` (decimal), via Phi(x) = 1/2 + phi(x) sum x^(2n+1)/(2n+1)!!.

    The series has positive terms only (no cancellation) and converges for every x.
    """
    if x > 12:
        return Decimal(0)
    x2 = x * x
    term = total = x
    n = 0
    eps = Decimal(10) ** -36
    while term > eps * total:
        n += 1
        term = term * x2 / (2 * n + 1)
        total += term
    return Decimal("0.5") - (-x2 / 2).exp() * total / (2 * _PI).sqrt()


def _laplace_upper_tail(x: Decimal, scale: Decimal) -> Decimal:
    """``P(X > x)`` for ``x >= 0`` of a zero-mean Laplace of standard deviation ``scale``."""
    return Decimal("0.5") * (-(x * Decimal(2).sqrt()) / scale).exp()


#: Support half-width in standard deviations, per family: beyond it the model mass is below the
#: 2**-24 resolution (Gaussian: 2 Q(6.5) = 8e-11; Laplace: exp(-12 sqrt 2) = 4e-8).
_TAIL_WIDTH = {"gaussian": Decimal("6.5"), "laplace": Decimal(12)}


def _frequency_table(family: str, scale: Decimal) -> tuple[int, list[int]]:
    """Half-width ``L`` and integer frequencies of symbols ``-L..L`` then the escape symbol."""
    with localcontext(_DECIMAL):
        half_width = int((scale * _TAIL_WIDTH[family]).to_integral_value(ROUND_CEILING)) + 1
        if family == "gaussian":
            tails = [_gaussian_upper_tail((k + Decimal("0.5")) / scale) for k in range(half_width + 1)]
        else:
            tails = [_laplace_upper_tail(k + Decimal("0.5"), scale) for k in range(half_width + 1)]
        masses = [1 - 2 * tails[0]] + [tails[k - 1] - tails[k] for k in range(1, half_width + 1)]
        escape_mass = 2 * tails[half_width]
        total = Decimal(_TOTAL)

        def freq(p: Decimal, floor: int) -> int:
            return max(floor, int((p * total).to_integral_value(ROUND_HALF_EVEN)))

        side = [freq(p, 1) for p in masses[1:]]
        escape = freq(escape_mass, _ESCAPE_MIN_FREQ)
        centre = _TOTAL - 2 * sum(side) - escape  # the mode absorbs the rounding remainder
    if centre < 1:  # cannot happen with the grid above; guards edits to it
        raise RuntimeError(f"{family} table at scale {scale} leaves no mass for the mode")
    return half_width, side[::-1] + [centre] + side + [escape]


@dataclass(frozen=True)
class _Tables:
    """All tables of one family, stacked so that lookups vectorise."""

    half_width: np.ndarray  # (n_tables,) int64
    bits: np.ndarray  # (n_tables, width) float64, -log2 p of symbol u = k + L (escape at 2L+1)
    probabilities: tuple[np.ndarray, ...]  # per table, float64 freq / 2**24 (exact)
    entropy_bits: np.ndarray  # (n_tables,) expected bits of a symbol drawn from the table


_TABLE_CACHE: dict[str, _Tables] = {}
_TABLE_LOCK = threading.Lock()


def _tables(family: str) -> _Tables:
    with _TABLE_LOCK:
        if family not in _TABLE_CACHE:
            half_widths, probs = [], []
            for scale in _decimal_scales():
                half_width, freqs = _frequency_table(family, scale)
                half_widths.append(half_width)
                probs.append(np.asarray(freqs, dtype=np.float64) / _TOTAL)
            width = max(len(p) for p in probs)
            bits = np.full((len(probs), width), np.inf)
            entropy = np.empty(len(probs))
            for i, p in enumerate(probs):
                bits[i, : len(p)] = -np.log2(p)
                entropy[i] = float(np.sum(p * bits[i, : len(p)]))
            _TABLE_CACHE[family] = _Tables(np.asarray(half_widths, np.int64), bits, tuple(probs), entropy)
        return _TABLE_CACHE[family]


# ---------------------------------------------------------------------------------------------
# The coder
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """How each symbol is split: table row, low bits, and where escapes go (read-only arrays)."""

    table: np.ndarray  # row into the stacked tables (scale index - MIN_SCALE_INDEX after split)
    shift: np.ndarray  # number of uniformly coded low bits
    half_width: np.ndarray  # support half-width of the symbol's table
    _groups: list[tuple[int, np.ndarray]] = field(default_factory=list, compare=False, repr=False)

    def groups(self) -> list[tuple[int, np.ndarray]]:
        """(table row, positions) per row, rows ascending: the order symbols are coded in."""
        if not self._groups and self.table.size:
            # rows fit int16, whose stable sort is a radix sort: the same order, in linear time
            order = np.argsort(self.table.astype(np.int16), kind="stable")
            rows, starts = np.unique(self.table[order], return_index=True)
            self._groups.extend(
                (int(r), seg) for r, seg in zip(rows, np.split(order, starts[1:]), strict=False)
            )
        return self._groups


#: Plans kept per coder (keyed by the scale indices' bytes): a codec asks for the same few
#: hundred index vectors every step, one per header and group.
_PLAN_CACHE_SIZE = 4096
#: Index vectors longer than this are planned afresh (hashing them would cost about as much).
_PLAN_CACHE_MAX_SYMBOLS = 1024


def _chunks(nbits: np.ndarray) -> list[np.ndarray]:
    """Sizes (in bits) of the uniform chunks of each entry: chunk c has min(16, n - 16c) bits."""
    n_chunks = int(-(-int(nbits.max(initial=0)) // _CHUNK_BITS))
    return [np.clip(nbits - _CHUNK_BITS * c, 0, _CHUNK_BITS) for c in range(n_chunks)]


def _bit_length(v: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of non-negative integers below ``2**53`` (exact: frexp's exponent)."""
    return np.frexp(v.astype(np.float64))[1].astype(np.int64)


def _shortest_stream(encoder: object) -> bytes:
    """Cut the range coder's stream to the shortest byte string that decodes to the same symbols.

    After the last symbol the coder's 64-bit state ``(lower, range)`` sits at word ``pos``: the
    message is every stream whose first ``T = 32 * (pos + 2)`` bits, read as an integer, lie in
    ``[lo, lo + range)`` (the decoder reads zeros past the end and never looks beyond ``T``).
    ``constriction`` flushes whole 32-bit words, i.e. up to ~4 bytes the decoder does not need,
    a large share of a payload at low rates. The shortest string is set by the most trailing zero
    bits any value in the interval has; of the strings of that length this takes the prefix of the
    flushed stream, or that prefix plus one when the prefix falls below ``lo`` (the bytes the old
    trial-decoding search chose). ``pos()`` is constriction's public checkpoint API; the test
    ``test_stream_is_the_shortest_that_decodes`` checks this cut against real decoding.
    """
    words = encoder.get_compressed()
    pos, (lower, range_) = encoder.pos()
    total_bits = 32 * (pos + 2)
    head = words[: pos + 2].astype(">u4").tobytes()
    full = int.from_bytes(head, "big") << (total_bits - 8 * len(head))
    # the flushed stream lies in the interval; its low 64 bits are the coder's wrapped point
    lo = full - (full - lower) % (1 << 64)
    if lo == 0:  # the decoder reproduces the message from nothing
        return b""
    hi = lo + range_ - 1
    free_bits = ((lo - 1) ^ hi).bit_length() - 1  # trailing zeros of the best value in [lo, hi]
    n_bytes = (total_bits - free_bits + 7) // 8
    drop = total_bits - 8 * n_bytes
    prefix = full >> drop
    if prefix << drop < lo:
        prefix += 1
    return prefix.to_bytes(n_bytes, "big").rstrip(b"\0")


def flag_bits(bits: np.ndarray) -> float:
    """Ideal bits of :meth:`EntropyCoder.encode_phases`' binary phase: the count, then the flags.

    The count ``k`` of ones is an Elias-gamma code of ``k + 1`` (1 bit for none, so a phase with
    no flag set is nearly free), the flags a Bernoulli code of probability ``k / n``.
    """
    n = int(np.size(bits))
    if n == 0:
        return 0.0
    k = int(np.sum(bits))
    h = 0.0 if k in (0, n) else -(k * math.log2(k / n) + (n - k) * math.log2(1 - k / n))
    return 2 * (k + 1).bit_length() - 1 + h


def _encode_flags(encoder: object, bits: np.ndarray) -> None:
    n, k = bits.size, int(bits.sum())
    length = (k + 1).bit_length()
    gamma = [0] * (length - 1) + [int(b) for b in format(k + 1, "b")]
    encoder.encode(np.asarray(gamma, np.int32), constriction.stream.model.Uniform(2))
    if 0 < k < n:  # k / n is exact in float64 and its fixed-point rounding is plain IEEE arithmetic
        encoder.encode(bits, constriction.stream.model.Bernoulli(k / n, perfect=False))


def _decode_flags(decoder: object, n: int) -> np.ndarray:
    bit = constriction.stream.model.Uniform(2)
    zeros, limit = 0, (n + 1).bit_length()
    while int(decoder.decode(bit, 1)[0]) == 0:
        zeros += 1
        if zeros >= limit:
            raise PayloadError(f"flag count longer than {limit} bits: corrupt entropy stream")
    value = 1
    for _ in range(zeros):
        value = value << 1 | int(decoder.decode(bit, 1)[0])
    k = value - 1
    if k > n:
        raise PayloadError(f"{k} flags set out of {n}: corrupt entropy stream")
    if k in (0, n):
        return np.full(n, 1 if k else 0, np.int64)
    bits = decoder.decode(constriction.stream.model.Bernoulli(k / n, perfect=False), n).astype(np.int64)
    if int(bits.sum()) != k:
        raise PayloadError(f"{int(bits.sum())} flags set where the count says {k}: corrupt entropy stream")
    return bits


class EntropyCoder:
    """Zero-mean quantised-distribution coder over integer symbols (base of the two families).

    All methods take ``symbols`` (integers) and ``scale_idx`` (integer scale indices, see the module
    docstring) of the same length; arrays are flattened. Subclasses only set :attr:`family`.
    """

    family: ClassVar[str]

    def __init__(self) -> None:
        self._models: dict[int, object] = {}
        self._plans: dict[tuple[str, bytes], _Plan] = {}

    # constriction models do not pickle; they are a cache rebuilt on first use (codecs get pickled
    # when vector envs start subprocesses)
    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self._models = {}
        self._plans = {}

    # -- helpers --------------------------------------------------------------------------------

    @property
    def tables(self) -> _Tables:
        """The family's fixed-point tables (built on first use, ~0.3 s, shared by all instances)."""
        return _tables(self.family)

    def _model(self, row: int) -> object:
        model = self._models.get(row)
        if model is None:
            # freq / 2**24 is exact in float64, and constriction's fixed-point quantisation of it is
            # plain IEEE arithmetic, so every machine builds the identical model.
            model = constriction.stream.model.Categorical(self.tables.probabilities[row], perfect=False)
            self._models[row] = model
        return model

    def _plan(self, scale_idx: np.ndarray) -> _Plan:
        idx = np.asarray(scale_idx)
        if idx.dtype.kind not in "iu":
            raise TypeError(
                f"scale_idx must be integers (got {idx.dtype}); convert scales once with scale_index() "
                "and keep the integers, so the decoder uses the very same model"
            )
        key = None
        if idx.size <= _PLAN_CACHE_MAX_SYMBOLS:
            key = (idx.dtype.str, idx.tobytes())
            cached = self._plans.get(key)
            if cached is not None:
                return cached
        idx = np.clip(idx.astype(np.int64).ravel(), MIN_SCALE_INDEX, MAX_SCALE_INDEX)
        shift = np.maximum(0, -(-(idx - TABLE_MAX_INDEX) // SCALE_STEPS_PER_OCTAVE))
        row = idx - SCALE_STEPS_PER_OCTAVE * shift - MIN_SCALE_INDEX
        plan = _Plan(row, shift, self.tables.half_width[row])
        for arr in (plan.table, plan.shift, plan.half_width):
            arr.flags.writeable = False
        if key is not None:
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    @staticmethod
    def _split(x: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
        """``x = (high << shift) + low - 2**(shift-1)``: high is centred, low in [0, 2**shift)."""
        half = np.where(plan.shift > 0, np.left_shift(1, np.maximum(plan.shift - 1, 0)), 0)
        high = np.right_shift(x + half, plan.shift)
        low = x + half - np.left_shift(high, plan.shift)
        return high, low

    def _check_symbols(self, symbols: np.ndarray, scale_idx: np.ndarray) -> tuple[np.ndarray, _Plan]:
        x = np.asarray(symbols)
        if x.dtype.kind not in "iu":
            raise TypeError(f"symbols must be integers, got {x.dtype}; quantise with quantize_symbols()")
        plan = self._plan(scale_idx)
        if x.size != plan.table.size:
            raise ValueError(f"got {x.size} symbols but {plan.table.size} scale indices")
        if x.size and (int(x.max()) > MAX_ABS_SYMBOL or int(x.min()) < -MAX_ABS_SYMBOL):
            worst = max(int(x.max()), -int(x.min()))
            raise ValueError(
                f"symbols must satisfy |x| <= 2**31 - 1, got |x| = {worst}; quantize_symbols() "
                "saturates to that range"
            )
        return x.astype(np.int64).ravel(), plan

    # -- rates ----------------------------------------------------------------------------------

    def symbol_bits(self, symbols: np.ndarray, scale_idx: np.ndarray) -> np.ndarray:
        """Ideal code length of each symbol, ``-log2 p`` under the fixed-point model (float64).

        Includes the uniformly coded low bits of wide scales and the escape code of out-of-support
        symbols. ``symbols`` and ``scale_idx`` may have any (equal) shape; the result has it too.
        """
        x, plan = self._check_symbols(symbols, scale_idx)
        return self._symbol_bits(x, plan).reshape(np.shape(symbols))

    def _row_symbol_bits(self, symbols: np.ndarray, scale_idx: np.ndarray) -> np.ndarray:
        """:meth:`symbol_bits` of an ``(n, m)`` int64 matrix whose row ``i`` has scale index ``scale_idx[i]``.

        The plan is made (and cached) for the ``n`` indices alone and broadcast over the columns:
        the same bits, element by element, as the tiled indices would give.
        """
        plan = self._plan(scale_idx)
        rows = _Plan(plan.table[:, None], plan.shift[:, None], plan.half_width[:, None])
        return self._symbol_bits(symbols, rows)

    def _symbol_bits(self, x: np.ndarray, plan: _Plan) -> np.ndarray:
        """:meth:`symbol_bits` of checked, flattened int64 symbols under a plan made by :meth:`_plan`."""
        high, _ = self._split(x, plan)
        magnitude = np.abs(high)
        escaped = magnitude > plan.half_width
        u = np.where(escaped, 2 * plan.half_width + 1, high + plan.half_width)
        bits = self.tables.bits[plan.table, u] + plan.shift
        if escaped.any():
            nbits = _bit_length((magnitude - plan.half_width)[escaped])
            bits[escaped] += 1 + _LENGTH_FIELD_BITS + (nbits - 1)
        return bits

    def estimate_bits(self, symbols: np.ndarray, scale_idx: np.ndarray) -> float:
        """Return the model's ideal code length of the message, ``-sum log2 p`` in bits.

        The stream :meth:`encode` emits is this plus ~3 bits on average (byte alignment and the
        range coder's flush) plus < 0.1 % (constriction's re-quantisation of the tables).
        """
        return float(np.sum(self.symbol_bits(symbols, scale_idx)))

    def expected_bits(self, scale_idx: np.ndarray) -> np.ndarray:
        """Return the expected bits per symbol when data follow the model (its entropy), per index."""
        plan = self._plan(scale_idx)
        out = self.tables.entropy_bits[plan.table] + plan.shift
        return out.reshape(np.shape(scale_idx))

    # -- coding ---------------------------------------------------------------------------------

    def encode(self, symbols: np.ndarray, scale_idx: np.ndarray) -> bytes:
        """Entropy-code integer symbols in one range-coder pass; the shortest stream that decodes.

        Args:
            symbols: integer symbols, ``|x| <= 2**31 - 1``; any shape (flattened, C order).
            scale_idx: integer scale index of each symbol (same size).

        Returns:
            The stream; ``b""`` for an empty message (and, rarely, for a message the decoder
            reproduces from nothing).

        Raises:
            ValueError: a symbol is out of range, or the sizes differ.

        """
        x, plan = self._check_symbols(symbols, scale_idx)
        if x.size == 0:
            return b""
        encoder = constriction.stream.queue.RangeEncoder()
        self._encode_into(encoder, x, plan)
        return _shortest_stream(encoder)

    def encode_phases(self, phases: list[tuple[object, ...]]) -> bytes:
        """Encode several messages into one stream, in order; the decoder reads them in order.

        Each phase is ``(symbols, scale_idx)`` (coded with this family's model) or
        ``("binary", bits)``: 0/1 flags coded with a Bernoulli model of probability ``k / n``
        of a 1 (``n = len(bits)``, ``k`` ones), preceded by ``k`` (:func:`flag_bits`). A later
        phase's scale indices may depend on what earlier phases decoded to
        (:meth:`decode_phases`). Returns the shortest stream, as :meth:`encode`.
        """
        encoder = constriction.stream.queue.RangeEncoder()
        empty = True
        for phase in phases:
            if isinstance(phase[0], str) and phase[0] == "binary":
                bits = np.asarray(phase[1], dtype=np.int32)
                if bits.size:
                    _encode_flags(encoder, bits)
                    empty = False
                continue
            x, plan = self._check_symbols(phase[0], phase[1])
            if x.size:
                self._encode_into(encoder, x, plan)
                empty = False
        return b"" if empty else _shortest_stream(encoder)

    def decode_phases(
        self, data: bytes, phases: Callable[[list[np.ndarray]], object | None]
    ) -> list[np.ndarray]:
        """Decode the phases :meth:`encode_phases` wrote.

        Args:
            data: the stream.
            phases: called with the list of phases decoded so far; returns the next phase's scale
                indices, ``("binary", n)`` for ``n`` flags, or None when there are no more.

        Raises:
            PayloadError: as :meth:`decode`.
        """
        data = bytes(data)
        if data.endswith(b"\0"):
            raise PayloadError("entropy stream ends in a zero byte: not produced by this coder (corrupt)")
        words = np.frombuffer(data + b"\0" * (-len(data) % 4), dtype=">u4").astype(np.uint32)
        out: list[np.ndarray] = []
        try:
            decoder = constriction.stream.queue.RangeDecoder(words)
            while (spec := phases(out)) is not None:
                if isinstance(spec, tuple) and spec and spec[0] == "binary":
                    out.append(_decode_flags(decoder, int(spec[1])))
                    continue
                plan = self._plan(spec)
                x = self._decode_from(decoder, plan) if plan.table.size else np.zeros(0, np.int64)
                out.append(x.reshape(np.shape(spec)))
        except PayloadError:
            raise
        except (AssertionError, ValueError, RuntimeError, OverflowError, IndexError) as exc:
            raise PayloadError(f"undecodable entropy stream ({exc})") from exc
        return out

    def _encode_into(self, encoder: object, x: np.ndarray, plan: _Plan) -> None:
        high, low = self._split(x, plan)
        escaped = np.abs(high) > plan.half_width
        u = np.where(escaped, 2 * plan.half_width + 1, high + plan.half_width).astype(np.int32)
        # 1. table symbols, grouped by table so each group is one i.i.d. call (order known to both ends)
        for row, seg in plan.groups():
            encoder.encode(u[seg], self._model(row))
        # 2. low bits of wide scales, in 16-bit chunks
        self._encode_uniform(encoder, low, plan.shift)
        # 3. escapes: signs, Elias-gamma lengths, then the bits below each leading one
        if escaped.any():
            h = high[escaped]
            excess = np.abs(h) - plan.half_width[escaped]  # >= 1
            nbits = _bit_length(excess)
            encoder.encode((h < 0).astype(np.int32), constriction.stream.model.Uniform(2))
            encoder.encode(
                (nbits - 1).astype(np.int32), constriction.stream.model.Uniform(1 << _LENGTH_FIELD_BITS)
            )
            self._encode_uniform(encoder, excess - np.left_shift(1, nbits - 1), nbits - 1)

    def decode(self, data: bytes, scale_idx: np.ndarray) -> np.ndarray:
        """Decode a stream of ``len(scale_idx)`` symbols coded with the same scale indices.

        Args:
            data: the stream :meth:`encode` returned.
            scale_idx: the integer scale indices the encoder used (their count is the message
                length; the result has their shape).

        Raises:
            PayloadError: the bytes are undecodable, end in a zero byte (never emitted), or carry
                an out-of-range escape. Most corrupted streams still decode to some symbols:
                the :class:`~bwgym.codecs.core.protocol.Payload` CRC rejects them before they get here.

        """
        plan = self._plan(scale_idx)
        data = bytes(data)
        n = plan.table.size
        if n == 0:
            if data:
                raise PayloadError(f"entropy stream of {len(data)} bytes for an empty message")
            return np.zeros(np.shape(scale_idx), dtype=np.int64)
        if data.endswith(b"\0"):
            raise PayloadError("entropy stream ends in a zero byte: not produced by this coder (corrupt)")
        words = np.frombuffer(data + b"\0" * (-len(data) % 4), dtype=">u4").astype(np.uint32)
        try:
            decoder = constriction.stream.queue.RangeDecoder(words)
            x = self._decode_from(decoder, plan)
        except PayloadError:
            raise
        except (AssertionError, ValueError, RuntimeError, OverflowError, IndexError) as exc:
            raise PayloadError(f"undecodable entropy stream ({exc})") from exc
        return x.reshape(np.shape(scale_idx))

    def _decode_from(self, decoder: object, plan: _Plan) -> np.ndarray:
        n = plan.table.size
        u = np.empty(n, dtype=np.int64)
        for row, seg in plan.groups():
            u[seg] = decoder.decode(self._model(row), seg.size)
        low = self._decode_uniform(decoder, plan.shift)
        high = u - plan.half_width
        escaped = u == 2 * plan.half_width + 1
        if escaped.any():
            count = int(escaped.sum())
            negative = decoder.decode(constriction.stream.model.Uniform(2), count).astype(bool)
            length_model = constriction.stream.model.Uniform(1 << _LENGTH_FIELD_BITS)
            nbits = decoder.decode(length_model, count).astype(np.int64) + 1
            if int(nbits.max()) > _MAX_ESCAPE_BITS:
                raise PayloadError("escape length out of range: corrupt entropy stream")
            rest = self._decode_uniform(decoder, nbits - 1)
            magnitude = plan.half_width[escaped] + np.left_shift(1, nbits - 1) + rest
            high[escaped] = np.where(negative, -magnitude, magnitude)
        half = np.where(plan.shift > 0, np.left_shift(1, np.maximum(plan.shift - 1, 0)), 0)
        x = np.left_shift(high, plan.shift) + low - half
        if x.size and int(np.abs(x).max()) > MAX_ABS_SYMBOL:
            raise PayloadError("decoded symbol out of range: corrupt entropy stream")
        return x

    @staticmethod
    def _encode_uniform(encoder: object, values: np.ndarray, nbits: np.ndarray) -> None:
        # most significant chunk first; chunk c holds bits [n - 16c - size, n - 16c)
        for c, size in enumerate(_chunks(nbits)):
            mask = size > 0
            if not mask.any():
                continue
            below = nbits[mask] - _CHUNK_BITS * c - size[mask]
            part = np.right_shift(values[mask], below) & (np.left_shift(1, size[mask]) - 1)
            encoder.encode(
                part.astype(np.int32),
                constriction.stream.model.Uniform(),
                np.left_shift(1, size[mask]).astype(np.int32),
            )

    @staticmethod
    def _decode_uniform(decoder: object, nbits: np.ndarray) -> np.ndarray:
        values = np.zeros(nbits.shape, dtype=np.int64)
        for size in _chunks(nbits):
            mask = size > 0
            if not mask.any():
                continue
            part = decoder.decode(
                constriction.stream.model.Uniform(), np.left_shift(1, size[mask]).astype(np.int32)
            )
            values[mask] = np.left_shift(values[mask], size[mask]) | part.astype(np.int64)
        return values


class GaussianEntropyCoder(EntropyCoder):
    """Coder whose model is a zero-mean Gaussian integrated over unit bins (std = the scale)."""

    family = "gaussian"


class LaplaceEntropyCoder(EntropyCoder):
    """Coder whose model is a zero-mean Laplace integrated over unit bins (std = the scale).

    Heavier tails than the Gaussian: the safer choice for learned latents with outliers.
    """

    family = "laplace"


_CODERS: dict[str, Callable[[], EntropyCoder]] = {
    "gaussian": GaussianEntropyCoder,
    "laplace": LaplaceEntropyCoder,
}
_CODER_INSTANCES: dict[str, EntropyCoder] = {}


def get_coder(family: str) -> EntropyCoder:
    """Return the shared coder instance of ``family`` (``"gaussian"`` or ``"laplace"``)."""
    if family not in _CODERS:
        raise ValueError(f"unknown entropy model family {family!r}; expected one of {sorted(_CODERS)}")
    if family not in _CODER_INSTANCES:
        _CODER_INSTANCES[family] = _CODERS[family]()
    return _CODER_INSTANCES[family]


# ---------------------------------------------------------------------------------------------
# Step selection
# ---------------------------------------------------------------------------------------------


def choose_step_index(
    sigma_idx: np.ndarray,
    budget_bits: float,
    coder: EntropyCoder | str = "gaussian",
    relative: bool = False,
    search: tuple[int, int] | None = None,
) -> int | None:
    """Return the finest step index whose expected rate fits ``budget_bits``.

    The expected rate of a coefficient with standard deviation ``2**(sigma_idx/8)`` quantised with
    step ``2**(k/8)`` is the model's entropy at scale index ``sigma_idx - k``
    (:meth:`EntropyCoder.expected_bits`); it decreases with ``k``, so a bisection finds the
    smallest ``k`` with ``sum <= budget_bits``.

    Args:
        sigma_idx: integer scale indices of the coefficients' standard deviations (e.g. the DPCA
            component ``sigma_idx``), in the same units as the values that will be quantised.
        budget_bits: bits available for these coefficients (entropy-coded body only).
        coder: coder instance or family name.
        relative: ``False``: one step ``2**(k/8)`` for every coefficient, the MSE-optimal choice
            for an orthonormal transform (reverse water-filling: every kept component gets the
            same distortion). ``True``: step ``2**(k/8) * sigma_i`` per coefficient (``step = c *
            sigma``), i.e. every coefficient gets the same scale index ``-k``.
        search: inclusive range of ``k`` to search; default from 24 octaves below the smallest
            ``sigma_idx`` (~24 bits per coefficient) to 4 octaves above the largest (all zeros).

    Returns:
        The step index ``k`` (per-coefficient steps are ``k`` or ``sigma_idx + k`` when
        ``relative``), or ``None`` when even the coarsest step in ``search`` does not fit.

    """
    coder = get_coder(coder) if isinstance(coder, str) else coder
    sigma_idx = np.asarray(sigma_idx, dtype=np.int64)

    def rate(k: int) -> float:
        idx = np.full_like(sigma_idx, -k) if relative else sigma_idx - k
        return float(coder.expected_bits(idx).sum())

    if search is None:
        low = int(sigma_idx.min(initial=0)) if relative is False else 0
        high = int(sigma_idx.max(initial=0)) if relative is False else 0
        search = (low - 24 * SCALE_STEPS_PER_OCTAVE, high + 4 * SCALE_STEPS_PER_OCTAVE)
    lo, hi = search
    if rate(hi) > budget_bits:
        return None
    while lo < hi:  # invariant: rate(hi) fits
        mid = (lo + hi) // 2
        if rate(mid) <= budget_bits:
            hi = mid
        else:
            lo = mid + 1
    return int(hi)
