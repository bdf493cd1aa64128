"""Kalman filtering, Riccati equations and LQR for linear Gauss-Markov systems (pure numpy).

The system, in the notation of the sensor-network env (``bwgym.envs.sensors``)::

    x_{t+1} = A x_t + B u_t + w_t,   w_t ~ N(0, Q)        (state, n)
    y_t     = C x_t + v_t,           v_t ~ N(0, R)        (all sensors stacked, m)

The filter here is the *filtered* form: after :meth:`KalmanFilter.update` the estimate is
``x_{t|t}`` with error covariance ``P_{t|t}``; :meth:`KalmanFilter.predict` is the time update
``x_{t+1|t} = A x_{t|t} + B u_t``, ``P_{t+1|t} = A P_{t|t} A' + Q``. A sensor whose measurement
did not arrive is simply left out of the update (the fusion node keeps its prediction for it).

It lives in layer 0 because the env (the centralised reference) and the codecs (predictive coding
against the receiver's prediction) both need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "LinearGaussianModel",
    "KalmanFilter",
    "RiccatiError",
    "discrete_lyapunov",
    "kalman_gain_sequence",
    "kalman_steady_state",
    "lqr_gain",
    "solve_dare",
]


class RiccatiError(ValueError):
    """The Riccati equation has no stabilising solution (system not stabilisable / detectable)."""


def _mat(x: np.ndarray | float, name: str) -> np.ndarray:
    arr = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a matrix, got shape {arr.shape}")
    return arr


def solve_dare(
    A: np.ndarray, B: np.ndarray, Q: np.ndarray, R: np.ndarray, tol: float = 1e-12, max_iter: int = 200
) -> np.ndarray:
    """Stabilising solution X of the discrete algebraic Riccati equation (control form).

    ``X = A' X A - A' X B (R + B' X B)^{-1} B' X A + Q``, by the structure-preserving doubling
    algorithm (quadratic convergence; Chu, Fan, Lin 2005). The filter's predicted covariance is
    the dual, ``solve_dare(A.T, C.T, Q, R)``.

    Args:
        A: state matrix (n, n).
        B: input matrix (n, p).
        Q: state weight (n, n), symmetric positive semidefinite.
        R: input weight (p, p), symmetric positive definite.
        tol: relative change of X at which the iteration stops.
        max_iter: doubling steps before giving up (each doubles the horizon covered).

    Returns:
        X (n, n), symmetric.

    Raises:
        RiccatiError: no stabilising solution was found ((A, B) not stabilisable, or (A, Q)
            not detectable), or the iteration did not converge.

    """
    A, B, Q, R = _mat(A, "A"), _mat(B, "B"), _mat(Q, "Q"), _mat(R, "R")
    n = A.shape[0]
    eye = np.eye(n)
    with np.errstate(all="ignore"):
        try:
            Ak = A.copy()
            Gk = B @ np.linalg.solve(R, B.T)
            Hk = Q.copy()
            for _ in range(max_iter):
                W = np.linalg.inv(eye + Gk @ Hk)
                AW = Ak @ W
                G_next = Gk + AW @ Gk @ Ak.T
                H_next = Hk + Ak.T @ Hk @ W @ Ak
                Ak = AW @ Ak
                done = np.linalg.norm(H_next - Hk) <= tol * max(1.0, np.linalg.norm(H_next))
                Gk, Hk = 0.5 * (G_next + G_next.T), 0.5 * (H_next + H_next.T)
                if not np.all(np.isfinite(Hk)):
                    break
                if done:
                    X = Hk
                    closed = A - B @ np.linalg.solve(R + B.T @ X @ B, B.T @ X @ A)
                    if np.max(np.abs(np.linalg.eigvals(closed))) < 1.0:
                        return X
                    break
        except np.linalg.LinAlgError:
            pass
    raise RiccatiError(
        "the Riccati equation has no stabilising solution: (A, B) must be stabilisable and (A, Q) detectable"
    )


def lqr_gain(A: np.ndarray, B: np.ndarray, Q: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Infinite-horizon discrete LQR: ``u = -L x`` minimises ``sum x'Qx + u'Ru``.

    Returns:
        ``(L, X)``: the gain (p, n) and the cost-to-go matrix X of :func:`solve_dare`.

    """
    A, B, R = _mat(A, "A"), _mat(B, "B"), _mat(R, "R")
    X = solve_dare(A, B, Q, R)
    L = np.linalg.solve(R + B.T @ X @ B, B.T @ X @ A)
    return L, X


def kalman_steady_state(
    A: np.ndarray, C: np.ndarray, Q: np.ndarray, R: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steady state of the Kalman filter.

    Returns:
        ``(P_pred, P_filt, K)``: the predicted covariance ``P_{t|t-1}``, the filtered covariance
        ``P_{t|t}`` and the gain ``K = P_pred C' (C P_pred C' + R)^{-1}`` (n, m).

    Raises:
        RiccatiError: (A, C) not detectable or (A, Q) not stabilisable.

    """
    A, C = _mat(A, "A"), _mat(C, "C")
    P_pred = solve_dare(A.T, C.T, Q, R)
    K = P_pred @ C.T @ np.linalg.inv(C @ P_pred @ C.T + _mat(R, "R"))
    P_filt = P_pred - K @ C @ P_pred
    return P_pred, 0.5 * (P_filt + P_filt.T), K


def kalman_gain_sequence(
    A: np.ndarray,
    C: np.ndarray,
    Q: np.ndarray,
    R: np.ndarray,
    P0: np.ndarray,
    steps: int,
    rtol: float = 1e-13,
) -> tuple[np.ndarray, np.ndarray]:
    """Time-varying gains and filtered covariances from the prior ``P0 = P_{0|-1}``.

    The sequence stops early once the covariance has converged (relative change below ``rtol``):
    every later step uses the last entry.

    Args:
        A: state matrix (n, n).
        C: stacked measurement matrix (m, n).
        Q: process noise covariance (n, n).
        R: stacked measurement noise covariance (m, m).
        P0: covariance of the initial state before any measurement (n, n).
        steps: number of measurement updates wanted (t = 0 .. steps-1).
        rtol: relative convergence threshold.

    Returns:
        ``(K, P_filt)`` of shapes (T, n, m) and (T, n, n), ``1 <= T <= steps``; step t uses index
        ``min(t, T - 1)``.

    """
    A, C, Q, R = _mat(A, "A"), _mat(C, "C"), _mat(Q, "Q"), _mat(R, "R")
    P_pred = _mat(P0, "P0")
    gains, covs = [], []
    for _ in range(max(int(steps), 1)):
        S = C @ P_pred @ C.T + R
        K = np.linalg.solve(S, C @ P_pred).T
        P = P_pred - K @ C @ P_pred
        P = 0.5 * (P + P.T)
        if covs and np.linalg.norm(P - covs[-1]) <= rtol * max(np.linalg.norm(P), 1e-300):
            break
        gains.append(K)
        covs.append(P)
        P_pred = A @ P @ A.T + Q
    return np.array(gains), np.array(covs)


def discrete_lyapunov(A: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Solution X of ``X = A X A' + Q`` for a stable A (spectral radius < 1).

    Raises:
        ValueError: A is not stable (no stationary covariance).

    """
    A, Q = _mat(A, "A"), _mat(Q, "Q")
    if A.size and np.max(np.abs(np.linalg.eigvals(A))) >= 1.0:
        raise ValueError("discrete_lyapunov needs a stable A (spectral radius < 1)")
    n = A.shape[0]
    X = np.linalg.solve(np.eye(n * n) - np.kron(A, A), Q.reshape(-1)).reshape(n, n)
    return 0.5 * (X + X.T)


class KalmanFilter:
    """Kalman filter of a fusion node over K sensors; sensors whose data is missing are skipped.

    Args:
        A: state matrix (n, n).
        B: input matrix (n, p), or None for no input.
        Q: process noise covariance (n, n).
        C: per-sensor measurement matrices, each (d_k, n).
        R: per-sensor measurement noise covariances, each (d_k, d_k).
        mean: initial state mean ``x_{0|-1}`` (n,).
        cov: initial covariance ``P_{0|-1}`` (n, n).

    Example::

        kf = KalmanFilter(A, None, Q, [C0, C1], [R0, R1], mean=m0, cov=P0)
        kf.update({0: y0})          # sensor 1 dropped this step: its prediction stands
        estimate = kf.mean
        kf.predict()

    """

    def __init__(
        self,
        A: np.ndarray,
        B: np.ndarray | None,
        Q: np.ndarray,
        C: Sequence[np.ndarray],
        R: Sequence[np.ndarray],
        mean: np.ndarray,
        cov: np.ndarray,
    ) -> None:
        self.A = _mat(A, "A")
        self.B = None if B is None else _mat(B, "B")
        self.Q = _mat(Q, "Q")
        self.C = [_mat(c, f"C[{k}]") for k, c in enumerate(C)]
        self.R = [_mat(r, f"R[{k}]") for k, r in enumerate(R)]
        if len(self.C) != len(self.R):
            raise ValueError(f"C and R must list the same sensors, got {len(self.C)} and {len(self.R)}")
        self.mean = np.asarray(mean, dtype=np.float64).reshape(-1).copy()
        self.cov = _mat(cov, "cov").copy()

    def predict(self, u: np.ndarray | None = None) -> None:
        """Time update: ``x <- A x + B u``, ``P <- A P A' + Q``."""
        self.mean = self.A @ self.mean
        if u is not None and self.B is not None:
            self.mean = self.mean + self.B @ np.asarray(u, dtype=np.float64).reshape(-1)
        self.cov = self.A @ self.cov @ self.A.T + self.Q

    def predicted_measurement(self, sensor: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of sensor ``sensor``'s next measurement given the current state belief."""
        C = self.C[sensor]
        return C @ self.mean, C @ self.cov @ C.T + self.R[sensor]

    def update(self, measurements: dict[int, np.ndarray]) -> None:
        """Measurement update with the sensors present in ``measurements`` ({sensor index: y_k})."""
        if not measurements:
            return
        keys = sorted(measurements)
        C = np.vstack([self.C[k] for k in keys])
        R = _block_diag([self.R[k] for k in keys])
        y = np.concatenate([np.asarray(measurements[k], dtype=np.float64).reshape(-1) for k in keys])
        S = C @ self.cov @ C.T + R
        K = np.linalg.solve(S, C @ self.cov).T
        self.mean = self.mean + K @ (y - C @ self.mean)
        P = self.cov - K @ C @ self.cov
        self.cov = 0.5 * (P + P.T)


def _block_diag(blocks: Sequence[np.ndarray]) -> np.ndarray:
    size = sum(b.shape[0] for b in blocks)
    out = np.zeros((size, size))
    i = 0
    for b in blocks:
        d = b.shape[0]
        out[i : i + d, i : i + d] = b
        i += d
    return out


@dataclass(frozen=True)
class LinearGaussianModel:
    """The process and its sensors: ``x_{t+1} = A x_t + B u_t + w_t``, ``y_k = C_k x_t + v_k``.

    Attributes:
        A: state matrix (n, n).
        B: input matrix (n, p).
        Q: process noise covariance (n, n).
        C: per-sensor measurement matrices, each (d_k, n).
        R: per-sensor noise covariances, each ``r_k I`` of shape (d_k, d_k).
        initial_mean: mean of x_0 (n,).
        initial_cov: covariance of x_0 (n, n).

    """

    A: np.ndarray
    B: np.ndarray
    Q: np.ndarray
    C: tuple[np.ndarray, ...]
    R: tuple[np.ndarray, ...]
    initial_mean: np.ndarray
    initial_cov: np.ndarray

    @property
    def n_state(self) -> int:
        """Dimension n of the state."""
        return self.A.shape[0]

    @property
    def n_input(self) -> int:
        """Dimension p of the control input."""
        return self.B.shape[1]

    @property
    def sensor_dims(self) -> tuple[int, ...]:
        """Measurement dimension d_k of each sensor."""
        return tuple(c.shape[0] for c in self.C)

    @property
    def noise_variances(self) -> tuple[float, ...]:
        """Measurement noise variance r_k of each sensor (per component)."""
        return tuple(float(r[0, 0]) for r in self.R)

    @property
    def C_stacked(self) -> np.ndarray:
        """All sensors' C_k stacked (m, n), m = sum d_k."""
        return np.vstack(self.C)

    @property
    def R_stacked(self) -> np.ndarray:
        """Block-diagonal noise covariance of the stacked measurement (m, m)."""
        return np.diag(np.concatenate([np.diag(r) for r in self.R]))

    def kalman_filter(self) -> KalmanFilter:
        """Return a fresh fusion-node Kalman filter at the prior (before the first measurement)."""
        return KalmanFilter(self.A, self.B, self.Q, self.C, self.R, self.initial_mean, self.initial_cov)
