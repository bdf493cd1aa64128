"""The codec protocol and the byte container every codec emits.

A codec turns a dict of views (``{view name: array}``) into a :class:`Payload` whose size in bits,
headers included, is what the link carries, and turns a payload back into views::

    payload = codec.compress(views, budget_bits=2_000)
    assert payload.nbits <= 2_000
    decoded = codec.decompress(Payload.from_bytes(payload.to_bytes()))

Container format (version 1), all integers unsigned, varints are LEB128::

    magic "BW" | version u8 | codec id u8 | n_streams u8 | len(meta) varint | meta
    | n_streams x (len varint | bytes) | crc16 (CCITT) of everything before it, big-endian

A payload with no streams is *empty*: it serialises to ``b""`` and costs 0 bits (nothing is sent,
and the receiver holds its last frame). Codec ids are the fixed wire ids of :mod:`bwgym.codecs.registry`,
never dict order, so streams written by one version decode in the next.
"""

from __future__ import annotations

import abc
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bwgym.codecs.registry import codec_wire_id, codec_wire_name

__all__ = ["Codec", "Payload", "PayloadError", "ViewSpec", "split_budget", "view_shapes"]

MAGIC = b"BW"
FORMAT_VERSION = 1


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


@dataclass(frozen=True)
class Payload:
    """What one step of one sender puts on the link: one byte stream per view or channel.

    Attributes:
        codec: the codec's wire name (registered in :mod:`bwgym.codecs.registry`).
        streams: one ``bytes`` per view or channel, in the codec's fixed order; ``b""`` for a view
            that was not sent this step.
        meta: codec-specific header bytes (rate index, allocation per view, ...).
    """

    codec: str
    streams: tuple[bytes, ...] = ()
    meta: bytes = b""
    _wire: bytes = field(default=b"", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        codec_wire_id(self.codec)  # raises ValueError naming the registered codecs
        if len(self.streams) > 255:
            raise ValueError(f"a payload holds at most 255 streams, got {len(self.streams)}")
        object.__setattr__(self, "streams", tuple(bytes(s) for s in self.streams))
        object.__setattr__(self, "_wire", self._serialise())

    @classmethod
    def empty(cls, codec: str) -> Payload:
        """The payload that sends nothing (0 bits)."""
        return cls(codec)

    @property
    def is_empty(self) -> bool:
        """True when nothing is sent."""
        return not self.streams

    def _serialise(self) -> bytes:
        if not self.streams:
            return b""
        out = bytearray(MAGIC)
        out += bytes((FORMAT_VERSION, codec_wire_id(self.codec), len(self.streams)))
        _put_varint(out, len(self.meta))
        out += self.meta
        for stream in self.streams:
            _put_varint(out, len(stream))
            out += stream
        out += binascii.crc_hqx(bytes(out), 0xFFFF).to_bytes(2, "big")
        return bytes(out)

    def to_bytes(self) -> bytes:
        """The exact bytes the link carries."""
        return self._wire

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
        """Bits of each stream's body, without the container's headers."""
        return tuple(8 * len(s) for s in self.streams)

    @classmethod
    def from_bytes(cls, data: bytes, codec: str | None = None) -> Payload:
        """Parse wire bytes; raise :class:`PayloadError` when they are not a valid payload.

        Args:
            data: the bytes as received.
            codec: when given, the codec the receiver expects; a payload of another codec is an error.
        """
        data = bytes(data)
        if not data:
            if codec is None:
                raise PayloadError("empty bytes: pass codec= to parse an empty payload")
            return cls.empty(codec)
        if len(data) < 8:
            raise PayloadError(f"payload of {len(data)} bytes is shorter than the 8-byte minimum (truncated)")
        if data[:2] != MAGIC:
            raise PayloadError(
                f"payload does not start with {MAGIC!r} (got {data[:2]!r}): not a bwgym payload"
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
        for key, value in (("codec", name), ("streams", tuple(streams)), ("meta", meta), ("_wire", data)):
            object.__setattr__(payload, key, value)
        return payload


@dataclass(frozen=True)
class ViewSpec:
    """Name, shape and dtype of one view a codec accepts."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "uint8"


class Codec(abc.ABC):
    """Base class of every codec: compress views under a bit budget, decompress payloads.

    Subclasses set :attr:`name` (their wire name in :mod:`bwgym.codecs.registry`) and
    :attr:`views`, implement :meth:`compress` and :meth:`decompress`, and a way to be built:
    :meth:`from_views` (codecs without weights) or ``from_checkpoint(ckpt, **kwargs)`` (learned
    codecs, which also set :attr:`env_id` and override :meth:`check_spec` when they need more).
    """

    name: ClassVar[str]
    views: tuple[ViewSpec, ...]
    #: The env the codec was trained for (None: any env with matching views).
    env_id: str | None = None

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

    @abc.abstractmethod
    def compress(
        self,
        views: Mapping[str, np.ndarray],
        budget_bits: int,
        allocation: Mapping[str, float] | None = None,
    ) -> Payload:
        """Encode ``views`` into a payload of at most ``budget_bits`` bits (headers included).

        Args:
            views: one array per view name of :attr:`views`.
            budget_bits: the bits the link carries this step; the payload never exceeds it, and is
                empty when even the lowest rate does not fit.
            allocation: optional share of the budget per view (fractions summing to 1) from an
                allocation policy; codecs that allocate internally (DPCA) may ignore it.
        """

    @abc.abstractmethod
    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        """Decode a payload; views that were not sent are absent from the result."""

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
