"""Build the parts a scenario names: env (inside ``BandwidthLimited``), trace, codec, allocator, agent.

Every name is looked up in the registry of its layer (codecs: :mod:`bwgym.codecs.core.registry`,
allocators: :data:`bwgym.envs.allocators.ALLOCATORS`, agents: :data:`AGENTS`), so a codec
registered anywhere is usable from a scenario file with no edit here. :func:`validate` builds
everything once, so a scenario that cannot run is refused before its run folder exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gymnasium as gym

from bwgym.agents.base import Agent, RandomAgent, rollout
from bwgym.common.device import resolve_device
from bwgym.scenarios.config import ConfigError, Scenario

__all__ = [
    "AGENTS",
    "count_successes",
    "make_agent",
    "make_allocator",
    "make_codec",
    "make_env",
    "make_trace",
    "make_vector_env",
    "validate",
]

AGENTS = ("bc", "expert", "kalman", "random", "sb3")


def make_trace(scenario: Scenario) -> Any:
    """The scenario's bandwidth trace, scaled; a generator without a seed gets one from ``run.seed``."""
    from bwgym.traces import generate, load_trace
    from bwgym.traces.generators import derive_seed

    cfg = scenario.trace
    try:
        if cfg.generator is not None:
            params = dict(cfg.params)
            params.setdefault("seed", derive_seed(scenario.run.seed, "trace", cfg.generator))
            trace = generate(cfg.generator, **params)
        else:
            trace = load_trace(cfg.source or "lte_drive", format=cfg.format)
    except ValueError as exc:  # TraceFormatError included
        key = "trace.params" if cfg.generator is not None else "trace.source"
        raise ConfigError(f"{key}: {exc}") from None
    return trace.scale(cfg.scale) if cfg.scale != 1.0 else trace


def make_codec(scenario: Scenario, env: gym.Env) -> Any:
    """The scenario's codec for ``env``'s link views, or None for ``codec.name: none``."""
    from bwgym.codecs import codec_entry
    from bwgym.codecs import make_codec as registry_make_codec
    from bwgym.envs.views import link_views

    cfg = scenario.codec
    if cfg.name == "none":
        return None
    kwargs = dict(cfg.kwargs)
    model = getattr(getattr(env, "unwrapped", None), "model", None)
    try:
        cls = codec_entry(cfg.name).cls
        if model is not None and getattr(cls, "uses_system_model", False):
            kwargs.setdefault("system", model)  # vector codecs that predict need the process model
        if getattr(cls, "uses_device", False):
            kwargs.setdefault("device", scenario.run.device)
        return registry_make_codec(
            cfg.name, link_views(env), env_id=scenario.env.id, checkpoint=cfg.checkpoint, **kwargs
        )
    except FileNotFoundError as exc:
        raise ConfigError(f"codec.checkpoint: {exc}") from None
    except (ValueError, TypeError) as exc:
        key = "codec.kwargs" if isinstance(exc, TypeError) else "codec"
        raise ConfigError(f"{key}: {exc}") from None


def make_env(scenario: Scenario, codec: Any = None) -> gym.Env:
    """``gymnasium.make`` the scenario's env and put its codec and link in front of the agent.

    Args:
        scenario: the scenario.
        codec: the codec instance to use (one stateless codec may serve several envs); None:
            the scenario's, built anew.
    """
    import bwgym  # noqa: F401  (registers the envs)
    from bwgym.envs.bandwidth import BandwidthLimited

    try:
        env = gym.make(scenario.env.id, **scenario.env.kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"env.kwargs: {exc}") from None
    if codec is None:
        codec = make_codec(scenario, env)
    if codec is None:
        return env
    allocator = make_allocator(scenario, env, codec)
    try:
        return BandwidthLimited(
            env,
            codec,
            make_trace(scenario),
            allocator=allocator,
            step_seconds=scenario.link.step_seconds,
            latency_steps=scenario.link.latency_steps,
            loss_prob=scenario.link.loss_prob,
        )
    except (TypeError, ValueError) as exc:
        key = "allocator" if "weight" in str(exc) or "allocat" in str(exc) else "link"
        raise ConfigError(f"{key}: {exc}") from None


def make_vector_env(scenario: Scenario, num_envs: int | None = None) -> Any:
    """``num_envs`` (default ``run.num_envs``) envs of the scenario stepped together.

    A scenario with a codec gives a :class:`~bwgym.envs.bandwidth.VectorBandwidthLimited` whose envs
    share one codec instance when the codec is stateless (so it codes them in batched calls), each
    with its own link, session, held frames and allocator; ``codec: none`` gives gymnasium's
    ``SyncVectorEnv``.
    """
    from bwgym.envs.bandwidth import BandwidthLimited, VectorBandwidthLimited

    num_envs = scenario.run.num_envs if num_envs is None else int(num_envs)
    if num_envs < 1:
        raise ConfigError(f"run.num_envs: expected >= 1, got {num_envs}")
    first = make_env(scenario)
    if not isinstance(first, BandwidthLimited):
        return gym.vector.SyncVectorEnv([lambda: first] + [lambda: make_env(scenario)] * (num_envs - 1))
    shared = first.codec if first.codec.stateless else None
    return VectorBandwidthLimited([first] + [make_env(scenario, shared) for _ in range(num_envs - 1)])


def make_allocator(scenario: Scenario, env: gym.Env, codec: Any) -> Any:
    """The scenario's allocator for ``codec`` on ``env`` (the bare env, before the link).

    ``oracle`` gets its own instance of the scenario's agent; ``learned`` loads its checkpoint
    (:func:`bwgym.agents.allocation.load_learned_allocator`; none: the shipped policy of the codec
    and env), checked against the codec's views.
    """
    from bwgym.envs.allocators import OracleAllocator, ProportionalAllocator

    cfg = scenario.allocator
    if cfg.kwargs and cfg.name not in ("oracle", "proportional"):
        raise ConfigError(f"allocator.kwargs: allocator {cfg.name!r} takes no kwargs, got {dict(cfg.kwargs)}")
    if cfg.checkpoint is not None and cfg.name != "learned":
        raise ConfigError(
            f"allocator.checkpoint: only allocator 'learned' takes a checkpoint, not {cfg.name!r}"
        )
    try:
        if cfg.name == "fixed":
            if not cfg.weights:
                raise ConfigError(
                    "allocator.weights: required for allocator 'fixed', e.g. {arm: 0.7, side: 0.3}"
                )
            return dict(cfg.weights)
        if cfg.name == "proportional":
            return ProportionalAllocator(codec, **cfg.kwargs)
        if cfg.name == "oracle":
            return OracleAllocator(make_agent(scenario, env), codec, **cfg.kwargs)
        if cfg.name == "learned":
            from bwgym.agents.allocation import load_learned_allocator

            try:  # no checkpoint: the shipped policy of this codec and env
                return load_learned_allocator(cfg.checkpoint or None, codec, env_id=scenario.env.id)
            except (FileNotFoundError, ValueError) as exc:
                raise ConfigError(f"allocator.checkpoint: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"allocator.kwargs: {exc}") from None
    return cfg.name


def make_agent(scenario: Scenario, env: gym.Env) -> Agent:
    """The scenario's agent, acting on ``env``'s (decoded) observations."""
    cfg = scenario.agent
    if cfg.name == "random":
        return RandomAgent(env.action_space)
    if cfg.name == "expert":
        from bwgym.agents.expert import LiftExpert

        return LiftExpert(env)
    if cfg.name == "kalman":
        from bwgym.agents.kalman import KalmanFusionAgent

        try:
            return KalmanFusionAgent.for_env(env)
        except ValueError as exc:
            raise ConfigError(f"agent: {exc}") from None
    try:
        if cfg.name == "sb3":
            from bwgym.agents.rl import load_rl

            if not cfg.checkpoint:
                raise ConfigError(
                    "agent.checkpoint: required for agent 'sb3' (a folder written by `bwgym train agent`)"
                )
            return load_rl(cfg.checkpoint, env_id=scenario.env.id, observation_space=env.observation_space)
        from bwgym.agents.bc import BCAgent
        from bwgym.envs.views import link_view_names

        views = list(link_view_names(env))
        kwargs = dict(
            env_id=scenario.env.id,
            views=views,
            image_shape=env.observation_space[views[0]].shape,
            device=resolve_device(scenario.run.device),
        )
        return BCAgent.load(cfg.checkpoint, **kwargs) if cfg.checkpoint else BCAgent.load_shipped(**kwargs)
    except FileNotFoundError as exc:
        raise ConfigError(f"agent.checkpoint: {exc}") from None
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"agent.checkpoint: {exc}") from None


def validate(scenario: Scenario) -> None:
    """Build every part of ``scenario`` once (trace, env, codec, agent) and close it.

    Raises:
        ConfigError: naming the key of the first part that cannot be built.
    """
    env = make_env(scenario)
    try:
        make_agent(scenario, env)
    finally:
        env.close()


def count_successes(scenario: Scenario, seeds: Iterable[int], agent: Agent | None = None) -> int:
    """How many of the serial episodes of ``scenario`` (one per env seed) its agent succeeds in.

    A quick count for training reports, benchmarks and tests; :func:`~bwgym.scenarios.runner.run_scenario`
    is the full protocol (tables, workers, resume).

    Args:
        scenario: the env, codec, trace and agent to run.
        seeds: the env seed of each episode.
        agent: an agent to run instead of the scenario's (e.g. one just trained, in memory).
    """
    env = make_env(scenario)
    try:
        actor = agent if agent is not None else make_agent(scenario, env)
        return sum(rollout(env, actor, seed=seed).success for seed in seeds)
    finally:
        env.close()
