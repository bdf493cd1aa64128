"""Linear codecs on raw pixels: distributed PCA (:class:`LinearDPCACodec`) and joint PCA (:class:`PCACodec`).

No network: each view is (optionally) downsampled, flattened and projected on principal
directions fitted once on training frames (:meth:`LinearDPCACodec.fit`); the coefficients are
quantised with one uniform step and entropy-coded with the shared coder of
:mod:`bwgym.codecs.entropy`. ``compress`` searches the number of components ``m`` (how DPCA splits
it over views follows from the fitted singular values) and the step for the lowest distortion
whose *real* payload, container included, fits the budget.

Wire format (inside a :class:`~bwgym.codecs.base.Payload`):

* ``meta`` = zigzag varint of the step index ``k`` (step ``2 ** (k / 8)``), then one varint per
  stream: the number of components sent in it (DPCA: per view; PCA: one joint stream).
* ``streams`` = one entropy-coded stream per view (DPCA) or one joint stream (PCA). Coefficient
  ``i`` of a stream is coded with scale index ``sigma_idx[i] - k``, where ``sigma_idx`` is fixed in
  the fitted model, so decoding needs only the payload and the same fitted model.

A view sent with 0 components is reconstructed as its training mean and is still present in the
output: the payload as a whole was delivered (the link decides freshness), and the mean is the
MSE-optimal guess without data. An *empty* payload (budget below the smallest useful payload)
decodes to no views at all, so the receiver holds its last frame.

Example::

    codec = LinearDPCACodec.fit(frames, max_components=32, env_id="bwgym/LocateLift-v0")
    payload = codec.compress({"arm": img_a, "side": img_b}, budget_bits=2_000)
    assert payload.nbits <= 2_000
    decoded = codec.decompress(Payload.from_bytes(payload.to_bytes()))
    codec.save("linear_dpca.npz")
    codec = LinearDPCACodec.load("linear_dpca.npz", expect_env_id="bwgym/LocateLift-v0")
"""

from __future__ import annotations

import abc
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np

from bwgym.codecs.base import Codec, Payload, PayloadError, ViewSpec, _get_varint, _put_varint, split_budget
from bwgym.codecs.dpca import DPCA, PCA
from bwgym.codecs.entropy import (
    SCALE_STEPS_PER_OCTAVE,
    EntropyCoder,
    dequantize,
    get_coder,
    quantize_symbols,
    step_from_index,
)

__all__ = ["LatentCodec", "LinearDPCACodec", "PCACodec"]

_FORMAT_VERSION = 1
#: Steps searched, relative to the largest component's scale index: from 2**-16 of the largest
#: standard deviation (far below any useful precision) to 4 times it (every symbol 0).
_STEP_RANGE = (-16 * SCALE_STEPS_PER_OCTAVE, 2 * SCALE_STEPS_PER_OCTAVE)
#: Bits added to each stream's ideal length when predicting its size: the range coder's flush and
#: byte alignment cost ~3 bits on average (see EntropyCoder.estimate_bits).
_STREAM_SLACK_BITS = 3.0
#: Real encodings tried (in order of predicted distortion) before adding slack and retrying.
_TRIES_PER_ROUND = 4
#: Container bytes that do not depend on the content: magic, version, codec id, stream count, crc.
_FIXED_BYTES = 2 + 3 + 2

SelfCodec = TypeVar("SelfCodec", bound="LatentCodec")


_VARINT_LIMITS = np.array([1 << (7 * k) for k in range(1, 9)], dtype=np.int64)


def _varint_len(n: np.ndarray) -> np.ndarray:
    """LEB128 length in bytes of non-negative integers (vectorised)."""
    return np.searchsorted(_VARINT_LIMITS, np.asarray(n, dtype=np.int64), side="right") + 1


def _zigzag(k: int) -> int:
    return 2 * k if k >= 0 else -2 * k - 1


def _unzigzag(u: int) -> int:
    return u // 2 if u % 2 == 0 else -(u + 1) // 2


def _spec_str(env_id: str | None, views: Mapping[str, tuple[int, ...]] | None) -> str:
    parts = []
    if env_id is not None:
        parts.append(f"env {env_id!r}")
    if views is not None:
        parts.append("views {" + ", ".join(f"{n!r}: {tuple(s)}" for n, s in views.items()) + "}")
    return " with ".join(parts) or "an unspecified spec"


def _view_shapes(views: Any) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` from ViewSpecs, a ``{name: shape}`` mapping or a gymnasium ``Dict`` space."""
    if hasattr(views, "spaces"):
        views = views.spaces
    if isinstance(views, Mapping):
        return {str(n): tuple(getattr(s, "shape", s)) for n, s in views.items()}
    return {v.name: tuple(v.shape) for v in views}


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


class LatentCodec(Codec):
    """Shared machinery of the latent codecs: pixels <-> vectors, rate search, wire format.

    A subclass turns flattened views into coefficients per stream (:meth:`_analyse`) and back
    (:meth:`_synthesise`), and says how many coefficients each stream has, their integer scale
    indices and the order components are added in; this base does the rest (the budget search
    of :meth:`compress`, the wire format, :meth:`decompress`). The linear codecs below analyse
    pixels directly; the learned codecs (:mod:`bwgym.codecs.ndpca`,
    :mod:`bwgym.codecs.autoencoders`) analyse the latents of neural encoders.
    """

    #: Model class stored in the checkpoint (DPCA or PCA).
    _model_key: ClassVar[str]
    #: True when a coefficient error below 1/2 vanishes in the uint8 rounding of the output (a
    #: linear transform of pixels): the step search then never goes below 1. A codec whose
    #: coefficients are latents of a network sets it False.
    _coefficients_in_pixel_units: ClassVar[bool] = True

    def __init__(
        self,
        views: Sequence[ViewSpec],
        downsample: int = 1,
        env_id: str = "",
        family: str = "gaussian",
    ) -> None:
        self.views = tuple(views)
        self.downsample = int(downsample)
        self.env_id = str(env_id)
        self.family = family
        self.coder: EntropyCoder = get_coder(family)
        for spec in self.views:
            self._coded_shape(spec)  # validates downsample against every view

    # -- subclass hooks -------------------------------------------------------------------------

    @abc.abstractmethod
    def _stream_ranks(self) -> tuple[int, ...]:
        """Return the number of coefficients available in each stream."""

    @abc.abstractmethod
    def _stream_sigma_idx(self) -> list[np.ndarray]:
        """Integer scale index of each coefficient's standard deviation, per stream."""

    @abc.abstractmethod
    def _coding_order(self) -> np.ndarray:
        """Stream index of each coefficient in the order components are added (length sum ranks)."""

    @abc.abstractmethod
    def _analyse(self, vectors: list[np.ndarray]) -> list[np.ndarray]:
        """All coefficients per stream from the flattened views."""

    @abc.abstractmethod
    def _synthesise(self, coeffs: list[np.ndarray]) -> list[np.ndarray]:
        """Flattened views from (possibly truncated) coefficients per stream."""

    @abc.abstractmethod
    def _model_state(self) -> dict[str, np.ndarray]:
        """Return the fitted model's arrays."""

    def _stream_weights(self) -> np.ndarray:
        """Squared-error weight of a coefficient of each stream (the view's scale squared)."""
        return np.ones(len(self._stream_ranks()))

    # -- views <-> vectors ----------------------------------------------------------------------

    def _coded_shape(self, spec: ViewSpec) -> tuple[int, ...]:
        return _coded_shape(spec, self.downsample)

    def _to_vectors(self, spec: ViewSpec, arrays: np.ndarray) -> np.ndarray:
        return _to_vectors(spec, arrays, self.downsample)

    def _from_vector(self, spec: ViewSpec, vector: np.ndarray) -> np.ndarray:
        return _from_vector(spec, vector, self.downsample)

    # -- compress -------------------------------------------------------------------------------

    def compress(
        self,
        views: Mapping[str, np.ndarray],
        budget_bits: int,
        allocation: Mapping[str, float] | None = None,
    ) -> Payload:
        """Encode ``views`` into at most ``budget_bits`` bits, container included.

        Searches step indices on a 1/8-octave grid (coarse to fine) and, for each, the largest
        number of components whose predicted size fits: the rate grows with each added component
        and, at a given step, an extra component never increases the distortion, so the grid is
        evaluated at once with cumulative sums of
        :meth:`~bwgym.codecs.entropy.EntropyCoder.symbol_bits` of the actual coefficients (no
        encoding). The best candidates are then encoded for real, in order of increasing
        distortion, until one's ``Payload.nbits`` fits; if the predictions were optimistic the
        search is repeated with more room per stream.

        Args:
            views: one array per view of :attr:`views`.
            budget_bits: bits the link carries this step.
            allocation: share of the budget per view. ``None`` (default): DPCA allocates by the
                pooled singular values. Given: the entropy-coded body is split by
                :func:`~bwgym.codecs.base.split_budget` and each view gets as many components as its
                share buys (a fixed-split baseline). Ignored by the joint :class:`PCACodec`.

        Returns:
            The payload with the lowest distortion that fits, or an empty payload when none does.

        """
        self.check_views(views)
        if budget_bits < 0:
            raise ValueError(f"budget_bits must be >= 0, got {budget_bits}")
        budget_bits = int(budget_bits)
        if budget_bits < 8 * (_FIXED_BYTES + 2 + 2 * len(self._stream_ranks())):
            return Payload.empty(self.name)
        vectors = [self._to_vectors(spec, views[spec.name][None])[0] for spec in self.views]
        coeffs = self._analyse(vectors)
        tried: set[tuple[int, tuple[int, ...]]] = set()
        slack = _STREAM_SLACK_BITS
        for _ in range(4):
            for k, dims in self._candidates(coeffs, budget_bits, allocation, slack):
                if (k, dims) in tried:
                    continue
                tried.add((k, dims))
                payload = self._encode(coeffs, k, dims)
                if payload.nbits <= budget_bits:
                    return payload
                if len(tried) % _TRIES_PER_ROUND == 0:
                    break
            slack += 8.0  # the predictions were optimistic: demand more room per stream
        return Payload.empty(self.name)

    def _candidates(
        self,
        coeffs: list[np.ndarray],
        budget_bits: int,
        allocation: Mapping[str, float] | None,
        slack: float,
    ) -> list[tuple[int, tuple[int, ...]]]:
        """(step index, components per stream) pairs predicted to fit, best distortion first.

        Coarse to fine: every 4th step index first, then the 1/8-octave neighbours of the best
        coarse step (distortion against step is unimodal at a fixed budget), so a call evaluates
        ~45 steps instead of ~145.
        """
        sigma = self._stream_sigma_idx()
        top = max((int(s.max()) for s in sigma if s.size), default=0)
        lo, hi = top + _STEP_RANGE[0], top + _STEP_RANGE[1]
        if self._coefficients_in_pixel_units and all(spec.dtype == "uint8" for spec in self.views):
            # a coefficient error below 1/2 spreads over the whole image and vanishes in the
            # uint8 rounding: a step finer than 1 only spends bits
            lo = min(max(lo, 0), hi)
        coarse = np.arange(hi, lo - 1, -4)[::-1]  # includes the coarsest step, the cheapest rate
        found = self._evaluate(coeffs, coarse, budget_bits, allocation, slack)
        if not found:
            return []
        best = found[0][2]
        fine = np.array(
            [k for k in range(best - 3, best + 4) if lo <= k <= hi and k not in set(coarse.tolist())]
        )
        if fine.size:
            found += self._evaluate(coeffs, fine, budget_bits, allocation, slack)
        found.sort(key=lambda c: (c[0], c[1]))
        return [(k, dims) for _, _, k, dims in found]

    def _evaluate(
        self,
        coeffs: list[np.ndarray],
        ks: np.ndarray,
        budget_bits: int,
        allocation: Mapping[str, float] | None,
        slack: float,
    ) -> list[tuple[float, int, int, tuple[int, ...]]]:
        """Predicted (distortion, bytes, step index, dims) of the best few choices at steps ``ks``."""
        ranks = self._stream_ranks()
        sigma = self._stream_sigma_idx()
        weights = self._stream_weights()
        steps = step_from_index(ks)[:, None]
        n_streams = len(ranks)
        zero = np.zeros((len(ks), 1))
        # per stream: cumulative bits and distortion of sending its first n coefficients, (S, r+1)
        cum_bits, dist = [], []
        for j in range(n_streams):
            c = coeffs[j][None, :]
            if ranks[j] == 0:
                cum_bits.append(zero)
                dist.append(zero)
                continue
            sym = quantize_symbols(np.broadcast_to(c, (len(ks), ranks[j])), steps)
            bits = self.coder.symbol_bits(sym, sigma[j][None, :] - ks[:, None])
            kept_err = (c - dequantize(sym, steps)) ** 2
            dropped_err = c**2
            cum_bits.append(np.concatenate([zero, np.cumsum(bits, axis=1)], axis=1))
            gain = np.concatenate([zero, np.cumsum(dropped_err - kept_err, axis=1)], axis=1)
            dist.append(weights[j] * (dropped_err.sum() - gain))

        if allocation is None or n_streams == 1:
            # grid over (step, number of components in coding order): dims per stream (M, J)
            onehot = self._coding_order()[:, None] == np.arange(n_streams)[None, :]
            dims = np.cumsum(onehot, axis=0).astype(np.int64)
            stream_bits = np.stack(
                [cum_bits[j][:, dims[:, j]] for j in range(n_streams)], axis=-1
            )  # (S, M, J)
            total_dist = sum(dist[j][:, dims[:, j]] for j in range(n_streams))  # (S, M)
            dims_grid = np.broadcast_to(dims[None], stream_bits.shape)
        else:
            # fixed split: one choice of dims per step (S, J)
            dims = self._split_dims(cum_bits, budget_bits, allocation, slack, len(ks))
            rows = np.arange(len(ks))
            stream_bits = np.stack([cum_bits[j][rows, dims[:, j]] for j in range(n_streams)], axis=-1)[
                :, None
            ]
            total_dist = sum(dist[j][rows, dims[:, j]] for j in range(n_streams))[:, None]
            dims_grid = dims[:, None, :]
        stream_bytes = np.where(dims_grid > 0, np.ceil((stream_bits + slack) / 8.0), 0).astype(np.int64)
        zz_len = _varint_len(np.array([_zigzag(int(k)) for k in ks]))[:, None]
        meta_len = zz_len + _varint_len(dims_grid).sum(axis=-1)
        total = (
            _FIXED_BYTES
            + _varint_len(meta_len)
            + meta_len
            + (_varint_len(stream_bytes) + stream_bytes).sum(-1)
        )
        fits = (8 * total <= budget_bits) & (dims_grid.sum(-1) > 0)
        s_idx, m_idx = np.nonzero(fits)
        best = np.lexsort((total[s_idx, m_idx], total_dist[s_idx, m_idx]))[: 4 * _TRIES_PER_ROUND]
        return [
            (
                float(total_dist[s_idx[i], m_idx[i]]),
                int(total[s_idx[i], m_idx[i]]),
                int(ks[s_idx[i]]),
                tuple(int(d) for d in dims_grid[s_idx[i], m_idx[i]]),
            )
            for i in best
        ]

    def _split_dims(
        self,
        cum_bits: list[np.ndarray],
        budget_bits: int,
        allocation: Mapping[str, float],
        slack: float,
        n_steps: int,
    ) -> np.ndarray:
        """Per step, components per view when each view's body gets its share of the budget."""
        n_streams = len(cum_bits)
        overhead_bits = 8 * (_FIXED_BYTES + 1 + 2 + 3 * n_streams)  # meta and length fields, generous
        shares = split_budget(max(budget_bits - overhead_bits, 0), self.view_names, allocation)
        dims = np.zeros((n_steps, n_streams), dtype=np.int64)
        for j, name in enumerate(self.view_names):
            affordable = cum_bits[j] + slack <= shares[name]  # (S, r+1), monotone in n
            dims[:, j] = affordable.sum(axis=1) - 1
        return np.maximum(dims, 0)

    def _encode(self, coeffs: list[np.ndarray], k: int, dims: tuple[int, ...]) -> Payload:
        step = step_from_index(k)
        sigma = self._stream_sigma_idx()
        meta = bytearray()
        _put_varint(meta, _zigzag(k))
        streams = []
        for j, n in enumerate(dims):
            _put_varint(meta, n)
            sym = quantize_symbols(coeffs[j][:n], step)
            streams.append(self.coder.encode(sym, sigma[j][:n] - k))
        return Payload(self.name, tuple(streams), bytes(meta))

    # -- decompress -----------------------------------------------------------------------------

    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        """Decode a payload into every view (``{}`` for an empty payload).

        Raises:
            PayloadError: the payload is of another codec, or its header or streams are corrupt.

        """
        if payload.codec != self.name:
            raise PayloadError(f"payload was written by codec {payload.codec!r}, this is {self.name!r}")
        if payload.is_empty:
            return {}
        ranks = self._stream_ranks()
        if len(payload.streams) != len(ranks):
            raise PayloadError(f"payload has {len(payload.streams)} streams, expected {len(ranks)}")
        meta = payload.meta
        zz, pos = _get_varint(meta, 0)
        k = _unzigzag(zz)
        if abs(k) > 64 * SCALE_STEPS_PER_OCTAVE:
            raise PayloadError(f"step index {k} out of range: corrupt payload header")
        dims = []
        for j in range(len(ranks)):
            n, pos = _get_varint(meta, pos)
            if n > ranks[j]:
                raise PayloadError(f"stream {j} claims {n} components, the model has {ranks[j]}")
            dims.append(n)
        if pos != len(meta):
            raise PayloadError(f"payload header has {len(meta) - pos} unexpected trailing bytes")
        step = step_from_index(k)
        sigma = self._stream_sigma_idx()
        coeffs = []
        for j, n in enumerate(dims):
            sym = self.coder.decode(payload.streams[j], sigma[j][:n] - k)
            coeffs.append(dequantize(sym, step))
        vectors = self._synthesise(coeffs)
        return {spec.name: self._from_vector(spec, v) for spec, v in zip(self.views, vectors, strict=False)}

    # -- spec and persistence -------------------------------------------------------------------

    @property
    def view_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{view name: shape}`` the codec accepts."""
        return {v.name: tuple(v.shape) for v in self.views}

    def check_spec(self, env_id: str | None = None, views: Any = None) -> None:
        """Raise ``ValueError`` naming both specs when this codec was fitted for another env or views.

        Args:
            env_id: the env the caller runs (skipped when None).
            views: the views the caller has: ViewSpecs, ``{name: shape}``, or a gymnasium ``Dict``
                observation space restricted to the coded views (skipped when None).

        """
        want = _view_shapes(views) if views is not None else None
        env_bad = env_id is not None and env_id != self.env_id
        views_bad = want is not None and want != self.view_shapes
        if env_bad or views_bad:
            raise ValueError(
                f"{type(self).__name__} was fitted for {_spec_str(self.env_id, self.view_shapes)}, "
                f"but {_spec_str(env_id, want)} was requested; refit it (or load the matching checkpoint)"
            )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted codec to a ``.npz`` (plain arrays plus a JSON header; no pickle)."""
        import bwgym

        header = {
            "codec": self.name,
            "format_version": _FORMAT_VERSION,
            "env_id": self.env_id,
            "views": [[v.name, list(v.shape), v.dtype] for v in self.views],
            "downsample": self.downsample,
            "family": self.family,
            "bwgym_version": getattr(bwgym, "__version__", "unknown"),
        }
        arrays = {f"{self._model_key}.{k}": v for k, v in self._model_state().items()}
        np.savez_compressed(path, header=np.asarray(json.dumps(header)), **arrays)

    @classmethod
    def load(
        cls: type[SelfCodec],
        path: str | os.PathLike[str],
        expect_env_id: str | None = None,
        expect_views: Any = None,
    ) -> SelfCodec:
        """Load a codec written by :meth:`save` and check it against the caller's spec.

        Raises:
            ValueError: the file is not a checkpoint of this codec, or its env id / views differ
                from ``expect_env_id`` / ``expect_views`` (the message names both specs).

        """
        with np.load(path, allow_pickle=False) as data:
            try:
                header = json.loads(str(data["header"]))
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{path}: not a bwgym linear codec checkpoint (no valid header)") from exc
            if header.get("codec") != cls.name:
                raise ValueError(
                    f"{path}: checkpoint of codec {header.get('codec')!r}, expected {cls.name!r}"
                )
            if header.get("format_version") != _FORMAT_VERSION:
                raise ValueError(
                    f"{path}: checkpoint format {header.get('format_version')}, "
                    f"this bwgym reads {_FORMAT_VERSION}"
                )
            prefix = cls._model_key + "."
            state = {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)}
        views = [ViewSpec(n, tuple(s), d) for n, s, d in header["views"]]
        codec = cls._from_model_state(state, views, header["downsample"], header["env_id"], header["family"])
        codec.check_spec(expect_env_id, expect_views)
        return codec

    @classmethod
    @abc.abstractmethod
    def _from_model_state(
        cls: type[SelfCodec],
        state: Mapping[str, np.ndarray],
        views: Sequence[ViewSpec],
        downsample: int,
        env_id: str,
        family: str,
    ) -> SelfCodec:
        """Rebuild from a checkpoint's model arrays."""

    @classmethod
    def _fit_inputs(
        cls, frames: Mapping[str, np.ndarray], downsample: int
    ) -> tuple[list[ViewSpec], dict[str, np.ndarray]]:
        specs = []
        for name, arr in frames.items():
            arr = np.asarray(arr)
            if arr.ndim < 2:
                raise ValueError(f"view {name!r}: frames must be (N, ...) with N >= 2, got shape {arr.shape}")
            specs.append(ViewSpec(str(name), tuple(arr.shape[1:]), str(arr.dtype)))
        vectors = {spec.name: _to_vectors(spec, frames[spec.name], downsample) for spec in specs}
        return specs, vectors

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(env_id={self.env_id!r}, views={self.view_shapes}, downsample={self.downsample})"


class LinearDPCACodec(LatentCodec):
    """DPCA directly on (downsampled) pixels: each view projected on its own principal directions.

    The distributed linear baseline of the NDPCA paper: each view's encoder needs only its own
    frame and the fitted model; the receiver learns from the payload header how many components
    each view sent. Build with :meth:`fit` or :meth:`load`.

    Args:
        dpca: the fitted model, one DPCA view per codec view (same names, flattened dims).
        views: the view specs (name, shape, dtype).
        downsample: integer block-averaging factor of image views before projection (decoded
            images are upsampled by pixel repetition).
        env_id: the env the frames came from (recorded in checkpoints and checked at load).
        family: entropy model, ``"gaussian"`` or ``"laplace"``.

    """

    name = "linear_dpca"
    _model_key = "dpca"

    def __init__(
        self,
        dpca: DPCA,
        views: Sequence[ViewSpec],
        downsample: int = 1,
        env_id: str = "",
        family: str = "gaussian",
    ) -> None:
        super().__init__(views, downsample, env_id, family)
        if dpca.view_names != self.view_names:
            raise ValueError(
                f"DPCA views {list(dpca.view_names)} differ from codec views {list(self.view_names)}"
            )
        for spec, d in zip(self.views, dpca.dims, strict=False):
            if math.prod(self._coded_shape(spec)) != d:
                raise ValueError(
                    f"view {spec.name!r}: DPCA dimension {d} does not match {self._coded_shape(spec)}"
                )
        self.dpca = dpca

    @classmethod
    def fit(
        cls,
        frames: Mapping[str, np.ndarray],
        max_components: int | Mapping[str, int] = 64,
        downsample: int = 1,
        env_id: str = "",
        family: str = "gaussian",
    ) -> LinearDPCACodec:
        """Fit on training frames.

        Args:
            frames: ``{view: (N, H, W, 3) uint8}`` (or ``(N, d)`` float vectors), rows aligned in
                time across views. View specs are taken from these shapes and dtypes.
            max_components: components kept per view (bounds the model size: ``H*W*3`` floats each).
            downsample: block-averaging factor for image views.
            env_id: recorded in the checkpoint.
            family: entropy model family.

        """
        specs, vectors = cls._fit_inputs(frames, downsample)
        dpca = DPCA.fit(vectors, max_components=max_components)
        return cls(dpca, specs, downsample, env_id, family)

    def _stream_ranks(self) -> tuple[int, ...]:
        return self.dpca.ranks

    def _stream_sigma_idx(self) -> list[np.ndarray]:
        return self.dpca.sigma_idx

    def _stream_weights(self) -> np.ndarray:
        return np.asarray(self.dpca.scales) ** 2

    def _coding_order(self) -> np.ndarray:
        return self.dpca.order

    def _analyse(self, vectors: list[np.ndarray]) -> list[np.ndarray]:
        coeffs = self.dpca.encode(vectors, dims=dict(zip(self.view_names, self.dpca.ranks, strict=False)))
        return [coeffs[n] for n in self.view_names]

    def _synthesise(self, coeffs: list[np.ndarray]) -> list[np.ndarray]:
        out = self.dpca.decode(dict(zip(self.view_names, coeffs, strict=False)))
        return [out[n] for n in self.view_names]

    def _model_state(self) -> dict[str, np.ndarray]:
        return self.dpca.state_dict()

    @classmethod
    def _from_model_state(
        cls,
        state: Mapping[str, np.ndarray],
        views: Sequence[ViewSpec],
        downsample: int,
        env_id: str,
        family: str,
    ) -> LinearDPCACodec:
        return cls(DPCA.from_state_dict(state), views, downsample, env_id, family)


class PCACodec(LatentCodec):
    """Joint PCA over all views' pixels: the non-distributed linear reference (one joint stream).

    Its encoder needs every view at once, so it bounds what any distributed linear codec can do
    at the same rate (Lemma 3.1). ``allocation`` is ignored.
    """

    name = "pca"
    _model_key = "pca"

    def __init__(
        self,
        pca: PCA,
        views: Sequence[ViewSpec],
        downsample: int = 1,
        env_id: str = "",
        family: str = "gaussian",
    ) -> None:
        super().__init__(views, downsample, env_id, family)
        if pca.view_names != self.view_names:
            raise ValueError(
                f"PCA views {list(pca.view_names)} differ from codec views {list(self.view_names)}"
            )
        self.pca = pca

    @classmethod
    def fit(
        cls,
        frames: Mapping[str, np.ndarray],
        max_components: int = 128,
        downsample: int = 1,
        env_id: str = "",
        family: str = "gaussian",
    ) -> PCACodec:
        """Fit on training frames (same arguments as :meth:`LinearDPCACodec.fit`; components in total)."""
        specs, vectors = cls._fit_inputs(frames, downsample)
        return cls(PCA.fit(vectors, max_components=max_components), specs, downsample, env_id, family)

    def _stream_ranks(self) -> tuple[int, ...]:
        return (self.pca.max_m,)

    def _stream_sigma_idx(self) -> list[np.ndarray]:
        return [self.pca.sigma_idx]

    def _coding_order(self) -> np.ndarray:
        return np.zeros(self.pca.max_m, dtype=np.int64)

    def _analyse(self, vectors: list[np.ndarray]) -> list[np.ndarray]:
        return [self.pca.encode(vectors, self.pca.max_m)]

    def _synthesise(self, coeffs: list[np.ndarray]) -> list[np.ndarray]:
        out = self.pca.decode(coeffs[0])
        return [out[n] for n in self.view_names]

    def _model_state(self) -> dict[str, np.ndarray]:
        return self.pca.state_dict()

    @classmethod
    def _from_model_state(
        cls,
        state: Mapping[str, np.ndarray],
        views: Sequence[ViewSpec],
        downsample: int,
        env_id: str,
        family: str,
    ) -> PCACodec:
        return cls(PCA.from_state_dict(state), views, downsample, env_id, family)


#: Former private name of :class:`LatentCodec`, kept for code written against it.
_LinearCodec = LatentCodec
