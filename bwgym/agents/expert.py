"""A scripted expert for LocateLift that reads the true brick pose (privileged information)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from bwgym.common.registry import BuildContext, register_agent

__all__ = ["LiftExpert"]


@register_agent("expert", description="scripted LocateLift expert acting on the simulator's true state")
class LiftExpert:
    """Approach, descend, grasp and lift, from the simulator's true brick pose.

    It is the demonstrator for behaviour cloning (NDPCA paper, Sec. 5: expert demonstrations with
    N(0, 0.1) action noise). The phase is recomputed from the state every step, so noise or a
    slipped grasp sends it back to an earlier phase instead of derailing it.

    Args:
        env: a LocateLift env (any wrappers; the expert reads ``env.unwrapped``).
        noise_std: standard deviation of Gaussian noise added to every action (then clipped).
        seed: seed of the noise generator.
    """

    hover_m = 0.10  # gripper height above the brick centre while aligning
    grasp_offset_m = 0.045  # gripper origin above the brick centre when the fingertips straddle it
    lift_m = 0.16

    @classmethod
    def from_context(cls, context: BuildContext, options: None) -> LiftExpert:
        """The expert on the scenario's env (it reads the true state, not the decoded views)."""
        return cls(context.env)

    def __init__(self, env: gym.Env, noise_std: float = 0.0, seed: int | None = None) -> None:
        if noise_std < 0 or not np.isfinite(noise_std):
            raise ValueError(f"noise_std must be finite and >= 0, got {noise_std}")
        self.env = env
        self.noise_std = float(noise_std)
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        """Forget the episode's phase (call after ``env.reset``)."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self._closing_steps = 0

    def act(self, obs: Any = None) -> np.ndarray:
        """The next action; ``obs`` is ignored (the expert reads the simulator state)."""
        sim = self.env.unwrapped
        gripper, brick = sim.gripper_pos, sim.brick_pos
        step_m = sim.max_step_m
        xy_error = brick[:2] - gripper[:2]
        # Half the xy slack between the open fingers and the 4 cm brick (12 mm of 25 at full opening).
        align_m = min(0.012, 0.5 * (getattr(sim, "max_finger_opening_m", 0.045) - 0.02))
        grasp_z = brick[2] + self.grasp_offset_m
        open_, close = 1.0, -1.0

        if sim.brick_grasped() or self._closing_steps >= 3:
            # Holding (or about to): lift straight up; let go only if the brick slipped away.
            if np.linalg.norm(xy_error) > 0.03 or gripper[2] - brick[2] > 0.08:
                self._closing_steps = 0
                target, fingers = np.array([*brick[:2], brick[2] + self.hover_m]), open_
            else:
                target, fingers = np.array([*gripper[:2], 0.02 + self.lift_m]), close
        elif np.linalg.norm(xy_error) > align_m:
            target, fingers = np.array([*brick[:2], brick[2] + self.hover_m]), open_
            # Descend only once roughly aligned, so the fingers never land on the brick.
            if np.linalg.norm(xy_error) > 0.04:
                target[2] = max(target[2], gripper[2])
        elif gripper[2] - grasp_z > 0.008:
            target, fingers = np.array([*brick[:2], grasp_z]), open_
        else:
            target, fingers = np.array([*brick[:2], grasp_z]), close
            self._closing_steps += 1

        move = np.clip((target - gripper) / step_m, -1.0, 1.0)
        action = np.array([*move, fingers])
        if self.noise_std:
            action = action + self.rng.normal(0.0, self.noise_std, size=4)
        return np.clip(action, -1.0, 1.0).astype(np.float32)
