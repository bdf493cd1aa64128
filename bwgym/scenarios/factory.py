"""Build the parts a scenario names: env (inside ``BandwidthLimited``), trace, codec, allocator, agent.

Every name is looked up in its registry (codecs: :data:`bwgym.codecs.core.registry.CODECS`;
allocators, agents, trace formats and generators: :mod:`bwgym.common.registry`), so a part
registered anywhere, a user's own module included, is usable from a scenario file with no edit here. :func:`validate` builds
everything once, so a scenario that cannot run is refused before its run folder exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gymnasium as gym

from bwgym.agents.base import Agent, rollout
from bwgym.common.device import resolve_device
from bwgym.common.registry import AGENTS, ALLOCATORS, BuildContext, InputError, OptionError, Registry
from bwgym.scenarios.config import ConfigError, Scenario

__all__ = [
    "build_part",
    "count_successes",
    "make_agent",
    "make_allocator",
    "make_codec",
    "make_env",
    "make_trace",
    "make_vector_env",
    "validate",
]


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
        entry = codec_entry(cfg.name)
        entry.make_options(kwargs, "codec.kwargs")  # unknown options and wrong types, before any weights load
        cls = entry.cls
        if model is not None and getattr(cls, "uses_system_model", False):
            kwargs.setdefault("system", model)  # vector codecs that predict need the process model
        if getattr(cls, "uses_device", False):
            kwargs.setdefault("device", scenario.run.device)
        return registry_make_codec(
            cfg.name, link_views(env), env_id=scenario.env.id, checkpoint=cfg.checkpoint, **kwargs
        )
    except FileNotFoundError as exc:
        raise ConfigError(f"codec.checkpoint: {exc}") from None
    except OptionError as exc:  # its message names the option's path
        raise ConfigError(str(exc)) from None
    except (ValueError, TypeError) as exc:
        key = "codec.kwargs" if isinstance(exc, TypeError) else "codec"
        raise ConfigError(f"{key}: {exc}") from None


def make_env(scenario: Scenario, codec: Any = None) -> gym.Env:
    """``gymnasium.make`` the scenario's env and put its codec and link in front of the agent.

    For a fleet scenario this is one member alone on its equal share of the link (the trace scaled
    by ``1 / members``); :func:`bwgym.scenarios.fleet.make_fleet` builds the fleet itself.

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
    trace = make_trace(scenario)
    if scenario.fleet is not None:  # one member alone at its equal share (training, quick counts)
        trace = trace.scale(1.0 / scenario.fleet.members)
    try:
        return BandwidthLimited(
            env,
            codec,
            trace,
            allocator=allocator,
            step_seconds=scenario.link.step_seconds,
            latency_steps=scenario.link.latency_steps,
            loss_prob=scenario.link.loss_prob,
            observation=scenario.link.observation,
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


def build_part(section: str, registry: Registry, name: str, context: BuildContext, options: Any) -> Any:
    """Build the registered part ``name`` of a scenario ``section`` (``"agent"``, ``"allocator"``).

    A scenario key the entry does not read (``checkpoint``, ``weights``) is refused; every error
    of the build is a :class:`ConfigError` naming the key at fault.
    """
    try:
        entry = registry.get(name)
    except ValueError as exc:
        raise ConfigError(f"{section}.name: {exc}") from None
    for key in ("checkpoint", "weights"):
        if getattr(context, key) and key not in entry.uses:
            raise ConfigError(f"{section}.{key}: {registry.kind} {name!r} takes no {key}")
    try:
        return entry.build(context, options, where=f"{section}.kwargs")
    except OptionError as exc:  # its message names the option's path
        raise ConfigError(str(exc)) from None
    except InputError as exc:
        raise ConfigError(f"{section}.{exc.key}: {exc}") from None
    except FileNotFoundError as exc:
        raise ConfigError(f"{section}.checkpoint: {exc}") from None
    except TypeError as exc:
        raise ConfigError(f"{section}.kwargs: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{section}: {exc}") from None


def make_allocator(scenario: Scenario, env: gym.Env, codec: Any) -> Any:
    """The scenario's allocator for ``codec`` on ``env`` (the bare env, before the link).

    Looked up in :data:`~bwgym.common.registry.ALLOCATORS`; an allocator that consults the task
    agent (the oracle) gets its own instance of the scenario's agent.
    """
    cfg = scenario.allocator
    context = BuildContext(
        env=env,
        env_id=scenario.env.id,
        codec=codec,
        checkpoint=cfg.checkpoint or None,
        weights=dict(cfg.weights or {}),
        device=resolve_device(scenario.run.device),
        make_agent=lambda: make_agent(scenario, env),
    )
    return build_part("allocator", ALLOCATORS, cfg.name, context, cfg.kwargs)


def make_agent(scenario: Scenario, env: gym.Env) -> Agent:
    """The scenario's agent (:data:`~bwgym.common.registry.AGENTS`), acting on ``env``'s observations."""
    cfg = scenario.agent
    context = BuildContext(
        env=env,
        env_id=scenario.env.id,
        checkpoint=cfg.checkpoint or None,
        device=resolve_device(scenario.run.device),
    )
    return build_part("agent", AGENTS, cfg.name, context, cfg.kwargs)


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
