"""The agent protocol and the one rollout loop every episode in bwgym goes through.

An agent is anything with ``reset(seed)`` and ``act(obs) -> action``; :func:`rollout` plays one
seeded episode of an env with it, and is what the scenario runner, episode videos, evaluation and
demonstration collection call::

    result = rollout(env, agent, seed=3, on_step=lambda step, obs, action, reward, info: ...)
    result.success, result.ret, result.steps
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bwgym.common.registry import BuildContext, register_agent

__all__ = ["Agent", "EpisodeResult", "RandomAgent", "rollout"]


@runtime_checkable
class Agent(Protocol):
    """What acts in an env: reset at the start of each episode, then one action per observation."""

    def reset(self, seed: int | None = None) -> None:
        """Start an episode (seed any randomness of the agent)."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The action for one (decoded) observation."""


@dataclass
class EpisodeResult:
    """What one episode gave: return, length, success and the last ``info``."""

    ret: float = 0.0
    steps: int = 0
    success: bool = False
    info: dict[str, Any] = field(default_factory=dict)


#: ``on_step(step, obs, action, reward, info)``; step 0 is the reset (action None, reward 0).
StepCallback = Callable[[int, Any, Any, float, dict[str, Any]], None]


def rollout(
    env: Any,
    agent: Agent,
    seed: int | None,
    on_step: StepCallback | None = None,
    max_steps: int | None = None,
    options: dict[str, Any] | None = None,
) -> EpisodeResult:
    """Play one episode of ``env`` with ``agent`` from ``env.reset(seed=seed)``.

    Args:
        env: a gymnasium env (its time limit ends the episode).
        agent: the agent; ``agent.reset(seed)`` is called after the env's reset (an object with
            ``act`` only is taken as memoryless and not reset).
        seed: the episode's seed (env and agent).
        on_step: called after the reset (step 0) and after every step.
        max_steps: stop after this many steps even if the env does not (None: the env decides).
        options: reset options of the env.

    Returns:
        The return, number of steps, ``info["is_success"]`` of the last step and the last info.
    """
    obs, info = env.reset(seed=seed, options=options)
    if hasattr(agent, "reset"):
        agent.reset(seed)
    if on_step is not None:
        on_step(0, obs, None, 0.0, info)
    result = EpisodeResult(info=info)
    done = False
    while not done and (max_steps is None or result.steps < max_steps):
        action = agent.act(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        result.ret += float(reward)
        result.steps += 1
        if on_step is not None:
            on_step(result.steps, obs, action, float(reward), info)
        done = terminated or truncated
    result.success = bool(info.get("is_success", False))
    result.info = info
    return result


@register_agent("random", description="uniformly random actions from the env's action space")
class RandomAgent:
    """Uniformly random actions from the env's action space (seeded by ``reset``)."""

    def __init__(self, action_space: Any) -> None:
        self.space = action_space

    @classmethod
    def from_context(cls, context: BuildContext, options: None) -> RandomAgent:
        """Random actions in the scenario env's action space."""
        return cls(context.env.action_space)

    def reset(self, seed: int | None = None) -> None:
        """Seed the action space."""
        self.space.seed(seed)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """A random action."""
        return self.space.sample()
