"""SensorNetwork: K sensors watch one linear Gauss-Markov process; a fusion node estimates or controls it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from bwgym.common.kalman import (
    LinearGaussianModel,
    RiccatiError,
    kalman_gain_sequence,
    lqr_gain,
)

__all__ = [
    "MAX_HORIZON",
    "MAX_MEASUREMENT_DIMS",
    "MAX_SENSORS",
    "MAX_STATE_DIM",
    "MODES",
    "PRESETS",
    "LinearGaussianModel",
    "SensorNetworkEnv",
]

#: Built-in systems (see the env's docstring).
PRESETS = ("ar1", "cv2d")
#: What the action is.
MODES = ("estimate", "control")
#: The open-loop state variance may not exceed this over the horizon: float32 observations keep
#: ~8 orders of magnitude of headroom, and squared errors and costs stay far from float64's limit.
MAX_STATE_VARIANCE = 1e30
#: Action half-range in standard deviations of the value it encodes (estimate or control).
ACTION_RANGE_SIGMAS = 4.0
_AR1_POLE = 0.95
_CV2D_DT_S = 0.1
_CV2D_ACCEL_PSD = 1.0  # m^2/s^3, white-noise acceleration
_CHUNK_STEPS = 256  # steps of noise, state and references computed at once
_F32_MAX = float(np.finfo(np.float32).max)  # finite view bounds (the env checkers warn on infinite ones)
#: Most sensors (``n_sensors``): the centralised filter inverts a (sum of d_k)-square matrix per step
#: until its gain converges; 1024 scalar sensors take ~1 s to build, 10^7 took 3.9 GB.
MAX_SENSORS = 1024
#: Most measurement values per step over all sensors (sum of the d_k rows of every C_k).
MAX_MEASUREMENT_DIMS = 2048
#: Largest state and input dimensions (``A`` is n x n, ``B`` n x p).
MAX_STATE_DIM = 64
#: Most actions per episode (``horizon``).
MAX_HORIZON = 1_000_000
#: Most bytes the filter's per-step gains and covariances may take if they never converge within
#: the horizon (8 x (horizon + 1) x n x (m + 10 n)): what is held before the first step.
MAX_FILTER_BYTES = 1 << 30


def _is_count(value: Any, low: int, high: int) -> bool:
    """Whether ``value`` is an integer (a float with an integer value counts) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(value) and int(value) == value and low <= value <= high


def _preset(name: str, n_sensors: int) -> dict[str, Any]:
    if name == "ar1":
        a = _AR1_POLE
        return dict(
            A=[[a]],
            B=[[1.0]],
            Q=[[1.0 - a * a]],
            C=[[1.0]],
            noise=np.geomspace(0.1, 1.0, n_sensors) if n_sensors > 1 else [0.1],
            mean=[0.0],
            cov=[[1.0]],
        )
    dt, q = _CV2D_DT_S, _CV2D_ACCEL_PSD
    eye = np.eye(2)
    return dict(
        A=np.block([[eye, dt * eye], [0 * eye, eye]]),
        B=np.vstack([0.5 * dt * dt * eye, dt * eye]),
        Q=q * np.kron([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]], eye),
        C=np.hstack([eye, 0 * eye]),
        noise=np.geomspace(0.01, 0.25, n_sensors) if n_sensors > 1 else [0.01],
        mean=np.zeros(4),
        cov=np.diag([1.0, 1.0, 0.25, 0.25]),
    )


def _matrix(value: Any, name: str, shape: tuple[int | None, int | None], rule: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric matrix ({rule}), got {value!r}") from None
    if arr.ndim == 0:
        arr = arr.reshape(1, 1)
    if arr.ndim != 2 or any(
        want is not None and got != want for got, want in zip(arr.shape, shape, strict=True)
    ):
        want = "x".join("?" if s is None else str(s) for s in shape)
        raise ValueError(f"{name} must have shape ({want}) ({rule}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def _covariance(value: Any, name: str, n: int, definite: bool = False) -> np.ndarray:
    """Build a covariance from a positive scalar (times I), n positive variances (diagonal) or a matrix."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0 or (arr.ndim == 1 and arr.size in (1, n)):
        var = np.broadcast_to(arr.reshape(-1), (n,)).astype(np.float64)
        if not np.all(np.isfinite(var) & (var > 0)):
            raise ValueError(f"{name}: noise variances must be positive and finite, got {arr.tolist()}")
        return np.diag(var)
    mat = _matrix(
        arr, name, (n, n), f"symmetric positive {'definite' if definite else 'semidefinite'}, n = {n}"
    )
    if not np.allclose(mat, mat.T, rtol=1e-10, atol=1e-12):
        raise ValueError(f"{name} must be symmetric, got {mat.tolist()}")
    eig = np.linalg.eigvalsh(mat)
    floor = -1e-12 * max(1.0, float(np.abs(eig).max()))
    if np.any(np.diag(mat) <= 0) or eig.min() < floor or (definite and eig.min() <= 0):
        kind = "definite" if definite else "semidefinite with positive variances on its diagonal"
        raise ValueError(f"{name} must be positive {kind}; its eigenvalues are {eig.tolist()}")
    return 0.5 * (mat + mat.T)


def _check_arguments(
    preset: str, mode: str, n_sensors: Any, horizon: Any, success_factor: float, render_mode: str | None
) -> None:
    """Refuse the scalar arguments of :class:`SensorNetworkEnv` outside their ranges, naming the rule."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, got {preset!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not _is_count(n_sensors, 1, MAX_SENSORS):
        raise ValueError(
            f"n_sensors must be an integer in [1, {MAX_SENSORS}] (MAX_SENSORS), got {n_sensors!r}"
        )
    if not _is_count(horizon, 1, MAX_HORIZON):
        raise ValueError(
            f"horizon must be an integer in [1, {MAX_HORIZON:,}] (actions per episode, MAX_HORIZON), "
            f"got {horizon!r}"
        )
    if not (math.isfinite(success_factor) and success_factor >= 1.0):
        raise ValueError(f"success_factor must be a finite number >= 1, got {success_factor}")
    if render_mode is not None:
        raise ValueError(f"SensorNetwork does not render: render_mode must be None, got {render_mode!r}")


class SensorNetworkEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """K noisy sensors watch one hidden linear Gauss-Markov process; the agent estimates or controls it.

    The hidden state evolves as ``x_{t+1} = A x_t + B u_t + w_t``, ``w_t ~ N(0, Q)``; sensor k
    measures ``y_k = C_k x_t + v_k``, ``v_k ~ N(0, r_k I)``. Each sensor's measurement is one view,
    so a bandwidth wrapper can send it over its own link (``link_views`` names them all). In
    ``estimate`` mode the action is the estimate of ``x_t`` and there is no input (``u = 0``); in
    ``control`` mode the action is ``u_t``. Pure numpy, no rendering.

    ## Presets
    | preset | state x | dynamics | sensors y_k | x_0 |
    |---|---|---|---|---|
    | ``ar1`` | scalar | A = 0.95, Q = 1 - 0.95^2 (variance 1), B = 1 | x + v_k | N(0, 1) |
    | ``cv2d`` | p_x, p_y (m), v_x, v_y (m/s) | constant velocity (below) | position + v_k | below |

    ``cv2d``: dt = 0.1 s; A = [[I, dt I], [0, I]]; u is an acceleration (m/s^2),
    B = [[dt^2/2 I], [dt I]]; Q is white acceleration of 1 m^2/s^3; x_0 ~ N(0, diag(1, 1, 0.25,
    0.25)). Default sensor noise variances r_k are log-spaced over 0.1..1 (``ar1``) and 0.01..0.25 m^2
    (``cv2d``), so the K sensors differ.

    ## Observation space
    ``Dict`` with one ``float32 (d_k,)`` view ``sensor_k`` per sensor, ``k = 0..K-1``, bounded by
    float32's largest value: the sensor's measurement of the current state ``x_t``.

    ## Action space
    ``Box(-1, 1, (n,), float32)`` (estimate: n = state dimension) or ``Box(-1, 1, (p,), float32)``
    (control: p = input dimension), normalised: the value is ``action * action_scale`` (values
    outside [-1, 1] are clipped). The default ``action_scale`` is 4 standard deviations (plus the
    mean's magnitude) of what the action encodes, the largest over the horizon: of the state under
    no control (estimate), of the LQG controller's input (control). ``to_action(value)`` and
    ``from_action(action)`` convert.

    ## Rewards
    * ``estimate``: ``-||x_hat - x_t||^2`` (squared error of the estimate, units of x squared).
    * ``control``: ``-(x_t' W_x x_t + u_t' W_u u_t)``, the LQR stage cost with ``state_cost`` W_x
      and ``control_cost`` W_u.

    ## Info (every step)
    | key | meaning |
    |---|---|
    | ``squared_error`` | estimate: the agent's ``||x_hat - x_t||^2`` (= -reward) |
    | ``lqr_cost`` | control: the agent's stage cost (= -reward) |
    | ``kalman_squared_error`` | ``||x_{t|t} - x_t||^2`` of the centralised Kalman filter (below) |
    | ``kalman_mse`` | its expected value, ``trace P_{t|t}`` |
    | ``lqg_cost`` | control: stage cost of the LQG controller on a twin of the process |
    | ``is_success`` | the agent's summed errors (costs) so far <= ``success_factor`` x its reference's |

    The centralised Kalman filter is fed every sensor's uncompressed float64 measurement (and the
    inputs applied). The LQG controller is that filter plus the infinite-horizon LQR gain
    (``lqr_gain``), run on a twin of the process driven by the same noise. ``is_success`` compares
    ``squared_error`` with ``kalman_squared_error`` (estimate) and ``lqr_cost`` with ``lqg_cost``
    (control), summed over the episode so far.

    The references see the same noise realisation as the agent: an agent that runs the Kalman
    filter on uncompressed views (and, in control mode, applies the LQR gain) matches them exactly.

    ## Episode end
    Never terminates; truncates after ``horizon`` actions (the env counts them itself, so the
    registered id has no ``TimeLimit``).

    ## Arguments
    | argument | default | meaning |
    |---|---|---|
    | preset | "ar1" | ``"ar1"`` or ``"cv2d"``: defaults for every system argument left None |
    | n_sensors | 4 | K |
    | mode | "estimate" | ``"estimate"`` or ``"control"`` |
    | sensor_noise_variances | preset | r_k per sensor: one positive number for all, or K of them |
    | C | preset | one (d, n) matrix shared by all sensors, or K matrices C_k (d_k, n) |
    | A | preset | (n, n) state matrix |
    | B | preset | (n, p) input matrix |
    | process_noise_cov | preset | Q: positive variance (x I), n variances, or an (n, n) PSD matrix |
    | initial_mean, initial_cov | preset | distribution of x_0 |
    | state_cost, control_cost | I, 0.1 I | LQR weights W_x (n, n), W_u (p, p) (control mode) |
    | horizon | 200 | actions per episode |
    | action_scale | None | value of action = 1 per component (None: see Action space) |
    | success_factor | 2.0 | ``is_success`` threshold (>= 1) |

    ``ValueError`` names the argument and its rule for: non-positive noise variances, matrices whose
    shapes do not match the state (A square; B, C_k, Q, W_x, W_u against n and p), an unstable system
    whose open-loop state variance exceeds ``MAX_STATE_VARIANCE`` within the horizon (the message
    gives the longest horizon that fits), in control mode an (A, B) that no LQR can stabilise, and
    sizes above ``MAX_SENSORS``, ``MAX_MEASUREMENT_DIMS``, ``MAX_STATE_DIM``, ``MAX_HORIZON`` or a
    filter larger than ``MAX_FILTER_BYTES``, refused before anything of that size is allocated.

    ## Version History
    * v0: initial release.
    """

    metadata = {"render_modes": []}
    #: Observation keys that cross the link (here: every sensor).
    link_views: tuple[str, ...]

    def __init__(
        self,
        preset: str = "ar1",
        n_sensors: int = 4,
        mode: str = "estimate",
        sensor_noise_variances: float | Sequence[float] | None = None,
        C: np.ndarray | Sequence[np.ndarray] | None = None,
        A: np.ndarray | None = None,
        B: np.ndarray | None = None,
        process_noise_cov: float | np.ndarray | None = None,
        initial_mean: np.ndarray | None = None,
        initial_cov: np.ndarray | None = None,
        state_cost: np.ndarray | None = None,
        control_cost: np.ndarray | None = None,
        horizon: int = 200,
        action_scale: float | Sequence[float] | None = None,
        success_factor: float = 2.0,
        render_mode: str | None = None,
    ) -> None:
        _check_arguments(preset, mode, n_sensors, horizon, success_factor, render_mode)
        self.preset, self.mode, self.render_mode = preset, mode, render_mode
        self.n_sensors, self.horizon = int(n_sensors), int(horizon)
        self.success_factor = float(success_factor)
        self.model = self._build_model(
            _preset(preset, self.n_sensors),
            sensor_noise_variances,
            C,
            A,
            B,
            process_noise_cov,
            initial_mean,
            initial_cov,
        )
        n, p = self.model.n_state, self.model.n_input
        self._check_sizes()
        self.state_cost = _covariance(np.eye(n) if state_cost is None else state_cost, "state_cost", n)
        self.control_cost = _covariance(
            0.1 * np.eye(p) if control_cost is None else control_cost, "control_cost", p, definite=True
        )
        self._prior_scale = self._check_horizon()
        self._references()
        self.action_scale = self._checked_action_scale(action_scale)
        self._spaces_and_step_constants()
        self._t = -1

    # ---------------------------------------------------------------- construction helpers
    def _references(self) -> None:
        """The centralised Kalman filter on every sensor's uncompressed data and, in control mode, LQR.

        The filter's gains vary in time until they converge, then the last one holds.
        """
        m = self.model
        self._C, self._R = m.C_stacked, m.R_stacked
        gains, covs = kalman_gain_sequence(m.A, self._C, m.Q, self._R, m.initial_cov, self.horizon + 1)
        self._gains = gains
        self._mse_all = np.trace(covs, axis1=1, axis2=2)
        self._covs = covs
        self.lqr_gain: np.ndarray | None = None
        if self.mode == "control":
            try:
                self.lqr_gain, _ = lqr_gain(m.A, m.B, self.state_cost, self.control_cost)
            except RiccatiError:
                raise ValueError(
                    "A, B: no LQR gain stabilises this system ((A, B) must be stabilisable and "
                    "(A, state_cost) detectable) in control mode"
                ) from None
        self._M = self._transitions()

    def _checked_action_scale(self, action_scale: float | Sequence[float] | None) -> np.ndarray:
        """The value of action = 1 per component: ``action_scale`` (one value or one each), else the default.

        The default is the mode's (see Action space); it is computed in either case.
        """
        default_scale = self._prior_scale if self.mode == "estimate" else self._control_scale()
        if action_scale is None:
            return default_scale
        dim = self.model.n_state if self.mode == "estimate" else self.model.n_input
        scale = np.broadcast_to(np.asarray(action_scale, dtype=np.float64).reshape(-1), (dim,)).copy()
        if not np.all(np.isfinite(scale) & (scale > 0)):
            raise ValueError(
                f"action_scale must be positive and finite ({dim} values or one), got {action_scale}"
            )
        return scale

    def _spaces_and_step_constants(self) -> None:
        """The views (one per sensor), the observation and action spaces, and what :meth:`step` reuses."""
        m = self.model
        n, p = m.n_state, m.n_input
        dim = n if self.mode == "estimate" else p
        self.link_views = tuple(f"sensor_{k}" for k in range(self.n_sensors))
        bounds = np.cumsum((0, *m.sensor_dims))
        self._slices = tuple(zip(self.link_views, bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
        self._noise_std = np.sqrt(np.diag(self._R))
        evals, evecs = np.linalg.eigh(m.Q)
        self._q_factor = evecs * np.sqrt(np.clip(evals, 0, None))  # Q = F F'
        evals, evecs = np.linalg.eigh(m.initial_cov)
        self._p0_factor = evecs * np.sqrt(np.clip(evals, 0, None))
        self.observation_space = spaces.Dict(
            {
                name: spaces.Box(-_F32_MAX, _F32_MAX, (hi - lo,), dtype=np.float32)
                for name, lo, hi in self._slices
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (dim,), dtype=np.float32)
        self._action_shape = (dim,)
        self._estimate = self.mode == "estimate"
        self._stage_cost = np.zeros((n + p, n + p))
        self._stage_cost[:n, :n] = self.state_cost
        self._stage_cost[n:, n:] = self.control_cost
        self._AB = np.hstack([m.A, m.B])

    def _build_model(
        self,
        preset: dict[str, Any],
        noise: Any,
        C: Any,
        A: Any,
        B: Any,
        Q: Any,
        mean: Any,
        cov: Any,
    ) -> LinearGaussianModel:
        A = _matrix(preset["A"] if A is None else A, "A", (None, None), "square, n x n")
        n = A.shape[0]
        if A.shape != (n, n):
            raise ValueError(f"A must be square (n x n), got shape {A.shape}")
        B = _matrix(preset["B"] if B is None else B, "B", (n, None), f"n x p with n = {n} rows, like A")
        Q = _covariance(preset["Q"] if Q is None else Q, "process_noise_cov", n)
        K = self.n_sensors
        C = preset["C"] if C is None else C
        arr = np.asarray(C, dtype=np.float64) if not isinstance(C, (list, tuple)) or _is_matrix(C) else None
        if arr is not None and arr.ndim <= 2:
            Cs = [_matrix(arr, "C", (None, n), f"d x n with n = {n} columns, one per state component")] * K
        else:
            if len(C) != K:
                raise ValueError(f"C must be one matrix or n_sensors = {K} matrices C_k, got {len(C)}")
            Cs = [
                _matrix(c, f"C[{k}]", (None, n), f"d_k x n with n = {n} columns, one per state component")
                for k, c in enumerate(C)
            ]
        noise = np.asarray(preset["noise"] if noise is None else noise, dtype=np.float64).reshape(-1)
        if noise.size == 1:
            noise = np.repeat(noise, K)
        if noise.size != K:
            raise ValueError(
                f"sensor_noise_variances must be one variance or n_sensors = {K} of them, got {noise.size}"
            )
        if not np.all(np.isfinite(noise) & (noise > 0)):
            raise ValueError(f"sensor_noise_variances must all be positive and finite, got {noise.tolist()}")
        mean = np.asarray(preset["mean"] if mean is None else mean, dtype=np.float64).reshape(-1)
        if mean.shape != (n,) or not np.all(np.isfinite(mean)):
            raise ValueError(
                f"initial_mean must be {n} finite numbers (one per state component), got {mean.tolist()}"
            )
        cov = _covariance(preset["cov"] if cov is None else cov, "initial_cov", n)
        R = tuple(r * np.eye(c.shape[0]) for r, c in zip(noise.tolist(), Cs, strict=True))
        for arr_ in (A, B, Q, mean, cov, *Cs, *R):
            arr_.flags.writeable = False
        return LinearGaussianModel(A, B, Q, tuple(Cs), R, mean, cov)

    def _check_sizes(self) -> None:
        """Refuse systems whose filter would not fit: before any per-step matrix is computed."""
        m = self.model
        n, p, dims = m.n_state, m.n_input, int(sum(m.sensor_dims))
        if n > MAX_STATE_DIM or p > MAX_STATE_DIM:
            raise ValueError(
                f"A, B: state and input dimensions must be at most {MAX_STATE_DIM} (MAX_STATE_DIM), "
                f"got n = {n}, p = {p}"
            )
        if dims > MAX_MEASUREMENT_DIMS:
            raise ValueError(
                f"C: the sensors measure {dims:,} values per step in all, more than {MAX_MEASUREMENT_DIMS:,} "
                "(MAX_MEASUREMENT_DIMS); use fewer sensors or fewer rows per C_k"
            )
        worst = 8 * (self.horizon + 1) * n * (dims + 10 * n)
        if worst > MAX_FILTER_BYTES:
            raise ValueError(
                f"horizon = {self.horizon:,} with n = {n} states and {dims} measurements may hold "
                f"{worst / 2**30:.1f} GiB of filter gains (MAX_FILTER_BYTES = {MAX_FILTER_BYTES / 2**30:g} "
                "GiB); lower horizon or the sizes"
            )

    def _check_horizon(self) -> np.ndarray:
        """Propagate the open-loop prior over the horizon; return the estimate action scale.

        Raises:
            ValueError: the state's or a sensor's second moment passes ``MAX_STATE_VARIANCE``.

        """
        m = self.model
        C, r = m.C_stacked, np.concatenate([np.diag(r) for r in m.R])
        mean, cov = m.initial_mean.copy(), m.initial_cov.copy()
        peak = np.zeros(m.n_state)
        for t in range(self.horizon + 1):  # x_0 .. x_H: the last observation is of x_H
            second = cov + np.outer(mean, mean)
            sensed = np.einsum("ij,jk,ik->i", C, second, C) + r
            worst = max(float(np.max(np.diag(second))), float(np.max(sensed)))
            if not math.isfinite(worst) or worst > MAX_STATE_VARIANCE:
                rho = float(np.max(np.abs(np.linalg.eigvals(m.A))))
                fits = f"horizon must be <= {t - 1} for this system" if t > 1 else "no horizon fits"
                raise ValueError(
                    f"A has spectral radius {rho:.4g}: without control the second moment of the state (or "
                    f"of a sensor's measurement) reaches {worst:.3g} > {MAX_STATE_VARIANCE:.0e} at step {t}, "
                    "where "
                    f"float64 squared errors and float32 views lose their headroom; {fits}, got "
                    f"horizon = {self.horizon}"
                )
            peak = np.maximum(peak, np.abs(mean) + ACTION_RANGE_SIGMAS * np.sqrt(np.diag(cov)))
            mean_next, cov_next = m.A @ mean, m.A @ cov @ m.A.T + m.Q
            if np.allclose(cov_next, cov, rtol=1e-12, atol=0) and np.allclose(
                mean_next, mean, rtol=1e-12, atol=0
            ):
                break
            mean, cov = mean_next, cov_next
        return np.where(peak > 0, peak, 1.0)

    def _control_scale(self) -> np.ndarray:
        """4 standard deviations (plus mean) of the LQG input, the largest over the horizon."""
        m, L = self.model, self.lqr_gain
        closed = m.A - m.B @ L
        # second moment of x_{t|t}: x_{t+1|t+1} = (A - BL) x_{t|t} + K nu, cov(K nu) = P_{t+1|t} - P_{t+1|t+1}
        second = np.outer(m.initial_mean, m.initial_mean) + m.initial_cov - self._covs[0]
        peak = np.zeros(m.n_input)
        for t in range(self.horizon):
            peak = np.maximum(peak, np.sqrt(np.clip(np.diag(L @ second @ L.T), 0, None)))
            P = self._covs[min(t, len(self._covs) - 1)]
            P_next = self._covs[min(t + 1, len(self._covs) - 1)]
            nxt = closed @ second @ closed.T + (m.A @ P @ m.A.T + m.Q - P_next)
            if np.allclose(nxt, second, rtol=1e-10, atol=0):
                break
            second = nxt
        peak = ACTION_RANGE_SIGMAS * peak
        return np.where(peak > 0, peak, 1.0)

    # ---------------------------------------------------------------- action conversion
    def to_action(self, value: np.ndarray) -> np.ndarray:
        """Return the normalised action for an estimate (estimate mode) or an input u (control mode)."""
        return np.clip(np.asarray(value, dtype=np.float64) / self.action_scale, -1.0, 1.0).astype(np.float32)

    def from_action(self, action: np.ndarray) -> np.ndarray:
        """Return the estimate or input u an action stands for (clipped to [-1, 1] first)."""
        return np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0) * self.action_scale

    def _transitions(self) -> np.ndarray:
        """Transition matrices of the stacked recursion the env simulates, one per Kalman gain.

        The stacked state is ``s_t = [x_t, x_{t|t}, z_t]``: the open-loop state (no agent input),
        the centralised Kalman estimate of it, and in control mode the LQG twin's input-driven part
        (the twin's state is ``x_t + z_t``, its estimate ``x_{t|t} + z_t``, its input
        ``u_t = -L (x_{t|t} + z_t)``). With ``F_t = (I - K_t C) A``::

            x_t     = A x_{t-1} + w_{t-1}
            x_{t|t} = F_t x_{t-1|t-1} + K_t C A x_{t-1} + K_t (C w_{t-1} + v_t)
            z_t     = (A - B L) z_{t-1} - B L x_{t-1|t-1}
        """
        m = self.model
        n = m.n_state
        blocks = 3 if self.mode == "control" else 2
        out = np.zeros((len(self._gains), blocks * n, blocks * n))
        out[:, :n, :n] = m.A
        for j, K in enumerate(self._gains):
            KC = K @ self._C
            out[j, n : 2 * n, :n] = KC @ m.A
            out[j, n : 2 * n, n : 2 * n] = m.A - KC @ m.A
        if self.mode == "control":
            BL = m.B @ self.lqr_gain
            out[:, 2 * n :, n : 2 * n] = -BL
            out[:, 2 * n :, 2 * n :] = m.A - BL
        return out

    # ---------------------------------------------------------------- gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Draw x_0 from the prior; return every sensor's first measurement."""
        super().reset(seed=seed)
        m = self.model
        self._t = 0
        self._sum_agent = 0.0
        self._sum_reference = 0.0
        x0 = m.initial_mean + self._p0_factor @ self.np_random.standard_normal(m.n_state)
        self._carry: tuple[np.ndarray, np.ndarray | None] = (x0, None)  # stacked state, last w
        self._chunk_start = 0
        self._new_chunk()
        self._x_input = np.zeros(m.n_state)  # the agent's input-driven part of the state (control mode)
        return self._obs(self._Y32[0]), {"is_success": False}

    def _new_chunk(self) -> None:
        """Noise, open-loop state, clean measurements and references of the next steps."""
        m = self.model
        n, C = m.n_state, self._C
        t0 = self._chunk_start
        T = min(_CHUNK_STEPS, self.horizon + 1 - t0)
        z = self.np_random.standard_normal((T, n + C.shape[0]))
        W = z[:, :n] @ self._q_factor.T  # w_t, the noise into x_{t+1}
        V = z[:, n:] * self._noise_std  # v_t
        carry, w_last = self._carry
        W_prev = np.vstack([np.zeros((1, n)) if w_last is None else w_last[None], W[:-1]])
        n_gains = len(self._gains)
        idx = np.minimum(np.arange(t0, t0 + T), n_gains - 1)
        innovation = W_prev @ C.T + V
        if t0 < n_gains:  # some gains of this chunk still vary with t
            K_innovation = np.einsum("tnm,tm->tn", self._gains[idx], innovation)
        else:
            K_innovation = innovation @ self._gains[-1].T
        M = self._M
        S = np.zeros((T, M.shape[1]))
        S[:, :n] = W_prev
        S[:, n : 2 * n] = K_innovation
        first = 0
        if t0 == 0:  # x_0 from reset, x_{0|0} from the prior and y_0
            x0 = carry
            S[0, :n] = x0
            S[0, n : 2 * n] = m.initial_mean + self._gains[0] @ (C @ (x0 - m.initial_mean) + V[0])
            s = S[0]
            first = 1
        else:
            s = carry
        if t0 + first < n_gains:
            for i in range(first, T):
                s = S[i] = M[idx[i]] @ s + S[i]
        else:
            M_last = M[-1]
            for i in range(first, T):
                s = S[i] = M_last @ s + S[i]
        self._carry = (s, W[-1])
        X = S[:, :n]
        err = S[:, n : 2 * n] - X
        Y = X @ C.T + V
        self._X, self._Y, self._Y32 = X, Y, Y.astype(np.float32)
        self._kalman_err = np.einsum("ti,ti->t", err, err).tolist()
        self._kalman_mse = self._mse_all[idx].tolist()
        if self.mode == "control":
            U_ref = -(S[:, n : 2 * n] + S[:, 2 * n :]) @ self.lqr_gain.T
            X_twin = X + S[:, 2 * n :]
            self._lqg_cost = (
                np.einsum("ti,ij,tj->t", X_twin, self.state_cost, X_twin)
                + np.einsum("ti,ij,tj->t", U_ref, self.control_cost, U_ref)
            ).tolist()
            self._AX = X @ m.A.T

    def _obs(self, y32: np.ndarray) -> dict[str, np.ndarray]:
        return {name: y32[lo:hi] for name, lo, hi in self._slices}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Score the action against ``x_t`` (estimate) or apply it as ``u_t`` (control); advance."""
        t = self._t
        if not 0 <= t < self.horizon:
            if t < 0:
                raise gym.error.ResetNeeded("call reset() before step()")
            raise gym.error.ResetNeeded(
                f"the episode ended after horizon = {self.horizon} steps; call reset()"
            )
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != self._action_shape:
            raise ValueError(
                f"Action dimension mismatch. Expected {self._action_shape}, found {action.shape}"
            )
        if not math.isfinite(action @ action) and not np.isfinite(action).all():
            raise ValueError(
                f"action must be finite values in [-1, 1] (larger ones are clipped), got {action}"
            )
        value = np.minimum(np.maximum(action, -1.0), 1.0) * self.action_scale
        i = t - self._chunk_start
        info: dict[str, Any]
        if self._estimate:
            diff = value - self._X[i]
            cost = float(diff @ diff)
            reference = self._kalman_err[i]
            info = {"squared_error": cost}
        else:
            x_u = np.concatenate((self._X[i] + self._x_input, value))  # (x_t, u_t)
            cost = float(x_u @ self._stage_cost @ x_u)
            reference = self._lqg_cost[i]
            info = {"lqr_cost": cost, "lqg_cost": reference}
            self._x_input = self._AB @ x_u - self._AX[i]  # A x_input + B u
        info["kalman_squared_error"] = self._kalman_err[i]
        info["kalman_mse"] = self._kalman_mse[i]
        self._sum_agent += cost
        self._sum_reference += reference
        info["is_success"] = self._sum_agent <= self.success_factor * self._sum_reference
        self._t = t = t + 1
        i += 1
        if i == len(self._X):
            self._chunk_start = t
            self._new_chunk()
            i = 0
        if self._estimate:
            y32 = self._Y32[i]
        else:
            y32 = (self._Y[i] + self._C @ self._x_input).astype(np.float32)
        return self._obs(y32), -cost, False, t >= self.horizon, info

    @property
    def state(self) -> np.ndarray:
        """The hidden state ``x_t`` the next action concerns (for tests and experts; not an observation)."""
        if self._t < 0:
            raise gym.error.ResetNeeded("call reset() first")
        i = min(self._t - self._chunk_start, len(self._X) - 1)
        x = self._X[i].copy()
        return x + self._x_input if self.mode == "control" else x


def _is_matrix(value: Any) -> bool:
    """Tell whether a list/tuple is one matrix (a list of numbers or of number rows), not a list of C_k."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return arr.ndim <= 2
