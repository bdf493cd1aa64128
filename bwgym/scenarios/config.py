"""Scenario files: plain YAML parsed into frozen dataclasses, strictly.

A scenario names an env, a bandwidth trace, a link, a codec, an allocation policy and an agent::

    name: fleet_lte_jpeg
    description: Eight robots share one LTE uplink; each sends two 84 px views as JPEG.
    regime: ~22 kbit per robot per 0.04 s step (JPEG's lowest quality needs ~8-13 kbit)
    trace: {source: lte_drive, scale: 0.125}
    codec: {name: jpeg}
    agent: {name: bc}
    run: {episodes: 20}

Every section has defaults. Unknown keys and wrong types are errors that name the key path, the
bad value and the allowed values (with a "did you mean" for near-misses); :func:`load_scenario`
checks names of codecs, agents, allocators and trace files before anything runs.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

__all__ = [
    "AgentConfig",
    "AllocatorConfig",
    "CodecConfig",
    "ConfigError",
    "EnvConfig",
    "LinkConfig",
    "RunConfig",
    "Scenario",
    "TraceConfig",
    "library_scenarios",
    "load_scenario",
    "scenario_from_dict",
    "scenario_to_dict",
]

LIBRARY_DIR = Path(__file__).resolve().parent / "library"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.,=+\-]{0,199}")
#: Most episodes one run may ask for; the runner streams over episodes, so this bounds disk, not memory.
MAX_EPISODES = 10_000_000


class ConfigError(ValueError):
    """A scenario that cannot run: names the key path, the bad value and the valid choices."""


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
    """File format when it cannot be detected (mahimahi, cooked, hsdpa, csv, sabre)."""
    generator: str | None = None
    """Instead of ``source``: a generator kind (constant, steps, lognormal_walk, pensieve_markov,
    gilbert_elliott, drive)."""
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
    """Trace time per env step; None takes the env's control period (``env.unwrapped.dt``)."""
    latency_steps: int = 0
    """A payload arrives this many steps after it was sent."""
    loss_prob: float = 0.0
    """Probability that a payload is lost (the receiver holds its last frames)."""


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
    (with ``checkpoint``); see :data:`bwgym.envs.allocators.ALLOCATOR_KINDS`."""
    weights: dict[str, float] | None = None
    """Share per view for ``fixed``."""
    checkpoint: str | None = None
    """For ``learned``: the folder (or its ``policy.ckpt``) written by ``bwgym train allocator``
    (relative paths: against the scenario file's folder); None: the shipped policy of the codec
    and env (:func:`bwgym.agents.allocation.shipped_allocator`)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra constructor arguments (``oracle``: ``levels``, the grid's steps per unit share, and
    ``include_codec_split``, to also try the codec's own split)."""


@dataclass(frozen=True)
class AgentConfig:
    """The agent acting on decoded views."""

    name: str = "bc"
    """``bc`` (behaviour cloning), ``sb3`` (a policy from ``bwgym train agent --algo ppo|sac``),
    ``kalman`` (Kalman-filter fusion of the decoded sensor views on SensorNetwork; in control mode
    with LQR on the estimate),
    ``expert`` (scripted, reads the true state: an upper bound that ignores the views) or ``random``."""
    checkpoint: str | None = None
    """A checkpoint file (relative paths: against the scenario file's folder); None takes the
    shipped one."""


@dataclass(frozen=True)
class RunConfig:
    """How many episodes, from which seed, on how many workers."""

    episodes: int = 20
    """Episodes to run; episode i uses seed ``seed + i``."""
    seed: int = 0
    """First episode seed."""
    workers: int = 1
    """Worker processes (episodes are independent; tables do not depend on this)."""
    record_steps: bool = True
    """Write ``steps.parquet`` (one row per step)."""


@dataclass(frozen=True)
class Scenario:
    """One runnable scenario."""

    name: str
    """Short identifier; the run folder is ``runs/<name>/<stamp>``."""
    description: str = ""
    """What the scenario models."""
    regime: str = ""
    """Which bandwidth regime it sits in, in bits per step (see DESIGN.md, "Bandwidth regimes")."""
    env: EnvConfig = field(default_factory=EnvConfig)
    trace: TraceConfig = field(default_factory=TraceConfig)
    link: LinkConfig = field(default_factory=LinkConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    allocator: AllocatorConfig = field(default_factory=AllocatorConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    run: RunConfig = field(default_factory=RunConfig)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif dataclasses.is_dataclass(tp):
        return _from_dict(tp, value, path)
    elif origin is dict:
        if isinstance(value, dict):
            _, value_tp = typing.get_args(tp)
            return {str(k): _coerce(v, value_tp, f"{path}.{k}") for k, v in value.items()}
    elif tp is Any:
        return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")


def _from_dict(cls: type, data: Any, path: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'scenario'}: expected a mapping of {cls.__name__} keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean {near[0]!r}?" if near else ""
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(f"{where}: unknown key.{hint} Allowed keys: {', '.join(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], f"{path}.{f.name}" if path else f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{path or 'scenario'}: missing required key {f.name!r}")
    return cls(**kwargs)


def scenario_from_dict(data: dict[str, Any]) -> Scenario:
    """Build a :class:`Scenario` from plain data; raise :class:`ConfigError` on any bad key or type."""
    scenario = _from_dict(Scenario, data, "")
    _check_values(scenario)
    return scenario


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """Plain data that :func:`scenario_from_dict` turns back into the same scenario."""
    return dataclasses.asdict(scenario)


def _check_values(s: Scenario) -> None:
    def check(ok: bool, path: str, value: Any, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{path}: invalid value {value!r}; expected {allowed}")

    check(s.run.episodes >= 1, "run.episodes", s.run.episodes, "an integer >= 1")
    check(s.run.workers >= 1, "run.workers", s.run.workers, "an integer >= 1")
    check(s.trace.scale > 0, "trace.scale", s.trace.scale, "a number > 0")
    check(s.link.latency_steps >= 0, "link.latency_steps", s.link.latency_steps, "an integer >= 0")
    check(0 <= s.link.loss_prob < 1, "link.loss_prob", s.link.loss_prob, "a probability in [0, 1)")
    check(
        s.link.step_seconds is None or s.link.step_seconds > 0,
        "link.step_seconds",
        s.link.step_seconds,
        "null or a number > 0",
    )
    check(
        s.trace.source is None or s.trace.generator is None,
        "trace",
        dataclasses.asdict(s.trace),
        "one of trace.source and trace.generator, not both",
    )
    check(
        0 <= s.run.seed < 2**31 - s.run.episodes,
        "run.seed",
        s.run.seed,
        "an integer in [0, 2**31 - run.episodes) (episode i uses seed run.seed + i)",
    )
    check(
        s.run.episodes <= MAX_EPISODES, "run.episodes", s.run.episodes, f"an integer in [1, {MAX_EPISODES:,}]"
    )
    check(
        math.isfinite(s.trace.scale) and s.trace.scale <= 1e6,
        "trace.scale",
        s.trace.scale,
        "a finite number in (0, 1e6]",
    )
    check(
        s.link.step_seconds is None or math.isfinite(s.link.step_seconds),
        "link.step_seconds",
        s.link.step_seconds,
        "null or a finite number > 0",
    )
    check(
        bool(_SAFE_NAME.fullmatch(s.name)),
        "name",
        s.name,
        "a name of letters, digits and _ - . , = +, not starting with '.' (it names the run folder)",
    )


def _choose(path: str, value: str, choices: typing.Iterable[str]) -> None:
    choices = sorted(choices)
    if value not in choices:
        near = difflib.get_close_matches(value, choices, n=1)
        hint = f" Did you mean {near[0]!r}?" if near else ""
        raise ConfigError(f"{path}: unknown value {value!r}.{hint} Valid choices: {', '.join(choices)}")


def load_scenario(source: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Load a scenario from a library name or a YAML path, apply dotted overrides, validate it.

    Args:
        source: a name of :func:`library_scenarios` or a path to a ``.yaml`` file.
        overrides: ``{"run.episodes": 5, "codec.name": "raw"}``-style replacements.

    Raises:
        ConfigError: the file is missing or invalid, or names an unknown env, codec, agent,
            allocator, trace or checkpoint.
    """
    import gymnasium as gym

    import bwgym  # noqa: F401  (registers the envs)
    from bwgym.codecs import codec_names
    from bwgym.envs.allocators import ALLOCATOR_KINDS
    from bwgym.scenarios.factory import AGENTS
    from bwgym.traces import formats, generators

    path = Path(source)
    if not path.suffix and not path.exists():
        library = library_scenarios()
        if str(source) not in library:
            _choose("scenario", str(source), library)
        path = library[str(source)]
    if not path.is_file():
        raise ConfigError(f"scenario file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid YAML: the file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the scenario file ({exc.strerror})") from exc
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of scenario keys (name, env, trace, ...), got {type(data).__name__}"
        )
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node[leaf] = value
    data.setdefault("name", path.stem)
    try:
        scenario = scenario_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None

    if scenario.env.id not in gym.registry:
        _choose("env.id", scenario.env.id, [k for k in gym.registry if k.startswith("bwgym/")])
    if not scenario.env.id.startswith("bwgym/"):
        raise ConfigError(
            f"env.id: {scenario.env.id!r} is not a bwgym env; expected one of "
            f"{', '.join(k for k in gym.registry if k.startswith('bwgym/'))}"
        )
    _choose("codec.name", scenario.codec.name, ["none", *codec_names()])
    _choose("agent.name", scenario.agent.name, AGENTS)
    _choose("allocator.name", scenario.allocator.name, ALLOCATOR_KINDS)
    if scenario.allocator.name == "learned" and not scenario.allocator.checkpoint:
        from bwgym.agents.allocation import shipped_allocator

        try:
            shipped_allocator(scenario.codec.name, scenario.env.id)
        except FileNotFoundError as exc:
            raise ConfigError(
                f"{path}: allocator.checkpoint: required for allocator 'learned' unless one is shipped "
                f"for the codec and env ({exc})"
            ) from None
    if scenario.trace.source is None and scenario.trace.generator is None:
        scenario = dataclasses.replace(
            scenario, trace=dataclasses.replace(scenario.trace, source="lte_drive")
        )
    if scenario.trace.generator is not None:
        _choose("trace.generator", scenario.trace.generator, generators.GENERATORS)
    elif not Path(scenario.trace.source).suffix or not (path.parent / scenario.trace.source).exists():
        source_path = path.parent / scenario.trace.source
        if not source_path.exists() and scenario.trace.source not in formats.list_library():
            raise ConfigError(
                f"{path}: trace.source: {scenario.trace.source!r} is neither a file nor a library trace; "
                f"library traces: {', '.join(formats.list_library())}"
            )
    for key, checkpoint in (
        ("codec.checkpoint", scenario.codec.checkpoint),
        ("agent.checkpoint", scenario.agent.checkpoint),
        ("allocator.checkpoint", scenario.allocator.checkpoint),
    ):
        if checkpoint is not None and not (path.parent / checkpoint).exists():
            raise ConfigError(
                f"{path}: {key}: checkpoint {checkpoint!r} does not exist "
                f"(relative paths are resolved against {path.parent})"
            )
    return _resolve_relative(scenario, path.parent)


def _resolve_relative(s: Scenario, folder: Path) -> Scenario:
    """Paths inside a scenario file are relative to its folder: make them absolute, as checked."""

    def resolve(p: str | None) -> str | None:
        return str((folder / p).resolve()) if p is not None and (folder / p).exists() else p

    return dataclasses.replace(
        s,
        trace=dataclasses.replace(s.trace, source=resolve(s.trace.source)),
        codec=dataclasses.replace(s.codec, checkpoint=resolve(s.codec.checkpoint)),
        agent=dataclasses.replace(s.agent, checkpoint=resolve(s.agent.checkpoint)),
        allocator=dataclasses.replace(s.allocator, checkpoint=resolve(s.allocator.checkpoint)),
    )


def library_scenarios() -> dict[str, Path]:
    """The shipped scenarios: ``{name: path}``."""
    return {p.stem: p for p in sorted(LIBRARY_DIR.glob("*.yaml"))}
