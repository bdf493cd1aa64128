"""The latent codec: views -> transform -> latent model (DPCA) -> quantiser -> entropy-coded bytes.

Every learned or fitted codec of bwgym is a :class:`LatentCodec` (CompressAI's layers):

* a **transform** between views and latents: identity on (downsampled) pixels for the linear
  codecs (:mod:`bwgym.codecs.linear`), neural encoders and a joint decoder for NDPCA, DAE and JAE
  (:mod:`bwgym.codecs.autoencoders`, :mod:`bwgym.codecs.ndpca`);
* a **latent model**, always a fitted :class:`~bwgym.codecs.dpca.DPCA`: one stream per view for
  the distributed codecs, or one stream named ``"joint"`` over all views for the joint references
  (joint PCA is DPCA with one stream), whose components are sorted by variance so one model serves
  every bandwidth;
* the **entropy model and coder** of :mod:`bwgym.codecs.entropy` (integer tables, constriction).

``compress`` searches the number of components (split over streams by the latent model's pooled
order, or by the caller's ``allocation``) and one uniform quantisation step for the lowest
distortion whose *real* payload, container included, fits the budget.

Wire format (inside a :class:`~bwgym.codecs.base.Payload`):

* ``meta`` = zigzag varint of the step index ``k`` (step ``2 ** (k / 8)``), then one varint per
  stream: the number of components sent in it.
* ``streams`` = one entropy-coded stream per latent stream. Coefficient ``i`` of a stream is coded
  with scale index ``sigma_idx[i] - k``, where ``sigma_idx`` is fixed in the fitted model, so
  decoding needs only the payload and the same model.

A stream sent with 0 components is reconstructed from its training mean and the view is still
present in the output: the payload as a whole was delivered (the link decides freshness). An
*empty* payload (budget below the smallest useful payload) decodes to no views at all, so the
receiver holds its last frame.

Checkpoints use the project's one format (:mod:`bwgym.common.checkpoint`), kind
``codec/<registered name>``: the latent model's arrays under ``latent_model.``, the network's
under ``net.`` for the neural codecs, and metadata (env id, views, transform config, training
config, metrics).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from bwgym.codecs.base import Codec, Payload, PayloadError, ViewSpec, _get_varint, _put_varint, split_budget
from bwgym.codecs.dpca import DPCA
from bwgym.codecs.entropy import (
    SCALE_STEPS_PER_OCTAVE,
    EntropyCoder,
    dequantize,
    get_coder,
    quantize_symbols,
    step_from_index,
)
from bwgym.common.checkpoint import Checkpoint, check_spec, save_checkpoint

__all__ = ["JOINT", "LatentCodec"]

#: The stream name of a joint latent model (one stream over all views).
JOINT = "joint"
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


_VARINT_LIMITS = np.array([1 << (7 * k) for k in range(1, 9)], dtype=np.int64)


def _varint_len(n: np.ndarray) -> np.ndarray:
    """LEB128 length in bytes of non-negative integers (vectorised)."""
    return np.searchsorted(_VARINT_LIMITS, np.asarray(n, dtype=np.int64), side="right") + 1


def _zigzag(k: int) -> int:
    return 2 * k if k >= 0 else -2 * k - 1


def _unzigzag(u: int) -> int:
    return u // 2 if u % 2 == 0 else -(u + 1) // 2


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

    def _coding_order(self) -> np.ndarray:
        """Stream index of each coefficient in the order components are added (length sum ranks)."""
        return self.latent_model.order

    def _stream_weights(self) -> np.ndarray:
        """Squared-error weight of a coefficient of each stream (the stream's scale squared)."""
        return np.asarray(self.latent_model.scales) ** 2

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

    def coefficients(self, views: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """All latent-model coefficients per stream of one observation (what ``compress`` quantises)."""
        self.check_views(views)
        vectors = [self._to_vectors(spec, views[spec.name][None])[0] for spec in self.views]
        return dict(zip(self.stream_names, self._analyse(vectors), strict=True))

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
            allocation: share of the budget per view. ``None`` (default): the latent model allocates
                (DPCA's pooled singular values). Given: the entropy-coded body is split by
                :func:`~bwgym.codecs.base.split_budget` and each view gets as many components as its
                share buys. A joint codec has one stream and cannot split it.

        Returns:
            The payload with the lowest distortion that fits, or an empty payload when none does.

        """
        self.check_views(views)
        if budget_bits < 0:
            raise ValueError(f"budget_bits must be >= 0, got {budget_bits}")
        budget_bits = int(budget_bits)
        if budget_bits < 8 * (_FIXED_BYTES + 2 + 2 * len(self._stream_ranks())):
            self.last_allocation = dict.fromkeys(self.stream_names, 0)
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
                    self.last_allocation = dict(zip(self.stream_names, dims, strict=True))
                    return payload
                if len(tried) % _TRIES_PER_ROUND == 0:
                    break
            slack += 8.0  # the predictions were optimistic: demand more room per stream
        self.last_allocation = dict.fromkeys(self.stream_names, 0)
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

    # -- header -----------------------------------------------------------------------------------

    def read_header(self, payload: Payload) -> tuple[int, dict[str, int]]:
        """Read the step index and the components per stream from a payload of this codec.

        Raises:
            PayloadError: the payload is of another codec or its header is corrupt.
        """
        if payload.codec != self.name:
            raise PayloadError(f"payload was written by codec {payload.codec!r}, this is {self.name!r}")
        if payload.is_empty:
            return 0, dict.fromkeys(self.stream_names, 0)
        zz, pos = _get_varint(payload.meta, 0)
        dims = {}
        for name in self.stream_names:
            n, pos = _get_varint(payload.meta, pos)
            dims[name] = n
        return _unzigzag(zz), dims

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
        check_spec(
            f"codec {self.variant!r}",
            have,
            want,
            f"train one for it (`bwgym train codec --codec {self.variant} --env ...`) or load the matching checkpoint",
        )

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
        }

    def state(self) -> dict[str, Any]:
        """The checkpoint's arrays (the latent model's, under ``latent_model.``)."""
        return {f"latent_model.{k}": v for k, v in self.latent_model.state_dict().items()}

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
        return cls._from_parts(ckpt, latent_model, views, **kwargs)

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
    from bwgym.codecs.base import view_shapes

    return view_shapes(views)
