"""The codec protocol and the byte containers every codec emits.

A codec turns a dict of views (``{view name: array}``) into a :class:`Payload` whose size in bits,
headers included, is what the link carries, and turns a payload back into views::

    payload = codec.compress(views, budget_bits=2_000)
    assert payload.nbits <= 2_000
    decoded = codec.decompress(Payload.from_bytes(payload.to_bytes(), session=codec.session))

Two wire formats:

**Container v1** (self-describing; the image codecs, Gray-Wyner and any codec without a session),
all integers unsigned, varints are LEB128::

    magic "BW" | version u8 (=1) | codec id u8 | n_streams u8 | len(meta) varint | meta
    | n_streams x (len varint | bytes) | crc16 (CCITT) of everything before it, big-endian

**Lean frame** (the latent codecs: ``codec.session`` is not None). What does not change from step
to step is agreed once per episode in a :class:`Session` header, and each step sends only what
varies::

    session header (once per episode, 88 bits):
        magic "BS" | version u8 (=2) | codec id u8 | (n_streams << 1 | split mode) u8
        | checkpoint fingerprint (4 bytes) | crc16 (CCITT) of everything before it

    per-step frame (overhead 16 bits):
        header u8 (the codec's rate index: step index, split) | body | crc8

``body`` is one range-coder stream holding every stream's symbols (no length fields: the header
and the model give each stream's symbol count); ``crc8`` is CRC-8 (polynomial 0x07) over the
session's identity (version, codec id, streams and split mode, fingerprint; not sent again), the
header and the body, so a frame checked under another session fails like a corrupted one. The fingerprint is a hash of the checkpoint (weights,
latent model, view order), so "another checkpoint" and "another view order" are both another
session.

*What the CRC-8 misses.* It detects every error of odd weight (every single flipped bit), every
burst of up to 8 bits (every single garbled byte) and every two flipped bits less than 127 bits
apart; any other error passes it with probability about 2**-8. Measured on the shipped NDPCA
codec's lean frames (60 frames of 6-511 bytes, 20,000 random corruptions per kind, seed 2026:
``python tests/codecs/test_frame_corruption.py 20000``): no single bit or byte passes; of 2-8
garbled bytes 0.38% pass the CRC-8, of 3-16 flipped bits 0.37% (1/256 = 0.39%), of two far-apart
bits 0.32%. The decoder's own checks (a header byte naming no rate, a range-coder body not ending
where the frame does) refuse most of those, leaving 0.065%, 0.025% and 0.010% that decode to
other values without an error (27 of 120,000 over six kinds of corruption, 0.023%).
The simulated link never corrupts bytes; a real link without a check of its own (a raw radio or
serial link) can add an end-to-end CRC-32: ``payload.to_bytes(check="crc32")`` appends 4 bytes
(:data:`CHECK_BITS`, outside :attr:`Payload.nbits`: compress at ``budget_bits - 32`` when the link
carries them) and ``Payload.from_bytes(data, session=..., check="crc32")`` verifies and removes
them; on the same corpus none of the 120,000 corruptions passes it. It is off by default, so the
default wire bytes do not change. A lean :class:`Payload` holds its body as its single element of ``streams`` and each
codec stream's share of the body bits in :attr:`Payload.stream_bits` (the sender's measure of
each stream's ideal code length, scaled to the body).

:class:`~bwgym.envs.bandwidth.BandwidthLimited` charges the session header to the link at the
first step of every episode (and sends it again until a transmission carrying it is not lost);
``info["session_bits"]`` reports it. A receiver without the session, or with another one, raises
:class:`PayloadError` naming the mismatch; it never decodes such a frame.

A payload with no streams is *empty*: it serialises to ``b""`` and costs 0 bits (nothing is sent,
and the receiver holds its last frame). Codec ids are the fixed wire ids of :mod:`bwgym.codecs.core.registry`,
never dict order, so streams written by one version decode in the next.
"""

from __future__ import annotations

import abc
import binascii
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bwgym.codecs.core.registry import codec_wire_id, codec_wire_name

__all__ = [
    "CHECK_BITS",
    "FRAME_OVERHEAD_BITS",
    "Allocation",
    "Codec",
    "Payload",
    "PayloadError",
    "Session",
    "ViewSet",
    "ViewSpec",
    "crc8",
    "split_budget",
    "view_shapes",
]

MAGIC = b"BW"
FORMAT_VERSION = 1
#: Magic and version of the session header that precedes lean frames.
SESSION_MAGIC = b"BS"
LEAN_VERSION = 2
#: Bytes of a session header: magic 2, version, codec id, streams/split, fingerprint 4, crc16 2.
SESSION_BYTES = 2 + 1 + 1 + 1 + 4 + 2
#: Per-step overhead of a lean frame: the header byte and the CRC-8 byte.
FRAME_OVERHEAD_BITS = 16
#: Optional end-to-end checks a payload's bytes can carry for links without a check of their own
#: (``Payload.to_bytes(check=...)`` / ``Payload.from_bytes(..., check=...)``): name -> bits the
#: trailer adds to every non-empty payload. Off by default: the default wire bytes never change.
CHECK_BITS: Mapping[str, int] = {"crc32": 32}
#: One step's views, name -> array: what :meth:`Codec.compress` codes and :meth:`Codec.decompress` gives.
ViewSet = Mapping[str, np.ndarray]
#: A requested split of the budget over the views (name -> share), or None for the codec's own.
Allocation = Mapping[str, float] | None


class PayloadError(ValueError):
    """Bytes that are not a valid payload: truncated, bit-flipped, or of another codec."""


def _put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError(f"varint must be >= 0, got {value}")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _get_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise PayloadError("payload truncated inside a length field")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise PayloadError("payload length field is longer than 9 bytes (corrupt)")


def _crc8_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
        table.append(crc)
    return tuple(table)


_CRC8 = _crc8_table()


def crc8(data: bytes, crc: int = 0) -> int:
    """CRC-8 with polynomial ``x^8 + x^2 + x + 1`` (0x07), continuing from ``crc``.

    The polynomial has the factor ``x + 1``, so every error of odd weight (every single-bit error)
    is detected, every burst of up to 8 bits, and every double-bit error less than 127 bits apart.
    """
    table = _CRC8
    for byte in data:
        crc = table[crc ^ byte]
    return crc


def _check_name(check: str | None) -> None:
    if check is not None and check not in CHECK_BITS:
        raise ValueError(f"unknown payload check {check!r}; expected None or one of {sorted(CHECK_BITS)}")


def _crc32_start(session: Session | None) -> int:
    # A lean frame's CRC-32 starts from the session identity, as its CRC-8 does, so a frame checked
    # under another session fails like a corrupted one (container v1 names its codec in its bytes).
    return 0 if session is None else zlib.crc32(session.to_bytes()[2:-2])


def _add_check(wire: bytes, check: str, session: Session | None) -> bytes:
    """``wire`` with the ``check`` trailer (big-endian CRC-32); an empty payload stays empty."""
    _check_name(check)
    if not wire:
        return wire  # nothing is sent, so there is nothing to protect (and it costs 0 bits)
    return wire + zlib.crc32(wire, _crc32_start(session)).to_bytes(4, "big")


def _strip_check(data: bytes, check: str, session: Session | None) -> bytes:
    """``data`` without its ``check`` trailer; raise :class:`PayloadError` when the trailer disagrees."""
    _check_name(check)
    if not data:
        return data
    if len(data) < 4:
        raise PayloadError(
            f"payload of {len(data)} byte(s) is shorter than its 4-byte {check} check (truncated)"
        )
    if zlib.crc32(data[:-4], _crc32_start(session)) != int.from_bytes(data[-4:], "big"):
        raise PayloadError(
            f"{check} check mismatch: corrupted or truncated in transit"
            + (f", or written under another session than ({session.describe()})" if session else "")
        )
    return data[:-4]


@dataclass(frozen=True)
class Session:
    """What sender and receiver of a lean-frame codec agree once per episode.

    Attributes:
        codec: the codec's wire name.
        fingerprint: 4 bytes identifying the checkpoint (weights, latent model, view order).
        n_streams: the codec's streams (views, or one joint stream).
        split: 0 when the codec splits the budget over streams itself, 1 when the frames carry
            an explicit split (an allocator's); the per-step header is read accordingly.
    """

    codec: str
    fingerprint: bytes
    n_streams: int
    split: int = 0

    def __post_init__(self) -> None:
        codec_wire_id(self.codec)
        if len(self.fingerprint) != 4:
            raise ValueError(f"a session fingerprint has 4 bytes, got {len(self.fingerprint)}")
        if not 1 <= self.n_streams <= 127 or self.split not in (0, 1):
            raise ValueError(
                f"session needs 1..127 streams and split 0 or 1, got {self.n_streams}, {self.split}"
            )

    def to_bytes(self) -> bytes:
        """The session header's wire bytes (:data:`SESSION_BYTES` of them)."""
        out = bytearray(SESSION_MAGIC)
        out += bytes((LEAN_VERSION, codec_wire_id(self.codec), self.n_streams << 1 | self.split))
        out += self.fingerprint
        out += binascii.crc_hqx(bytes(out), 0xFFFF).to_bytes(2, "big")
        return bytes(out)

    @property
    def nbits(self) -> int:
        """Bits the session header costs on the link."""
        return 8 * SESSION_BYTES

    @property
    def crc_state(self) -> int:
        """CRC-8 state after the session's identity: the start value of every frame's check.

        The identity is the header's version, codec id, streams and split mode, and fingerprint.
        """
        return crc8(self.to_bytes()[2:-2])

    def describe(self) -> str:
        """One line naming the codec, the checkpoint fingerprint, the streams and the split."""
        split = "explicit split" if self.split else "codec split"
        return f"codec {self.codec!r}, checkpoint {self.fingerprint.hex()}, {self.n_streams} streams, {split}"

    @classmethod
    def from_bytes(cls, data: bytes) -> Session:
        """Parse a session header; raise :class:`PayloadError` when it is not a valid one."""
        data = bytes(data)
        if len(data) != SESSION_BYTES:
            raise PayloadError(f"session header of {len(data)} bytes, expected {SESSION_BYTES} (truncated)")
        if data[:2] != SESSION_MAGIC:
            raise PayloadError(f"session header does not start with {SESSION_MAGIC!r}: not a bwgym session")
        if binascii.crc_hqx(data[:-2], 0xFFFF) != int.from_bytes(data[-2:], "big"):
            raise PayloadError("session header checksum mismatch: corrupted in transit")
        if data[2] != LEAN_VERSION:
            raise PayloadError(f"session format version {data[2]}, this bwgym reads version {LEAN_VERSION}")
        name = codec_wire_name(data[3])
        if name is None:
            raise PayloadError(f"unknown codec id {data[3]} in session header")
        return cls(name, data[5:9], data[4] >> 1, data[4] & 1)

    def check(self, expected: Session) -> None:
        """Raise :class:`PayloadError` naming both sessions when this is not ``expected``."""
        if self != expected:
            raise PayloadError(
                f"session mismatch: the payload was written under ({self.describe()}), this receiver "
                f"decodes ({expected.describe()}); load the same checkpoint at both ends"
            )


@dataclass(frozen=True)
class Payload:
    """What one step of one sender puts on the link: one byte stream per view or channel.

    Attributes:
        codec: the codec's wire name (registered in :mod:`bwgym.codecs.core.registry`).
        streams: container v1: one ``bytes`` per view or channel, in the codec's fixed order
            (``b""`` for a view that was not sent this step). Lean frame: one element, the body
            (one range-coder stream of every codec stream's symbols).
        meta: codec-specific header bytes (container v1: any length; lean frame: the one header
            byte).
        session: the :class:`Session` of a lean frame (None: container v1).
        shares: lean frame only: bits of the body attributed to each codec stream (summing to the
            body's bits); empty for a frame parsed from bytes, whose split only the codec knows.
    """

    codec: str
    streams: tuple[bytes, ...] = ()
    meta: bytes = b""
    session: Session | None = None
    shares: tuple[int, ...] = ()
    _wire: bytes = field(default=b"", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codec_wire_id(self.codec)  # raises ValueError naming the registered codecs
        if len(self.streams) > 255:
            raise ValueError(f"a payload holds at most 255 streams, got {len(self.streams)}")
        object.__setattr__(self, "streams", tuple(bytes(s) for s in self.streams))
        object.__setattr__(self, "meta", bytes(self.meta))
        object.__setattr__(self, "shares", tuple(int(b) for b in self.shares))
        if self.session is not None:
            if self.session.codec != self.codec:
                raise ValueError(f"payload of codec {self.codec!r} under a session of {self.session.codec!r}")
            if self.streams and (len(self.streams) != 1 or len(self.meta) != 1):
                raise ValueError("a lean frame holds one body stream and a one-byte header")
            if self.shares and sum(self.shares) != 8 * len(self.streams[0]):
                raise ValueError(f"stream shares {self.shares} do not sum to the body's bits")
        object.__setattr__(self, "_wire", self._serialise())

    @classmethod
    def empty(cls, codec: str, session: Session | None = None) -> Payload:
        """The payload that sends nothing (0 bits)."""
        return cls(codec, session=session)

    @property
    def is_lean(self) -> bool:
        """True for a lean frame (sent under a :class:`Session`)."""
        return self.session is not None

    @property
    def is_empty(self) -> bool:
        """True when nothing is sent."""
        return not self.streams

    def _serialise(self) -> bytes:
        if not self.streams:
            return b""
        if self.session is not None:
            frame = self.meta + self.streams[0]
            return frame + bytes((crc8(frame, self.session.crc_state),))
        out = bytearray(MAGIC)
        out += bytes((FORMAT_VERSION, codec_wire_id(self.codec), len(self.streams)))
        _put_varint(out, len(self.meta))
        out += self.meta
        for stream in self.streams:
            _put_varint(out, len(stream))
            out += stream
        out += binascii.crc_hqx(bytes(out), 0xFFFF).to_bytes(2, "big")
        return bytes(out)

    def to_bytes(self, check: str | None = None) -> bytes:
        """The exact bytes the link carries.

        Args:
            check: None (the default wire format, :attr:`nbits` of it) or a name of
                :data:`CHECK_BITS`: ``"crc32"`` appends a CRC-32 of the bytes (for lean frames
                continuing from the session identity) for links that have no check of their own.
                The trailer adds ``CHECK_BITS[check]`` bits to every non-empty payload, outside
                :attr:`nbits`: compress at ``budget_bits - CHECK_BITS[check]`` when the link
                carries it. The receiver passes the same ``check`` to :meth:`from_bytes`.
        """
        if check is None:
            return self._wire
        return _add_check(self._wire, check, self.session)

    @property
    def nbytes(self) -> int:
        """Size on the wire, headers and checksum included."""
        return len(self._wire)

    @property
    def nbits(self) -> int:
        """Size on the wire in bits (what the link budget is charged)."""
        return 8 * len(self._wire)

    @property
    def stream_bits(self) -> tuple[int, ...]:
        """Bits of each stream's body, without headers and checks.

        Container v1: one entry per stream. Lean frame: each codec stream's share of the body
        (:attr:`shares`), or the whole body as one entry for a frame parsed from bytes.
        """
        if self.session is not None and self.streams:
            return self.shares or (8 * len(self.streams[0]),)
        return tuple(8 * len(s) for s in self.streams)

    @property
    def overhead_bits(self) -> int:
        """Bits on the wire that are not stream bodies (headers, length fields, checks)."""
        return self.nbits - sum(8 * len(s) for s in self.streams)

    @classmethod
    def from_bytes(
        cls, data: bytes, codec: str | None = None, session: Session | None = None, check: str | None = None
    ) -> Payload:
        """Parse wire bytes; raise :class:`PayloadError` when they are not a valid payload.

        Args:
            data: the bytes as received.
            codec: when given, the codec the receiver expects; a payload of another codec is an error.
            session: the session header the receiver got at the start of the episode; required for
                the lean frames of latent codecs (container v1 without it).
            check: the check the sender appended (``to_bytes(check=...)``); verified and removed
                before the frame is parsed.
        """
        data = bytes(data)
        if check is not None:
            data = _strip_check(data, check, session)
        if session is not None:
            return cls._from_lean(data, codec, session)
        if not data:
            if codec is None:
                raise PayloadError("empty bytes: pass codec= to parse an empty payload")
            return cls.empty(codec)
        if codec is not None and _uses_sessions(codec):
            raise PayloadError(
                f"codec {codec!r} sends lean frames, and no session header was received for this "
                "payload: the receiver needs the session header sent at the start of the episode "
                "(Payload.from_bytes(data, session=...))"
            )
        if len(data) < 8:
            raise PayloadError(f"payload of {len(data)} bytes is shorter than the 8-byte minimum (truncated)")
        if data[:2] != MAGIC:
            raise PayloadError(
                f"payload does not start with {MAGIC!r} (got {data[:2]!r}): not a container-v1 payload "
                "(a lean frame needs the session header it was sent under: no session was received)"
            )
        if binascii.crc_hqx(data[:-2], 0xFFFF) != int.from_bytes(data[-2:], "big"):
            raise PayloadError("payload checksum mismatch: the bytes were truncated or corrupted in transit")
        version, codec_id, n_streams = data[2], data[3], data[4]
        if version != FORMAT_VERSION:
            raise PayloadError(f"payload format version {version}, this bwgym reads version {FORMAT_VERSION}")
        name = codec_wire_name(codec_id)
        if name is None:
            raise PayloadError(f"unknown codec id {codec_id} in payload")
        if codec is not None and name != codec:
            raise PayloadError(f"payload was written by codec {name!r}, expected {codec!r}")
        body = data[:-2]
        meta_len, pos = _get_varint(body, 5)
        meta = body[pos : pos + meta_len]
        pos += meta_len
        streams = []
        for _ in range(n_streams):
            n, pos = _get_varint(body, pos)
            if pos + n > len(body):
                raise PayloadError("payload truncated inside a stream")
            streams.append(body[pos : pos + n])
            pos += n
        if pos != len(body) or len(meta) != meta_len:
            raise PayloadError(f"payload has {len(body) - pos} unexpected trailing bytes")
        if not streams:
            raise PayloadError("a non-empty payload must hold at least one stream")
        # The bytes were just verified: keep them as the wire form instead of serialising again.
        payload = object.__new__(cls)
        fields = {"codec": name, "streams": tuple(streams), "meta": meta, "session": None, "shares": ()}
        for key, value in (*fields.items(), ("_wire", data)):
            object.__setattr__(payload, key, value)
        return payload

    @classmethod
    def _from_lean(cls, data: bytes, codec: str | None, session: Session) -> Payload:
        if codec is not None and codec != session.codec:
            raise PayloadError(
                f"session mismatch: the receiver's session is of codec {session.codec!r}, expected {codec!r}"
            )
        if not data:
            return cls.empty(session.codec, session)
        if len(data) < FRAME_OVERHEAD_BITS // 8:
            raise PayloadError(
                f"lean frame of {len(data)} byte(s) is shorter than its 2-byte minimum (truncated)"
            )
        if crc8(data[:-1], session.crc_state) != data[-1]:
            raise PayloadError(
                "lean frame checksum mismatch: corrupted or truncated in transit, or written under "
                f"another session than this receiver's ({session.describe()})"
            )
        payload = object.__new__(cls)
        fields = {"codec": session.codec, "streams": (data[1:-1],), "meta": data[:1], "session": session}
        for key, value in (*fields.items(), ("shares", ()), ("_wire", data)):
            object.__setattr__(payload, key, value)
        return payload


def _uses_sessions(codec: str) -> bool:
    """True when the registered class writing wire format ``codec`` sends lean frames."""
    from bwgym.codecs.core.registry import codec_entry

    try:
        return bool(getattr(codec_entry(codec).cls, "uses_sessions", False))
    except ValueError:
        return False


@dataclass(frozen=True)
class ViewSpec:
    """Name, shape and dtype of one view a codec accepts."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "uint8"


class Codec(abc.ABC):
    """Base class of every codec: compress views under a bit budget, decompress payloads.

    Subclasses set :attr:`name` (their wire name in :mod:`bwgym.codecs.core.registry`) and
    :attr:`views`, implement :meth:`compress` and :meth:`decompress`, and a way to be built:
    :meth:`from_views` (codecs without weights) or ``from_checkpoint(ckpt, **kwargs)`` (learned
    codecs, which also set :attr:`env_id` and override :meth:`check_spec` when they need more).
    """

    name: ClassVar[str]
    views: tuple[ViewSpec, ...]
    #: The env the codec was trained for (None: any env with matching views).
    env_id: str | None = None
    #: True for codecs that send lean frames under a :class:`Session` (the latent codecs).
    uses_sessions: ClassVar[bool] = False
    #: True when nothing of one call's compress or decompress is read after the next (no
    #: prediction from earlier frames, no per-call outputs for an agent): one instance can then
    #: serve many envs at once (:class:`~bwgym.envs.bandwidth.VectorBandwidthLimited`).
    stateless: ClassVar[bool] = False

    @property
    def session(self) -> Session | None:
        """The session header of this codec's lean frames (None: container v1, no session)."""
        return None

    def session_for(self, allocation: Mapping[str, float] | None = None) -> Session | None:
        """The session a payload compressed with ``allocation`` is sent under (None: container v1)."""
        return self.session

    def acknowledge(self, delivered: bool) -> None:  # noqa: B027  (optional hook, a no-op by default)
        """The link's acknowledgement of the last non-empty payload (a stateless codec ignores it).

        Codecs that predict from earlier frames (``predictive``) resynchronise after a loss.
        """

    @classmethod
    def from_views(cls, views: Sequence[ViewSpec], **kwargs: Any) -> Codec:
        """Build the codec for ``views`` (codecs without weights)."""
        raise TypeError(f"{cls.__name__} is built from a checkpoint, not from views alone")

    def check_spec(self, env_id: str | None = None, views: Sequence[ViewSpec] | None = None) -> None:
        """Raise ``ValueError`` naming both specs when the codec was made for another env or views.

        Args:
            env_id: the env the caller runs (None: not compared; codecs without an env id accept any).
            views: the views the caller sends (None: not compared).
        """
        env_bad = env_id is not None and self.env_id is not None and env_id != self.env_id
        views_bad = views is not None and view_shapes(views) != view_shapes(self.views)
        if env_bad or views_bad:
            have = f"env {self.env_id!r} with views {view_shapes(self.views)}"
            want = f"env {env_id!r} with views {view_shapes(views) if views is not None else 'any'}"
            raise ValueError(
                f"codec {self.name!r} was made for {have}, but {want} was requested; "
                "train one for this env (`bwgym train codec`) or load the matching checkpoint"
            )

    @property
    def view_names(self) -> tuple[str, ...]:
        """The view names in the codec's stream order."""
        return tuple(v.name for v in self.views)

    def compress(
        self,
        views: Mapping[str, np.ndarray],
        budget_bits: int,
        allocation: Mapping[str, float] | None = None,
    ) -> Payload:
        """Encode ``views`` into a payload of at most ``budget_bits`` bits (headers included).

        Checks the views against the codec's spec and the budget, then calls the codec's
        :meth:`_compress`; every codec thus refuses bad input the same way.

        Args:
            views: one array per view name of :attr:`views`.
            budget_bits: the bits the link carries this step; the payload never exceeds it, and is
                empty when even the lowest rate does not fit.
            allocation: optional share of the budget per view (fractions summing to 1) from an
                allocation policy; codecs that allocate internally (DPCA) may ignore it.

        Raises:
            ValueError: views of another name, shape or dtype, or a negative budget.
        """
        budget_bits = self._check_input(views, budget_bits)
        return self._check_output(self._compress(views, budget_bits, allocation), budget_bits)

    def _check_input(self, views: Mapping[str, np.ndarray], budget_bits: Any) -> int:
        """The views checked against the codec's spec; the budget as an ``int >= 0``."""
        self.check_views(views)
        if not isinstance(budget_bits, (int, np.integer)) and not float(budget_bits).is_integer():
            raise ValueError(f"budget_bits must be a whole number of bits, got {budget_bits!r}")
        budget_bits = int(budget_bits)
        if budget_bits < 0:
            raise ValueError(f"budget_bits must be >= 0, got {budget_bits}")
        return budget_bits

    def _check_output(self, payload: Payload, budget_bits: int) -> Payload:
        if payload.nbits > budget_bits:  # a broken codec, not bad input: never put it on the link
            raise RuntimeError(
                f"{type(self).__name__} wrote {payload.nbits} bits for a {budget_bits}-bit budget"
            )
        return payload

    @abc.abstractmethod
    def _compress(
        self, views: Mapping[str, np.ndarray], budget_bits: int, allocation: Mapping[str, float] | None
    ) -> Payload:
        """:meth:`compress` after its checks (``budget_bits`` is an ``int >= 0``)."""

    @abc.abstractmethod
    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        """Decode a payload; views that were not sent are absent from the result."""

    def compress_batch(
        self,
        views: Sequence[ViewSet],
        budget_bits: Sequence[int],
        allocations: Sequence[Allocation] | None = None,
    ) -> list[Payload]:
        """Compress N view sets (one per env) in one call: the bytes of N :meth:`compress` calls.

        This default makes those N calls; a codec with a batched path (one network pass for all
        N, :class:`~bwgym.codecs.image.neural.NeuralLatentCodec` on CUDA) overrides it.
        """
        allocations = _batch_allocations(views, budget_bits, allocations)
        return [self.compress(v, b, a) for v, b, a in zip(views, budget_bits, allocations, strict=True)]

    def compress_splits(
        self, views: ViewSet, budget_bits: int, allocations: Sequence[Allocation]
    ) -> list[Payload]:
        """Compress one view set under each of several allocations: the bytes of one call each.

        This default makes those calls; the latent codecs analyse the views once for all of them
        (an oracle scoring candidate splits).
        """
        return [self.compress(views, budget_bits, a) for a in allocations]

    def decompress_batch(self, payloads: Sequence[Payload]) -> list[dict[str, np.ndarray]]:
        """Decode N payloads in one call: what N :meth:`decompress` calls give (this default makes them)."""
        return [self.decompress(p) for p in payloads]

    def check_views(self, views: Mapping[str, np.ndarray]) -> None:
        """Raise ``ValueError`` naming the expected spec when ``views`` does not match it."""
        expected = {v.name: v for v in self.views}
        if set(views) != set(expected):
            raise ValueError(f"{type(self).__name__} expects views {sorted(expected)}, got {sorted(views)}")
        for name, spec in expected.items():
            arr = np.asarray(views[name])
            if tuple(arr.shape) != spec.shape or arr.dtype != np.dtype(spec.dtype):
                raise ValueError(
                    f"view {name!r}: expected {spec.dtype} array of shape {spec.shape}, "
                    f"got {arr.dtype} of shape {tuple(arr.shape)}"
                )


def _batch_allocations(
    views: Sequence[Any], budget_bits: Sequence[int], allocations: Sequence[Any] | None
) -> list[Any]:
    """``allocations`` (None: one None per view set), after checking one budget per view set."""
    if len(budget_bits) != len(views) or (allocations is not None and len(allocations) != len(views)):
        raise ValueError(
            f"compress_batch needs one budget and one allocation (or none) per view set: got {len(views)} "
            f"view sets, {len(budget_bits)} budgets, "
            f"{'no' if allocations is None else len(allocations)} allocations"
        )
    return [None] * len(views) if allocations is None else list(allocations)


def split_budget(
    budget_bits: int, names: Sequence[str], allocation: Mapping[str, float] | None
) -> dict[str, int]:
    """Split ``budget_bits`` over ``names`` by ``allocation`` (uniform when None), in whole bits."""
    if allocation is None:
        weights = np.ones(len(names))
    else:
        missing = set(names) - set(allocation)
        if missing:
            raise ValueError(f"allocation lacks views {sorted(missing)}; expected keys {list(names)}")
        weights = np.array([max(float(allocation[n]), 0.0) for n in names])
    total = weights.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(
            f"allocation weights must be finite and sum to > 0, got {dict(zip(names, weights, strict=False))}"
        )
    shares = np.floor(budget_bits * weights / total).astype(int)
    return dict(zip(names, (int(s) for s in shares), strict=False))


def view_shapes(views: Any) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` from ViewSpecs, a ``{name: shape}`` mapping or a gymnasium ``Dict`` space."""
    if hasattr(views, "spaces"):
        views = views.spaces
    if isinstance(views, Mapping):
        return {str(n): tuple(getattr(s, "shape", s)) for n, s in views.items()}
    return {v.name: tuple(v.shape) for v in views}
