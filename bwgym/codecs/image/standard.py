"""Codecs that need no training: raw bytes, JPEG and PNG, one stream per view.

Each codec splits the step's bit budget over its views (by the ``allocation`` an allocation
policy hands it, uniform when there is none) and sends every view that fits its share; a view
that does not fit is not sent (its stream is ``b""``) and the receiver holds its last frame::

    codec = JpegCodec.from_observation_space(env.observation_space)
    payload = codec.compress(obs, budget_bits=20_000)
    assert payload.nbits <= 20_000              # container headers and checksum included
    shown = codec.decompress(Payload.from_bytes(payload.to_bytes(), codec="jpeg"))

* :class:`RawCodec` - the array's bytes, sent only when they fit whole;
* :class:`JpegCodec` - per view, the highest JPEG quality whose bytes fit (bracketed search);
* :class:`PngCodec` - lossless PNG, sent only when it fits.

Budget accounting. The container costs 8 bytes whatever it holds (magic, version, codec id,
stream count, an empty meta field and the checksum) plus a length prefix per stream, one byte for
a stream that is not sent. These :func:`header_bits` are taken off the budget before it is split
over the views; a view's stream is then charged its bytes *and* the extra bytes of its length
prefix, so ``payload.nbits <= budget_bits`` holds by construction (and is checked again). When no
view fits, the payload is empty and costs 0 bits.

Which views. A codec sends exactly the views it was built with. ``from_observation_space`` picks
the image views of a Dict space (``uint8`` Boxes of shape ``(H, W, 1)`` or ``(H, W, 3)``) and
leaves vector views such as ``proprio`` out; :class:`~bwgym.envs.bandwidth.BandwidthLimited`
forwards such views to the agent unchanged and does not charge them. To charge a vector view, build
a :class:`RawCodec` whose views include its :class:`~bwgym.codecs.core.protocol.ViewSpec` (any dtype).
"""

from __future__ import annotations

import abc
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from bwgym.codecs.core.protocol import Codec, Payload, PayloadError, ViewSpec, split_budget
from bwgym.codecs.core.registry import register_codec

__all__ = ["ImageCodec", "JpegCodec", "PngCodec", "RawCodec", "header_bits", "image_view_specs"]

#: Bytes of an empty container whatever its streams: magic (2), version, codec id and stream
#: count (3), the meta length (1, meta empty) and the CRC (2).
_FIXED_HEADER_BYTES = 8


def _varint_len(n: int) -> int:
    """Bytes of the LEB128 length prefix of an ``n``-byte stream."""
    length = 1
    while n >= 0x80:
        n >>= 7
        length += 1
    return length


def _stream_cost_bits(n: int) -> int:
    """Bits a stream of ``n`` bytes adds beyond the one-byte prefix :func:`header_bits` reserves."""
    return 8 * (n + _varint_len(n) - 1)


def header_bits(n_views: int) -> int:
    """Bits of the container around ``n_views`` streams when every length prefix is one byte.

    This is the part of the budget no view can use: the payload of an image codec is at most
    ``header_bits(n) + sum(share_i)`` bits, where each view's share pays for its bytes and for the
    extra bytes of its length prefix.

    Example:
        >>> header_bits(2)
        80
    """
    return 8 * (_FIXED_HEADER_BYTES + n_views)


def image_view_specs(space: Any) -> tuple[ViewSpec, ...]:
    """The :class:`ViewSpec` of every image view of a ``gymnasium.spaces.Dict``, in key order.

    An image view is a ``uint8`` Box of shape ``(H, W, C)`` with ``C`` in (1, 3). Other views
    (vectors such as ``proprio``) are left out.

    Raises:
        TypeError: ``space`` is not a Dict space.
        ValueError: the space has no image view.
    """
    from gymnasium import spaces

    if not isinstance(space, spaces.Dict):
        raise TypeError(f"expected a gymnasium.spaces.Dict observation space, got {type(space).__name__}")
    specs = tuple(
        ViewSpec(name, tuple(int(d) for d in sub.shape), "uint8")
        for name, sub in space.spaces.items()
        if isinstance(sub, spaces.Box) and _is_image_shape(sub.shape) and sub.dtype == np.uint8
    )
    if not specs:
        raise ValueError(
            f"expected at least one uint8 (H, W, 1|3) Box view in the observation space, got {space}"
        )
    return specs


def _is_image_shape(shape: Sequence[int]) -> bool:
    return len(shape) == 3 and shape[2] in (1, 3) and shape[0] > 0 and shape[1] > 0


class ImageCodec(Codec):
    """Shared machinery of the untrained codecs: budget split, container, per-view streams.

    Subclasses implement :meth:`encode_view` (the stream of one view under a share of the budget,
    ``b""`` when it does not fit) and :meth:`decode_view`.
    """

    #: Whether :meth:`__init__` accepts only image views (uint8, (H, W, 1|3)).
    images_only: ClassVar[bool] = True
    stateless: ClassVar[bool] = True

    def __init__(self, views: Sequence[ViewSpec]) -> None:
        views = tuple(views)
        for v in views:
            if not isinstance(v, ViewSpec):
                raise TypeError(f"expected ViewSpec views, got {type(v).__name__}: {v!r}")
        # Canonical form (tuple of ints, dtype name), so specs compare equal to array shapes.
        views = tuple(ViewSpec(v.name, tuple(int(d) for d in v.shape), np.dtype(v.dtype).name) for v in views)
        if not views:
            raise ValueError(f"{type(self).__name__} expects at least one ViewSpec, got none")
        if len(views) > 255:
            raise ValueError(f"{type(self).__name__} handles at most 255 views, got {len(views)}")
        names = [v.name for v in views]
        if len(set(names)) != len(names):
            raise ValueError(f"view names must be unique, got {names}")
        for v in views:
            if self.images_only and (not _is_image_shape(v.shape) or np.dtype(v.dtype) != np.uint8):
                raise ValueError(
                    f"{type(self).__name__} view {v.name!r}: expected uint8 of shape (H, W, 1|3), "
                    f"got {v.dtype} of shape {v.shape}"
                )
        self.views = views

    @classmethod
    def from_views(cls, views: Sequence[ViewSpec], **kwargs: Any) -> ImageCodec:
        """Build the codec for ``views`` (``kwargs`` go to the constructor)."""
        return cls(views, **kwargs)

    @classmethod
    def from_observation_space(cls, space: Any, **kwargs: Any) -> ImageCodec:
        """Build the codec for the image views of a Dict observation space (see :func:`image_view_specs`).

        Args:
            space: a ``gymnasium.spaces.Dict``.
            **kwargs: passed to the constructor (e.g. ``max_quality`` of :class:`JpegCodec`).
        """
        return cls(image_view_specs(space), **kwargs)

    def __repr__(self) -> str:
        views = ", ".join(f"{v.name}:{v.dtype}{list(v.shape)}" for v in self.views)
        return f"{type(self).__name__}({views})"

    # -- per-view hooks ----------------------------------------------------------------------------
    @abc.abstractmethod
    def encode_view(self, spec: ViewSpec, array: np.ndarray, share_bits: int) -> bytes:
        """The stream of one view whose cost (see module docs) fits ``share_bits``; ``b""`` if none."""

    @abc.abstractmethod
    def decode_view(self, spec: ViewSpec, stream: bytes) -> np.ndarray:
        """Decode one non-empty stream; raise :class:`PayloadError` when it is not valid."""

    # -- Codec API ---------------------------------------------------------------------------------
    def _compress(
        self, views: Mapping[str, np.ndarray], budget_bits: int, allocation: Mapping[str, float] | None
    ) -> Payload:
        """Encode every view that fits its share of ``budget_bits`` (see the module docs).

        Args:
            views: one array per view of :attr:`views` (names and shapes must match).
            budget_bits: bits the link carries this step; ``payload.nbits <= budget_bits`` always.
            allocation: fraction of the budget per view name (normalised here; uniform when None).

        Returns:
            The payload; empty (0 bits) when no view fits.

        Raises:
            ValueError: wrong view names, shapes or dtypes, a negative budget or a bad allocation.
        """
        names = self.view_names
        usable = budget_bits - header_bits(len(names))
        if usable <= 0:
            split_budget(0, names, allocation)  # still validate the allocation
            return Payload.empty(self.name)
        shares = split_budget(usable, names, allocation)
        streams = [
            self.encode_view(spec, np.asarray(views[spec.name]), shares[spec.name]) for spec in self.views
        ]
        payload = self._pack(streams)
        # By construction this never loops; it guards against a subclass that overshoots its share.
        while payload.nbits > budget_bits:
            largest = max(range(len(streams)), key=lambda i: len(streams[i]))
            streams[largest] = b""
            payload = self._pack(streams)
        return payload

    def _pack(self, streams: Sequence[bytes]) -> Payload:
        if not any(streams):
            return Payload.empty(self.name)
        return Payload(self.name, tuple(streams))

    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        """Decode the views that were sent; views not sent are absent.

        Raises:
            PayloadError: the payload is of another codec, has the wrong number of streams, or a
                stream does not decode to its view's shape.
        """
        if payload.codec != self.name:
            raise PayloadError(f"payload was written by codec {payload.codec!r}, expected {self.name!r}")
        if payload.is_empty:
            return {}
        if len(payload.streams) != len(self.views):
            raise PayloadError(
                f"{type(self).__name__} expects {len(self.views)} streams ({list(self.view_names)}), "
                f"got {len(payload.streams)}"
            )
        out: dict[str, np.ndarray] = {}
        for spec, stream in zip(self.views, payload.streams, strict=False):
            if stream:
                out[spec.name] = self.decode_view(spec, stream)
        return out


@register_codec("raw", wire_id=1, description="uncompressed bytes of each view, sent only whole")
class RawCodec(ImageCodec):
    """The uint8 (or any dtype) bytes of each view; a view is sent only when it fits whole.

    Views may have any shape and dtype (a float ``proprio`` vector is fine); bytes are C order,
    little-endian.

    Example:
        >>> import numpy as np
        >>> codec = RawCodec([ViewSpec("cam", (4, 4, 3))])
        >>> views = {"cam": np.arange(48, dtype=np.uint8).reshape(4, 4, 3)}
        >>> codec.compress(views, budget_bits=1_000).nbits   # 48 bytes + 9 of container
        456
        >>> codec.compress(views, budget_bits=455).is_empty  # does not fit: nothing is sent
        True

    Change logs:
     * v0.1.0 - Initially added.
    """

    name: ClassVar[str] = "raw"
    images_only: ClassVar[bool] = False

    def encode_view(self, spec: ViewSpec, array: np.ndarray, share_bits: int) -> bytes:
        """The view's bytes when they fit ``share_bits``, else ``b""``."""
        nbytes = int(np.prod(spec.shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
        if _stream_cost_bits(nbytes) > share_bits:
            return b""
        return np.ascontiguousarray(array, dtype=np.dtype(spec.dtype).newbyteorder("<")).tobytes()

    def decode_view(self, spec: ViewSpec, stream: bytes) -> np.ndarray:
        """The array back from its bytes."""
        dtype = np.dtype(spec.dtype).newbyteorder("<")
        expected = int(np.prod(spec.shape, dtype=np.int64)) * dtype.itemsize
        if len(stream) != expected:
            raise PayloadError(
                f"raw view {spec.name!r}: expected {expected} bytes for {spec.dtype}{spec.shape}, "
                f"got {len(stream)}"
            )
        return np.frombuffer(stream, dtype=dtype).astype(spec.dtype).reshape(spec.shape)


def _to_pil(array: np.ndarray) -> Any:
    from PIL import Image

    if array.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(array[:, :, 0]), mode="L")
    return Image.fromarray(np.ascontiguousarray(array), mode="RGB")


def _jpeg_bytes_pillow(img: Any, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


#: Per PIL mode: the encoder settings ``Image.save`` derives (``im.encoderconfig``), or None when
#: the direct encoder path does not reproduce ``Image.save`` byte for byte on this Pillow.
_JPEG_DIRECT: dict[str, tuple[Any, ...] | None] = {}


def _jpeg_bytes_direct(img: Any, config: tuple[Any, ...], quality: int) -> bytes:
    from PIL import Image

    # Pillow's own tile encoder loop (ImageFile._encode_tile) without the save() machinery around
    # it, which costs about as much as libjpeg itself on an 84x84 frame. quality leads the config.
    encoder = Image._getencoder(img.mode, "jpeg", (img.mode,), (int(quality), *config[1:]))
    try:
        encoder.setimage(img.im, (0, 0, *img.size))
        chunks = []
        while True:
            _, err, data = encoder.encode(1 << 16)
            chunks.append(data)
            if err:
                break
    finally:
        encoder.cleanup()
    if err < 0:
        raise OSError(f"JPEG encoder error {err}")
    return b"".join(chunks)


def _jpeg_bytes(img: Any, quality: int) -> bytes:
    """``img.save(format="JPEG", quality=quality)`` bytes, through a faster path when it is exact.

    The first call per mode checks the direct path against ``Image.save`` at three qualities and
    falls back to ``Image.save`` for good when they differ or the private API is missing.
    """
    mode = img.mode
    if mode not in _JPEG_DIRECT:
        config: tuple[Any, ...] | None = None
        try:
            probe = img.copy()
            reference = {q: _jpeg_bytes_pillow(probe, q) for q in (1, 50, 95)}
            candidate = tuple(probe.encoderconfig)
            if all(_jpeg_bytes_direct(img, candidate, q) == ref for q, ref in reference.items()):
                config = candidate
        except Exception:  # any Pillow without these internals: use the public path
            config = None
        _JPEG_DIRECT[mode] = config
    config = _JPEG_DIRECT[mode]
    if config is None:
        return _jpeg_bytes_pillow(img, quality)
    return _jpeg_bytes_direct(img, config, quality)


def _jpeg_frame_size(stream: bytes) -> tuple[int, int, int]:
    """(height, width, components) from the SOF header of a JPEG stream (walks the markers)."""
    if stream[:2] != b"\xff\xd8":
        raise ValueError("no JPEG start-of-image marker")
    pos, n = 2, len(stream)
    while pos + 4 <= n:
        if stream[pos] != 0xFF:
            raise ValueError(f"expected a marker at byte {pos}")
        marker = stream[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
            if pos + 10 > n:
                break
            height = int.from_bytes(stream[pos + 5 : pos + 7], "big")
            width = int.from_bytes(stream[pos + 7 : pos + 9], "big")
            return height, width, stream[pos + 9]
        pos += 2 + int.from_bytes(stream[pos + 2 : pos + 4], "big")
    raise ValueError("no JPEG frame header")


def _decode_jpeg(spec: ViewSpec, stream: bytes) -> np.ndarray:
    from PIL import Image

    h, w, c = spec.shape
    mode = "L" if c == 1 else "RGB"
    try:
        size = _jpeg_frame_size(stream)
        if size != (h, w, c):
            raise PayloadError(
                f"JPEG view {spec.name!r}: expected a {h}x{w} image with {c} components, "
                f"the stream holds {size[0]}x{size[1]} with {size[2]}"
            )
        # libjpeg straight into an image of the known size: no Python-side marker parsing.
        img = Image.frombytes(mode, (w, h), stream, "jpeg", mode, "")
        arr = np.asarray(img).copy()  # writable
    except PayloadError:
        raise
    except Exception as exc:  # Pillow raises ValueError, OSError, ... on bad streams
        raise PayloadError(f"JPEG view {spec.name!r}: stream does not decode ({exc})") from exc
    return arr.reshape(spec.shape)


def _from_pil_bytes(spec: ViewSpec, stream: bytes, fmt: str) -> np.ndarray:
    from PIL import Image

    mode = "L" if spec.shape[2] == 1 else "RGB"
    try:
        with Image.open(io.BytesIO(stream), formats=[fmt]) as img:
            img.load()
            arr = np.array(img if img.mode == mode else img.convert(mode))  # writable copy
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad streams
        raise PayloadError(f"{fmt} view {spec.name!r}: stream does not decode ({exc})") from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape != spec.shape:
        raise PayloadError(f"{fmt} view {spec.name!r}: expected shape {spec.shape}, decoded {arr.shape}")
    return arr


def _jpeg_x(quality: int) -> float:
    """Minus the log of libjpeg's quantiser scale at ``quality``; log(JPEG size) is near linear in it."""
    q = min(max(quality, 1), 100)
    scale = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    return -float(np.log(max(scale, 1.0)))


#: ``_JPEG_X[q]`` for q = 0..100 (index 0 is a copy of q = 1), non-decreasing.
_JPEG_X = np.array([_jpeg_x(max(q, 1)) for q in range(101)])
#: Typical d log(size) / dx of rendered frames above quality ~20 (measured on LocateLift views).
_JPEG_LOG_SLOPE = 0.3


@register_codec("jpeg", wire_id=2, description="JPEG per view at the highest quality that fits its share")
class JpegCodec(ImageCodec):
    """JPEG (Pillow) per view at the highest quality whose bytes fit the view's share.

    The quality is found by a guarded interpolation search over ``[min_quality, max_quality]``
    (JPEG size grows with quality, up to small wiggles at the lowest qualities); a view whose
    ``min_quality`` stream does not fit is not sent. Streams are baseline JFIF as Pillow writes
    them (4:2:0 chroma, standard Huffman tables), so each carries ~600 bytes of JPEG headers and an
    84x84 view needs about 6,000-8,000 bits even at quality 1 (``DESIGN.md``, "Bandwidth regimes").

    Args:
        views: the image views (uint8, ``(H, W, 1|3)``), in stream order.
        min_quality: lowest JPEG quality tried (1-95).
        max_quality: highest JPEG quality tried (``min_quality``-95).

    Example:
        >>> import numpy as np
        >>> from bwgym.codecs.core.protocol import Payload
        >>> codec = JpegCodec([ViewSpec("arm", (32, 32, 3)), ViewSpec("side", (32, 32, 3))])
        >>> rng = np.random.default_rng(0)
        >>> views = {k: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for k in ("arm", "side")}
        >>> payload = codec.compress(views, budget_bits=12_000)
        >>> payload.nbits <= 12_000
        True
        >>> sorted(codec.decompress(Payload.from_bytes(payload.to_bytes(), codec="jpeg")))
        ['arm', 'side']
        >>> codec.compress(views, budget_bits=2_000).is_empty   # below the lowest quality
        True

    Change logs:
     * v0.1.0 - Initially added.
    """

    name: ClassVar[str] = "jpeg"

    def __init__(self, views: Sequence[ViewSpec], min_quality: int = 1, max_quality: int = 95) -> None:
        super().__init__(views)
        for label, q in (("min_quality", min_quality), ("max_quality", max_quality)):
            if not isinstance(q, (int, np.integer)) or isinstance(q, bool):
                raise TypeError(f"{label} is expected to be an int, got {type(q).__name__}")
        if not 1 <= min_quality <= max_quality <= 95:
            raise ValueError(
                f"expected 1 <= min_quality <= max_quality <= 95, got min_quality={min_quality}, "
                f"max_quality={max_quality}"
            )
        self.min_quality = int(min_quality)
        self.max_quality = int(max_quality)

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, quality={self.min_quality}..{self.max_quality})"

    @staticmethod
    def encode_at(array: np.ndarray, quality: int) -> bytes:
        """The JPEG bytes of one ``(H, W, 1|3)`` uint8 image at ``quality``."""
        return _jpeg_bytes(_to_pil(array), quality)

    def fit(self, array: np.ndarray, share_bits: int) -> tuple[int | None, bytes]:
        """The highest quality whose stream fits ``share_bits``, and that stream.

        The cost of a stream is its bytes plus the extra bytes of its length prefix (module docs).
        The search returns a quality ``q`` that fits while ``q + 1`` does not (or ``max_quality``);
        as JPEG size grows with quality that is the highest fitting one, except where the size
        wiggles by a few bytes between neighbouring low qualities.

        Returns:
            ``(quality, stream)``, or ``(None, b"")`` when even ``min_quality`` does not fit.
        """
        img = _to_pil(array)
        cache: dict[int, bytes] = {}

        def cost(q: int) -> int:
            cache[q] = _jpeg_bytes(img, q)
            return _stream_cost_bits(len(cache[q]))

        lo, hi = self.min_quality, self.max_quality
        cost_hi = cost(hi)
        if cost_hi <= share_bits:  # the common case on a fat link: one encode
            return hi, cache[hi]
        if share_bits <= 0 or lo == hi:
            return None, b""
        # Search for the boundary with the invariant "hi does not fit" and, once cost_lo is known,
        # "lo fits". Each probe goes where log(cost) reaches the share on the line through the
        # bracket in x = -log(quantiser scale), where JPEG size is close to log-linear; before lo is
        # probed, a typical slope stands in for it. After two probes on the same side the next one
        # halves the bracket, so the worst case stays O(log range). About 5 encodes on average vs
        # 8-9 for plain bisection over 1..95.
        share_log = math.log(share_bits)
        cost_lo: int | None = None
        streak, last_fit = 0, None
        while hi - lo > 1:
            if streak >= 2:
                mid, streak = (lo + hi) // 2, 0
            else:
                x_hi = _JPEG_X[hi]
                if cost_lo is None:
                    target = x_hi - (math.log(cost_hi) - share_log) / _JPEG_LOG_SLOPE
                else:
                    log_lo, log_hi = math.log(cost_lo), math.log(cost_hi)
                    frac = (share_log - log_lo) / (log_hi - log_lo) if log_hi > log_lo else 0.5
                    target = _JPEG_X[lo] + frac * (x_hi - _JPEG_X[lo])
                guess = int(np.searchsorted(_JPEG_X, target, side="right")) - 1
                mid = min(max(guess, lo + 1), hi - 1)
            cost_mid = cost(mid)
            fits = cost_mid <= share_bits
            streak = streak + 1 if fits == last_fit else 1
            last_fit = fits
            if fits:
                lo, cost_lo = mid, cost_mid
            else:
                hi, cost_hi = mid, cost_mid
        if cost_lo is None and cost(lo) > share_bits:  # lo is min_quality, never probed
            return None, b""
        return lo, cache[lo]

    def encode_view(self, spec: ViewSpec, array: np.ndarray, share_bits: int) -> bytes:
        """The JPEG of the view at the highest quality that fits ``share_bits``; ``b""`` if none."""
        return self.fit(array, share_bits)[1]

    def decode_view(self, spec: ViewSpec, stream: bytes) -> np.ndarray:
        """The decoded image."""
        return _decode_jpeg(spec, stream)


@register_codec("png", wire_id=3, description="lossless PNG per view, sent only when it fits")
class PngCodec(ImageCodec):
    """Lossless PNG per view, sent only when it fits the view's share.

    Args:
        views: the image views (uint8, ``(H, W, 1|3)``), in stream order.
        compress_level: zlib level 0-9 (higher is smaller and slower).

    Example:
        >>> import numpy as np
        >>> codec = PngCodec([ViewSpec("cam", (16, 16, 3))])
        >>> views = {"cam": np.zeros((16, 16, 3), dtype=np.uint8)}
        >>> payload = codec.compress(views, budget_bits=10_000)
        >>> bool((codec.decompress(payload)["cam"] == 0).all())
        True

    Change logs:
     * v0.1.0 - Initially added.
    """

    name: ClassVar[str] = "png"

    def __init__(self, views: Sequence[ViewSpec], compress_level: int = 6) -> None:
        super().__init__(views)
        if not isinstance(compress_level, (int, np.integer)) or not 0 <= compress_level <= 9:
            raise ValueError(f"compress_level is expected to be an int in 0..9, got {compress_level!r}")
        self.compress_level = int(compress_level)

    def encode_view(self, spec: ViewSpec, array: np.ndarray, share_bits: int) -> bytes:
        """The PNG of the view when it fits ``share_bits``, else ``b""``."""
        buf = io.BytesIO()
        _to_pil(array).save(buf, format="PNG", compress_level=self.compress_level)
        data = buf.getvalue()
        return data if _stream_cost_bits(len(data)) <= share_bits else b""

    def decode_view(self, spec: ViewSpec, stream: bytes) -> np.ndarray:
        """The decoded image (bit-exact)."""
        return _from_pil_bytes(spec, stream, "PNG")
