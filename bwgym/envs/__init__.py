"""Gymnasium environments of bwgym, registered under the ``bwgym/`` namespace on ``import bwgym``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

__all__ = ["BandwidthLimited", "register_envs"]


def register_envs() -> None:
    """Register every bwgym env id (idempotent)."""
    specs = {
        "bwgym/LocateLift-v0": dict(entry_point="bwgym.envs.lift:LocateLiftEnv", max_episode_steps=50),
        "bwgym/SensorNetwork-v0": dict(entry_point="bwgym.envs.sensors:SensorNetworkEnv"),
    }
    for env_id, kwargs in specs.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, **kwargs)


def __getattr__(name: str) -> Any:
    # Lazy, so that `import bwgym` stays light (the wrapper pulls in traces, codecs and pandas).
    if name == "BandwidthLimited":
        from bwgym.envs.bandwidth import BandwidthLimited

        return BandwidthLimited
    raise AttributeError(f"module 'bwgym.envs' has no attribute {name!r}")
