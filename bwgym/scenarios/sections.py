"""The sections of a scenario file and the errors of reading them.

Each section (``env``, ``trace``, ``link``, ``codec``, ``allocator``, ``agent``, ``run``,
``fleet``) is a frozen dataclass; :func:`_from_dict` fills one from plain data, every key and type
checked (:mod:`bwgym.common.plain_data`). :class:`~bwgym.scenarios.config.Scenario` composes them;
the receivers' schema (:mod:`bwgym.scenarios.receivers`) reuses them for each link, so both read
from here and nothing here reads them back.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from bwgym.common.plain_data import MAX_ECHO_CHARS, from_plain
from bwgym.common.plain_data import short as _short
from bwgym.traces.link import MAX_LATENCY_STEPS, MAX_STEP_SECONDS

__all__ = [
    "MAX_EPISODES",
    "MAX_ERROR_CHARS",
    "MAX_LATENCY_STEPS",
    "MAX_NUM_ENVS",
    "MAX_STEP_SECONDS",
    "MAX_TRACE_SCALE",
    "MAX_WORKERS",
    "AgentConfig",
    "AllocatorConfig",
    "CodecConfig",
    "ConfigError",
    "EnvConfig",
    "FleetAllocatorConfig",
    "FleetConfig",
    "LinkConfig",
    "MemberLinkConfig",
    "RunConfig",
    "TraceConfig",
    "check_trace_and_link",
]

#: Most episodes one run may ask for; the runner streams over episodes, so this bounds disk, not memory.
MAX_EPISODES = 10_000_000
#: Most envs one worker may step together as one vector env (``run.num_envs``, ``--num-envs``).
MAX_NUM_ENVS = 64
#: Most worker processes a scenario may name (``run.workers``); the runner also holds a run to
#: :data:`bwgym.scenarios.run_folder.MAX_WORKERS_PER_CORE` per core of the machine it runs on.
MAX_WORKERS = 1024
#: Largest ``trace.scale``: a factor on every rate of the trace (1e6 turns 1 kbit/s into 1 Gbit/s).
MAX_TRACE_SCALE = 1e6


class ConfigError(ValueError):
    """A scenario that cannot run: names the key path, the bad value and the valid choices.

    The message is one line of at most :data:`MAX_ERROR_CHARS` characters: a value echoed from a
    hostile file is shortened (its middle elided), never printed whole.
    """

    def __init__(self, message: object = "") -> None:
        text = " ".join(str(message).split("\n"))
        if len(text) > MAX_ERROR_CHARS:
            keep = MAX_ERROR_CHARS // 2 - 20
            text = f"{text[:keep]} ...({len(text) - 2 * keep} chars elided)... {text[-keep:]}"
        super().__init__(text)


#: Longest error message (characters), whatever it echoes.
MAX_ERROR_CHARS = 1_000


@dataclass(frozen=True)
class EnvConfig:
    """The environment."""

    id: str = "bwgym/LocateLift-v1"
    """A registered Gymnasium id (``bwgym/...`` ids are registered by ``import bwgym``)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of ``gymnasium.make`` (e.g. ``image_size``, ``cameras``)."""


@dataclass(frozen=True)
class TraceConfig:
    """The bandwidth trace the link follows."""

    source: str | None = None
    """A library trace name (``bwgym traces list``) or a file path; relative paths are resolved
    against the scenario file's folder. ``lte_drive`` when neither ``source`` nor ``generator``
    is given."""
    format: str | None = None
    """File format when it cannot be detected (a registered one: ``bwgym traces formats``)."""
    generator: str | None = None
    """Instead of ``source``: a registered generator (``bwgym traces generators``)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the generator. Without ``seed`` the generator gets one derived from
    ``run.seed`` (:func:`bwgym.traces.derive_seed`), so every run, worker count and ``--resume`` of
    the scenario sees the same trace."""
    scale: float = 1.0
    """Multiply every rate (e.g. 1/N for N robots sharing one uplink)."""


@dataclass(frozen=True)
class LinkConfig:
    """The link between sensors and agent."""

    step_seconds: float | None = None
    """Trace time per env step (at most ``MAX_STEP_SECONDS``); None takes the env's control period
    (``env.unwrapped.dt``)."""
    latency_steps: int = 0
    """A payload arrives this many steps after it was sent (at most ``MAX_LATENCY_STEPS``)."""
    loss_prob: float = 0.0
    """Probability that a payload is lost (the receiver holds its last frames)."""
    observation: str = "pixels"
    """What the receiver hands the agent: ``pixels`` (the decoded views) or ``latent`` (the latent
    code it holds per stream and its age, latent codecs only: :mod:`bwgym.envs.latent_views`)."""


@dataclass(frozen=True)
class CodecConfig:
    """The codec between the sensors and the agent."""

    name: str = "jpeg"
    """A registered codec (``bwgym codecs``); ``none`` sends views uncompressed and free."""
    checkpoint: str | None = None
    """A checkpoint file for learned codecs (relative paths: against the scenario file's folder);
    None takes the shipped one. Its kind must match ``name``."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra constructor arguments of the codec."""


@dataclass(frozen=True)
class AllocatorConfig:
    """How the step's bit budget is split over the views."""

    name: str = "dpca"
    """``dpca`` (the codec's own split: DPCA's for latent codecs, equal for image codecs),
    ``uniform`` (equal shares, which latent codecs honour too), ``fixed`` (with ``weights``),
    ``proportional`` (to each view's current latent energy), ``oracle`` (per step, the grid split
    whose decoded views keep the agent's action closest to its clean-view action) or ``learned``
    (with ``checkpoint``); ``bwgym allocators`` lists every registered one."""
    weights: dict[str, float] | None = None
    """Share per view for ``fixed``."""
    checkpoint: str | None = None
    """For ``learned``: the folder (or its ``policy.ckpt``) written by ``bwgym train allocator``
    (relative paths: against the scenario file's folder); None: the shipped policy of the codec
    and env (:func:`bwgym.agents.allocation.shipped_allocator`)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """The allocator's options (``oracle``: ``levels``, the grid's steps per unit share, and
    ``include_codec_split``, to also try the codec's own split)."""


@dataclass(frozen=True)
class AgentConfig:
    """The agent acting on decoded views."""

    name: str = "bc"
    """A registered agent (``bwgym agents`` lists them): ``bc`` (behaviour cloning), ``sb3`` (a
    policy from ``bwgym train agent --algo ppo|sac``), ``kalman`` (Kalman-filter fusion of
    SensorNetwork's decoded views), ``expert`` (scripted, reads the true state) or ``random``."""
    checkpoint: str | None = None
    """A checkpoint file (relative paths: against the scenario file's folder); None takes the
    shipped one."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """The agent's options (its entry's options dataclass)."""


@dataclass(frozen=True)
class RunConfig:
    """How many episodes, from which seed, on how many workers."""

    episodes: int = 20
    """Episodes to run; episode i uses seed ``seed + i``."""
    seed: int = 0
    """First episode seed."""
    workers: int = 1
    """Worker processes (episodes are independent; tables do not depend on this); at most
    ``MAX_WORKERS``, and at most 4 per CPU core of the machine that runs it."""
    record_steps: bool = True
    """Write ``steps.parquet`` (one row per step)."""
    num_envs: int = 1
    """Envs a worker steps together as one vector env, 1 to ``MAX_NUM_ENVS`` (tables do not depend
    on this: episode i still uses seed ``seed + i``)."""
    device: str = "auto"
    """Where the codec's and the agent's networks run: ``auto`` (CUDA when present, else CPU),
    ``cpu``, ``cuda`` or ``cuda:N``. On CUDA the vector envs' codec runs its networks once for all
    envs (:meth:`~bwgym.codecs.core.protocol.Codec.compress_batch`)."""


@dataclass(frozen=True)
class FleetAllocatorConfig:
    """The fleet allocator: a name of :data:`~bwgym.common.registry.FLEET_ALLOCATORS`, as ``allocator:`` is."""

    name: str = "equal"
    """``equal``, ``proportional``, ``max_min_fair``, ``state``, ``oracle``, ``learned`` (:mod:`bwgym.envs.fleet`)."""
    checkpoint: str | None = None
    """For ``learned``: the folder (or its policy file) written by ``bwgym train allocator --fleet``
    (relative paths: against the scenario file's folder)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """The allocator's options (its options dataclass: unknown keys are errors)."""


@dataclass(frozen=True)
class MemberLinkConfig:
    """One member's own link behind the shared one; a key left out keeps the scenario's ``link``."""

    latency_steps: int | None = None
    """Steps between the member sending and its receiver getting the frame."""
    loss_prob: float | None = None
    """Probability that the member's frame is lost on its way."""


@dataclass(frozen=True)
class FleetConfig:
    """N members behind the scenario's link (its trace not scaled per member)."""

    members: int = 2
    """N, 1 to :data:`~bwgym.envs.fleet.MAX_FLEET_MEMBERS`."""
    allocator: FleetAllocatorConfig = field(default_factory=FleetAllocatorConfig)
    """How each step's budget is divided among the members."""
    links: dict[str, MemberLinkConfig] = field(default_factory=dict)
    """Per-member link extras, keyed by member index (``{3: {loss_prob: 0.2}}``)."""


def _from_dict(cls: type, data: Any, path: str) -> Any:
    """``cls`` from plain data; a bad key or type is a :class:`ConfigError` naming its path."""
    return from_plain(cls, data, path, ConfigError)


def _choose(path: str, value: str, choices: typing.Iterable[str]) -> None:
    choices = sorted(choices)
    if value not in choices:
        near = difflib.get_close_matches(value[:MAX_ECHO_CHARS], choices, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"{path}: unknown value {_short(value)}.{hint} Valid choices: {', '.join(choices)}")


def check_trace_and_link(trace: TraceConfig, link: LinkConfig) -> None:
    """Refuse a ``trace`` / ``link`` pair that cannot run (the scenario's own, or a receiver link's).

    Raises:
        ConfigError: ``<key>: invalid value <value>; expected <what>``.
    """

    def check(ok: bool, path: str, value: Any, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{path}: invalid value {value!r}; expected {allowed}")

    check(trace.scale > 0, "trace.scale", trace.scale, "a number > 0")
    check(
        0 <= link.latency_steps <= MAX_LATENCY_STEPS,
        "link.latency_steps",
        link.latency_steps,
        f"an integer in [0, {MAX_LATENCY_STEPS:,}] (MAX_LATENCY_STEPS)",
    )
    check(0 <= link.loss_prob < 1, "link.loss_prob", link.loss_prob, "a probability in [0, 1)")
    check(link.observation in ("pixels", "latent"), "link.observation", link.observation, "pixels or latent")
    check(
        link.step_seconds is None or link.step_seconds > 0,
        "link.step_seconds",
        link.step_seconds,
        "null or a number > 0",
    )
    check(
        trace.source is None or trace.generator is None,
        "trace",
        dataclasses.asdict(trace),
        "one of trace.source and trace.generator, not both",
    )
    check(
        math.isfinite(trace.scale) and trace.scale <= MAX_TRACE_SCALE,
        "trace.scale",
        trace.scale,
        f"a finite number in (0, {MAX_TRACE_SCALE:g}] (MAX_TRACE_SCALE)",
    )
    check(
        link.step_seconds is None
        or (math.isfinite(link.step_seconds) and link.step_seconds <= MAX_STEP_SECONDS),
        "link.step_seconds",
        link.step_seconds,
        f"null or a finite number in (0, {MAX_STEP_SECONDS:g}] seconds (MAX_STEP_SECONDS)",
    )
