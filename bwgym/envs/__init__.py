"""Gymnasium environments of bwgym, registered under the ``bwgym/`` namespace on ``import bwgym``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

__all__ = ["LOCATE_LIFT_V1_KWARGS", "BandwidthLimited", "register_envs"]

#: Constructor defaults of ``bwgym/LocateLift-v1`` (``LocateLiftEnv`` with these is v1; without, v0).
LOCATE_LIFT_V1_KWARGS: dict[str, Any] = dict(
    arm_fovy=35.0,
    brick_region=((-0.16, -0.20), (0.19, 0.20)),
    gripper_start_region=((-0.20, -0.18, 0.16), (0.10, 0.18, 0.22)),
    max_finger_opening_m=0.03,
    min_start_distance_m=0.15,
)


def register_envs() -> None:
    """Register every bwgym env id (idempotent)."""
    specs = {
        "bwgym/LocateLift-v0": dict(entry_point="bwgym.envs.lift:LocateLiftEnv", max_episode_steps=50),
        # v1: both views needed (see LocateLiftEnv's Version History); same class, other defaults.
        "bwgym/LocateLift-v1": dict(
            entry_point="bwgym.envs.lift:LocateLiftEnv",
            max_episode_steps=50,
            kwargs=dict(LOCATE_LIFT_V1_KWARGS),
        ),
        "bwgym/SensorNetwork-v0": dict(entry_point="bwgym.envs.sensors:SensorNetworkEnv"),
        # The entry point sits one layer up: with no arguments it loads the shipped task agent.
        "bwgym/AllocateBandwidth-v0": dict(entry_point="bwgym.agents.allocation:make_allocation_env"),
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
