"""SensorNetwork envs, codecs and wire round trips shared by the vector codec tests."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

import bwgym  # noqa: F401  (registers the envs)
from bwgym.codecs import make_codec
from bwgym.codecs.core.protocol import Payload
from bwgym.envs.views import link_views

ENV_ID = "bwgym/SensorNetwork-v0"


def sensor_env(preset: str, n_sensors: int = 4) -> gym.Env:
    """A SensorNetwork env of ``preset`` with ``n_sensors`` sensors."""
    return gym.make(ENV_ID, preset=preset, n_sensors=n_sensors)


def sensor_codec(name: str, env: gym.Env) -> Any:
    """The registered vector codec ``name`` for ``env``'s views, given its process model."""
    return make_codec(name, link_views(env), env_id=ENV_ID, system=env.unwrapped.model)


def wire_roundtrip(codec: Any, obs: dict[str, np.ndarray], budget: int) -> tuple[Payload, dict]:
    """Compress within ``budget`` (checked) and decode the bytes that cross the wire ({} when empty)."""
    payload = codec.compress(obs, budget)
    assert payload.nbits <= budget
    if payload.is_empty:
        return payload, {}
    wire = Payload.from_bytes(payload.to_bytes(), codec=codec.name, session=codec.session)
    return payload, codec.decompress(wire)
