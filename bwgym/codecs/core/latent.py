"""The latent codec: views -> transform -> latent model (DPCA) -> quantiser -> entropy-coded bytes.

Every learned or fitted codec of bwgym is a :class:`LatentCodec` (CompressAI's layers):

* a **transform** between views and latents: identity on (downsampled) pixels for the linear
  codecs (:mod:`bwgym.codecs.image.linear`), neural encoders and a joint decoder for NDPCA, DAE and JAE
  (:mod:`bwgym.codecs.image.neural`, :mod:`bwgym.codecs.image.ndpca`);
* a **latent model**, always a fitted :class:`~bwgym.codecs.core.dpca.DPCA`: one stream per view for
  the distributed codecs, or one stream named ``"joint"`` over all views for the joint references
  (joint PCA is DPCA with one stream), whose components are sorted by variance so one model serves
  every bandwidth;
* the **entropy model and coder** of :mod:`bwgym.codecs.core.entropy` (integer tables, constriction).

An optional **residual layer** (:class:`BlockDCTResidual`) extends the range to any rate: the
pixel residual ``x - D(z)`` of each view (every latent component unquantised) in an orthonormal
block DCT, whose coefficients are sorted by a scale fitted per frequency and channel
(:meth:`LatentCodec.fit_residual`, a few hundred integers per view), coded in the same frame after
the latent streams with steps offset by ``residual_gain`` (a scale index fitted so that a step
costs about the same pixel error in both layers). At low rates its coefficients fall below the
step and cost nothing; at high rates it carries the detail the transform cannot.

``compress`` searches one number, the frame's header byte: the quantisation step on a 1/8-octave
grid. Every component whose model scale is at least a quarter of its step is sent, in DPCA order
within each stream (reverse water-filling: a finer step buys more components and more precision
at once), and the step is the finest whose *real* frame fits the budget.

Wire format: a lean frame (:mod:`bwgym.codecs.core.protocol`) under the codec's :class:`~bwgym.codecs.core.protocol.Session`
(its fingerprint hashes the checkpoint's arrays and the view order)::

    header u8 | body: one range-coder stream | crc8

The body holds, in order: every latent stream's symbols; for each view's residual layer with
frequencies above the step, a flag per DCT block (does it hold any nonzero symbol? an Elias-gamma
count then a Bernoulli code); then the symbols of the flagged blocks. Nothing in it is a length:
the header and the model (and the flags) give every count.

* codec split (``allocation=None``): ``header = h``, step index ``k = k_hi - h`` (``k_hi``: six
  octaves above the largest component's scale ``top``; while ``k > top + 16`` only the
  components of the largest scale are sent, at that coarser step);
* explicit split (two streams, an allocator's fractions): ``header = tilt << 5 | c``, step index
  ``k = top + 16 - 4 c`` plus a per-stream offset from :data:`_TILTS` (a stream off, or coarser by
  0.5, 1.5 or 3 octaves).

Coefficient ``i`` of a group is coded with scale index ``sigma_idx[i] - step``, where
``sigma_idx`` is fixed in the fitted model, so decoding needs only the frame, its session and the
same model. Per-step overhead: 16 bits (header and CRC-8).

A stream sent with 0 components is reconstructed from its training mean and the view is still
present in the output: the payload as a whole was delivered (the link decides freshness). An
*empty* payload (budget below the smallest frame) decodes to no views at all, so the receiver
holds its last frame.

Checkpoints use the project's one format (:mod:`bwgym.common.checkpoint`), kind
``codec/<registered name>``: the latent model's arrays under ``latent_model.``, the network's
under ``net.`` for the neural codecs, the residual layer's under ``residual.``, and metadata (env
id, views, transform config, training config, metrics, ``residual``). Checkpoints written before
the residual layer existed load as codecs without one.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from bwgym.codecs.core.dpca import DPCA
from bwgym.codecs.core.entropy import (
    MAX_ABS_SYMBOL,
    SCALE_STEPS_PER_OCTAVE,
    EntropyCoder,
    dequantize,
    flag_bits,
    get_coder,
    quantize_symbols,
    scale_index,
    step_from_index,
)
from bwgym.codecs.core.protocol import (
    FRAME_OVERHEAD_BITS,
    Allocation,
    Codec,
    Payload,
    PayloadError,
    Session,
    ViewSet,
    ViewSpec,
)
from bwgym.common.checkpoint import Checkpoint, check_spec, save_checkpoint

__all__ = ["JOINT", "BlockDCTResidual", "LatentCodec"]

#: The stream name of a joint latent model (one stream over all views).
JOINT = "joint"
#: The coarsest step (header 0) is this many octaves above the largest component's scale. Above
#: ``_TAU`` over it, only the largest components are sent (at ever coarser steps): a frame of the
#: first few header values costs a byte or two whatever the content, so one always fits 24-32 bits.
_COARSEST_OCTAVES = 6
#: The finest step of a codec split searched, in octaves below the largest component's scale.
_FINEST_OCTAVES = 22
#: A component is sent when its scale index is at least its step index minus this (scale >= step / 4):
#: below that it would cost < 0.3 bit and almost always code 0.
_TAU = 2 * SCALE_STEPS_PER_OCTAVE
#: Explicit split: step grid in scale-index units (1/2 octave) and the eight per-stream offsets
#: (None: the stream is off), from "all to stream 0" to "all to stream 1".
_EXPLICIT_STEP = 4
_TILTS: tuple[tuple[int | None, int | None], ...] = (
    (0, None),
    (0, 24),
    (0, 12),
    (0, 4),
    (4, 0),
    (12, 0),
    (24, 0),
    (None, 0),
)
#: Bits added to the ideal body length when predicting whether a frame fits (the range coder's
#: flush and byte alignment cost ~3 bits on average).
_SLACK_BITS = 3.0
#: Float rounding between two summation orders of a frame's ideal bits stays far below this.
_SUM_TOLERANCE_BITS = 1e-6
#: Real encodings tried per compress call at most.
_MAX_TRIES = 6


@dataclass(frozen=True, eq=False)
class _Group:
    """One coded block: a stream's latent or residual coefficients."""

    stream: int
    sigma: np.ndarray  # integer scale indices, non-increasing
    gain: int  # step offset against the common step index
    floor: int | None  # smallest own step index (pixel units: a finer step cannot change uint8 output)
    residual: bool
    view: int = -1  # residual groups: the view index


@dataclass
class _Coded:
    """A frame's symbols: latent groups, residual block flags, active residual blocks, ideal bits."""

    lat_sym: list[np.ndarray]
    lat_idx: list[np.ndarray]
    flags: list[np.ndarray]
    res_sym: list[np.ndarray]
    res_idx: list[np.ndarray]
    bits: np.ndarray  # ideal bits per stream

    def phases(self) -> list[tuple[object, ...]]:
        """The body's phases in coding order (:meth:`~bwgym.codecs.core.entropy.EntropyCoder.encode_phases`)."""
        empty = np.zeros(0, np.int64)
        cat = lambda parts: np.concatenate(parts) if parts else empty  # noqa: E731
        out: list[tuple[object, ...]] = [(cat(self.lat_sym), cat(self.lat_idx))]
        out += [("binary", f) for f in self.flags]
        if self.flags:
            out.append((cat(self.res_sym), cat(self.res_idx)))
        return out


def _shares(ideal: np.ndarray, total: int) -> tuple[int, ...]:
    """Split ``total`` bits over streams in proportion to ``ideal`` (largest remainder)."""
    ideal = np.asarray(ideal, dtype=np.float64)
    if total == 0 or ideal.sum() <= 0:
        out = np.zeros(len(ideal), np.int64)
        if total and len(out):
            out[0] = total
        return tuple(int(x) for x in out)
    exact = total * ideal / ideal.sum()
    out = np.floor(exact).astype(np.int64)
    rest = total - int(out.sum())
    out[np.argsort(-(exact - out), kind="stable")[:rest]] += 1
    return tuple(int(x) for x in out)


def _is_image(spec: ViewSpec) -> bool:
    return spec.dtype == "uint8" and len(spec.shape) == 3


def _coded_shape(spec: ViewSpec, downsample: int) -> tuple[int, ...]:
    """Shape of a view after downsampling (images only)."""
    if downsample < 1:
        raise ValueError(f"downsample must be >= 1, got {downsample}")
    if downsample == 1 or not _is_image(spec):
        return tuple(spec.shape)
    h, w, c = spec.shape
    if h % downsample or w % downsample:
        raise ValueError(
            f"view {spec.name!r} of shape {spec.shape}: height and width must be multiples of "
            f"downsample={downsample}"
        )
    return (h // downsample, w // downsample, c)


def _to_vectors(spec: ViewSpec, arrays: np.ndarray, downsample: int) -> np.ndarray:
    """``(N, *shape)`` -> ``(N, D)`` float64, block-averaged when downsampling images."""
    x = np.asarray(arrays, dtype=np.float64)
    n = x.shape[0]
    if downsample > 1 and _is_image(spec):
        h, w, c = _coded_shape(spec, downsample)
        x = x.reshape(n, h, downsample, w, downsample, c).mean(axis=(2, 4))
    return x.reshape(n, -1)


def _from_vector(spec: ViewSpec, vector: np.ndarray, downsample: int) -> np.ndarray:
    """Flattened (downsampled) vector -> view array of the spec's shape and dtype (uint8: clipped)."""
    x = vector.reshape(_coded_shape(spec, downsample))
    if downsample > 1 and _is_image(spec):
        x = np.repeat(np.repeat(x, downsample, axis=0), downsample, axis=1)
    if spec.dtype == "uint8":
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
    return x.astype(spec.dtype)


def _upsample(spec: ViewSpec, vector: np.ndarray, downsample: int) -> np.ndarray:
    """A downsampled image vector repeated back to the view's shape (float64)."""
    x = np.asarray(vector, np.float64).reshape(_coded_shape(spec, downsample))
    if downsample > 1 and _is_image(spec):
        x = np.repeat(np.repeat(x, downsample, axis=0), downsample, axis=1)
    return x


#: DCT block sides tried in order: the first that divides both sides of every view.
_DCT_BLOCKS = (8, 12, 7, 6, 4, 5, 3, 2, 1)


#: The contraction order ``optimize=True`` picks for the block DCT (rows, then columns), fixed:
#: searching it again costs more than the transform, and a fixed order fixes the float rounding.
_DCT_PATH = ["einsum_path", (0, 1), (0, 1)]


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix (rows are the basis functions)."""
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


class BlockDCTResidual:
    """The residual layer: an orthonormal block DCT per view, coefficients sorted by fitted scale.

    Coefficient ``(block, frequency, channel)`` of a view's ``(H, W, C)`` residual has the scale
    index fitted for its ``(frequency, channel)``; :meth:`forward` lists the coefficients by
    decreasing scale, so the prefix of frequencies the step selects holds the most useful ones;
    a frame then flags which blocks have any nonzero symbol among them and codes only those
    blocks (an all-zero block costs a fraction of a bit). Orthonormal: a unit coefficient error is a unit pixel
    sum-of-squares error.

    Args:
        shapes: ``(H, W, C)`` of each view (sides multiples of ``block``).
        block: the block side.
        sigma_idx: per view, ``block * block * C`` integer scale indices in ``(row freq, col freq,
            channel)`` C order.
        means: per view, the mean residual image ``(H, W, C)`` (the transform's systematic error),
            subtracted before the DCT and added back after it; None: zero.
        colours: per view, an orthonormal ``(C, C)`` colour transform applied to every pixel
            before the DCT (the principal axes of the residual's colours: the channels of a
            residual are strongly correlated); None: identity.
    """

    def __init__(
        self,
        shapes: Sequence[tuple[int, ...]],
        block: int,
        sigma_idx: Sequence[np.ndarray],
        means: Sequence[np.ndarray] | None = None,
        colours: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.shapes = [tuple(int(x) for x in s) for s in shapes]
        self.block = int(block)
        b = self.block
        if any(len(s) != 3 or s[0] % b or s[1] % b for s in self.shapes):
            raise ValueError(f"block {b} must divide the sides of every view, got {self.shapes}")
        self.sigma_idx = [np.asarray(s, np.int64).ravel() for s in sigma_idx]
        if [s.size for s in self.sigma_idx] != [b * b * s[2] for s in self.shapes]:
            raise ValueError("one scale index per frequency and channel of each view is needed")
        self._c = _dct_matrix(b)
        if means is None:
            means = [np.zeros(s) for s in self.shapes]
        self.means = [np.asarray(m, np.float64).reshape(s) for m, s in zip(means, self.shapes, strict=True)]
        if colours is None:
            colours = [np.eye(s[2]) for s in self.shapes]
        self.colours = [
            np.asarray(u, np.float64).reshape(s[2], s[2]) for u, s in zip(colours, self.shapes, strict=True)
        ]
        self.n_blocks = [(h // b) * (w // b) for h, w, _ in self.shapes]
        self.order = [np.argsort(-s, kind="stable") for s in self.sigma_idx]
        self.sorted_sigma = [s[o] for s, o in zip(self.sigma_idx, self.order, strict=True)]

    def transform(self, v: int, residual: np.ndarray) -> np.ndarray:
        """``(n_blocks, block * block * C)`` DCT coefficients of view ``v``'s residual (unsorted)."""
        h, w, c = self.shapes[v]
        b = self.block
        x = (np.asarray(residual, np.float64).reshape(h, w, c) @ self.colours[v]).reshape(
            h // b, b, w // b, b, c
        )
        y = np.einsum("ki,abijc,lj->abklc", self._c, x.transpose(0, 2, 1, 3, 4), self._c, optimize=_DCT_PATH)
        return y.reshape(self.n_blocks[v], b * b * c)

    def forward(self, v: int, residual: np.ndarray) -> np.ndarray:
        """``(frequencies, blocks)`` coefficients of view ``v``'s residual less its mean.

        Frequencies (with channels) are ordered by decreasing scale.
        """
        return self.transform(v, residual - self.means[v])[:, self.order[v]].T

    def inverse(self, v: int, coeffs: np.ndarray) -> np.ndarray:
        """The ``(H, W, C)`` residual from the first ``m`` rows of :meth:`forward` (the rest zero)."""
        h, w, c = self.shapes[v]
        b, nb = self.block, self.n_blocks[v]
        coeffs = np.asarray(coeffs, np.float64).reshape(-1, nb)
        if not coeffs.shape[0]:  # nothing sent (every low-rate frame): the mean residual exactly
            return self.means[v].copy()
        full = np.zeros((b * b * c, nb))
        full[: coeffs.shape[0]] = coeffs
        y = np.empty((nb, b * b * c))
        y[:, self.order[v]] = full.T
        y = y.reshape(h // b, w // b, b, b, c)
        x = np.einsum("ki,abklc,lj->abijc", self._c, y, self._c, optimize=_DCT_PATH)
        return x.transpose(0, 2, 1, 3, 4).reshape(h, w, c) @ self.colours[v].T + self.means[v]


class _FrameSearch:
    """One observation's coefficients and the frames considered for it in one ``compress`` call.

    The latent coefficients come from one pass of the transform's analysis (the encoders). The
    residual layer's need a synthesis pass (the decoder) and a block DCT per view, so they are
    computed only when a header the search evaluates sends residual frequencies and its latent
    symbols alone leave room for them, which low budgets never reach. :meth:`latent_bits` predicts
    the latent streams' code length at every header in one vectorised evaluation; it is a lower
    bound of the frame's, so a header it rules out is never quantised. Each header's symbols are
    quantised at most once, for its prediction and its real encoding alike: the frames, and hence
    the bytes, are those of the plain search.
    """

    def __init__(
        self, codec: LatentCodec, views: Mapping[str, np.ndarray], latent: list[np.ndarray] | None = None
    ) -> None:
        self.codec = codec
        self.views = views
        self.latent = codec._latent_coefficients(views) if latent is None else latent
        self._residual: list[np.ndarray] | None = None
        self._coded: dict[tuple[int, int], _Coded] = {}
        self._latent_bits: dict[tuple[tuple[int, ...], int], np.ndarray] = {}
        self._groups_coded: dict[tuple[int, int, int], tuple] = {}

    def coefficients(self, residual: bool) -> list[np.ndarray | None]:
        """Coefficients of every group (residual groups None unless ``residual``)."""
        n_residual = len(self.codec._groups) - len(self.latent)
        if not residual or not n_residual:
            return [*self.latent, *([None] * n_residual)]
        if self._residual is None:
            self._residual = self.codec._residual_coefficients(self.views, self.latent)
        return [*self.latent, *self._residual]

    def coded(self, header: int, split: int) -> _Coded:
        """The symbols of the frame with this header (quantised once per call)."""
        coded = self._coded.get((header, split))
        if coded is None:
            codec = self.codec
            steps, dims = codec._plan(header, split)
            coded = codec._code(
                self.coefficients(self._sends_residual(header, split)), steps, dims, self._groups_coded
            )
            self._coded[(header, split)] = coded
        return coded

    def latent_bits(self, headers: tuple[int, ...], split: int) -> np.ndarray:
        """Ideal bits of the latent streams' symbols, ``(len(headers), streams)``, in one evaluation."""
        cached = self._latent_bits.get((headers, split))
        if cached is not None:
            return cached
        codec = self.codec
        out = self._latent_bits[(headers, split)] = np.zeros((len(headers), len(codec.stream_names)))
        for g, c, (steps, mask, plan) in zip(
            codec._groups, self.latent, codec._latent_plans(headers, split), strict=False
        ):
            if plan is None:
                continue
            r = g.sigma.size
            sym = quantize_symbols(np.broadcast_to(c[:r], (len(headers), r)), steps[:, None])
            bits = codec.coder._symbol_bits(sym.ravel(), plan).reshape(len(headers), r)
            out[:, g.stream] += np.where(mask, bits, 0.0).sum(axis=1)
        return out

    def fits(self, header: int, split: int, room: int, latent_bits: float) -> bool:
        """Whether the frame's predicted size (ideal bits + slack) fits ``room`` body bits.

        ``latent_bits`` (from :meth:`latent_bits`) decides without quantising the header unless
        it sends residual frequencies or lies within :data:`_SUM_TOLERANCE_BITS` of the boundary,
        where its different summation order could decide otherwise than the frame's own sum.
        """
        if latent_bits + _SLACK_BITS > room + _SUM_TOLERANCE_BITS:
            return False
        if latent_bits + _SLACK_BITS <= room - _SUM_TOLERANCE_BITS and not self._sends_residual(
            header, split
        ):
            return True
        return float(self.coded(header, split).bits.sum()) + _SLACK_BITS <= room

    def _sends_residual(self, header: int, split: int) -> bool:
        codec = self.codec
        return any(n for g, n in zip(codec._groups, codec._plan(header, split)[1], strict=True) if g.residual)


SelfCodec = TypeVar("SelfCodec", bound="LatentCodec")


class LatentCodec(Codec):
    """Shared machinery of the latent codecs: transform hooks, rate search, wire format, checkpoints.

    A subclass supplies the transform (:meth:`_latents`, :meth:`_views_from_latents`; the default
    is identity on the flattened, optionally downsampled views, concatenated into one ``"joint"``
    vector when :attr:`joint`), and a :meth:`train` classmethod that fits it; this base does the
    rest.

    Args:
        latent_model: the fitted DPCA over the latent streams (the views, or ``("joint",)``).
        views: view specs, in stream order.
        downsample: block-averaging factor of image views before the identity transform.
        env_id: the env the training frames came from (checked when loading).
        family: entropy model, ``"gaussian"`` or ``"laplace"``.
        variant: the registered name this codec was trained as (its checkpoint kind is
            ``codec/<variant>``); default :attr:`name`.
        train_config: how it was trained (kept in checkpoints).
        metrics: evaluation numbers to keep with the checkpoint.
        residual: optional residual layer (:meth:`fit_residual` fits one), coded after the latents.
        residual_gain: step offset of the residual layer (scale-index units) against the latents.

    Attributes:
        last_allocation: components per stream of the last :meth:`compress` (0 for all when the
            payload was empty).
    """

    #: True when a coefficient error below 1/2 vanishes in the uint8 rounding of the output (a
    #: linear transform of pixels): the step search then never goes below 1. A codec whose
    #: coefficients are latents of a network sets it False.
    _coefficients_in_pixel_units: ClassVar[bool] = True
    #: One joint stream over all views (the non-distributed references) instead of one per view.
    joint: ClassVar[bool] = False
    #: Latent codecs send lean frames under a session (see :mod:`bwgym.codecs.core.protocol`).
    uses_sessions: ClassVar[bool] = True
    stateless: ClassVar[bool] = True

    def __init__(
        self,
        latent_model: DPCA,
        views: Sequence[ViewSpec],
        downsample: int = 1,
        env_id: str = "",
        family: str = "gaussian",
        variant: str | None = None,
        train_config: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        residual: BlockDCTResidual | None = None,
        residual_gain: int = 0,
    ) -> None:
        self.views = tuple(views)
        self.downsample = int(downsample)
        self.env_id = str(env_id)
        self.family = family
        self.variant = variant or self.name
        self.train_config = dict(train_config or {})
        self.metrics = dict(metrics or {})
        self.coder: EntropyCoder = get_coder(family)
        for spec in self.views:
            self._coded_shape(spec)  # validates downsample against every view
        expected = (JOINT,) if self.joint else self.view_names
        if not isinstance(latent_model, DPCA) or tuple(latent_model.view_names) != expected:
            raise ValueError(
                f"{type(self).__name__} needs a DPCA over streams {list(expected)}, got {latent_model!r}"
            )
        self.latent_model = latent_model
        self.residual: BlockDCTResidual | None = None
        self.residual_gain = 0
        if residual is not None:
            self.set_residual(residual, residual_gain)
        self.last_allocation: dict[str, int] = dict.fromkeys(self.stream_names, 0)

    # -- the latent model -----------------------------------------------------------------------

    @property
    def stream_names(self) -> tuple[str, ...]:
        """Names of the payload's streams: the views, or ``("joint",)``."""
        return tuple(self.latent_model.view_names)

    def _stream_ranks(self) -> tuple[int, ...]:
        return self.latent_model.ranks

    def _stream_sigma_idx(self) -> list[np.ndarray]:
        return self.latent_model.sigma_idx

    # -- the transform (identity on pixels unless overridden) ------------------------------------

    def _coded_shape(self, spec: ViewSpec) -> tuple[int, ...]:
        return _coded_shape(spec, self.downsample)

    def _to_vectors(self, spec: ViewSpec, arrays: np.ndarray) -> np.ndarray:
        return _to_vectors(spec, arrays, self.downsample)

    def _from_vector(self, spec: ViewSpec, vector: np.ndarray) -> np.ndarray:
        return _from_vector(spec, vector, self.downsample)

    def _latents(self, vectors: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Latents per stream of one observation's flattened views."""
        if self.joint:
            return {JOINT: np.concatenate(vectors)}
        return dict(zip(self.view_names, vectors, strict=True))

    def _views_from_latents(self, latents: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Flattened views from latents per stream (the inverse of :meth:`_latents`)."""
        if self.joint:
            sizes = [math.prod(self._coded_shape(spec)) for spec in self.views]
            return np.split(np.asarray(latents[JOINT]), np.cumsum(sizes)[:-1])
        return [latents[n] for n in self.view_names]

    def _analyse(self, vectors: list[np.ndarray]) -> list[np.ndarray]:
        """All coefficients per stream from the flattened views."""
        model = self.latent_model
        coeffs = model.encode(
            self._latents(vectors), dims=dict(zip(self.stream_names, model.ranks, strict=True))
        )
        return [coeffs[n] for n in self.stream_names]

    def _synthesise(self, coeffs: list[np.ndarray]) -> list[np.ndarray]:
        """Flattened views from (possibly truncated) coefficients per stream."""
        return self._views_from_latents(
            self.latent_model.decode(dict(zip(self.stream_names, coeffs, strict=True)))
        )

    def _latent_coefficients(self, views: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Coefficients of the latent streams (one pass of the transform's analysis)."""
        return self._analyse([self._to_vectors(spec, views[spec.name][None])[0] for spec in self.views])

    def _residual_coefficients(
        self, views: Mapping[str, np.ndarray], latent: list[np.ndarray]
    ) -> list[np.ndarray]:
        """Each view's residual-layer coefficients, given its latent ones (one synthesis pass)."""
        full = self._synthesise(latent)
        return [
            self.residual.forward(
                v, np.asarray(views[spec.name], np.float64) - _upsample(spec, rec, self.downsample)
            )
            for v, (spec, rec) in enumerate(zip(self.views, full, strict=True))
        ]

    def _all_coefficients(self, views: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Coefficients of every group: the latent streams, then each view's residual layer."""
        coeffs = self._latent_coefficients(views)
        if self.residual is not None:
            coeffs += self._residual_coefficients(views, coeffs)
        return coeffs

    def coefficients(self, views: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """All latent-model coefficients per stream of one observation (what ``compress`` quantises)."""
        self.check_views(views)
        vectors = [self._to_vectors(spec, views[spec.name][None])[0] for spec in self.views]
        return dict(zip(self.stream_names, self._analyse(vectors), strict=True))

    def residual_coefficients(self, views: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every residual-layer coefficient per view, sorted by scale (empty without the layer)."""
        self.check_views(views)
        if self.residual is None:
            return {}
        coeffs = self._all_coefficients(views)[len(self.stream_names) :]
        return dict(zip(self.view_names, coeffs, strict=True))

    # -- coding groups ----------------------------------------------------------------------------

    @property
    def _groups(self) -> list[_Group]:
        """Every coded block of coefficients: the latent streams, then the residual streams."""
        cached = self.__dict__.get("_group_cache")
        if cached is not None:
            return cached
        pixel_floor = (
            0
            if self._coefficients_in_pixel_units and all(spec.dtype == "uint8" for spec in self.views)
            else None
        )
        groups = [
            _Group(j, np.asarray(s, np.int64), 0, pixel_floor, False)
            for j, s in enumerate(self._stream_sigma_idx())
        ]
        if self.residual is not None:
            groups += [
                _Group(0 if self.joint else v, sigma, self.residual_gain, 0, True, v)
                for v, sigma in enumerate(self.residual.sorted_sigma)
            ]
        self.__dict__["_group_cache"] = groups
        return groups

    def _top(self) -> int:
        """The largest component's scale index (gain included) over every group."""
        tops = [int(g.sigma.max()) + g.gain for g in self._groups if g.sigma.size]
        return max(tops, default=0)

    def _k_hi(self) -> int:
        """The coarsest step index (header value 0 of the codec split)."""
        return self._top() + _COARSEST_OCTAVES * SCALE_STEPS_PER_OCTAVE

    def _steps(self, header: int, split: int) -> tuple[np.ndarray, list[int | None], int]:
        """Step index per group, per-stream offsets (None: stream off), and the step excess.

        The excess is how far the common step lies above the coarsest at which components are
        still chosen by scale (``top + _TAU``): components are chosen as at that step.
        """
        n = len(self.stream_names)
        if split:
            tilt, c = header >> 5, header & 31
            k = self._top() + _TAU - _EXPLICIT_STEP * c
            offsets: list[int | None] = list(_TILTS[tilt])
        else:
            k = self._k_hi() - header
            offsets = [0] * n
        steps = []
        for g in self._groups:
            off = offsets[g.stream]
            s = k + (off or 0) - g.gain
            steps.append(s if g.floor is None else max(s, g.floor))
        return np.asarray(steps, np.int64), offsets, max(0, k - self._top() - _TAU)

    def _dims(
        self, steps: np.ndarray, offsets: Sequence[int | None], split: int, excess: int = 0
    ) -> list[int]:
        """Components sent per group: those whose scale is at least 1/4 of their step (``_TAU``).

        ``excess`` (see :meth:`_steps`) is subtracted from the steps for this choice only.
        """
        dims = []
        for g, s in zip(self._groups, steps, strict=True):
            dims.append(0 if offsets[g.stream] is None else int(np.sum(g.sigma - (s - excess) >= -_TAU)))
        return dims

    def _plan(self, header: int, split: int) -> tuple[np.ndarray, list[int]]:
        """Step index and components sent per group of a frame with this header (cached: content-free)."""
        cache = self.__dict__.setdefault("_plan_cache", {})
        plan = cache.get((header, split))
        if plan is None:
            steps, offsets, excess = self._steps(header, split)
            plan = cache[(header, split)] = (steps, self._dims(steps, offsets, split, excess))
        return plan

    def _plans(self, headers: Sequence[int], split: int) -> tuple[np.ndarray, np.ndarray]:
        """Steps and components per group of every header, as ``(len(headers), groups)`` arrays (cached)."""
        cache = self.__dict__.setdefault("_plans_cache", {})
        key = (tuple(headers), split)
        plans = cache.get(key)
        if plans is None:
            rows = [self._plan(h, split) for h in headers]
            plans = cache[key] = (
                np.asarray([r[0] for r in rows], np.int64).reshape(len(rows), len(self._groups)),
                np.asarray([r[1] for r in rows], np.int64).reshape(len(rows), len(self._groups)),
            )
        return plans

    def _latent_plans(self, headers: tuple[int, ...], split: int) -> list[tuple[np.ndarray, np.ndarray, Any]]:
        """Per latent group and header: step, components sent, the coder's plan of their scale indices.

        The plan covers ``(H, r)`` indices (None: the group sends nothing at any header). Each step
        is computed as :meth:`_code` computes it, one scalar at a time, so that both quantise alike.
        Content-free, so cached.
        """
        cache = self.__dict__.setdefault("_plans_cache", {})
        key = ("latent", tuple(headers), split)
        plans = cache.get(key)
        if plans is None:
            steps, dims = self._plans(headers, split)
            plans = []
            for j, g in enumerate(self._groups):
                if g.residual:
                    break
                r, n, s = g.sigma.size, dims[:, j], steps[:, j]
                if not r or not n.any():
                    plans.append((s, n, None))
                    continue
                plan = self.coder._plan(g.sigma[None, :r] - s[:, None])
                step = np.array([float(step_from_index(int(k))) for k in s])
                plans.append((step, np.arange(r)[None, :] < n[:, None], plan))
            plans = cache[key] = plans
        return plans

    def _code(
        self,
        coeffs: list[np.ndarray],
        steps: np.ndarray,
        dims: list[int],
        memo: dict[tuple[int, int, int], tuple] | None = None,
    ) -> _Coded:
        """What a frame codes: latent symbols, each residual group's block flags and active blocks.

        ``memo`` keeps each group's coding by (group, step, components): frames of an explicit
        split share the groups of the stream whose step offset they share.
        """
        lat_sym, lat_idx, flags, res_sym, res_idx = [], [], [], [], []
        bits = np.zeros(len(self.stream_names))
        for j, (g, c, s, n) in enumerate(zip(self._groups, coeffs, steps, dims, strict=True)):
            if g.residual and n == 0:
                continue
            key = (j, int(s), int(n))
            part = memo.get(key) if memo is not None else None
            if part is None:
                part = self._code_group(g, c, int(s), int(n))
                if memo is not None:
                    memo[key] = part
            group_bits, *arrays = part
            if g.residual:
                flags.append(arrays[0])
                res_sym.append(arrays[1])
                res_idx.append(arrays[2])
            else:
                lat_sym.append(arrays[0])
                lat_idx.append(arrays[1])
            if group_bits is not None:
                bits[g.stream] += group_bits
        return _Coded(lat_sym, lat_idx, flags, res_sym, res_idx, bits)

    def _code_group(self, g: _Group, c: np.ndarray, s: int, n: int) -> tuple:
        """One group's coding: ``(ideal bits or None, *arrays)``.

        The arrays are a latent group's ``(symbols, scale indices)``, or a residual group's
        ``(block flags, symbols of the active blocks, their scale indices)``.
        """
        step = step_from_index(s)
        if not g.residual:
            sym, idx = quantize_symbols(c[:n], step), g.sigma[:n] - s
            return (float(self.coder.symbol_bits(sym, idx).sum()) if n else None), sym, idx
        sym = quantize_symbols(c[:n], step)  # (frequencies, blocks)
        active = np.any(sym != 0, axis=0)
        kept = sym[:, active]
        # bits per (frequency, block) from the n frequencies' plan, summed in coding order
        group_bits = flag_bits(active) + (
            float(self.coder._row_symbol_bits(kept, g.sigma[:n] - s).T.ravel().sum()) if kept.size else 0.0
        )
        # block by block, frequencies in scale order
        return (
            group_bits,
            active.astype(np.int32),
            kept.T.reshape(-1),
            np.tile(g.sigma[:n] - s, int(active.sum())),
        )

    def _predict(self, coeffs: list[np.ndarray], header: int, split: int) -> np.ndarray:
        """Ideal bits per stream of the frame with this header (no encoding)."""
        steps, dims = self._plan(header, split)
        return self._code(coeffs, steps, dims).bits

    def _frame(self, search: _FrameSearch, header: int, split: int, session: Session) -> Payload:
        """Encode the frame with this header for real."""
        coded = search.coded(header, split)
        body = self.coder.encode_phases(coded.phases())
        return Payload(self.name, (body,), bytes((header,)), session, _shares(coded.bits, 8 * len(body)))

    def _decode_body(self, body: bytes, steps: np.ndarray, dims: list[int]) -> list[np.ndarray]:
        """Dequantised coefficients of every group (residual groups: ``(frequencies, blocks)``)."""
        lat_idx = [
            g.sigma[:n] - s for g, s, n in zip(self._groups, steps, dims, strict=True) if not g.residual
        ]
        res = [(g, s, n) for g, s, n in zip(self._groups, steps, dims, strict=True) if g.residual and n > 0]
        flat_lat = np.concatenate(lat_idx) if lat_idx else np.zeros(0, np.int64)

        def next_phase(done: list[np.ndarray]) -> object | None:
            if not done:
                return flat_lat
            if len(done) <= len(res):
                g, _, _ = res[len(done) - 1]
                return ("binary", self.residual.n_blocks[g.view])
            if len(done) == len(res) + 1 and res:
                parts = [
                    np.tile(g.sigma[:n] - s, int(f.sum())) for (g, s, n), f in zip(res, done[1:], strict=True)
                ]
                return np.concatenate(parts) if parts else np.zeros(0, np.int64)
            return None

        phases = self.coder.decode_phases(body, next_phase)
        lat_syms, flags = phases[0], phases[1 : 1 + len(res)]
        coded = _Coded(
            np.split(lat_syms, np.cumsum([i.size for i in lat_idx])[:-1]) if lat_idx else [],
            lat_idx,
            [f.astype(np.int32) for f in flags],
            [],
            [],
            np.zeros(0),
        )
        if res:
            res_syms = phases[-1]
            sizes = [n * int(f.sum()) for (_, _, n), f in zip(res, flags, strict=True)]
            coded.res_sym = np.split(res_syms, np.cumsum(sizes)[:-1])
            coded.res_idx = [
                np.tile(g.sigma[:n] - s, int(f.sum())) for (g, s, n), f in zip(res, flags, strict=True)
            ]
        if self.coder.encode_phases(coded.phases()) != body:
            raise PayloadError("frame body is not the encoding of what it decodes to: corrupted in transit")
        out: list[np.ndarray] = []
        lat_iter = iter(coded.lat_sym)
        res_iter = iter(zip(res, flags, coded.res_sym, strict=True))
        for g, s, n in zip(self._groups, steps, dims, strict=True):
            step = step_from_index(int(s))
            if not g.residual:
                out.append(dequantize(next(lat_iter), step))
                continue
            nb = self.residual.n_blocks[g.view]
            mat = np.zeros((n, nb))
            if n:
                (_, _, _), f, sym = next(res_iter)
                mat[:, f.astype(bool)] = dequantize(sym, step).reshape(int(f.sum()), n).T
            out.append(mat)
        return out

    # -- compress -------------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The session header of this codec's frames when it splits the budget itself."""
        return Session(self.name, self.fingerprint, len(self.stream_names), 0)

    def session_for(self, allocation: Mapping[str, float] | None = None) -> Session:
        """The session of frames compressed with ``allocation``: an explicit split for two streams."""
        explicit = allocation is not None and len(self.stream_names) == 2
        return Session(self.name, self.fingerprint, len(self.stream_names), int(explicit))

    @property
    def fingerprint(self) -> bytes:
        """4 bytes of the sha256 of the checkpoint's arrays, views and stream order (the session id)."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            digest = hashlib.sha256()
            block = None if self.residual is None else self.residual.block
            spec = [
                self.name,
                self.family,
                self.downsample,
                block,
                self.residual_gain,
                list(self.stream_names),
            ]
            spec.append([[v.name, list(v.shape), v.dtype] for v in self.views])
            digest.update(repr(spec).encode())
            for key, value in sorted(self.state().items()):
                arr = np.ascontiguousarray(np.asarray(value))
                digest.update(f"{key}:{arr.dtype.str}:{arr.shape}".encode())
                digest.update(arr.tobytes())
            cached = digest.digest()[:4]
            self.__dict__["_fingerprint"] = cached
        return cached

    def _compress(
        self, views: Mapping[str, np.ndarray], budget_bits: int, allocation: Mapping[str, float] | None
    ) -> Payload:
        """Encode ``views`` into one lean frame of at most ``budget_bits`` bits (16 bits of overhead).

        The frame's one header byte selects the quantisation step on a 1/8-octave grid; every
        component whose model scale is at least a quarter of its step is sent (reverse
        water-filling: a finer step buys more components and more precision at once), so a budget
        search is a search over the header byte alone. The finest step whose predicted size fits is
        found by bisection on :meth:`~bwgym.codecs.core.entropy.EntropyCoder.symbol_bits` of the actual
        coefficients, then confirmed by real encoding (a step finer is tried while it still fits),
        so the payload is the largest of the frames tried that fit, and its size grows with the
        budget.

        Args:
            views: one array per view of :attr:`views`.
            budget_bits: bits the link carries this step.
            allocation: share of the budget per view. ``None`` (default): the latent model allocates
                (one step for every stream, DPCA's pooled variances decide what each view gets).
                Given, for a two-stream codec: the frame carries an explicit split, one of eight
                step offsets between the streams (a stream off, coarser by 3, 1.5 or 0.5 octaves,
                or the same for the other), the one whose share of the body is closest to the
                requested one; the step grid is then 1/2 octave. A joint codec (one stream) or one
                of more than two streams ignores it.

        Returns:
            The frame, or an empty payload when not even the coarsest step fits.

        """
        return self._compress_with(views, budget_bits, allocation)

    def compress_splits(
        self, views: ViewSet, budget_bits: int, allocations: Sequence[Allocation]
    ) -> list[Payload]:
        """Compress one view set under each allocation, analysing it once (the bytes of one call each).

        A frame's symbols depend on its header alone, not on the split asked for, so every
        allocation searches the same quantised frames.
        """
        budget_bits = self._check_input(views, budget_bits)
        latent = self._latent_coefficients(views) if budget_bits >= FRAME_OVERHEAD_BITS else None
        search = _FrameSearch(self, views, latent) if latent is not None else None
        return [
            self._check_output(self._compress_with(views, budget_bits, a, search=search), budget_bits)
            for a in allocations
        ]

    def _compress_with(
        self,
        views: Mapping[str, np.ndarray],
        budget_bits: int,
        allocation: Mapping[str, float] | None,
        latent: list[np.ndarray] | None = None,
        search: _FrameSearch | None = None,
    ) -> Payload:
        """:meth:`_compress`, reusing the latent coefficients or a whole search when given (batches)."""
        session = self.session_for(allocation)
        self.last_allocation = dict.fromkeys(self.stream_names, 0)
        if budget_bits < FRAME_OVERHEAD_BITS:
            return Payload.empty(self.name, session)
        search = search or _FrameSearch(self, views, latent)
        room = budget_bits - FRAME_OVERHEAD_BITS
        if session.split:
            payload = self._search_explicit(search, room, allocation, session)
        else:
            payload = self._search(search, room, session, range(0, self._h_limit() + 1))
        if payload is None:
            return Payload.empty(self.name, session)
        self.last_allocation = self.allocation_of(payload)
        return payload

    def _h_limit(self) -> int:
        """Largest useful header value of the codec split (finer steps change nothing)."""
        if all(g.floor is not None for g in self._groups):
            return int(min(255, self._k_hi() - min(g.floor + g.gain for g in self._groups)))
        return min(255, _FINEST_OCTAVES * SCALE_STEPS_PER_OCTAVE + _COARSEST_OCTAVES * SCALE_STEPS_PER_OCTAVE)

    def _search(
        self, search: _FrameSearch, room: int, session: Session, headers: Sequence[int]
    ) -> Payload | None:
        """The largest real frame that fits ``room`` body bits, over header values ordered coarse to fine."""
        headers = tuple(headers)
        split = session.split
        latent_bits = search.latent_bits(headers, split).sum(axis=1)

        def fits(i: int) -> bool:
            return search.fits(headers[i], split, room, latent_bits[i])

        if not fits(0):
            lo = -1
        else:  # bisection for the finest predicted fit (the predicted size grows with the index)
            lo, hi = 0, len(headers)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if fits(mid):
                    lo = mid
                else:
                    hi = mid
        best: Payload | None = None
        i = max(lo, 0)
        tried = 0
        while 0 <= i < len(headers) and tried < _MAX_TRIES:
            tried += 1
            frame = self._frame(search, headers[i], split, session)
            if 8 * len(frame.streams[0]) <= room:
                if best is None or frame.nbits >= best.nbits:
                    best = frame
                if best is not None and i < lo:
                    break  # came down from a prediction that did not fit: the first fit is it
                i += 1  # the prediction may have been pessimistic: try one step finer
            else:
                if best is not None:
                    break
                i -= 1
        return best

    def _search_explicit(
        self, search: _FrameSearch, room: int, allocation: Mapping[str, float], session: Session
    ) -> Payload | None:
        """Explicit split of two streams: the tilt whose share is closest to the requested one."""
        weights = [max(float(allocation.get(n, 0.0)), 0.0) for n in self.view_names]
        total = sum(weights)
        if not np.isfinite(total) or total <= 0:
            raise ValueError(f"allocation weights must be finite and sum to > 0, got {dict(allocation)}")
        want = weights[0] / total
        best_key, best_tilt = None, 0
        every = tuple(range(len(_TILTS) << 5))
        latent_bits = search.latent_bits(every, 1).sum(axis=1)
        for tilt in range(len(_TILTS)):
            # bisection for the finest step whose predicted frame fits (the size grows with c)
            lo, hi = -1, 32
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if search.fits(tilt << 5 | mid, 1, room, latent_bits[tilt << 5 | mid]):
                    lo = mid
                else:
                    hi = mid
            if lo < 0:
                continue
            b = search.coded(tilt << 5 | lo, 1).bits
            share = b[0] / b.sum() if b.sum() > 0 else (1.0 if _TILTS[tilt][1] is None else 0.0)
            key = (round(abs(share - want), 6), -float(b.sum()))
            if best_key is None or key < best_key:
                best_key, best_tilt = key, tilt
        headers = [best_tilt << 5 | c for c in range(32)]
        return self._search(search, room, session, headers)

    # -- decompress -----------------------------------------------------------------------------

    def _check_session(self, payload: Payload) -> None:
        if payload.codec != self.name:
            raise PayloadError(f"payload was written by codec {payload.codec!r}, this is {self.name!r}")
        if payload.session is None and payload.is_empty:
            return  # nothing was sent: no session needed
        if payload.session is None:
            raise PayloadError(
                f"codec {self.name!r} reads lean frames, and this payload has no session: parse the "
                "bytes with Payload.from_bytes(data, session=...) using the session header received "
                "at the start of the episode"
            )
        split = payload.session.split if len(self.stream_names) == 2 else 0
        payload.session.check(Session(self.name, self.fingerprint, len(self.stream_names), split))

    def _read(self, payload: Payload) -> tuple[np.ndarray, list[int], list[int | None]]:
        header, split = payload.meta[0], payload.session.split
        if split and header >> 5 >= len(_TILTS):
            raise PayloadError(f"frame header {header:#04x}: tilt out of range (corrupt)")
        if not split and header > self._h_limit():
            raise PayloadError(f"frame header {header}: step finer than the codec's finest (corrupt)")
        steps, offsets, excess = self._steps(header, split)
        return steps, self._dims(steps, offsets, split, excess), offsets

    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        """Decode a frame into every view (``{}`` for an empty payload).

        Raises:
            PayloadError: the payload is of another codec or session (checkpoint, view order,
                split mode), has no session, or its header or body is corrupt. The body must be
                exactly the encoding of what it decodes to (the coder's output is canonical), a
                second check behind the frame's CRC-8.

        """
        self._check_session(payload)
        if payload.is_empty:
            return {}
        coeffs = self._frame_coefficients(payload)
        return self._views(coeffs, self._synthesise(coeffs[: len(self.stream_names)]))

    def _frame_coefficients(self, payload: Payload) -> list[np.ndarray]:
        """Dequantised coefficients of every group of a (non-empty, session-checked) frame."""
        steps, dims, _ = self._read(payload)
        return self._decode_body(payload.streams[0], steps, dims)

    def _views(self, coeffs: list[np.ndarray], vectors: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The decoded views: the synthesised ``vectors`` plus each view's residual layer."""
        if self.residual is None:
            return {
                spec.name: self._from_vector(spec, v) for spec, v in zip(self.views, vectors, strict=False)
            }
        n_latent = len(self.stream_names)
        out = {}
        for v, (spec, rec) in enumerate(zip(self.views, vectors, strict=True)):
            x = _upsample(spec, rec, self.downsample) + self.residual.inverse(v, coeffs[n_latent + v])
            out[spec.name] = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        return out

    # -- header -----------------------------------------------------------------------------------

    def read_header(self, payload: Payload) -> tuple[int, dict[str, int]]:
        """Read the step index and the latent components per stream of a frame.

        The residual layer's frequencies are not counted: the split reported is the latent model's.

        Raises:
            PayloadError: the payload is of another codec or session, or its header is corrupt.
        """
        self._check_session(payload)
        if payload.is_empty:
            return 0, dict.fromkeys(self.stream_names, 0)
        steps, dims, _ = self._read(payload)
        per_stream = dict.fromkeys(self.stream_names, 0)
        for g, n in zip(self._groups, dims, strict=True):
            if not g.residual:
                per_stream[self.stream_names[g.stream]] += n
        return int(steps[0]), per_stream

    def decoded_coefficients(self, payload: Payload) -> dict[str, np.ndarray]:
        """The dequantised latent coefficients per stream a frame carries, zero beyond those sent.

        Raises:
            PayloadError: as :meth:`decompress`.
        """
        self._check_session(payload)
        ranks = self._stream_ranks()
        out = {n: np.zeros(r) for n, r in zip(self.stream_names, ranks, strict=True)}
        if payload.is_empty:
            return out
        steps, dims, _ = self._read(payload)
        coeffs = self._decode_body(payload.streams[0], steps, dims)
        for g, c in zip(self._groups, coeffs, strict=True):
            if not g.residual:
                out[self.stream_names[g.stream]][: c.size] = c
        return out

    @property
    def max_abs_coefficient(self) -> float:
        """The largest magnitude a dequantised latent coefficient can have: the largest symbol at the coarsest step."""
        return float(MAX_ABS_SYMBOL * step_from_index(self._k_hi()))

    def decode_coefficients(self, coefficients: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The views that latent coefficients per stream decode to (the latent layer; no residual).

        ``coefficients`` is what :meth:`decoded_coefficients` gives (or a receiver holds): zeros
        stand for components not sent. For a frame without residual coefficients this is
        :meth:`decompress`'s output, up to float rounding.
        """
        coeffs = [np.asarray(coefficients[s], np.float64) for s in self.stream_names]
        vectors = self._synthesise(coeffs)
        return {spec.name: self._from_vector(spec, v) for spec, v in zip(self.views, vectors, strict=True)}

    def estimate_bits(self, views: Mapping[str, np.ndarray], payload: Payload) -> float:
        """The entropy model's ideal body length (``-sum log2 p``) of ``views`` coded with ``payload``'s header."""
        self._check_session(payload)
        if payload.is_empty:
            return 0.0
        self.check_views(views)
        return float(
            self._predict(self._all_coefficients(views), payload.meta[0], payload.session.split).sum()
        )

    def allocation_of(self, payload: Payload) -> dict[str, int]:
        """Components per stream in ``payload`` (the bandwidth split; all 0 for an empty payload)."""
        return self.read_header(payload)[1]

    # -- spec and persistence -------------------------------------------------------------------

    @property
    def view_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{view name: shape}`` the codec accepts."""
        return {v.name: tuple(v.shape) for v in self.views}

    def spec(self) -> dict[str, Any]:
        """What the codec was trained for: env id and views (compared by :meth:`check_spec`)."""
        return {
            "env_id": self.env_id,
            "views": {v.name: {"shape": list(v.shape), "dtype": v.dtype} for v in self.views},
        }

    def check_spec(self, env_id: str | None = None, views: Any = None) -> None:
        """Raise ``ValueError`` naming both specs when the codec was trained for another env or views.

        Args:
            env_id: the env the caller runs (skipped when None).
            views: the caller's views: ViewSpecs, ``{name: shape}`` or a Dict space (skipped when None).
        """
        want: dict[str, Any] = {"env_id": env_id}
        if views is not None:
            want["views"] = {n: list(s) for n, s in _shapes(views).items()}
        have = {"env_id": self.env_id, "views": {n: list(s) for n, s in self.view_shapes.items()}}
        check_spec(f"codec {self.variant!r}{self._spec_detail()}", have, want, self._spec_fix())

    def _spec_detail(self) -> str:
        """Appended to the codec's name in :meth:`check_spec`'s message (what it was trained on)."""
        return ""

    def _spec_fix(self) -> str:
        """How to get a codec for other views, for :meth:`check_spec`'s message."""
        return f"train one for it (`bwgym train codec --codec {self.variant} --env ...`) or load the matching checkpoint"

    def metadata(self) -> dict[str, Any]:
        """The checkpoint's JSON metadata."""
        return {
            **self.spec(),
            "codec": self.name,
            "view_dtypes": [v.dtype for v in self.views],
            "downsample": self.downsample,
            "family": self.family,
            "train_config": self.train_config,
            "metrics": self.metrics,
            **(
                {"residual": {"kind": "block_dct", "block": self.residual.block, "gain": self.residual_gain}}
                if self.residual is not None
                else {}
            ),
        }

    def state(self) -> dict[str, Any]:
        """The checkpoint's arrays.

        The latent model's under ``latent_model.``; the residual layer's scale indices, mean image
        (float16) and colour transform under ``residual.sigma_idx_<view>``, ``residual.mean_<view>``
        and ``residual.colour_<view>``.
        """
        state = {f"latent_model.{k}": v for k, v in self.latent_model.state_dict().items()}
        if self.residual is not None:
            for v, (sigma, mean) in enumerate(zip(self.residual.sigma_idx, self.residual.means, strict=True)):
                state[f"residual.sigma_idx_{v}"] = sigma.astype(np.int32)
                state[f"residual.mean_{v}"] = mean.astype(np.float16)
                state[f"residual.colour_{v}"] = self.residual.colours[v]
        return state

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the codec to a checkpoint (kind ``codec/<variant>``), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return save_checkpoint(path, f"codec/{self.variant}", self.state(), self.metadata())

    @classmethod
    def from_checkpoint(cls: type[SelfCodec], ckpt: Checkpoint, **kwargs: Any) -> SelfCodec:
        """Rebuild from a loaded checkpoint (``kwargs``: runtime options such as ``device``)."""
        meta = ckpt.metadata
        views = [ViewSpec(name, tuple(spec["shape"]), spec["dtype"]) for name, spec in meta["views"].items()]
        latent_model = DPCA.from_state_dict(ckpt.state, prefix="latent_model.")
        codec = cls._from_parts(ckpt, latent_model, views, **kwargs)
        if "residual" in meta:
            shapes = [tuple(v.shape) for v in views]
            n = range(len(views))
            sigma = [np.asarray(ckpt.state[f"residual.sigma_idx_{v}"]) for v in n]
            means = [np.asarray(ckpt.state[f"residual.mean_{v}"], np.float64) for v in n]
            colours = [np.asarray(ckpt.state[f"residual.colour_{v}"], np.float64) for v in n]
            layer = BlockDCTResidual(shapes, meta["residual"]["block"], sigma, means, colours)
            codec.set_residual(layer, meta["residual"]["gain"])
        return codec

    def set_residual(self, residual: BlockDCTResidual | None, gain: int = 0) -> None:
        """Install (or remove, with None) the residual layer; the session fingerprint changes."""
        if residual is not None and residual.shapes != [tuple(v.shape) for v in self.views]:
            raise ValueError(f"residual layer for views {residual.shapes}, the codec has {self.view_shapes}")
        self.residual = residual
        self.residual_gain = int(gain)
        for cached in ("_group_cache", "_plan_cache", "_plans_cache", "_fingerprint"):
            self.__dict__.pop(cached, None)

    def fit_residual(
        self,
        frames: Mapping[str, np.ndarray],
        max_frames: int = 400,
        block: int | None = None,
        gain: int | None = None,
    ) -> LatentCodec:
        """Fit the residual layer on training frames ``{view: (N, H, W, C) uint8}`` (in place).

        The scale of each DCT frequency and channel is the RMS of that coefficient of the residual
        ``x - D(z)`` (every latent component unquantised) over up to ``max_frames`` evenly spaced
        frames. The step offset ``gain`` defaults to ``scale_index(1 / a)``, ``a**2`` the pixel
        variance of the transform's output per unit of latent variance, so a step costs about the
        same pixel error in both layers.

        Args:
            frames: training frames, rows aligned across views.
            max_frames: frames used at most.
            block: DCT block side (default: the first of 8, 12, 7, 6, 4 dividing both sides).
            gain: step offset (default: fitted as above).

        Returns:
            self, with :attr:`residual` set.
        """
        if not all(_is_image(spec) for spec in self.views):
            raise ValueError("the residual layer is for image views (uint8 (H, W, C)) only")
        shapes = [tuple(v.shape) for v in self.views]
        if block is None:
            block = next(b for b in _DCT_BLOCKS if all(h % b == 0 and w % b == 0 for h, w, _ in shapes))
        n = len(next(iter(frames.values())))
        rows = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
        residuals: list[list[np.ndarray]] = [[] for _ in self.views]
        outputs, lat_var = [], 0.0
        for i in rows:
            views = {spec.name: np.asarray(frames[spec.name][i]) for spec in self.views}
            vectors = [self._to_vectors(spec, views[spec.name][None])[0] for spec in self.views]
            coeffs = self._analyse(vectors)
            lat_var += sum(float(np.sum(c**2)) for c in coeffs)
            full = [
                _upsample(spec, rec, self.downsample)
                for spec, rec in zip(self.views, self._synthesise(coeffs), strict=True)
            ]
            outputs.append(np.concatenate([f.ravel() for f in full]))
            for v, spec in enumerate(self.views):
                residuals[v].append((views[spec.name].astype(np.float64) - full[v]).astype(np.float32))
        # the mean residual image is stored as float16: fit the scales around exactly that
        means = [np.mean(r, axis=0).astype(np.float16).astype(np.float64) for r in residuals]
        colours = []
        for r, m, shape in zip(residuals, means, shapes, strict=True):
            pixels = (np.stack(r) - m).reshape(-1, shape[2])
            _, vecs = np.linalg.eigh(pixels.T @ pixels)
            vecs = vecs[:, ::-1]
            vecs *= np.where(vecs[np.argmax(np.abs(vecs), axis=0), range(shape[2])] < 0, -1.0, 1.0)
            colours.append(vecs)
        zero = [np.zeros(block * block * s[2], np.int64) for s in shapes]
        layer = BlockDCTResidual(shapes, block, zero, means, colours)
        sigma = []
        for v, res in enumerate(residuals):
            sq = sum(np.sum(layer.transform(v, r - means[v]) ** 2, axis=0) for r in res)
            sigma.append(scale_index(np.sqrt(sq / (len(res) * layer.n_blocks[v]))))
        if gain is None:
            out = np.stack(outputs)
            out_var = float(np.sum((out - out.mean(0)) ** 2))
            a = math.sqrt(out_var / lat_var) if lat_var > 0 and out_var > 0 else 1.0
            gain = int(scale_index(1.0 / a))
        self.set_residual(BlockDCTResidual(shapes, block, sigma, means, colours), gain)
        return self

    @classmethod
    def _from_parts(
        cls: type[SelfCodec], ckpt: Checkpoint, latent_model: DPCA, views: list[ViewSpec], **kwargs: Any
    ) -> SelfCodec:
        if kwargs:
            raise TypeError(f"{cls.__name__} takes no options, got {sorted(kwargs)}")
        meta = ckpt.metadata
        return cls(
            latent_model,
            views,
            downsample=meta["downsample"],
            env_id=meta["env_id"],
            family=meta["family"],
            variant=ckpt.kind.split("/", 1)[1],
            train_config=meta.get("train_config"),
            metrics=meta.get("metrics"),
        )

    @classmethod
    def load(cls: type[SelfCodec], path: str | os.PathLike[str], **kwargs: Any) -> SelfCodec:
        """Load a checkpoint of this codec class (any registered variant of it)."""
        from bwgym.common.checkpoint import CheckpointError, load_checkpoint

        ckpt = load_checkpoint(path, kind="codec/")
        codec = cls.from_checkpoint(ckpt, **kwargs) if ckpt.metadata.get("codec") == cls.name else None
        if codec is None:
            raise CheckpointError(f"{path} is a checkpoint of {ckpt.kind!r}, not of a {cls.__name__}")
        return codec

    def __repr__(self) -> str:
        return f"{type(self).__name__}(variant={self.variant!r}, env_id={self.env_id!r}, views={self.view_shapes})"


def _shapes(views: Any) -> dict[str, tuple[int, ...]]:
    from bwgym.codecs.core.protocol import view_shapes

    return view_shapes(views)
