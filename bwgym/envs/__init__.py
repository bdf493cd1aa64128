"""Gymnasium environments of bwgym, registered under the ``bwgym/`` namespace on ``import bwgym``."""

from __future__ import annotations

import os
import sys
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
        # Without arguments: four robots with the shipped BC agent (fleet_allocation.default_fleet).
        "bwgym/AllocateFleet-v0": dict(entry_point="bwgym.envs.fleet_allocation:AllocateFleetEnv"),
    }
    for env_id, kwargs in specs.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, **kwargs)


def _single_torch_thread_after_fork() -> None:
    """In a forked child, run torch on one intra-op thread (a no-op where torch is not imported).

    Torch's CPU ops run on an OpenMP thread pool; a child forked after the parent used it inherits
    the pool's bookkeeping but not its threads, and its first parallel op waits for them forever
    (``AllocateBandwidth-v0`` under ``make_vec(..., "async")`` loads its torch task agent in each
    worker). With one thread torch never enters an OpenMP region; that is also what torch's own
    DataLoader workers do, and N worker processes are the parallelism.
    """
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):  # a half-imported torch has none
        torch.set_num_threads(1)


# Once per process (this module is imported once); only fork runs it, spawn starts a fresh torch.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_single_torch_thread_after_fork)


def __getattr__(name: str) -> Any:
    # Lazy, so that `import bwgym` stays light (the wrapper pulls in traces, codecs and pandas).
    if name == "BandwidthLimited":
        from bwgym.envs.bandwidth import BandwidthLimited

        return BandwidthLimited
    raise AttributeError(f"module 'bwgym.envs' has no attribute {name!r}")
