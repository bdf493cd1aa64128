"""Slepian-Wolf block coding of the Wyner-Ziv codec's indices: LDPC syndromes of bit-planes.

The learned Wyner-Ziv encoder (:mod:`bwgym.codecs.multiterminal.wyner_ziv`) maps each sample to an index ``u``
without seeing the side information ``y``. Range-coding ``u`` with its marginal ``q(u)`` (one-shot)
spends ``H(U)``; the decoder, which holds ``y``, only needs ``H(U | Y)``. The practical way to spend
close to ``H(U | Y)`` without showing ``y`` to the encoder is Slepian-Wolf coding of a long block of
indices (DISCUS; Liveris, Xiong, Georghiades 2002): the encoder sends the *syndrome* ``H b`` of each
bit-plane ``b`` of the indices under a sparse parity-check matrix ``H`` (fewer bits than ``b``), and
the decoder finds the ``b`` with that syndrome that is most likely given ``y`` by belief
propagation, with the per-sample prior ``p(bit | y, planes already decoded)`` that the source model
gives exactly.

The pieces:

* :func:`parity_check`: a binary LDPC parity-check matrix, built deterministically from a seed, at
  any block length ``n`` and syndrome length ``m`` (irregular variable degrees, check degrees as
  equal as the edge count allows, no repeated edges).
* :func:`syndrome` and :func:`decode_syndrome`: the encoder's product ``H b`` (mod 2) and the
  decoder's sum-product belief propagation in the log domain, vectorised over edges in numpy.
* :class:`SlepianWolfIndexCoder`: one rate point of a :class:`~bwgym.codecs.multiterminal.wyner_ziv.WynerZivCodec`.
  The indices are labelled in binary (Gray or natural: both keep prefixes, so each plane's
  conditional entropy is the same) and split into bit-planes, most significant first. The encoder picks each plane's syndrome length from the model's conditional entropy
  ``H(plane | Y, previous planes)`` averaged over *its own* samples (it knows ``x`` and the
  statistics of ``y`` given ``x``, not ``y``) plus a margin, and appends a CRC-32 of the indices, so
  a wrong decode is *detected* (:class:`SlepianWolfFailure`), never silently returned.

A failure is the price of not knowing ``y``: the caller re-sends (here: falls back to the one-shot
range code, ``benchmarks/wyner_ziv.py`` counts both payloads). The margin keeps failures rare; the
benchmark measures how rare.

Payload (real bytes): ``b"SW"``, version, labelling, the codec's 2-byte model hash, the rate index,
``n`` (varint), the number of planes, each plane's syndrome length (varint; ``0``: no syndrome, the
decoder takes the prior's decision; ``n``: the plane sent as is), the syndrome bits of all planes
packed, CRC-32 of the indices. A malformed or truncated payload raises :class:`PayloadError`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bwgym.codecs.core.protocol import PayloadError, _get_varint, _put_varint

if TYPE_CHECKING:
    from bwgym.codecs.multiterminal.wyner_ziv import WynerZivCodec

__all__ = [
    "DEFAULT_VARIABLE_DEGREES",
    "ParityCheck",
    "SlepianWolfFailure",
    "SHORT_SYNDROME_DEGREES",
    "SlepianWolfIndexCoder",
    "decode_syndrome",
    "parity_check",
    "syndrome",
]

MAGIC = b"SW"
VERSION = 1
HASH_BYTES = 4
#: Labellings of the indices before bit-plane splitting (the byte in the payload).
LABELLINGS = {"natural": 0, "gray": 1}
#: Node-perspective variable degree distributions of the parity-check matrices, by syndrome rate
#: ``m / n``: half degree 2 (on a chain, see :func:`parity_check`; they lower the BP threshold), a
#: third degree 3, a fifth heavy (they start the decoding). Short syndromes (long checks) take heavier
#: nodes. Measured on the shipped model's planes at n = 20000: 7-11% over the plane's entropy, against
#: 14-30% for column-weight-3 regular codes.
DEFAULT_VARIABLE_DEGREES: Mapping[int, float] = {2: 0.5, 3: 0.3, 8: 0.2}
SHORT_SYNDROME_DEGREES: Mapping[int, float] = {2: 0.5, 3: 0.3, 12: 0.2}
#: Prior LLRs are clipped here: the model is exact, but a clipped prior lets BP still correct a
#: sample whose y fell far in a tail, instead of locking it.
_LLR_CLIP = 25.0
#: Quadrature over y given x for the encoder's rate estimate: z in [-6, 6].
_Z_POINTS = 49


class SlepianWolfFailure(PayloadError):
    """A well-formed payload that the decoder could not decode with its side information.

    BP did not reach the syndrome, or it did and the indices fail the payload's CRC-32: the side
    information is too far from what the encoder's margin allowed for (or is the wrong one).
    """


# ---------------------------------------------------------------------------------------------
# LDPC syndrome codes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParityCheck:
    """A sparse binary parity-check matrix ``H`` (``m`` x ``n``) as its list of edges.

    Attributes:
        n: block length (variables).
        m: syndrome length (checks).
        var: int64 (edges,) variable of each edge.
        chk: int64 (edges,) check of each edge.
    """

    n: int
    m: int
    var: np.ndarray
    chk: np.ndarray


def _counts(fractions: np.ndarray, total: int) -> np.ndarray:
    """Largest-remainder split of ``total`` by ``fractions`` (exact sum, deterministic)."""
    raw = fractions / fractions.sum() * total
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(-(raw - out), kind="stable")[: total - int(out.sum())]] += 1
    return out


def parity_check(
    n: int, m: int, seed: int = 0, variable_degrees: Mapping[int, float] | None = None
) -> ParityCheck:
    """A deterministic LDPC parity-check matrix of ``m`` checks on ``n`` bits.

    Args:
        n: block length (>= 1).
        m: syndrome length, ``1 <= m <= n``.
        seed: the same ``(n, m, seed, degrees)`` always gives the same matrix (encoder and decoder
            build it independently).
        variable_degrees: node-perspective fractions of each variable degree (default
            :data:`DEFAULT_VARIABLE_DEGREES`, :data:`SHORT_SYNDROME_DEGREES` when ``m < 0.45 n``);
            degrees above ``m`` are lowered to ``m``.
    """
    if not (isinstance(n, int) and isinstance(m, int) and 1 <= m <= n):
        raise ValueError(f"parity_check needs integers 1 <= m <= n, got n={n!r}, m={m!r}")
    if variable_degrees is None:
        variable_degrees = SHORT_SYNDROME_DEGREES if m < 0.45 * n else DEFAULT_VARIABLE_DEGREES
    degrees = dict(variable_degrees)
    rng = np.random.default_rng([0x5357, seed, n, m])
    keys = np.array(sorted(degrees), dtype=np.int64)
    deg = np.repeat(keys, _counts(np.array([degrees[k] for k in keys], dtype=np.float64), n))
    deg = np.minimum(rng.permutation(deg), m)
    # Degree-2 variables on a chain through the checks (as in eIRA codes): a cycle among them
    # would be a low-weight codeword, which BP cannot tell apart (an error floor). A chain needs
    # fewer of them than checks; the surplus become degree 3.
    two = np.flatnonzero(deg == 2)
    if two.size > m - 1:
        deg[two[m - 1 :]] = min(3, m)
        two = two[: m - 1]
    order = rng.permutation(m)
    chain_var = np.repeat(two, 2)
    chain_chk = np.stack([order[: two.size], order[1 : two.size + 1]], axis=1).reshape(-1)
    rest = deg.copy()
    rest[two] = 0
    var = np.repeat(np.arange(n, dtype=np.int64), rest)
    edges = var.size
    # The other check sockets: dealt so that check degrees (chain included) differ by at most one,
    # then shuffled.
    load = np.bincount(chain_chk, minlength=m)
    total = edges + chain_chk.size
    want = np.full(m, total // m) + (np.arange(m) < total % m)[rng.permutation(m)]
    need = np.maximum(want - load, 0)
    short = edges - int(need.sum())
    if short > 0:
        need += _counts(np.ones(m), short)
    elif short < 0:  # pragma: no cover - only when the chain overloads checks
        need = _counts(need.astype(np.float64), edges)
    chk = rng.permutation(np.repeat(np.arange(m, dtype=np.int64), need))
    # Remove repeated (variable, check) edges (they would cancel mod 2), chain edges included, by
    # swapping their check with a random free edge's until none is left.
    all_var = np.concatenate([var, chain_var])
    for _ in range(1000):
        key = all_var * m + np.concatenate([chk, chain_chk])
        order_e = np.argsort(key, kind="stable")
        dup = order_e[1:][key[order_e[1:]] == key[order_e[:-1]]]
        dup = dup[dup < edges]  # (chain variables have no other edge: a repeat is never a chain edge)
        if dup.size == 0:
            break
        # one swap at a time: a vectorised swap loses checks when positions repeat
        for a, b in zip(dup.tolist(), rng.integers(0, edges, size=dup.size).tolist(), strict=True):
            chk[a], chk[b] = chk[b], chk[a]
    else:  # pragma: no cover - only for degenerate (tiny m) shapes
        raise ValueError(f"could not build a parity-check matrix without repeated edges (n={n}, m={m})")
    var = np.concatenate([var, chain_var])
    chk = np.concatenate([chk, chain_chk])
    return ParityCheck(n, m, var, chk)


def syndrome(code: ParityCheck, bits: np.ndarray) -> np.ndarray:
    """``H b`` mod 2 as uint8 (m,)."""
    bits = np.asarray(bits).reshape(-1)
    if bits.size != code.n:
        raise ValueError(f"syndrome of {bits.size} bits with a code of length {code.n}")
    ones = np.bincount(code.chk, weights=bits[code.var].astype(np.float64), minlength=code.m)
    return (ones.astype(np.int64) & 1).astype(np.uint8)


def _phi(x: np.ndarray) -> np.ndarray:
    """``-log tanh(x / 2)`` (its own inverse), accurate at both ends for the sum-product check rule."""
    x = np.clip(x, 1e-12, 60.0)
    return np.log1p(2.0 / np.expm1(x))


def decode_syndrome(
    code: ParityCheck, target: np.ndarray, prior_llr: np.ndarray, max_iterations: int = 200
) -> tuple[np.ndarray, bool]:
    """Sum-product BP: the bits most likely under ``prior_llr`` whose syndrome is ``target``.

    Args:
        code: the parity-check matrix.
        target: uint8 (m,) syndrome received.
        prior_llr: float (n,) ``log p(bit=0) / p(bit=1)`` per bit from the side information.
        max_iterations: flooding iterations before giving up.

    Returns:
        ``(bits, converged)``: uint8 (n,) hard decisions, and whether their syndrome is ``target``
        (if not, the bits are the last iterate: a failure for the caller to report).
    """
    target = np.asarray(target, dtype=np.uint8).reshape(-1)
    prior = np.asarray(prior_llr, dtype=np.float64).reshape(-1)
    if target.size != code.m or prior.size != code.n:
        raise ValueError(f"decode_syndrome: syndrome {target.size}/{code.m}, prior {prior.size}/{code.n}")
    var, chk = code.var, code.chk
    flip = target[chk].astype(bool)
    hard = (prior < 0).astype(np.uint8)
    if np.array_equal(syndrome(code, hard), target):
        return hard, True
    v2c = prior[var]
    for _ in range(max_iterations):
        mag = _phi(np.abs(v2c))
        neg = v2c < 0
        total = np.bincount(chk, weights=mag, minlength=code.m)
        negs = np.bincount(chk, weights=neg, minlength=code.m).astype(np.int64)
        # the check's message to a variable excludes that variable's own message
        out_mag = _phi(np.maximum(total[chk] - mag, 0.0))
        odd = ((negs[chk] - neg) & 1).astype(bool) ^ flip
        c2v = np.where(odd, -out_mag, out_mag)
        post = prior + np.bincount(var, weights=c2v, minlength=code.n)
        hard = (post < 0).astype(np.uint8)
        if np.array_equal(syndrome(code, hard), target):
            return hard, True
        v2c = post[var] - c2v
    return hard, False


# ---------------------------------------------------------------------------------------------
# Bit-plane coding of Wyner-Ziv indices
# ---------------------------------------------------------------------------------------------


def _crc_bytes(indices: np.ndarray) -> bytes:
    return zlib.crc32(np.ascontiguousarray(indices, dtype="<u2").tobytes()).to_bytes(HASH_BYTES, "big")


def default_syndrome_bits(expected_bits: float, n: int) -> int:
    """The syndrome length for a plane whose model information over the block is ``expected_bits``.

    The margin is what finite-length BP needs over the plane's conditional entropy, measured on the
    shipped model's planes at n = 20000: the shortest syndrome that decoded was 6-14% above the
    model's expectation for planes under 0.6 bit per bit (it varies from block to block: the
    block's ``-log p`` fluctuates by 1-2% around its expectation, and BP's threshold with it), up to
    12.5% for planes near 0.9 bit per bit. The margin sits at the top of that range plus a few
    square roots of the information.
    A plane with next to no information sends no syndrome (a rare error there is caught by the
    CRC); one whose syndrome would be about as long as the plane is sent as is.
    """
    if expected_bits < 0.05:
        return 0
    h = expected_bits / n  # information per bit of the plane
    ratio = 1.12 + 0.12 * max(0.0, h - 0.6)
    m = int(math.ceil(ratio * expected_bits + 3.0 * math.sqrt(expected_bits) + 16))
    return n if m >= 0.97 * n else m


class SlepianWolfIndexCoder:
    """Slepian-Wolf block code of one rate point's indices of a Wyner-Ziv codec.

    Args:
        codec: the Wyner-Ziv codec (its encoder table, source model and model hash).
        rate_idx: the rate point.
        labelling: ``"gray"`` (default) or ``"natural"`` binary labels of the indices.
        seed: seeds the parity-check matrices (both ends must agree).
        syndrome_bits: ``(expected_bits, n) -> m``, the encoder's syndrome length per plane
            (default :func:`default_syndrome_bits`).
        max_iterations: BP iterations per plane.
    """

    def __init__(
        self,
        codec: WynerZivCodec,
        rate_idx: int,
        labelling: str = "gray",
        seed: int = 0,
        syndrome_bits=default_syndrome_bits,
        max_iterations: int = 200,
    ) -> None:
        if labelling not in LABELLINGS:
            raise ValueError(f"labelling must be one of {sorted(LABELLINGS)}, got {labelling!r}")
        if not 0 <= rate_idx < codec.n_rates:
            raise ValueError(f"rate_idx must be in 0..{codec.n_rates - 1}, got {rate_idx}")
        self.codec = codec
        self.rate_idx = int(rate_idx)
        self.labelling = labelling
        self.seed = int(seed)
        self.syndrome_bits = syndrome_bits
        self.max_iterations = int(max_iterations)
        cfg = codec.config
        table = codec.tables[rate_idx].astype(np.int64)
        self.planes = max(1, int(math.ceil(math.log2(int(table.max()) + 1))))
        labels = np.arange(1 << self.planes, dtype=np.int64)
        self.code_of_index = labels ^ (labels >> 1) if labelling == "gray" else labels
        self.index_of_code = np.argsort(self.code_of_index)
        self.cell_code = self.code_of_index[table]  # label of each grid cell
        self._xc = cfg.centres
        self._sn = math.sqrt(cfg.noise_var)
        self._cell_info: np.ndarray | None = None
        self._codes: dict[tuple[int, int, int], ParityCheck] = {}

    # -- the source model -------------------------------------------------------------------------

    def _window(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cells near each y: weights ``p(x) p(y | x)`` (rows, W) and their labels."""
        cells, w = self.codec.window(y)
        return w, self.cell_code[cells]

    def cell_information_bits(self) -> np.ndarray:
        """The expected ``-log2 p(plane bit | Y, higher planes)`` per grid cell: float (planes, n_cells).

        Row ``k`` is plane ``k`` (bit ``k`` of the label; planes are sent from the top one down).
        The expectation is over ``y ~ N(x, sigma_N^2)`` at the cell's centre: what the encoder, which
        knows ``x`` but not ``y``, can compute. Summed over planes it is ``-log2 p(u | y)``'s mean.
        """
        if self._cell_info is not None:
            return self._cell_info
        z = np.linspace(-6.0, 6.0, _Z_POINTS)
        gz = np.exp(-(z**2) / 2)
        gz /= gz.sum()
        n_cells = self._xc.size
        info = np.zeros((self.planes, n_cells))
        chunk = max(1, 4000 // _Z_POINTS)
        for s in range(0, n_cells, chunk):
            cells = np.arange(s, min(n_cells, s + chunk))
            y = (self._xc[cells][:, None] + self._sn * z[None, :]).reshape(-1)
            w, codes = self._window(y)
            own = np.repeat(self.cell_code[cells], z.size)[:, None]
            # mass of the labels sharing the top (planes - k) bits with the cell's own label
            mass = np.stack(
                [(w * ((codes >> k) == (own >> k))).sum(1) for k in range(self.planes + 1)], axis=0
            )
            mass = np.maximum(mass, 1e-300)
            bits = np.log2(mass[1:] / mass[:-1])  # plane k: -log2 p(bit k | bits above k, y)
            info[:, cells] = (bits.reshape(self.planes, cells.size, z.size) * gz).sum(2)
        self._cell_info = info
        return info

    def expected_plane_bits(self, x: np.ndarray) -> np.ndarray:
        """The model's information (bits) of each plane over the block of samples ``x``: float (planes,)."""
        cfg = self.codec.config
        cells = np.floor((np.asarray(x, dtype=np.float64).reshape(-1) + cfg.half_range) / cfg.dx)
        cells = np.clip(cells.astype(np.int64), 0, self._xc.size - 1)
        return self.cell_information_bits()[:, cells].sum(1)

    def plane_llr(self, w: np.ndarray, codes: np.ndarray, known: np.ndarray, k: int) -> np.ndarray:
        """Prior LLR of plane ``k`` per sample given its window and the label bits above ``k``."""
        match = (codes >> (k + 1)) == (known[:, None] >> (k + 1))
        one = ((codes >> k) & 1).astype(bool)
        p1 = (w * (match & one)).sum(1)
        p0 = (w * (match & ~one)).sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            llr = np.log(p0) - np.log(p1)
        llr = np.where(np.isnan(llr), 0.0, llr)
        return np.clip(llr, -_LLR_CLIP, _LLR_CLIP)

    def _code(self, n: int, m: int, k: int) -> ParityCheck:
        key = (n, m, k)
        if key not in self._codes:
            self._codes[key] = parity_check(n, m, seed=self.seed * 64 + k)
        return self._codes[key]

    # -- coding -----------------------------------------------------------------------------------

    def encode(self, indices: np.ndarray, x: np.ndarray) -> bytes:
        """The payload of a block of ``indices`` (the encoder's, of the samples ``x``).

        ``x`` sets the syndrome lengths (through the model's expected information given x); y is
        never used.
        """
        u = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = u.size
        if n == 0 or np.asarray(x).size != n:
            raise ValueError(f"encode needs one x per index, got {np.asarray(x).size} x for {n} indices")
        if u.min() < 0 or u.max() >= (1 << self.planes):
            raise ValueError(f"indices out of range 0..{(1 << self.planes) - 1}")
        labels = self.code_of_index[u]
        expected = self.expected_plane_bits(x)
        out = bytearray(MAGIC)
        out += bytes((VERSION, LABELLINGS[self.labelling]))
        out += self.codec.model_hash + bytes((self.rate_idx,))
        _put_varint(out, n)
        out.append(self.planes)
        bits = []
        for k in reversed(range(self.planes)):
            m = int(min(n, max(0, self.syndrome_bits(float(expected[k]), n))))
            _put_varint(out, m)
            plane = ((labels >> k) & 1).astype(np.uint8)
            if m == n:
                bits.append(plane)
            elif m > 0:
                bits.append(syndrome(self._code(n, m, k), plane))
        body = np.packbits(np.concatenate(bits)) if bits else np.zeros(0, np.uint8)
        return bytes(out) + body.tobytes() + _crc_bytes(u)

    def _parse(self, data: bytes) -> tuple[int, list[int], np.ndarray, bytes]:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise PayloadError(f"slepian-wolf payload must be bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < 8 or data[:2] != MAGIC:
            raise PayloadError("not a slepian-wolf payload (too short or wrong magic)")
        if data[2] != VERSION:
            raise PayloadError(f"slepian-wolf payload version {data[2]}, this decoder reads {VERSION}")
        if data[3] != LABELLINGS[self.labelling]:
            raise PayloadError(
                f"slepian-wolf payload labelling {data[3]}, this coder uses {self.labelling!r}"
            )
        if data[4:6] != self.codec.model_hash or data[6] != self.rate_idx:
            raise PayloadError(
                f"slepian-wolf payload of model {data[4:6].hex()} rate {data[6]}, this coder is "
                f"{self.codec.model_hash.hex()} rate {self.rate_idx}"
            )
        n, pos = _get_varint(data, 7)
        if n == 0:
            raise PayloadError("slepian-wolf payload of an empty block")
        if pos >= len(data) or data[pos] != self.planes:
            raise PayloadError(f"slepian-wolf payload planes do not match the model's {self.planes}")
        pos += 1
        lengths = []
        for _ in range(self.planes):
            m, pos = _get_varint(data, pos)
            if m > n:
                raise PayloadError(f"slepian-wolf syndrome length {m} exceeds the block length {n}")
            lengths.append(m)
        body_bytes = (sum(lengths) + 7) // 8
        if len(data) != pos + body_bytes + HASH_BYTES:
            raise PayloadError(
                f"slepian-wolf payload is {len(data)} bytes, its header announces {pos + body_bytes + HASH_BYTES}"
            )
        body = np.unpackbits(np.frombuffer(data, np.uint8, body_bytes, pos))
        return n, lengths, body, data[-HASH_BYTES:]

    def decode(self, data: bytes, y: np.ndarray) -> np.ndarray:
        """The indices of a payload, decoded with the side information ``y`` (one per sample).

        Raises:
            PayloadError: malformed or truncated bytes, or a payload of another model/rate/block size.
            SlepianWolfFailure: BP failed or the result fails the CRC (never a silent wrong answer).
        """
        n, lengths, body, crc = self._parse(data)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if y.size != n or not np.all(np.isfinite(y)):
            raise ValueError(f"side information: {n} finite values needed, got {y.size}")
        w, codes = self._window(y)
        known = np.zeros(n, dtype=np.int64)
        pos = 0
        for k, m in zip(reversed(range(self.planes)), lengths, strict=True):
            if m == n:
                plane = body[pos : pos + n].astype(np.int64)
            else:
                llr = self.plane_llr(w, codes, known, k)
                if m == 0:
                    plane = (llr < 0).astype(np.int64)
                else:
                    bits, ok = decode_syndrome(
                        self._code(n, m, k), body[pos : pos + m], llr, self.max_iterations
                    )
                    if not ok:
                        raise SlepianWolfFailure(
                            f"slepian-wolf plane {k}: BP did not reach the syndrome ({m} bits for {n} samples)"
                        )
                    plane = bits.astype(np.int64)
            pos += m
            known |= plane << k
        if np.any(known >= self.index_of_code.size):
            raise SlepianWolfFailure("slepian-wolf decode gave labels outside the model")
        u = self.index_of_code[known]
        if _crc_bytes(u) != crc:
            raise SlepianWolfFailure("slepian-wolf decode fails the CRC-32 of the indices")
        return u
