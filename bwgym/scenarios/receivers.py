"""Scenarios with several receivers: the ``receivers:`` and ``links:`` sections.

A scenario without ``receivers:`` has one receiver, its agent, behind one link (``trace:`` and
``link:``). With them, a sender's *streams* go over links of their own, and each receiver hears
some of them::

    codec: {name: gray_wyner, checkpoint: gray_wyner_locate_lift_v1.ckpt}   # the shared codec
    agent: {name: bc}
    receivers:
      - {name: policy, consumes: agent, streams: [common, private_1]}       # acts, drives the env
      - {name: monitor, consumes: monitor, view: side, streams: [common, private_2]}
    links:                                   # one link per stream: its trace and link settings
      broadcast: {stream: common, trace: {generator: lognormal_walk, params: {mean_bps: 6000}}}
      receiver_1: {stream: private_1, trace: {generator: lognormal_walk, params: {mean_bps: 5000}}}
      receiver_2: {stream: private_2, trace: {source: lte_drive}, link: {loss_prob: 0.01}}

A receiver ``consumes`` either ``agent`` (the scenario's agent acts on what it decodes; exactly one
receiver does) or ``monitor`` (it shows ``view``, scored by its PSNR against the view the env
rendered). It hears the scenario's codec (a Gray-Wyner codec emits ``common``, ``private_1`` and
``private_2``), or, with ``codec:`` of its own, that codec alone: then every receiver has its own
codec (independent codecs, nothing shared; the scenario's ``codec.name`` is ``none``) and
receiver ``k`` (its place in the list, from 1) hears its codec's one stream, ``private_<k>``. Each
link has a ``trace`` (the shape of the scenario's ``trace:``), a ``link`` (the shape of its
``link:``) and an optional ``frame_budget_bits``, a cap on each frame whatever the trace offers.
The scenario's own ``trace:`` and ``link:`` are not used.

:func:`parse_receivers` checks the sections (unknown keys with a "did you mean", a stream heard
but carried by no link, a link whose stream no one hears, two links for one stream); the run
checks the streams against what the codec emits before its folder exists
(:func:`bwgym.scenarios.two_receivers.scenario.validate_receivers`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bwgym.common.plain_data import short as _short
from bwgym.scenarios.sections import (
    CodecConfig,
    ConfigError,
    LinkConfig,
    TraceConfig,
    _choose,
    _from_dict,
    check_trace_and_link,
)

if TYPE_CHECKING:  # the scenario holds the receivers; reading them needs only its sections
    from bwgym.scenarios.config import Scenario

__all__ = [
    "CONSUMERS",
    "MAX_FRAME_BUDGET_BITS",
    "ReceiverConfig",
    "ReceiverLinkConfig",
    "ReceiverSetup",
    "parse_receivers",
]

#: What a receiver does with what it decodes.
CONSUMERS = ("agent", "monitor")
#: Largest ``frame_budget_bits`` (a frame of 2 MB, far beyond any codec's largest).
MAX_FRAME_BUDGET_BITS = 1 << 24
#: Receiver and link names become column names (``held.<name>``, ``bits_sent.<link>``).
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")


@dataclass(frozen=True)
class ReceiverConfig:
    """One receiver: what it hears and what it does with it."""

    name: str
    """Names its columns (``held.<name>``, ``action_error.<name>``, ``psnr_db.<name>``)."""
    consumes: str
    """``agent``: the scenario's agent acts on what it decodes and drives the env (exactly one
    receiver), scored by the env's success and its action's distance to the action on clean input;
    ``monitor``: it shows ``view``, scored by its PSNR against the view the env rendered."""
    streams: Any
    """The names of the streams it hears (a list), each carried by one link of ``links``."""
    view: str | None = None
    """For a monitor: the view it shows (e.g. ``side``)."""
    codec: None | CodecConfig = None
    """Its own codec (independent codecs): it then hears that codec's one stream, ``private_<k>``;
    None: the scenario's codec."""
    allocation: dict[str, float] | None = None
    """Its own codec's explicit split over the views (``{arm: 0.0, side: 1.0}``: the side view
    alone); None: the codec's own split."""


@dataclass(frozen=True)
class ReceiverLinkConfig:
    """One link of a scenario with receivers: the stream it carries, its trace and settings."""

    stream: str
    """The stream it carries (one link per stream)."""
    trace: TraceConfig = field(default_factory=TraceConfig)
    """Its bandwidth trace, as the scenario's ``trace:`` (``lte_drive`` when empty); a generator
    without ``params.seed`` gets one derived from ``run.seed`` and the link's name."""
    link: LinkConfig = field(default_factory=LinkConfig)
    """Its step time, latency and loss, as the scenario's ``link:``."""
    frame_budget_bits: int | None = None
    """At most this many bits per frame, whatever the trace offers (the session header aside);
    None: what the trace offers."""


@dataclass(frozen=True)
class ReceiverSetup:
    """The parsed ``receivers:`` and ``links:`` of a scenario."""

    receivers: tuple[ReceiverConfig, ...]
    links: dict[str, ReceiverLinkConfig]

    @property
    def own_codecs(self) -> bool:
        """Whether each receiver has its own codec (independent codecs)."""
        return self.receivers[0].codec is not None

    def streams(self) -> list[str]:
        """Every stream a link carries, in link order."""
        return [cfg.stream for cfg in self.links.values()]


def parse_receivers(scenario: Scenario) -> ReceiverSetup:
    """The receivers and links of ``scenario``, checked against each other.

    Raises:
        ConfigError: an unknown key (with a "did you mean"), a bad value, a stream a receiver hears
            that no link carries, a link whose stream no receiver hears, two links for one stream,
            not exactly one acting receiver, a mix of shared and own codecs, or ``run.num_envs`` > 1.
    """
    if not scenario.receivers:
        raise ConfigError(
            "links: given without receivers; add receivers: [{name, consumes, streams}, ...] or drop links"
        )
    if not isinstance(scenario.receivers, list) or not all(isinstance(r, dict) for r in scenario.receivers):
        raise ConfigError(
            f"receivers: expected a list of mappings ({{name, consumes, streams}}), got {_short(scenario.receivers)}"
        )
    receivers = tuple(
        _from_dict(ReceiverConfig, data, f"receivers[{i}]") for i, data in enumerate(scenario.receivers)
    )
    for k, receiver in enumerate(receivers, 1):
        _check_receiver(receiver, f"receivers[{k - 1}]", k, scenario.codec.name)
    names = [r.name for r in receivers]
    if len(set(names)) != len(names):
        raise ConfigError(f"receivers: two receivers share a name ({names}); name each once")
    acting = [r.name for r in receivers if r.consumes == "agent"]
    if len(acting) != 1:
        raise ConfigError(
            f"receivers: exactly one receiver consumes 'agent' (it drives the env), got {len(acting)} ({acting})"
        )
    if len({r.codec is None for r in receivers}) > 1:
        raise ConfigError(
            "receivers: either every receiver has its own codec (independent codecs) or none has "
            "(they share the scenario's codec); give all or none of them codec:"
        )
    if scenario.run.num_envs != 1:
        raise ConfigError(
            f"run.num_envs: a scenario with receivers steps one env at a time; got {scenario.run.num_envs}, "
            "drop it (run.workers spreads its episodes over processes)"
        )
    links = {name: _parse_link(scenario, name, data) for name, data in scenario.links.items()}
    _check_routes(receivers, links)
    return ReceiverSetup(receivers, links)


def _check_receiver(r: ReceiverConfig, where: str, k: int, shared_codec: str) -> None:
    """One receiver's own values: name, consumer, view, streams, codec."""
    if not isinstance(r.name, str) or not _NAME.fullmatch(r.name):
        raise ConfigError(
            f"{where}.name: invalid value {_short(r.name)}; expected a letter, then letters, digits, _ or - "
            "(it names the receiver's columns)"
        )
    where = f"{where} ({r.name})"
    _choose(f"{where}.consumes", r.consumes, CONSUMERS)
    if (r.consumes == "monitor") != (r.view is not None):
        raise ConfigError(
            f"{where}.view: a monitor names the view it shows (e.g. view: side), an agent acts on every view "
            f"and names none; got consumes {r.consumes!r} with view {r.view!r}"
        )
    if (
        not isinstance(r.streams, list)
        or not r.streams
        or not all(isinstance(s, str) and s for s in r.streams)
        or len(set(r.streams)) != len(r.streams)
    ):
        raise ConfigError(
            f"{where}.streams: expected a list of distinct stream names (e.g. [common, private_1]), "
            f"got {_short(r.streams)}"
        )
    if r.codec is None:
        if r.allocation is not None:
            raise ConfigError(f"{where}.allocation: only a receiver with its own codec takes an allocation")
        if shared_codec == "none":
            raise ConfigError(
                f"{where}: hears the scenario's codec, which is 'none'; set codec.name (e.g. gray_wyner) or "
                "give every receiver a codec of its own"
            )
        return
    if shared_codec != "none":
        raise ConfigError(
            f"{where}.codec: receivers with codecs of their own share nothing; set the scenario's codec.name "
            f"to none (it is {shared_codec!r}) or drop the receivers' codecs"
        )
    own = f"private_{k}"
    if r.streams != [own]:
        raise ConfigError(
            f"{where}.streams: its own codec emits one stream, {own!r}, not {_short(r.streams)}; "
            f"write streams: [{own}]"
        )


def _parse_link(scenario: Scenario, name: str, data: Any) -> ReceiverLinkConfig:
    """One link of ``links:``, its trace and link values checked as the scenario's own are."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"links.{_short(name)}: invalid link name; expected a letter, then letters, digits, _ or - "
            "(it names the link's columns)"
        )
    cfg = _from_dict(ReceiverLinkConfig, data, f"links.{name}")
    try:
        check_trace_and_link(cfg.trace, cfg.link)
    except ConfigError as exc:
        raise ConfigError(f"links.{name}.{exc}") from None
    budget = cfg.frame_budget_bits
    if budget is not None and not 0 <= budget <= MAX_FRAME_BUDGET_BITS:
        raise ConfigError(
            f"links.{name}.frame_budget_bits: invalid value {budget!r}; expected null or an integer in "
            f"[0, {MAX_FRAME_BUDGET_BITS:,}] (MAX_FRAME_BUDGET_BITS)"
        )
    return cfg


def _check_routes(receivers: tuple[ReceiverConfig, ...], links: dict[str, ReceiverLinkConfig]) -> None:
    """Every stream a receiver hears has one link, and every link's stream has a receiver."""
    carried: dict[str, str] = {}
    for name, cfg in links.items():
        if cfg.stream in carried:
            raise ConfigError(
                f"links.{name}.stream: {cfg.stream!r} is already carried by links.{carried[cfg.stream]}; "
                "one link per stream"
            )
        carried[cfg.stream] = name
    for i, r in enumerate(receivers):
        for stream in r.streams:
            if stream not in carried:
                raise ConfigError(
                    f"receivers[{i}] ({r.name}) hears stream {stream!r}, which no link carries; add "
                    f"links: {{<name>: {{stream: {stream}, trace: ...}}}} (links carry: {sorted(carried) or 'none'})"
                )
    heard = {s for r in receivers for s in r.streams}
    for name, cfg in links.items():
        if cfg.stream not in heard:
            raise ConfigError(
                f"links.{name}.stream: no receiver hears {cfg.stream!r}; add it to a receiver's streams or "
                "drop the link"
            )
