"""DPCA on sensor vectors (``vector_dpca``): the NDPCA paper's memoryless distributed linear codec.

:class:`VectorDPCACodec` is :class:`~bwgym.codecs.image.linear.LinearDPCACodec` on 1-D float views:
each sensor ``k`` projects its measurement ``y_k`` (``d_k`` values) on its own principal
directions, fitted on that sensor's training measurements alone (the encoders never talk to each
other); the components of all sensors are pooled by variance, and one quantisation step, the
frame's header byte, decides for every sensor how many components it sends and how finely
(reverse water-filling). Entropy coding, the lean frame, the session and the budget search are
those of :class:`~bwgym.codecs.core.latent.LatentCodec`, unchanged: one fitted model serves every
bandwidth, and ``compress`` never exceeds the budget.

What this adds for sensor views:

* :attr:`VectorDPCACodec.last_steps`: after :meth:`~VectorDPCACodec.decompress`, each decoded
  view's quantisation step in measurement units (as the ``scalar`` and ``predictive`` codecs give
  it), so a Kalman fusion node can weigh a decoded measurement by its noise ``step^2 / 12``. A view
  that sent only some of its components reports the step of equal mean squared error per value
  (its dropped components' variance included: an approximation, the dropped part is not white).
* a view that sent no component is left out of the decoded views (the ``scalar`` codec's rule):
  its training mean is not a measurement, and a fusion node must not fuse it.
* ``system=`` (the env's process model, which the benchmark and the scenario factory pass) is
  accepted and checked against the views; the codec itself has no memory and does not use it.

It codes each step's measurements, not their innovations against the receiver's prediction, so at
equal distortion it needs more bits than ``predictive``: that is the price of a memoryless
distributed codec (NDPCA is one), measured in ``benchmarks/sensors.py``. DPCA also ranks
components by the variance of the *measurement*, not by what they say about the state: on the
``ar1`` preset the noisiest sensor has the largest variance and is ranked first.

Shipped checkpoint: ``vector_dpca_sensor_network.ckpt`` serves ``bwgym/SensorNetwork-v0`` with
its default ``ar1`` preset and K = 4 sensors (views ``sensor_0..3`` of one float each); other
presets or sensor counts have other views and are refused with both specs named. Regenerate it
(and train one for other settings) with ``bwgym train sensor-codec --codec vector_dpca``, which
fits on :func:`sensor_frames` of the env.

Example::

    codec = make_codec("vector_dpca", link_views(env), env_id="bwgym/SensorNetwork-v0")
    payload = codec.compress(obs, budget_bits=40)
    decoded = codec.decompress(Payload.from_bytes(payload.to_bytes(), session=codec.session))
    codec.last_steps                        # {'sensor_0': 0.09, ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bwgym.codecs.core.dpca import DPCA
from bwgym.codecs.core.entropy import step_from_index
from bwgym.codecs.core.protocol import Payload, ViewSpec
from bwgym.codecs.core.registry import register_codec
from bwgym.codecs.image.linear import LinearDPCACodec
from bwgym.codecs.sensor.predictive import _float_views, check_system, pop_system
from bwgym.common.checkpoint import Checkpoint

__all__ = ["SHIPPED_CHECKPOINT", "SHIPPED_EPISODES", "SHIPPED_SEED", "VectorDPCACodec", "sensor_frames"]

#: The shipped checkpoint (``bwgym/SensorNetwork-v0``, ar1, K = 4).
SHIPPED_CHECKPOINT = "vector_dpca_sensor_network.ckpt"
#: Episodes (of 200 steps) it is fitted on, and the seed of the first: seeds 1000-1049, apart from
#: the benchmark's and the tests' evaluation seeds (0-99).
SHIPPED_EPISODES = 50
SHIPPED_SEED = 1000


def sensor_frames(
    env: Any, episodes: int = SHIPPED_EPISODES, seed: int = SHIPPED_SEED
) -> dict[str, np.ndarray]:
    """Every step's link views of ``episodes`` rollouts of ``env``: ``{view: (N, d) float32}``.

    Episode ``i`` is reset with ``seed + i``; actions are drawn from the action space (seeded), which in
    SensorNetwork's estimate mode does not change the process. ``env`` comes from the caller (the
    codecs layer does not build envs).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    names = getattr(getattr(env, "unwrapped", env), "link_views", None)
    rows: dict[str, list[np.ndarray]] = {}
    env.action_space.seed(seed)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        done = False
        while not done:
            for name in names or obs:
                rows.setdefault(name, []).append(np.asarray(obs[name], np.float32))
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
    return {name: np.stack(r) for name, r in rows.items()}


@register_codec(
    "vector_dpca",
    wire_id=13,
    checkpoint=SHIPPED_CHECKPOINT,
    recipe={"max_components": None},
    description="vector views: DPCA across the sensors (linear per-sensor encoders), memoryless",
)
class VectorDPCACodec(LinearDPCACodec):
    """DPCA across K sensors' float vectors: per-sensor linear encoders, one pooled step (module doc).

    Build with :meth:`train` (``{view: (N, d) float}`` measurements, e.g. :func:`sensor_frames`) or
    by name with :func:`bwgym.codecs.make_codec`.
    """

    name = "vector_dpca"
    #: :attr:`last_steps` of each decode is read by the fusion agent after it: one instance per env.
    stateless = False

    def __init__(self, latent_model: DPCA, views: Sequence[ViewSpec], *args: Any, **kwargs: Any) -> None:
        super().__init__(latent_model, _float_views(views), *args, **kwargs)
        #: Quantisation step (measurement units) of each view of the last decoded frame.
        self.last_steps: dict[str, float] = {}

    @classmethod
    def train(cls, frames: Mapping[str, np.ndarray], **kwargs: Any) -> VectorDPCACodec:  # type: ignore[override]
        """Fit on ``{view: (N, d) float}`` measurements, rows aligned in time (see ``LinearDPCACodec.train``).

        ``max_components`` defaults to every component (``d_k`` per sensor): a sensor vector is small.
        """
        kwargs.setdefault("max_components", None)
        kwargs.setdefault("env_id", "bwgym/SensorNetwork-v0")
        kwargs["residual"] = False
        for name, arr in frames.items():
            arr = np.asarray(arr)
            if arr.ndim != 2 or arr.dtype.kind != "f":
                raise ValueError(
                    f"vector_dpca trains on (N, d) float measurements; view {name!r} is {arr.dtype}{arr.shape}"
                )
        return super().train(frames, **kwargs)  # type: ignore[return-value]

    fit = train

    @classmethod
    def _from_parts(
        cls, ckpt: Checkpoint, latent_model: DPCA, views: list[ViewSpec], **kwargs: Any
    ) -> VectorDPCACodec:
        system = pop_system(kwargs)
        codec = super()._from_parts(ckpt, latent_model, views, **kwargs)
        check_system(system, codec.views)
        return codec  # type: ignore[return-value]

    def _spec_fix(self) -> str:
        return (
            "fit one on the env's rollouts (`bwgym train sensor-codec --codec vector_dpca --preset P "
            "--sensors K --out PATH`) and pass checkpoint=PATH"
        )

    def decompress(self, payload: Payload) -> dict[str, np.ndarray]:
        """Decode the views that sent at least one component (``{}`` for an empty payload).

        Sets :attr:`last_steps` for each of them.
        """
        views = super().decompress(payload)
        self.last_steps = {}
        if not views:
            return views
        steps, dims, _ = self._read(payload)
        model = self.latent_model
        out = {}
        for k, spec in enumerate(self.views):
            n = int(dims[k])
            if n == 0:
                continue
            step = float(step_from_index(int(steps[k])))
            dropped = model.total_variances[k] - float(np.sum(model.variances[k][:n]))
            per_value = (n * step * step / 12.0 + max(dropped, 0.0)) * model.scales[k] ** 2 / spec.shape[0]
            self.last_steps[spec.name] = float(np.sqrt(12.0 * per_value))
            out[spec.name] = views[spec.name]
        return out
