"""A scenario with ``receivers:`` and ``links:`` (:mod:`bwgym.scenarios.receivers`), run episode by episode.

The runner (:mod:`bwgym.scenarios.runner`) hands such a scenario's episodes to
:func:`run_receiver_episodes` and checks it with :func:`validate_receivers` before its folder
exists; everything else (the run folder, atomic per-episode parts, ``--resume``, workers, sweeps,
the summary) is the runner's. Episode ``i`` uses seed ``run.seed + i`` for the env, and every link
restarts at trace time 0 with a loss generator seeded from that seed and the link's name, so an
episode does not depend on the others (the same table on any number of workers and after a
resume), and is the episode :func:`~bwgym.scenarios.two_receivers.run_two_receivers` plays first
on the same traces.

Tables: ``steps.parquet`` holds the step rows of
:func:`~bwgym.scenarios.two_receivers.episodes.play_episode` (one per step, per-link and
per-receiver columns named ``<metric>.<link>`` and ``<metric>.<receiver>``); ``episodes.parquet``
one row per episode: the runner's ``success`` (the acting receiver's: any step succeeded),
``return``, ``steps``, ``codec``, ``agent``, ``mean_bits_sent`` (wire bits over all links) and
``mean_<column>`` of every column :func:`~bwgym.scenarios.two_receivers.episodes.step_means` averages
(``mean_bits_sent.<link>``, ``mean_bits_received.<receiver>``, ``mean_held.<receiver>``,
``mean_action_error.<receiver>``, ``mean_psnr_db.<receiver>``, ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import pandas as pd

from bwgym.codecs.multiterminal.gray_wyner import GrayWynerCodec
from bwgym.scenarios.config import ConfigError, Scenario
from bwgym.scenarios.factory import make_agent, make_codec, make_trace
from bwgym.scenarios.receivers import ReceiverLinkConfig, ReceiverSetup, parse_receivers
from bwgym.scenarios.run_folder import worker_cache
from bwgym.scenarios.two_receivers.episodes import Receiver, Route, play_episode, step_means
from bwgym.scenarios.two_receivers.features import ViewFeatures
from bwgym.scenarios.two_receivers.senders import FeatureGrayWyner, IndependentCodecs, Sender
from bwgym.scenarios.two_receivers.training import SHIPPED_CHECKPOINT, check_features
from bwgym.traces import Link
from bwgym.traces.generators import derive_seed

__all__ = ["ReceiverRun", "build_receivers", "run_receiver_episodes", "validate_receivers"]


@dataclass(frozen=True)
class ReceiverRun:
    """What a worker holds for a scenario with receivers: the sender, the receivers, the links."""

    sender: Sender
    receivers: tuple[Receiver, ...]
    routes: tuple[Route, ...]

    def reset_links(self, seed: int) -> None:
        """Restart every link at trace time 0, its loss generator seeded from ``seed`` and its name."""
        for route in self.routes:
            route.link.reset(start_s=0.0, seed=derive_seed(seed, "links", route.name))


def build_receivers(scenario: Scenario) -> tuple[gym.Env, ReceiverRun]:
    """The env and the :class:`ReceiverRun` of ``scenario``.

    Raises:
        ConfigError: naming the key of the first part that cannot be built, a stream a receiver
            hears or a link carries that the codec does not emit, or a stream it emits that no
            link carries.
    """
    import bwgym  # noqa: F401  (registers the envs)

    setup = parse_receivers(scenario)
    try:
        env = gym.make(scenario.env.id, **scenario.env.kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"env.kwargs: {exc}") from None
    try:
        sender = _independent(scenario, setup, env) if setup.own_codecs else _gray_wyner(scenario, setup, env)
        _check_streams(sender, setup)
        routes = tuple(_route(scenario, name, cfg, env) for name, cfg in setup.links.items())
    except BaseException:
        env.close()
        raise
    receivers = tuple(Receiver(r.name, r.consumes, tuple(r.streams)) for r in setup.receivers)
    return env, ReceiverRun(sender, receivers, routes)


def validate_receivers(scenario: Scenario) -> None:
    """Build every part of ``scenario`` once and close it (:func:`build_receivers`' errors)."""
    env, _ = build_receivers(scenario)
    env.close()


def run_receiver_episodes(
    scenario: Scenario, episodes: Any
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each episode's row of ``episodes.parquet`` and its step rows (kept when ``run.record_steps``)."""
    env, run = worker_cache("receivers:", scenario, lambda: build_receivers(scenario))
    out = []
    for episode in episodes:
        seed = scenario.run.seed + episode
        run.reset_links(seed)
        steps = play_episode(env, run.sender, run.receivers, run.routes, seed, episode=episode)
        for record in steps:
            record["scenario"] = scenario.name
        out.append((_episode_row(scenario, run, episode, steps), steps if scenario.run.record_steps else []))
    return out


def _episode_row(
    scenario: Scenario, run: ReceiverRun, episode: int, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    means = step_means(pd.DataFrame(steps))
    return {
        "scenario": scenario.name,
        "episode": episode,
        "seed": scenario.run.seed + episode,
        "success": bool(steps[0]["episode_success"]),
        "return": float(sum(s["reward"] for s in steps)),
        "steps": len(steps),
        "codec": run.sender.name,
        "agent": scenario.agent.name,
        "mean_bits_sent": means.pop("transmit_bits"),
        **{f"mean_{column}": value for column, value in means.items()},
    }


def _gray_wyner(scenario: Scenario, setup: ReceiverSetup, env: gym.Env) -> FeatureGrayWyner:
    """The shared Gray-Wyner codec on the features of the scenario's BC agent."""
    if scenario.codec.name != "gray_wyner":
        raise ConfigError(
            f"codec.name: receivers share a codec with a stream for each of them, gray_wyner, not "
            f"{scenario.codec.name!r}; or give every receiver a codec of its own (and codec.name: none)"
        )
    if scenario.agent.name != "bc":
        raise ConfigError(
            f"agent.name: the Gray-Wyner receivers decode the features of a BC agent's encoders; expected bc, "
            f"got {scenario.agent.name!r}"
        )
    roles = [(r.consumes, r.view) for r in setup.receivers]
    if roles != [("agent", None), ("monitor", "side")]:
        raise ConfigError(
            "receivers: the Gray-Wyner codec decodes task 1 (BC features) for receiver 1, which consumes "
            f"agent, and task 2 (the side view) for receiver 2, a monitor of view side; got {roles}"
        )
    for k, r in enumerate(setup.receivers, 1):
        useless = set(r.streams) - {"common", f"private_{k}"}
        if useless:
            raise ConfigError(
                f"receivers[{k - 1}] ({r.name}).streams: Gray-Wyner receiver {k} decodes from common and "
                f"private_{k}; {sorted(useless)} are of no use to it"
            )
    path = scenario.codec.checkpoint or SHIPPED_CHECKPOINT
    features = ViewFeatures.load_shipped(scenario.env.id, agent=make_agent(scenario, env))
    try:
        codec = GrayWynerCodec.load(path, device="cpu")
        check_features(codec, features, str(path))
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"codec.checkpoint: {exc}") from None
    return FeatureGrayWyner(codec, features)


def _independent(scenario: Scenario, setup: ReceiverSetup, env: gym.Env) -> IndependentCodecs:
    """One codec per receiver, each built as a scenario's codec is."""
    codecs = []
    for i, r in enumerate(setup.receivers):
        where = f"receivers[{i}] ({r.name})"
        try:
            codec = make_codec(dataclasses.replace(scenario, codec=r.codec), env)
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc}") from None
        unknown = set(r.allocation or {}) - set(codec.view_names)
        if unknown:
            raise ConfigError(
                f"{where}.allocation: {sorted(unknown)} are not views of its codec {list(codec.view_names)}"
            )
        if r.view is not None and r.view not in codec.view_names:
            raise ConfigError(f"{where}.view: {r.view!r} is not a view of its codec {list(codec.view_names)}")
        codecs.append(codec)
    agent = make_agent(scenario, env)
    return IndependentCodecs(
        codecs, [r.allocation for r in setup.receivers], agent, [r.view for r in setup.receivers]
    )


def _check_streams(sender: Sender, setup: ReceiverSetup) -> None:
    """Every stream heard or carried is one the codec emits, and every one it emits has a link."""
    for i, r in enumerate(setup.receivers):
        for stream in r.streams:
            if stream not in sender.streams:
                raise ConfigError(
                    f"receivers[{i}] ({r.name}).streams: codec {sender.name!r} does not emit {stream!r}; "
                    f"it emits {list(sender.streams)}"
                )
    carried = setup.streams()
    for stream in sender.streams:
        if stream not in carried:
            raise ConfigError(
                f"links: codec {sender.name!r} emits {stream!r}, which no link carries; add "
                f"links: {{<name>: {{stream: {stream}, trace: ...}}}}"
            )


def _route(scenario: Scenario, name: str, cfg: ReceiverLinkConfig, env: gym.Env) -> Route:
    """Link ``name`` of ``links:`` (a trace generator without a seed gets one from ``run.seed``)."""
    trace = cfg.trace
    if trace.generator is not None and "seed" not in trace.params:
        seed = derive_seed(scenario.run.seed, "links", name, trace.generator)
        trace = dataclasses.replace(trace, params={**trace.params, "seed": seed})
    try:
        link = Link(
            make_trace(dataclasses.replace(scenario, trace=trace)),
            cfg.link.step_seconds or env.unwrapped.dt,
            latency_steps=cfg.link.latency_steps,
            loss_prob=cfg.link.loss_prob,
        )
    except ConfigError as exc:
        raise ConfigError(f"links.{name}.{exc}") from None
    return Route(name, cfg.stream, link, cfg.frame_budget_bits)
