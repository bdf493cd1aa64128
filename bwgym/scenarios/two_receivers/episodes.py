"""The episode loop of a run with several receivers, and the two-receiver runs built on it.

One sender (:mod:`~bwgym.scenarios.two_receivers.senders`) emits streams; each stream goes over
its own :class:`~bwgym.traces.Link` (a *route*), the Gray-Wyner common stream over a *broadcast*
link every receiver hears and each private stream over its receiver's link::

                      +-- broadcast link (trace 0): common Y0 ---+---> receiver 1: BC head -> action -> env
    arm, side --> GW -+-- link 1 (trace 1): private_1 Y1 --------+
                      +-- link 2 (trace 2): private_2 Y2 --------+---> receiver 2: side view (PSNR)

On the wire each link carries lean frames: once per episode, at its first step, the sender's
88-bit session header, charged to that link's bits (a link whose budget cannot hold it sends it
in fragments over several steps, and carries frames only after it); then per step one frame of
its stream (16 bits of overhead). A receiver decodes only frames parsed under the session it
received whole. The receiver that acts drives the env; every receiver holds its last output
while nothing new arrives for it.

:func:`play_episode` is the loop; :func:`run_two_receivers` (Gray-Wyner on features) and
:func:`run_pixel_baseline` (two independent NDPCA codecs on pixels) play seeded episodes over
links whose clocks continue across episodes, the scenario runner
(:mod:`~bwgym.scenarios.two_receivers.scenario`) one episode per seed over links restarted at
trace time 0. The step table (one row per step) has, per link ``L``: ``budget_bits.L``,
``frame_budget_bits.L`` (what was left for a frame after the session header, capped by the
route's frame budget), ``bandwidth_bps.L``, ``bits_sent.L`` (wire bits: session header and
frame), ``session_bits.L``, ``stream_bits.L`` (the frame's body), ``container_bits.L`` (the same
body in the v1 container, 112 bits of overhead, for reference), ``delivered.L``; per receiver
``R``: ``bits_received.R`` (the wire bits of the links it hears), ``private.R`` (its private
stream arrived; without it a Gray-Wyner receiver decodes from the common stream alone),
``held.R`` (nothing new decoded: it shows its last output), and ``action_error.R`` (an acting
receiver: L2 distance to the action on clean input) or ``psnr_db.R`` and ``psnr_ceiling_db.R``
(a monitor: PSNR of the view it shows against the view the env rendered, and without
quantisation); and ``episode, seed, step, rate_idx, reward, is_success`` (the env's flag after
the step), ``episode_success``, ``transmit_bits``, ``transmit_stream_bits``,
``transmit_container_bits``, ``transmit_session_bits`` (sums over links).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from bwgym.codecs.core.latent import LatentCodec
from bwgym.codecs.core.protocol import Payload
from bwgym.codecs.multiterminal.gray_wyner import CHANNELS, GrayWynerCodec
from bwgym.envs.bandwidth import psnr
from bwgym.envs.transport import SessionTransport
from bwgym.scenarios.two_receivers.features import ENV_ID, ViewFeatures
from bwgym.scenarios.two_receivers.senders import SIDE_ONLY, FeatureGrayWyner, IndependentCodecs, Sender
from bwgym.traces import BandwidthTrace, Link, generate

__all__ = [
    "LINKS",
    "STEP_SECONDS",
    "TWO_RECEIVERS",
    "Receiver",
    "Route",
    "default_traces",
    "play_episode",
    "rate_sweep",
    "run_pixel_baseline",
    "run_two_receivers",
    "step_means",
    "summarise",
]

#: The links of the two-receiver runs, carrying ``common``, ``private_1`` and ``private_2``.
LINKS = ("broadcast", "receiver_1", "receiver_2")
STEP_SECONDS = 0.04
#: An unconstrained link's rate (the rate sweep's and the pixel baseline's setting).
UNCONSTRAINED_BPS = 1e9


@dataclass(frozen=True)
class Receiver:
    """One receiver: what it hears and what it does with it."""

    name: str
    """Names its columns in the step table."""
    consumes: str
    """``agent`` (it acts and drives the env) or ``monitor`` (it shows a view, scored by PSNR)."""
    streams: tuple[str, ...]
    """The streams it hears."""


@dataclass(frozen=True)
class Route:
    """One link and the stream it carries."""

    name: str
    stream: str
    link: Link
    frame_budget_bits: int | None = None
    """At most this many bits per frame, whatever the link offers (None: no cap)."""


#: Receiver 1, the BC policy, and receiver 2, the side-view monitor.
TWO_RECEIVERS = (
    Receiver("policy", "agent", ("common", "private_1")),
    Receiver("monitor", "monitor", ("common", "private_2")),
)


def default_traces(seed: int = 0, mean_bps: Sequence[float] = (6e3, 5e3, 5e3)) -> dict[str, BandwidthTrace]:
    """One generated trace per link of :data:`LINKS`: log-normal walks with independent seeds.

    About 240 / 200 / 200 bits per 0.04 s step on average (a lean channel frame costs its 20-70
    stream bits + 16; each link's 88-bit session header comes first in every episode), several
    times lower at the troughs and higher at the peaks.
    """
    return {
        link: generate("lognormal_walk", seed=seed + 101 * i, mean_bps=bps, sigma=0.5, correlation_s=2.0)
        for i, (link, bps) in enumerate(zip(LINKS, mean_bps, strict=True))
    }


def play_episode(
    env: gym.Env,
    sender: Sender,
    receivers: Sequence[Receiver],
    routes: Sequence[Route],
    seed: int,
    episode: int = 0,
    max_steps: int | None = None,
) -> list[dict[str, Any]]:
    """Play one seeded episode: the step rows (see the module docstring).

    Every link that carries a stream the sender emits first sends its session header, then one
    frame a step; the links' clocks go on from where they are (reset them for a fresh start).

    Args:
        env: the env the acting receiver drives (reset with ``seed``).
        sender: what codes the views and decodes for each receiver.
        receivers: receiver ``k`` at ``receivers[k - 1]``; exactly one consumes ``agent``.
        routes: one per link.
        seed: the env's seed.
        episode: the episode's number in the table.
        max_steps: cut the episode after this many steps.
    """
    acting = next(k for k, r in enumerate(receivers) if r.consumes == "agent")
    obs, _ = env.reset(seed=seed)
    sessions = [sender.session(route.stream) for route in routes]
    transports = [SessionTransport() for _ in routes]  # a fresh session on every link
    held = [sender.initial(k) for k in range(1, len(receivers) + 1)]
    rows: list[dict[str, Any]] = []
    done, t = False, 0
    while not done and (max_steps is None or t < max_steps):
        sender.observe(obs)
        headers = [transport.outgoing(s) for transport, s in zip(transports, sessions, strict=True)]
        budgets = [route.link.peek_budget_bits() for route in routes]
        frame_budgets = [
            _frame_budget(budget, rest, route.frame_budget_bits)
            for route, budget, (rest, _) in zip(routes, budgets, headers, strict=True)
        ]
        j, frames = sender.frames({r.stream: b for r, b in zip(routes, frame_budgets, strict=True)}, t)
        row: dict[str, Any] = {
            "episode": episode,
            "seed": seed,
            "step": t,
            "rate_idx": -1 if j is None else j,
        }
        got: dict[str, Payload] = {}
        for route, transport, session, header, budget, frame_budget in zip(
            routes, transports, sessions, headers, budgets, frame_budgets, strict=True
        ):
            row[f"frame_budget_bits.{route.name}"] = frame_budget
            _transmit(route, sender, transport, session, header, budget, frames.get(route.stream), row, got)
        for k, receiver in enumerate(receivers, 1):
            heard = {s: got[s] for s in receiver.streams if s in got}
            new = sender.decode(k, heard) if heard else None  # nothing new for it: hold
            if new is not None:
                held[k - 1] = new
            row[f"private.{receiver.name}"] = f"private_{k}" in heard
            row[f"held.{receiver.name}"] = new is None
            _score(row, receiver, held[k - 1], sender.reference(k, obs), sender.ceiling(k, obs))
        obs, reward, terminated, truncated, info = env.step(held[acting])
        row["reward"] = float(reward)
        row["is_success"] = bool(info.get("is_success", False))
        _totals(row, routes, receivers)
        rows.append(row)
        done, t = bool(terminated or truncated), t + 1
    success = any(r["is_success"] for r in rows)
    for r in rows:
        r["episode_success"] = success
    return rows


def _frame_budget(budget: int, header: bytes, cap: int | None) -> int:
    """What a link has left for a frame after the session header (negative: no frame fits)."""
    left = budget - 8 * len(header)
    return left if cap is None else min(left, int(cap))


def _transmit(
    route: Route,
    sender: Sender,
    transport: SessionTransport,
    session: Any,
    header: tuple[bytes, int],
    budget: int,
    frame: Payload | None,
    row: dict[str, Any],
    got: dict[str, Payload],
) -> None:
    """Send what fits of the session header and ``frame`` on ``route``; record it, parse what arrives."""
    rest, offset = header
    fragment = rest[: max(budget, 0) // 8]
    wire = frame.to_bytes() if frame is not None else b""
    row[f"budget_bits.{route.name}"] = budget
    row[f"bandwidth_bps.{route.name}"] = route.link.peek_bandwidth_bps()
    res = route.link.transmit((fragment, offset, wire), 8 * (len(fragment) + len(wire)))
    transport.acknowledged(session, fragment, offset, bool(res.bits_sent) and not res.lost)
    for delivery in res.delivered:
        part, part_offset, data = delivery.item
        transport.receive(part, part_offset)
        if data and (session is None or transport.rx_session is not None):
            # through the wire bytes: what a receiver decodes is what the bytes hold (a container
            # codec's frames need no session, a lean frame's the one its receiver holds)
            got[route.stream] = sender.parse(route.stream, data, transport.rx_session)
    sent = bool(res.bits_sent) and frame is not None
    row[f"bits_sent.{route.name}"] = res.bits_sent
    row[f"session_bits.{route.name}"] = 8 * len(fragment) if res.bits_sent else 0
    row[f"stream_bits.{route.name}"] = 8 * sum(map(len, frame.streams)) if sent else 0  # type: ignore[union-attr]
    row[f"container_bits.{route.name}"] = sender.container_bits(route.stream, frame) if sent else 0  # type: ignore[arg-type]
    row[f"delivered.{route.name}"] = route.stream in got


def _score(
    row: dict[str, Any], receiver: Receiver, shown: np.ndarray, clean: np.ndarray, ceiling: float
) -> None:
    """A receiver's metric of one step: its action's error, or its view's PSNR (and ceiling)."""
    if receiver.consumes == "agent":
        row[f"action_error.{receiver.name}"] = float(np.linalg.norm(shown - clean))
    else:
        row[f"psnr_db.{receiver.name}"] = psnr(shown, clean)
        row[f"psnr_ceiling_db.{receiver.name}"] = ceiling


def _totals(row: dict[str, Any], routes: Sequence[Route], receivers: Sequence[Receiver]) -> None:
    """Add the step's sums over links: transmit bits (wire, stream, container, session), bits received."""
    for total, column in (
        ("transmit_bits", "bits_sent"),
        ("transmit_stream_bits", "stream_bits"),
        ("transmit_container_bits", "container_bits"),
        ("transmit_session_bits", "session_bits"),
    ):
        row[total] = sum(row[f"{column}.{route.name}"] for route in routes)
    for receiver in receivers:
        row[f"bits_received.{receiver.name}"] = sum(
            row[f"bits_sent.{route.name}"] for route in routes if route.stream in receiver.streams
        )


#: Step-table columns whose mean over steps :func:`step_means` reports.
MEAN_COLUMNS = (
    "transmit_",
    "budget_bits.",
    "bits_sent.",
    "bits_received.",
    "held.",
    "action_error.",
    "psnr_db.",
    "psnr_ceiling_db.",
)


def step_means(steps: Any) -> dict[str, float]:
    """Mean over the rows of a step table of each column of :data:`MEAN_COLUMNS` (``inf`` dB as 99)."""
    out = {}
    for column in steps.columns:
        if column.startswith(MEAN_COLUMNS):
            values = steps[column].replace(math.inf, 99.0) if column.startswith("psnr") else steps[column]
            out[column] = float(values.mean())
    return out


def summarise(steps: Any) -> dict[str, float]:
    """Episodes, success rate and the mean per step of :func:`step_means` (a run's summary).

    Wire bits (``transmit_bits``, ``bits_sent.<link>``) include the session headers; also the stream
    bits, the session bits and, for reference, the bits of the same frames in the v1 container.
    """
    episodes = steps.groupby("episode")["episode_success"].first()
    return {"episodes": float(len(episodes)), "success": float(episodes.mean()), **step_means(steps)}


def _run(
    sender: Sender, routes: Sequence[Route], episodes: int, seed: int, max_steps: int | None, env_id: str
) -> Any:
    """:func:`play_episode` over seeds ``seed ..`` with :data:`TWO_RECEIVERS`, as one table."""
    import pandas as pd

    env = gym.make(env_id)
    rows: list[dict[str, Any]] = []
    try:
        for e in range(episodes):
            rows += play_episode(env, sender, TWO_RECEIVERS, routes, seed + e, episode=e, max_steps=max_steps)
    finally:
        env.close()
    return pd.DataFrame(rows)


def run_two_receivers(
    codec: GrayWynerCodec,
    features: ViewFeatures,
    episodes: int = 5,
    seed: int = 0,
    traces: Mapping[str, BandwidthTrace] | None = None,
    rate_idx: int | None = None,
    max_steps: int | None = None,
    env_id: str = ENV_ID,
) -> Any:
    """Play seeded episodes with the policy acting and the monitor watching; return the step table.

    Args:
        codec: a two-receiver Gray-Wyner codec (:func:`~bwgym.scenarios.two_receivers.load_pair`);
            with ``common_dim = 0`` (the baseline) nothing goes on the broadcast link, not even a
            session header.
        features: the feature maps the codec was trained on.
        episodes: episodes, seeds ``seed .. seed + episodes - 1``.
        seed: first seed.
        traces: one trace per link in :data:`LINKS` (None: :func:`default_traces` of ``seed``);
            the clocks start at 0 and continue across episodes.
        rate_idx: send this rate point every step on unconstrained links (the rate sweep);
            None: pick per step from the three budgets.
        max_steps: cut episodes after this many steps.
        env_id: the env (LocateLift-v1, whose views the features were fitted on).

    Returns:
        A ``pandas.DataFrame``, one row per step, with the columns of the module docstring
        (receivers ``policy`` and ``monitor``, links :data:`LINKS`).
    """
    if traces is None:
        traces = default_traces(seed)
    if rate_idx is not None:
        traces = {link: generate("constant", bps=UNCONSTRAINED_BPS) for link in LINKS}
    missing = set(LINKS) - set(traces)
    if missing:
        raise ValueError(f"traces needs one trace per link {list(LINKS)}; missing {sorted(missing)}")
    routes = [
        Route(name, ch, Link(traces[name], STEP_SECONDS)) for name, ch in zip(LINKS, CHANNELS, strict=True)
    ]
    return _run(FeatureGrayWyner(codec, features, rate_idx), routes, episodes, seed, max_steps, env_id)


def run_pixel_baseline(
    codecs: tuple[LatentCodec, LatentCodec],
    agent: Any,
    budget_1: int,
    budget_2: int,
    episodes: int = 5,
    seed: int = 0,
    max_steps: int | None = None,
    env_id: str = ENV_ID,
) -> Any:
    """Two independent pixel codecs, one per receiver: the step table of :func:`run_two_receivers`.

    Link 1 carries ``codecs[0]``'s lean frames of both views (at most ``budget_1`` bits a frame,
    the codec's own split); receiver 1 decodes them to pixels, and the BC ``agent`` acts on the
    decoded views and drives the env. Link 2 carries ``codecs[1]``'s lean frames of the side view
    alone (at most ``budget_2`` bits, :data:`~bwgym.scenarios.two_receivers.senders.SIDE_ONLY`);
    receiver 2 decodes them and is scored on the side view. Nothing is shared and nothing goes on
    the broadcast link. The links are unconstrained and lossless (the rate sweep's setting): each
    carries its codec's 88-bit session header at the first step of every episode, then one frame
    a step.

    Args:
        codecs: receiver 1's and receiver 2's pixel codecs
            (:func:`~bwgym.scenarios.two_receivers.load_pixel_baseline`).
        agent: receiver 1, the BC agent (on clean views it gives the reference action).
        budget_1: frame budget of link 1 in bits per step.
        budget_2: frame budget of link 2 in bits per step
            (:func:`~bwgym.scenarios.two_receivers.side_budget`).
        episodes: episodes, seeds ``seed .. seed + episodes - 1``.
        seed: first seed.
        max_steps: cut episodes after this many steps.
        env_id: the env.
    """
    sender = IndependentCodecs(codecs, (None, SIDE_ONLY), agent, (None, "side"))
    routes = [
        Route(name, ch, Link(generate("constant", bps=UNCONSTRAINED_BPS), STEP_SECONDS), cap)
        for name, ch, cap in zip(LINKS, CHANNELS, (None, int(budget_1), int(budget_2)), strict=True)
    ]
    return _run(sender, routes, episodes, seed, max_steps, env_id)


def rate_sweep(
    codec: GrayWynerCodec, features: ViewFeatures, episodes: int = 20, seed: int = 0
) -> list[dict[str, float]]:
    """:func:`summarise` of every rate point, each sent at every step over unconstrained links."""
    out = []
    for j in range(codec.n_rates):
        s = summarise(run_two_receivers(codec, features, episodes=episodes, seed=seed, rate_idx=j))
        out.append({"rate_idx": float(j), **s})
    return out
