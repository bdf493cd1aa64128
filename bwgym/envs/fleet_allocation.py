"""``bwgym/AllocateFleet-v0``: learn how to divide one shared link among a fleet's members.

:class:`AllocateFleetEnv` is the scheduler's env: its observation is what a network scheduler
sees before each step (:class:`~bwgym.envs.fleet.learned.FleetObserver`: the shared budget's
history, and per member whether it is active, the age of its last delivered frame, its recent
drops, its progress, the share it had and how much of it its codec filled); its action is a score
per member, turned into shares by :func:`~bwgym.envs.fleet.learned.action_to_shares` (a softmax
of ``SCORE_SCALE * action`` over the active members); the members' frozen task agents act on what their codecs and links
deliver, and the env's reward is their task reward. The ``learned`` fleet allocator
(:class:`~bwgym.envs.fleet.learned.LearnedFleetAllocator`) runs the same observer inside a scenario.

One env step is one step of the fleet::

    FleetBandwidthLimited.peek_state --FleetObserver--> observation
    action (a score per member, in [-1, 1]) --action_to_shares--> shares
    members' views --codec, member links--> decoded --task agents--> actions --> fleet step
    reward = mean task reward of the members that stepped + success_bonus * (successes / N)

An episode is one round: every member plays one episode (seeds drawn from the env's seed) and the
episode ends when the last member's does. The first send of a round (the reset frames) is divided
equally, as the ``learned`` allocator does. With ``teacher`` (a fleet allocator, e.g. the oracle),
the teacher divides the link instead of the action, and ``info["shares"]`` tells what it chose:
:func:`bwgym.scenarios.fleet.distill_fleet_allocator` records the oracle's candidate scores this
way and fits an error model to them; :func:`bwgym.scenarios.fleet.search_fleet_allocator` plays
the env with candidate scorers and keeps those with the most member successes (the shipped
``learned`` fleet allocator).

Layering: envs never import agents or scenarios, so the fleet and its task agents are arguments
(:func:`bwgym.scenarios.fleet.make_allocate_fleet_env` builds them from a fleet scenario).
``gymnasium.make("bwgym/AllocateFleet-v0")`` without them builds :func:`default_fleet`: four
LocateLift-v1 robots sending NDPCA frames over the LoRa-class trace at 4x its rate, each acting
with the shipped behaviour-cloning agent (looked up by name in the agent registry).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from bwgym.common.registry import BuildContext
from bwgym.envs.fleet.learned import FleetObserver, action_to_shares
from bwgym.envs.fleet.wrapper import FleetBandwidthLimited, FleetState, equal_shares
from bwgym.traces.trace import BandwidthTrace

__all__ = ["AllocateFleetEnv", "default_fleet"]


def default_fleet(
    num_members: int = 4,
    env_id: str = "bwgym/LocateLift-v1",
    codec: str = "ndpca",
    trace: str = "lora_narrowband",
    trace_scale: float = 4.0,
) -> tuple[FleetBandwidthLimited, Any]:
    """A fleet and its (memoryless) task agent: ``num_members`` robots of ``env_id`` with ``codec``.

    The trace is a library trace scaled by ``trace_scale`` (shared, not per member); the agent is
    the shipped ``bc`` agent of the env (by name from :data:`~bwgym.common.registry.AGENTS`).
    """
    from bwgym.codecs import make_codec
    from bwgym.common.registry import AGENTS
    from bwgym.envs.bandwidth import BandwidthLimited
    from bwgym.envs.views import link_views
    from bwgym.traces import load_trace

    shared = load_trace(trace).scale(trace_scale)
    envs = [gym.make(env_id) for _ in range(num_members)]
    first = make_codec(codec, link_views(envs[0]), env_id=env_id)
    members = [
        BandwidthLimited(
            env,
            first if first.stateless or i == 0 else make_codec(codec, link_views(env), env_id=env_id),
            shared,
        )
        for i, env in enumerate(envs)
    ]
    agent = AGENTS.get("bc").build(BuildContext(env=members[0], env_id=env_id, device="cpu"))
    return FleetBandwidthLimited(members, shared), agent


class _Gate:
    """The fleet allocator inside :class:`AllocateFleetEnv`: the action's shares, or the teacher's.

    A round's first send (the reset frames, before any action) is divided equally.
    """

    def __init__(self, teacher: Any = None) -> None:
        self.teacher = teacher
        self.shares: np.ndarray | None = None

    def reset(self) -> None:
        self.shares = None
        if self.teacher is not None:
            self.teacher.reset()

    def __call__(self, state: FleetState) -> np.ndarray:
        if self.shares is None:
            self.shares = equal_shares(state.active)
            return self.shares
        if self.teacher is not None:
            return self.teacher(state)
        return np.where(state.active, self.shares, 0.0)


class AllocateFleetEnv(gym.Env):
    """The fleet scheduler's env (see the module docstring).

    Args:
        fleet: the fleet (its own allocator is replaced by the env's action); None:
            :func:`default_fleet` (with its agent, when ``agents`` is None too).
        agents: one frozen task agent per member (``act(obs)``, optionally ``reset(seed)``), or
            one memoryless agent for all.
        traces: a trace family (``rng -> BandwidthTrace``) drawn every round, or None: the
            fleet's own trace (a fresh offset each round).
        success_bonus: reward per member success, over N.
        history_steps: budgets the observation holds.
        teacher: a fleet allocator that divides the link instead of the action (demonstrations).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        fleet: FleetBandwidthLimited | None = None,
        agents: Any = None,
        traces: Callable[[np.random.Generator], BandwidthTrace] | None = None,
        success_bonus: float = 1.0,
        history_steps: int = 8,
        teacher: Any = None,
    ) -> None:
        if fleet is None:
            fleet, default_agent = default_fleet()
            agents = default_agent if agents is None else agents
        if not isinstance(fleet, FleetBandwidthLimited):
            raise TypeError(f"fleet is expected to be a FleetBandwidthLimited, got {type(fleet).__name__}")
        n = fleet.num_envs
        agents = list(agents) if isinstance(agents, Sequence) else [agents] * n
        if len(agents) != n or not all(callable(getattr(a, "act", None)) for a in agents):
            raise ValueError(f"expected {n} task agents with act(obs) (or one for all), got {len(agents)}")
        if not (math.isfinite(success_bonus) and success_bonus >= 0):
            raise ValueError(f"success_bonus is expected to be finite and >= 0, got {success_bonus!r}")
        self.fleet, self.agents, self.traces = fleet, agents, traces
        self.success_bonus = float(success_bonus)
        self.gate = _Gate(teacher)
        fleet.allocator, fleet.allocator_name = self.gate, "AllocateFleet-v0 action"
        self.observer = FleetObserver(n, history_steps)
        self.observation_space = self.observer.observation_space
        self.action_space = spaces.Box(-1.0, 1.0, (n,), np.float32)
        self._active = np.zeros(n, dtype=bool)
        self._obs: dict[str, np.ndarray] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        """Start a round: every member on a fresh seed (a fresh trace when the env has a family)."""
        super().reset(seed=seed)
        n = self.fleet.num_envs
        if self.traces is not None:
            self.fleet.use_trace(self.traces(self.np_random))
        seeds = [int(s) for s in self.np_random.integers(0, 2**31 - 1, n)]
        self.observer.reset()
        self._obs, _ = self.fleet.reset(seed=seeds)  # resets the gate: the reset frames go equally
        for agent, s in zip(self.agents, seeds, strict=True):
            if hasattr(agent, "reset"):
                agent.reset(s)
        self._active = np.ones(n, dtype=bool)
        return self.observer.observe(self.fleet.peek_state(self._active)), {"seeds": seeds}

    def step(self, action: Any) -> tuple[dict, SupportsFloat, bool, bool, dict[str, Any]]:
        """Divide this step's budget by ``action``, step the members, reward their task."""
        if not self._active.any():
            raise gym.error.ResetNeeded("the round is over: call reset()")
        shares, reason = action_to_shares(action, self._active)
        self.gate.shares = shares
        n, active = self.fleet.num_envs, self._active
        zero = np.zeros(self.fleet.single_action_space.shape, self.fleet.single_action_space.dtype)
        actions = np.stack(
            [
                self.agents[i].act({k: v[i] for k, v in self._obs.items()}) if active[i] else zero
                for i in range(n)
            ]
        )
        self._obs, rewards, terminations, truncations, _ = self.fleet.step(actions, active)
        stepped = active.copy()
        ended = (terminations | truncations) & stepped
        successes = sum(bool(self.fleet.env_infos[i].get("is_success", False)) for i in np.flatnonzero(ended))
        reward = float(rewards[stepped].mean()) + self.success_bonus * successes / n
        self._active = active & ~ended
        done = not self._active.any()
        info = {
            "shares": self.fleet.fleet_info["shares"].copy(),
            "successes": successes,
            "invalid_action": reason,
        }
        return self.observer.observe(self.fleet.peek_state(self._active)), reward, done, False, info

    def close(self) -> None:
        """Close the fleet."""
        self.fleet.close()
