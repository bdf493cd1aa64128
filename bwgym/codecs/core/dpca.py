"""Distributed PCA (DPCA): per-view linear projections with one bandwidth allocation for all views.

NDPCA paper (000) Sec. 3-4. Each view ``k`` is projected on its own principal directions, fitted
on that view alone (the encoders cannot talk to each other); the singular values of all views are
pooled and sorted, and a total bandwidth of ``m`` dimensions goes to the ``m`` largest. So one
fitted model serves every bandwidth: at ``m`` it keeps the first ``allocate(m)[k]`` columns of
view ``k``'s basis.

* :class:`DPCA` -- numpy, fitted once on latents (or pixels) and stored in a checkpoint
  (:meth:`DPCA.state_dict` / :meth:`DPCA.from_state_dict`); inference never refits.
* :class:`PCA` -- one PCA over the concatenated views: the joint (non-distributed) reference.
  Lemma 3.1: for reconstruction, DPCA's error exceeds PCA's by a gap that vanishes with the
  cross-view covariance.
* :class:`DPCAProjection` -- torch module: Algorithm 1's random-dimension projection for
  training, with an exponential moving average of each view's covariance so that small batches
  give a well-conditioned basis (the paper names batch SVD instability as a limitation).

Conventions: data are rows, ``z[k]`` has shape ``(N, d_k)``. ``singular_values`` are those of
the centred (and scaled) ``(N, d_k)`` training matrix; ``variances = singular_values**2 / N`` are
the eigenvalues of the covariance (1/N normalisation), i.e. the per-sample squared error each
component removes. Per view, ``encode`` computes ``((z - mean) / scale) @ V[:, :m_k]`` and
``decode`` computes ``coeffs @ V[:, :m_k].T * scale + mean``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bwgym.codecs.core.entropy import scale_index

__all__ = ["DPCA", "PCA", "DPCAProjection", "DPCAProjectionOutput", "ViewData"]

#: Per-view data: a mapping ``{view name: array}`` or a sequence in view order.
ViewData = Mapping[str, Any] | Sequence[Any]


def _as_views(z: ViewData, names: Sequence[str] | None = None) -> tuple[tuple[str, ...], list[Any]]:
    """Names and arrays of per-view data; sequences are named ``"0", "1", ...`` unless ``names``."""
    if isinstance(z, Mapping):
        keys = tuple(str(k) for k in z)
        if names is not None:
            if set(keys) != set(names):
                raise ValueError(f"expected views {list(names)}, got {list(keys)}")
            return tuple(names), [z[n] for n in names]
        return keys, [z[k] for k in z]
    arrays = list(z)
    if names is not None:
        if len(arrays) != len(names):
            raise ValueError(f"expected {len(names)} views {list(names)}, got {len(arrays)} arrays")
        return tuple(names), arrays
    return tuple(str(i) for i in range(len(arrays))), arrays


def _canonical_signs(components: np.ndarray) -> np.ndarray:
    """Flip each column so its largest-magnitude entry is positive.

    SVD signs are arbitrary and differ between LAPACK builds; fixing them makes a refit on another
    machine give the same basis (and the same coefficients).
    """
    if components.size == 0:
        return components
    rows = np.argmax(np.abs(components), axis=0)
    signs = np.sign(components[rows, np.arange(components.shape[1])])
    signs[signs == 0] = 1.0
    return components * signs


def _principal_axes(x: np.ndarray, max_components: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal principal directions ``(d, r)`` and singular values ``(r,)`` of centred ``x``.

    Never forms an ``N x N`` matrix: for ``N >= d`` it diagonalises the ``d x d`` Gram matrix, else
    it takes the economy SVD of the ``(N, d)`` matrix (``full_matrices=False``, cost ``N^2 d``).
    """
    n, d = x.shape
    if n >= d:
        eigvals, eigvecs = np.linalg.eigh(x.T @ x)
        order = np.argsort(eigvals)[::-1]
        singular = np.sqrt(np.clip(eigvals[order], 0.0, None))
        components = eigvecs[:, order]
    else:
        _, singular, vt = np.linalg.svd(x, full_matrices=False)
        components = vt.T
    r = components.shape[1] if max_components is None else min(int(max_components), components.shape[1])
    return _canonical_signs(components[:, :r]), singular[:r]


def _pooled_order(singular_values: Sequence[np.ndarray]) -> np.ndarray:
    """View index of each pooled component, largest singular value first.

    Ties break by view order then component order (a stable sort), and the result is stored with
    the model, so encoder and decoder allocate identically without comparing floats.
    """
    views = np.concatenate([np.full(len(s), k, dtype=np.int64) for k, s in enumerate(singular_values)])
    values = np.concatenate([np.asarray(s, dtype=np.float64) for s in singular_values])
    if values.size == 0:
        return views
    return views[np.argsort(-values, kind="stable")]


class DPCA:
    """Distributed PCA fitted on per-view data; one model for every total bandwidth ``m``.

    Build with :meth:`fit` (or :meth:`from_covariances`, :meth:`from_state_dict`).

    Attributes:
        view_names: the views, in order.
        means: per-view mean ``(d_k,)``.
        scales: per-view scalar the centred data are divided by before projecting (1 unless fitted
            with ``standardize=True``).
        components: per-view orthonormal basis ``(d_k, r_k)``, columns by decreasing singular value.
        singular_values: per-view ``(r_k,)``, of the centred, scaled training matrix.
        n_samples: number of training rows ``N``.
        total_variances: per-view trace of the (scaled) covariance, to report the error of
            components beyond ``r_k``.
        order: view index of each pooled component (length ``sum r_k``), by decreasing singular
            value; :meth:`allocate` counts its first ``m`` entries.
        sigma_idx: per-view integer scale index (:func:`~bwgym.codecs.core.entropy.scale_index`) of each
            component's standard deviation ``sqrt(variance)``, fixed at fit time so the entropy
            model is identical at both ends.

    """

    def __init__(
        self,
        view_names: Sequence[str],
        means: Sequence[np.ndarray],
        scales: Sequence[float],
        components: Sequence[np.ndarray],
        singular_values: Sequence[np.ndarray],
        n_samples: int,
        total_variances: Sequence[float] | None = None,
        order: np.ndarray | None = None,
        sigma_idx: Sequence[np.ndarray] | None = None,
    ) -> None:
        k = len(view_names)
        if k < 1 or not (len(means) == len(scales) == len(components) == len(singular_values) == k):
            raise ValueError("DPCA needs one mean, scale, basis and singular-value array per view")
        if len(set(view_names)) != k:
            raise ValueError(f"view names must be unique, got {list(view_names)}")
        self.view_names = tuple(str(v) for v in view_names)
        self.means = [np.asarray(m, dtype=np.float64) for m in means]
        self.scales = [float(s) for s in scales]
        self.components = [np.asarray(c, dtype=np.float64) for c in components]
        self.singular_values = [np.asarray(s, dtype=np.float64) for s in singular_values]
        self.n_samples = int(n_samples)
        for name, mean, basis, sv, scale in zip(
            self.view_names, self.means, self.components, self.singular_values, self.scales, strict=False
        ):
            if basis.ndim != 2 or basis.shape[0] != mean.shape[0] or basis.shape[1] != sv.shape[0]:
                raise ValueError(
                    f"view {name!r}: basis {basis.shape}, mean {mean.shape} and singular values "
                    f"{sv.shape} do not agree"
                )
            if not scale > 0:
                raise ValueError(f"view {name!r}: scale must be > 0, got {scale}")
        if total_variances is None:
            total_variances = [float(np.sum(v)) for v in self.variances]
        self.total_variances = [float(t) for t in total_variances]
        self.order = _pooled_order(self.singular_values) if order is None else np.asarray(order, np.int64)
        if self.order.shape != (sum(self.ranks),) or np.any(
            np.bincount(self.order, minlength=k)[:k] != np.asarray(self.ranks)
        ):
            raise ValueError("pooled order does not match the per-view ranks")
        if sigma_idx is None:
            sigma_idx = [scale_index(np.sqrt(v)) for v in self.variances]
        self.sigma_idx = [np.asarray(s, dtype=np.int32) for s in sigma_idx]

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        z: ViewData,
        max_components: int | Mapping[str, int] | None = None,
        standardize: bool = False,
    ) -> DPCA:
        """Fit on per-view data.

        Args:
            z: ``{view: (N, d_k)}`` or a sequence of ``(N, d_k)`` arrays (views ``"0", "1", ...``);
                every view has the same ``N`` rows, row ``i`` of each view from the same instant.
            max_components: components kept per view (int, per-view mapping, or None for all
                ``min(N, d_k)``). The pooled allocation is exact up to ``sum r_k``.
            standardize: divide each centred view by its RMS (``sqrt(trace(cov) / d_k)``) so views of
                different units compete fairly. Off by default: then the allocation minimises the
                total squared error of the raw values, which is what Lemma 3.1 analyses.

        """
        names, arrays = _as_views(z)
        arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
        if any(a.ndim != 2 for a in arrays):
            raise ValueError(f"each view must be (N, d), got shapes {[a.shape for a in arrays]}")
        n = arrays[0].shape[0]
        if any(a.shape[0] != n for a in arrays) or n < 2:
            raise ValueError(f"views need the same number (>= 2) of rows, got {[a.shape[0] for a in arrays]}")
        means, scales, comps, svs, totals = [], [], [], [], []
        for name, a in zip(names, arrays, strict=False):
            mean = a.mean(axis=0)
            centred = a - mean
            total = float(np.sum(centred**2)) / n
            scale = float(np.sqrt(total / a.shape[1])) if standardize and total > 0 else 1.0
            centred /= scale
            limit = max_components.get(name) if isinstance(max_components, Mapping) else max_components
            basis, sv = _principal_axes(centred, limit)
            means.append(mean)
            scales.append(scale)
            comps.append(basis)
            svs.append(sv)
            totals.append(total / scale**2)
        return cls(names, means, scales, comps, svs, n, totals)

    @classmethod
    def from_covariances(
        cls,
        means: ViewData,
        covariances: ViewData,
        n_samples: int = 1,
        max_components: int | None = None,
    ) -> DPCA:
        """Build from per-view means and covariances (e.g. the running statistics of training).

        ``singular_values`` are set to ``sqrt(eigenvalue * n_samples)`` so that ``variances`` equal
        the covariance's eigenvalues.
        """
        names, mean_list = _as_views(means)
        _, cov_list = _as_views(covariances, names if isinstance(covariances, Mapping) else None)
        comps, svs, totals = [], [], []
        for cov in cov_list:
            cov = np.asarray(cov, dtype=np.float64)
            eigvals, eigvecs = np.linalg.eigh((cov + cov.T) / 2)
            order = np.argsort(eigvals)[::-1]
            r = len(order) if max_components is None else min(max_components, len(order))
            comps.append(_canonical_signs(eigvecs[:, order[:r]]))
            svs.append(np.sqrt(np.clip(eigvals[order[:r]], 0, None) * n_samples))
            totals.append(float(np.trace(cov)))
        return cls(names, mean_list, [1.0] * len(names), comps, svs, n_samples, totals)

    # -- properties -----------------------------------------------------------------------------

    @property
    def dims(self) -> tuple[int, ...]:
        """Input dimension ``d_k`` of each view."""
        return tuple(m.shape[0] for m in self.means)

    @property
    def ranks(self) -> tuple[int, ...]:
        """Number of components ``r_k`` kept per view."""
        return tuple(len(s) for s in self.singular_values)

    @property
    def max_m(self) -> int:
        """Largest total bandwidth: ``sum r_k``."""
        return int(sum(self.ranks))

    @property
    def variances(self) -> list[np.ndarray]:
        """Per view, the variance each component carries (covariance eigenvalues, scaled units)."""
        return [s**2 / self.n_samples for s in self.singular_values]

    @property
    def pooled_singular_values(self) -> np.ndarray:
        """All views' singular values, sorted descending (the order :meth:`allocate` uses)."""
        position = np.zeros(len(self.view_names), dtype=np.int64)
        out = np.empty(self.max_m)
        for i, k in enumerate(self.order):
            out[i] = self.singular_values[k][position[k]]
            position[k] += 1
        return out

    # -- bandwidth ------------------------------------------------------------------------------

    def allocate(self, m: int) -> dict[str, int]:
        """Dimensions per view at total bandwidth ``m``: the views of the top-``m`` pooled values."""
        if not 0 <= int(m) <= self.max_m:
            raise ValueError(f"m must be in [0, {self.max_m}], got {m}")
        counts = np.bincount(self.order[: int(m)], minlength=len(self.view_names))
        return dict(zip(self.view_names, (int(c) for c in counts), strict=False))

    def _dims(self, m: int | None, dims: Mapping[str, int] | None) -> dict[str, int]:
        if (m is None) == (dims is None):
            raise ValueError("pass exactly one of m (total, allocated by DPCA) or dims (per view)")
        if dims is None:
            return self.allocate(int(m))  # type: ignore[arg-type]
        out = {}
        for name, rank in zip(self.view_names, self.ranks, strict=False):
            d = int(dims.get(name, 0))
            if not 0 <= d <= rank:
                raise ValueError(f"view {name!r}: dims must be in [0, {rank}], got {d}")
            out[name] = d
        return out

    def reconstruction_error(self, m: int | None = None, dims: Mapping[str, int] | None = None) -> float:
        """Return the expected per-sample squared error (original units) on the training data.

        The sum over views of ``scale_k**2`` times the variance of view ``k``'s dropped components
        (including those beyond ``r_k``). On the training data this is exact.
        """
        alloc = self._dims(m, dims)
        err = 0.0
        for name, var, total, scale in zip(
            self.view_names, self.variances, self.total_variances, self.scales, strict=False
        ):
            err += scale**2 * (total - float(np.sum(var[: alloc[name]])))
        return err

    # -- coding ---------------------------------------------------------------------------------

    def encode(
        self, z: ViewData, m: int | None = None, dims: Mapping[str, int] | None = None
    ) -> dict[str, np.ndarray]:
        """Project each view on its first ``dims[k]`` components.

        Args:
            z: per-view arrays ``(..., d_k)``.
            m: total bandwidth, allocated by :meth:`allocate`; or
            dims: explicit dimensions per view (missing views get 0).

        Returns:
            ``{view: coeffs (..., dims[k])}``, every view present (``(..., 0)`` when it gets none).

        """
        alloc = self._dims(m, dims)
        names, arrays = _as_views(z, self.view_names)
        out = {}
        for k, (name, a) in enumerate(zip(names, arrays, strict=False)):
            a = np.asarray(a, dtype=np.float64)
            if a.shape[-1] != self.dims[k]:
                raise ValueError(f"view {name!r}: expected last dimension {self.dims[k]}, got {a.shape}")
            out[name] = ((a - self.means[k]) / self.scales[k]) @ self.components[k][:, : alloc[name]]
        return out

    def decode(self, coeffs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Reconstruct every view from its coefficients ``(..., m_k)`` (``m_k`` from the shape).

        A view that is absent or has 0 coefficients is reconstructed as its mean, broadcast to the
        batch shape of the others.
        """
        unknown = set(coeffs) - set(self.view_names)
        if unknown:
            raise ValueError(f"unknown views {sorted(unknown)}; this DPCA has {list(self.view_names)}")
        batch: tuple[int, ...] = ()
        for c in coeffs.values():
            batch = np.shape(c)[:-1]
            break
        out = {}
        for k, name in enumerate(self.view_names):
            c = np.asarray(coeffs.get(name, np.zeros(batch + (0,))), dtype=np.float64)
            if c.shape[-1] > self.ranks[k]:
                raise ValueError(f"view {name!r}: {c.shape[-1]} coefficients, the model has {self.ranks[k]}")
            basis = self.components[k][:, : c.shape[-1]]
            out[name] = (c @ basis.T) * self.scales[k] + self.means[k]
        return out

    # -- persistence ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays (``np.savez`` / ``torch.save`` friendly; no pickled objects).

        Keys: ``view_names``, ``n_samples``, ``order``, ``scales``, ``total_variances`` and, per
        view index ``k``, ``mean_k``, ``components_k``, ``singular_values_k``, ``sigma_idx_k``.
        """
        state: dict[str, np.ndarray] = {
            "view_names": np.asarray(self.view_names, dtype=np.str_),
            "n_samples": np.asarray(self.n_samples, dtype=np.int64),
            "order": self.order.astype(np.int64),
            "scales": np.asarray(self.scales, dtype=np.float64),
            "total_variances": np.asarray(self.total_variances, dtype=np.float64),
        }
        for k in range(len(self.view_names)):
            state[f"mean_{k}"] = self.means[k]
            state[f"components_{k}"] = self.components[k]
            state[f"singular_values_{k}"] = self.singular_values[k]
            state[f"sigma_idx_{k}"] = self.sigma_idx[k]
        return state

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], prefix: str = "") -> DPCA:
        """Rebuild from :meth:`state_dict` (keys optionally prefixed, e.g. ``"dpca."``)."""
        try:
            names = [str(v) for v in np.asarray(state[prefix + "view_names"]).tolist()]
            k = range(len(names))
            return cls(
                names,
                [np.asarray(state[f"{prefix}mean_{i}"]) for i in k],
                np.asarray(state[prefix + "scales"]).tolist(),
                [np.asarray(state[f"{prefix}components_{i}"]) for i in k],
                [np.asarray(state[f"{prefix}singular_values_{i}"]) for i in k],
                int(np.asarray(state[prefix + "n_samples"])),
                np.asarray(state[prefix + "total_variances"]).tolist(),
                np.asarray(state[prefix + "order"]),
                [np.asarray(state[f"{prefix}sigma_idx_{i}"]) for i in k],
            )
        except KeyError as exc:
            raise ValueError(f"not a DPCA state dict: missing key {exc}") from exc

    def __repr__(self) -> str:
        return f"DPCA(views={list(self.view_names)}, dims={list(self.dims)}, ranks={list(self.ranks)})"


class PCA:
    """Joint PCA over the concatenated views: the non-distributed reference of Lemma 3.1.

    Same conventions as :class:`DPCA`, but one basis over ``sum d_k`` dimensions, so its encoder
    needs all views at once.
    """

    def __init__(
        self,
        view_names: Sequence[str],
        view_dims: Sequence[int],
        mean: np.ndarray,
        components: np.ndarray,
        singular_values: np.ndarray,
        n_samples: int,
        total_variance: float | None = None,
        sigma_idx: np.ndarray | None = None,
    ) -> None:
        self.view_names = tuple(str(v) for v in view_names)
        self.view_dims = tuple(int(d) for d in view_dims)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.components = np.asarray(components, dtype=np.float64)
        self.singular_values = np.asarray(singular_values, dtype=np.float64)
        self.n_samples = int(n_samples)
        if self.mean.shape != (sum(self.view_dims),) or self.components.shape != (
            self.mean.shape[0],
            self.singular_values.shape[0],
        ):
            raise ValueError("PCA mean, basis and singular values do not agree with the view dims")
        self.total_variance = (
            float(np.sum(self.variances)) if total_variance is None else float(total_variance)
        )
        self.sigma_idx = (
            scale_index(np.sqrt(self.variances)) if sigma_idx is None else np.asarray(sigma_idx, np.int32)
        )

    @classmethod
    def fit(cls, z: ViewData, max_components: int | None = None) -> PCA:
        """Fit on per-view data (same input as :meth:`DPCA.fit`)."""
        names, arrays = _as_views(z)
        arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
        x = np.concatenate(arrays, axis=1)
        mean = x.mean(axis=0)
        centred = x - mean
        basis, sv = _principal_axes(centred, max_components)
        total = float(np.sum(centred**2)) / x.shape[0]
        return cls(names, [a.shape[1] for a in arrays], mean, basis, sv, x.shape[0], total)

    @property
    def max_m(self) -> int:
        """Number of components kept."""
        return int(self.singular_values.shape[0])

    @property
    def variances(self) -> np.ndarray:
        """Variance of each component (covariance eigenvalues)."""
        return self.singular_values**2 / self.n_samples

    def reconstruction_error(self, m: int) -> float:
        """Return the expected per-sample squared error with ``m`` components (exact in sample)."""
        return self.total_variance - float(np.sum(self.variances[:m]))

    def encode(self, z: ViewData, m: int) -> np.ndarray:
        """Coefficients ``(..., m)`` of the concatenated views."""
        if not 0 <= m <= self.max_m:
            raise ValueError(f"m must be in [0, {self.max_m}], got {m}")
        _, arrays = _as_views(z, self.view_names)
        x = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays], axis=-1)
        return (x - self.mean) @ self.components[:, :m]

    def decode(self, coeffs: np.ndarray) -> dict[str, np.ndarray]:
        """Reconstruct every view from joint coefficients ``(..., m)``."""
        coeffs = np.asarray(coeffs, dtype=np.float64)
        x = coeffs @ self.components[:, : coeffs.shape[-1]].T + self.mean
        bounds = np.cumsum((0,) + self.view_dims)
        return {name: x[..., bounds[i] : bounds[i + 1]] for i, name in enumerate(self.view_names)}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays, like :meth:`DPCA.state_dict`."""
        return {
            "view_names": np.asarray(self.view_names, dtype=np.str_),
            "view_dims": np.asarray(self.view_dims, dtype=np.int64),
            "mean": self.mean,
            "components": self.components,
            "singular_values": self.singular_values,
            "n_samples": np.asarray(self.n_samples, dtype=np.int64),
            "total_variance": np.asarray(self.total_variance),
            "sigma_idx": self.sigma_idx,
        }

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], prefix: str = "") -> PCA:
        """Rebuild from :meth:`state_dict`."""
        try:
            return cls(
                [str(v) for v in np.asarray(state[prefix + "view_names"]).tolist()],
                np.asarray(state[prefix + "view_dims"]).tolist(),
                np.asarray(state[prefix + "mean"]),
                np.asarray(state[prefix + "components"]),
                np.asarray(state[prefix + "singular_values"]),
                int(np.asarray(state[prefix + "n_samples"])),
                float(np.asarray(state[prefix + "total_variance"])),
                np.asarray(state[prefix + "sigma_idx"]),
            )
        except KeyError as exc:
            raise ValueError(f"not a PCA state dict: missing key {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Training-time projection (Algorithm 1)
# ---------------------------------------------------------------------------------------------


@dataclass
class DPCAProjectionOutput:
    """What :class:`DPCAProjection` returns.

    Attributes:
        z_hat: reconstructed latents per view ``(B, d_k)`` (same container type as the input).
        coeffs: projected coefficients per view ``(B, m_k)``, after ``coeff_fn``.
        dims: dimensions per view, summing to ``m``.
        m: the total bandwidth used (sampled in training when not given).
        variances: per view, the covariance eigenvalue of each kept component ``(m_k,)`` (detached):
            the coefficient variances, e.g. to set quantisation steps or a rate model's scales.

    """

    z_hat: Any
    coeffs: Any
    dims: tuple[int, ...]
    m: int
    variances: list[torch.Tensor]


class DPCAProjection(nn.Module):
    """Algorithm 1 (NDPCA paper): DPCA projection to a random total dimension, differentiable.

    In training, each call centres every view on its batch mean, takes the eigenbasis of a blended
    covariance ``(1 - momentum) * running + momentum * batch`` (the running estimate is an EMA over
    batches, so a batch smaller than ``d_k`` still gives a full-rank, stable basis), pools the
    eigenvalues of all views, keeps the top ``m`` (``m`` drawn uniformly from ``[m_min, m_max]``
    per call unless given), projects and reconstructs. Gradients flow through the projections
    and, through the batch mean and the batch share of the covariance, into the encoder.
    With ``basis_grad=False`` (default) the basis itself is a constant per step: the gradient of an
    eigendecomposition divides by eigenvalue gaps and explodes when two nearly tie, which is the
    instability the paper reports; the projection error still pushes the encoder towards
    representations that the top components capture.

    In eval mode the running mean and covariance are used, and ``m`` defaults to ``m_max``. Export
    the running statistics with :meth:`to_dpca`, or (better, exact) refit :meth:`DPCA.fit` on the
    training latents after training; the inference codec uses a fitted :class:`DPCA`.

    Args:
        dims: latent dimension per view (mapping keeps view names; a sequence gives
            ``"0", "1", ...``).
        m_min: smallest total dimension drawn in training.
        m_max: largest (default ``sum dims``).
        momentum: EMA weight of each new batch covariance (``1.0`` = plain batch statistics, as in
            the paper).
        eps: ridge added to the blended covariance's diagonal before the eigendecomposition.
        basis_grad: backpropagate through the eigendecomposition as well.

    """

    def __init__(
        self,
        dims: Mapping[str, int] | Sequence[int],
        m_min: int = 1,
        m_max: int | None = None,
        momentum: float = 0.1,
        eps: float = 1e-6,
        basis_grad: bool = False,
    ) -> None:
        super().__init__()
        names, sizes = _as_views(dims)
        self.view_names = names
        self.view_dims = tuple(int(s) for s in sizes)
        total = sum(self.view_dims)
        self.m_max = total if m_max is None else int(m_max)
        self.m_min = int(m_min)
        if not 0 <= self.m_min <= self.m_max <= total:
            raise ValueError(f"need 0 <= m_min <= m_max <= {total}, got m_min={m_min}, m_max={m_max}")
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.basis_grad = bool(basis_grad)
        for k, d in enumerate(self.view_dims):
            self.register_buffer(f"running_mean_{k}", torch.zeros(d))
            self.register_buffer(f"running_cov_{k}", torch.eye(d))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def _running(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return getattr(self, f"running_mean_{k}"), getattr(self, f"running_cov_{k}")

    def sample_m(self, generator: torch.Generator | None = None) -> int:
        """Draw the total dimension uniformly from ``[m_min, m_max]``."""
        return int(torch.randint(self.m_min, self.m_max + 1, (1,), generator=generator).item())

    def _statistics(self, k: int, t: torch.Tensor, first: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """View ``k``'s mean and covariance: the running ones in eval mode.

        In training, the batch's blended into the running ones, which it updates.
        """
        run_mean, run_cov = self._running(k)
        if not self.training:
            return run_mean.to(t.dtype), run_cov.to(t.dtype)
        mean = t.mean(dim=0)
        centred = t - mean
        # unbiased: around the batch mean a batch of B rows has B - 1 degrees of freedom,
        # which matters for the small batches the EMA is there for
        batch_cov = centred.T @ centred / max(t.shape[0] - 1, 1)
        if first:
            cov = batch_cov
        else:
            cov = (1 - self.momentum) * run_cov.to(t.dtype) + self.momentum * batch_cov
        with torch.no_grad():
            run_cov.copy_(cov.detach())
            run_mean.copy_(
                mean.detach() if first else (1 - self.momentum) * run_mean + self.momentum * mean.detach()
            )
        return mean, cov

    def _pooled_dims(self, eigvals: Sequence[torch.Tensor], m: int) -> tuple[int, ...]:
        """Components per view of the top ``m`` pooled eigenvalues (ties: the earlier view, as in DPCA.allocate)."""
        pooled = torch.cat(list(eigvals))
        owner = torch.cat([torch.full((d,), k, dtype=torch.long) for k, d in enumerate(self.view_dims)])
        top = torch.argsort(-pooled.cpu(), stable=True)[:m]
        return tuple(int(c) for c in torch.bincount(owner[top], minlength=len(self.view_dims)))

    def forward(
        self,
        z: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
        m: int | None = None,
        coeff_fn: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> DPCAProjectionOutput:
        """Project every view to its share of ``m`` dimensions and reconstruct.

        Args:
            z: per-view latents ``(B, d_k)``.
            m: total dimension; drawn from ``[m_min, m_max]`` in training when None, ``m_max`` in eval.
            coeff_fn: optional ``f(view_index, coeffs, variances) -> coeffs`` applied between
                projection and reconstruction, e.g. ``quantize_ste`` with a step from the
                variances, to train through the quantiser.
            generator: random generator for drawing ``m``.

        """
        names, tensors = _as_views(z, self.view_names)
        if any(t.ndim != 2 or t.shape[1] != d for t, d in zip(tensors, self.view_dims, strict=False)):
            raise ValueError(
                f"expected per-view (B, d) latents with d = {self.view_dims}, "
                f"got {[tuple(t.shape) for t in tensors]}"
            )
        if m is None:
            m = self.sample_m(generator) if self.training else self.m_max
        if not 0 <= m <= sum(self.view_dims):
            raise ValueError(f"m must be in [0, {sum(self.view_dims)}], got {m}")

        means, bases, eigvals = [], [], []
        first = int(self.num_batches_tracked) == 0
        for k, t in enumerate(tensors):
            mean, cov = self._statistics(k, t, first)
            cov = (cov + cov.T) / 2 + self.eps * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
            evals, evecs = torch.linalg.eigh(cov if self.basis_grad else cov.detach())
            means.append(mean)
            bases.append(evecs.flip(-1))
            eigvals.append(evals.flip(-1).detach())
        if self.training:
            self.num_batches_tracked += 1
        dims = self._pooled_dims(eigvals, m)
        coeffs, recon, variances = [], [], []
        for k, t in enumerate(tensors):
            basis = bases[k][:, : dims[k]]
            c = (t - means[k]) @ basis
            var = eigvals[k][: dims[k]]
            if coeff_fn is not None:
                c = coeff_fn(k, c, var)
            coeffs.append(c)
            recon.append(c @ basis.T + means[k])
            variances.append(var)
        if isinstance(z, Mapping):
            recon_views = dict(zip(names, recon, strict=True))
            coeff_views = dict(zip(names, coeffs, strict=True))
            return DPCAProjectionOutput(recon_views, coeff_views, dims, m, variances)
        return DPCAProjectionOutput(recon, coeffs, dims, m, variances)

    def to_dpca(self, n_samples: int = 1) -> DPCA:
        """Export the running statistics as a numpy :class:`DPCA` (inference without a refit)."""
        means = {
            n: self._running(k)[0].detach().cpu().double().numpy() for k, n in enumerate(self.view_names)
        }
        covs = {n: self._running(k)[1].detach().cpu().double().numpy() for k, n in enumerate(self.view_names)}
        return DPCA.from_covariances(means, covs, n_samples=n_samples)
