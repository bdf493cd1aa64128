"""A Kalman-filter fusion agent for ``bwgym/SensorNetwork-v0``: estimation, or Kalman + LQR control.

The fusion node runs the Kalman filter of the env's process model on the (decoded) sensor views
it is shown. In ``estimate`` mode it acts with its filtered estimate ``x_{t|t}``; in ``control``
mode with the LQR input ``u_t = -L x_{t|t}`` (``L``: the env's infinite-horizon ``lqr_gain``), and
its time update adds the input it applied, ``B u_t`` (certainty equivalence: on uncompressed views
this is the env's LQG reference, up to the float32 rounding of the action)::

    agent = KalmanFusionAgent.for_env(env)       # env: SensorNetwork, bare or inside BandwidthLimited
    obs, info = env.reset(seed=0)
    agent.reset(0)
    action = agent.act(obs)                      # the normalised estimate of x_t, or input u_t

Which views are new: the agent only sees observations, and ``BandwidthLimited`` shows a view that
was not refreshed (dropped, over budget, not sent, in flight) as its last decoded frame, or as zeros
before the first delivery. So a view equal bit for bit to what the agent was shown the step before
(or all zeros before that view's first delivery) is taken as *not refreshed*: the filter keeps its
prediction for that sensor (the time update only). A refreshed value that happens to repeat
exactly (a coarse quantiser whose cell did not change) is skipped too: a small loss of information,
never a wrong update. Decoded measurements are trusted with the sensor's own noise ``R_k`` plus
``measurement_noise_extra``, plus, when the link's codec reports the quantisation step of each view
it decoded (``codec.last_steps``, the vector codecs of :mod:`bwgym.codecs.sensor.predictive`), that step's
uniform noise ``step^2 / 12``: :meth:`KalmanFusionAgent.for_env` finds the codec on a
``BandwidthLimited`` env.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bwgym.common.kalman import KalmanFilter
from bwgym.common.registry import BuildContext, register_agent

__all__ = ["KalmanFusionAgent"]


@register_agent(
    "kalman", description="Kalman-filter fusion of a SensorNetwork's views (+ LQR in control mode)"
)
class KalmanFusionAgent:
    """Kalman filter over K sensor views; a view that did not change is a dropped one (time update).

    With ``lqr_gain`` the agent controls (``u = -L x_{t|t}``, applied to the filter's time update
    as the env applies it: clipped to the action range); without it, it estimates.

    Args:
        model: the process model (``env.unwrapped.model`` of SensorNetwork: A, B, Q, C, R,
            initial_mean, initial_cov).
        view_names: the observation key of each sensor, in the model's order.
        action_scale: the env's action scale (``env.unwrapped.action_scale``): the action is
            ``estimate / action_scale`` clipped to [-1, 1].
        measurement_noise_extra: variance added to every ``R_k``.
        codec: the link's codec; when it reports ``last_steps`` (view -> quantisation step of the
            views it decoded last), a refreshed view's noise gets ``step^2 / 12`` more.
        lqr_gain: the feedback gain ``L`` (p, n) of control mode (``env.unwrapped.lqr_gain``);
            None: estimate mode.

    Raises:
        ValueError: ``view_names`` and the model's sensors differ in number, or ``lqr_gain`` does
            not match the model's input and state dimensions.
    """

    def __init__(
        self,
        model: Any,
        view_names: tuple[str, ...] | list[str],
        action_scale: np.ndarray | float,
        measurement_noise_extra: float = 0.0,
        codec: Any = None,
        lqr_gain: np.ndarray | None = None,
    ) -> None:
        self.model = model
        self.view_names = tuple(view_names)
        if len(self.view_names) != len(model.C):
            raise ValueError(
                f"KalmanFusionAgent: {len(self.view_names)} views {list(self.view_names)} for a model "
                f"of {len(model.C)} sensors; expected one view per sensor"
            )
        if not (np.isfinite(measurement_noise_extra) and measurement_noise_extra >= 0):
            raise ValueError(f"measurement_noise_extra must be >= 0, got {measurement_noise_extra}")
        self.action_scale = np.asarray(action_scale, dtype=np.float64)
        self._R = [np.asarray(r) + measurement_noise_extra * np.eye(np.shape(r)[0]) for r in model.R]
        self.codec = codec
        self.lqr_gain = None if lqr_gain is None else np.atleast_2d(np.asarray(lqr_gain, dtype=np.float64))
        if self.lqr_gain is not None:
            want = (np.shape(model.B)[1], np.shape(model.A)[0])
            if self.lqr_gain.shape != want:
                raise ValueError(
                    f"lqr_gain must be (inputs, states) = {want} for this model, got {self.lqr_gain.shape}"
                )
        self._u: np.ndarray | None = None  # the input applied at the last step (control mode)
        self.filter: KalmanFilter | None = None
        self._started = False
        self._last: dict[str, np.ndarray] = {}
        self.updates = 0  # measurements used this episode (for tests and diagnostics)

    @classmethod
    def from_context(cls, context: BuildContext, options: None) -> KalmanFusionAgent:
        """The agent for the scenario's SensorNetwork env (:meth:`for_env`)."""
        return cls.for_env(context.env)

    @classmethod
    def for_env(cls, env: Any, **kwargs: Any) -> KalmanFusionAgent:
        """The agent for a SensorNetwork env (bare or wrapped): estimation, or Kalman + LQR control.

        Raises:
            ValueError: the env is not a SensorNetwork (mode ``estimate`` or ``control``).
        """
        base = getattr(env, "unwrapped", env)
        mode = getattr(base, "mode", None)
        if not hasattr(base, "model") or mode not in ("estimate", "control"):
            raise ValueError(
                f"the kalman agent acts in bwgym/SensorNetwork-v0 (mode 'estimate' or 'control'), got "
                f"{type(base).__name__} (mode {mode!r})"
            )
        kwargs.setdefault("codec", getattr(env, "codec", None))  # BandwidthLimited's codec, if any
        if mode == "control":
            kwargs.setdefault("lqr_gain", base.lqr_gain)
        return cls(base.model, tuple(base.link_views), base.action_scale, **kwargs)

    def reset(self, seed: int | None = None) -> None:
        """Start an episode at the prior (nothing shown yet)."""
        m = self.model
        self.filter = KalmanFilter(m.A, m.B, m.Q, m.C, self._R, m.initial_mean, m.initial_cov)
        self._last = {}
        self._started = False
        self._u = None
        self.updates = 0

    @property
    def estimate(self) -> np.ndarray:
        """The current filtered estimate of the state."""
        if self.filter is None:
            raise RuntimeError("call reset() first")
        return self.filter.mean.copy()

    def fresh(self, obs: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
        """The sensors whose view changed since the last step (see the module docstring)."""
        out = {}
        for k, name in enumerate(self.view_names):
            value = np.asarray(obs[name])
            last = self._last.get(name)
            repeated = (last is not None and np.array_equal(last, value)) or (
                last is None and not np.any(value)
            )
            if not repeated:
                out[k] = value.astype(np.float64)
            self._last[name] = value.copy()
        return out

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Time update (after the first step), measurement update with the refreshed views, act."""
        if self.filter is None:
            self.reset()
        if self._started:
            self.filter.predict(self._u)
        self._started = True
        measurements = self.fresh(obs)
        steps = getattr(self.codec, "last_steps", None) or {}
        noisy = {k: self.view_names[k] for k in measurements if self.view_names[k] in steps}
        for k, name in noisy.items():
            self.filter.R[k] = self._R[k] + np.eye(self._R[k].shape[0]) * (steps[name] ** 2 / 12.0)
        self.filter.update(measurements)
        for k in noisy:
            self.filter.R[k] = self._R[k]
        self.updates += len(measurements)
        if self.lqr_gain is None:
            return np.clip(self.filter.mean / self.action_scale, -1.0, 1.0).astype(np.float32)
        action = np.clip(-(self.lqr_gain @ self.filter.mean) / self.action_scale, -1.0, 1.0).astype(
            np.float32
        )
        self._u = action.astype(np.float64) * self.action_scale  # what the env applies
        return action
