"""Build the parts a scenario names: env (inside ``BandwidthLimited``), codec, allocator, agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from bwgym.scenarios.config import ConfigError, Scenario

__all__ = ["AGENTS", "ALLOCATORS", "CODECS", "Agent", "make_agent", "make_codec", "make_env", "make_trace"]

#: Codec names a scenario may use; learned ones load ``bwgym/codecs/checkpoints/<file>`` by default.
CODECS: dict[str, str | None] = {
    "none": None,  # views reach the agent unchanged and free: the uncompressed reference
    "raw": None,
    "jpeg": None,
    "png": None,
    "linear_dpca": "linear_dpca_locate_lift.npz",
    "pca": "pca_locate_lift.npz",
    "ndpca": "ndpca_locate_lift.pt",
    "ndpca_agnostic": "ndpca_agnostic_locate_lift.pt",
    "dae": "dae_locate_lift.pt",
    "jae": "jae_locate_lift.pt",
}
AGENTS = ("bc", "expert", "random", "sb3")
ALLOCATORS = ("uniform", "fixed")
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "codecs" / "checkpoints"


class Agent(Protocol):
    """What the runner needs of an agent."""

    def reset(self, seed: int | None = None) -> None:
        """Start an episode."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action for one (decoded) observation."""


def make_trace(scenario: Scenario):
    """The scenario's bandwidth trace, scaled."""
    from bwgym.traces import formats, generators

    cfg = scenario.trace
    if cfg.generator is not None:
        trace = generators.generate(cfg.generator, **cfg.params)
    else:
        trace = formats.load_trace(cfg.source, format=cfg.format)
    return trace.scale(cfg.scale) if cfg.scale != 1.0 else trace


def make_codec(scenario: Scenario, observation_space: gym.spaces.Dict):
    """The scenario's codec, or None for ``codec.name: none``."""
    from bwgym.codecs import image

    cfg = scenario.codec
    simple = {"raw": image.RawCodec, "jpeg": image.JpegCodec, "png": image.PngCodec}
    if cfg.name == "none":
        return None
    if cfg.name in simple:
        return simple[cfg.name].from_observation_space(observation_space, **cfg.kwargs)
    path = Path(cfg.checkpoint) if cfg.checkpoint else CHECKPOINT_DIR / CODECS[cfg.name]
    if not path.exists():
        raise ConfigError(
            f"codec.checkpoint: {str(path)!r} does not exist; train one with "
            f"`bwgym train codec --codec {cfg.name} --out {path}` or set codec.checkpoint"
        )
    from bwgym.codecs.train import load_codec  # torch: imported only for the learned codecs

    views = {k: space.shape for k, space in observation_space.spaces.items() if k != "proprio"}
    try:
        return load_codec(path, expect_env_id=scenario.env.id, expect_views=views, **cfg.kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"codec.checkpoint: {exc}") from None


def make_env(scenario: Scenario) -> gym.Env:
    """``gymnasium.make`` the scenario's env and put its codec and link in front of the agent."""
    import bwgym  # noqa: F401
    from bwgym.envs.bandwidth import BandwidthLimited

    env = gym.make(scenario.env.id, **scenario.env.kwargs)
    codec = make_codec(scenario, env.observation_space)
    if codec is None:
        return env
    allocator: Any = "uniform"
    if scenario.allocator.name == "fixed":
        if not scenario.allocator.weights:
            raise ConfigError("allocator.weights: required for allocator 'fixed', e.g. {arm: 0.7, side: 0.3}")
        allocator = dict(scenario.allocator.weights)
    return BandwidthLimited(
        env,
        codec,
        make_trace(scenario),
        allocator=allocator,
        step_seconds=scenario.link.step_seconds,
        latency_steps=scenario.link.latency_steps,
        loss_prob=scenario.link.loss_prob,
    )


class _RandomAgent:
    def __init__(self, env: gym.Env) -> None:
        self.space = env.action_space

    def reset(self, seed: int | None = None) -> None:
        self.space.seed(seed)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.space.sample()


class _ExpertAgent:
    def __init__(self, env: gym.Env) -> None:
        from bwgym.agents.expert import LiftExpert

        self.expert = LiftExpert(env)

    def reset(self, seed: int | None = None) -> None:
        self.expert.reset(seed)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.expert.act(obs)


class _BCAgent:
    def __init__(self, scenario: Scenario, env: gym.Env) -> None:
        from bwgym.agents.bc import BCAgent

        obs_space = env.observation_space
        views = [k for k in obs_space.spaces if k != "proprio"]
        shape = obs_space[views[0]].shape
        kwargs = dict(env_id=scenario.env.id, views=views, image_shape=shape)
        if scenario.agent.checkpoint:
            self.agent = BCAgent.load(scenario.agent.checkpoint, **kwargs)
        else:
            self.agent = BCAgent.load_shipped(**kwargs)

    def reset(self, seed: int | None = None) -> None:
        pass

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        return self.agent.act(obs)


def make_agent(scenario: Scenario, env: gym.Env) -> Agent:
    """The scenario's agent, acting on ``env``'s (decoded) observations."""
    if scenario.agent.name == "sb3":
        from bwgym.agents.rl import load_rl

        if not scenario.agent.checkpoint:
            raise ConfigError("agent.checkpoint: required for agent 'sb3' (a folder written by `bwgym train agent`)")
        return load_rl(scenario.agent.checkpoint, env_id=scenario.env.id, observation_space=env.observation_space)
    if scenario.agent.name == "random":
        return _RandomAgent(env)
    if scenario.agent.name == "expert":
        return _ExpertAgent(env)
    return _BCAgent(scenario, env)
