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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bwgym.common.device import resolve_device
from bwgym.common.plain_data import FLOAT_TEXT
from bwgym.common.plain_data import short as _short
from bwgym.scenarios.receivers import parse_receivers
from bwgym.scenarios.sections import (
    MAX_EPISODES,
    MAX_LATENCY_STEPS,
    MAX_NUM_ENVS,
    MAX_WORKERS,
    AgentConfig,
    AllocatorConfig,
    CodecConfig,
    ConfigError,
    EnvConfig,
    FleetConfig,
    LinkConfig,
    RunConfig,
    TraceConfig,
    _choose,
    _from_dict,
    check_trace_and_link,
)

__all__ = [
    "AgentConfig",
    "AllocatorConfig",
    "CodecConfig",
    "ConfigError",
    "EnvConfig",
    "MAX_SCENARIO_BYTES",
    "MAX_SCENARIO_DEPTH",
    "MAX_SCENARIO_NODES",
    "LinkConfig",
    "RunConfig",
    "Scenario",
    "TraceConfig",
    "library_scenarios",
    "load_scenario",
    "parse_override",
    "parse_yaml",
    "read_scenario_file",
    "scenario_from_dict",
    "scenario_to_dict",
]

LIBRARY_DIR = Path(__file__).resolve().parent / "library"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.,=+\-]{0,199}")
# ----------------------------------------------------------------------------- YAML loading
#: Largest scenario file (bytes); scenarios are a few hundred bytes, and PyYAML's pure-Python
#: loader (needed for the checks below) parses about 1 MB per second.
MAX_SCENARIO_BYTES = 1 << 20
#: Deepest nesting of mappings and lists in a scenario file (the deepest real one has 4 levels);
#: deeper files hit Python's recursion limit in the YAML composer.
MAX_SCENARIO_DEPTH = 32
#: Most YAML nodes (scalars, lists, mappings) in a scenario file; a scenario has about 50.
MAX_SCENARIO_NODES = 10_000


class _ScenarioYAMLError(yaml.YAMLError):
    """A YAML document beyond the scenario loader's bounds (aliases, depth, nodes, duplicate keys)."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _ScenarioLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounded resources and strict mappings.

    Aliases are refused (a 500-byte "billion laughs" file expands to gigabytes through them),
    nesting is capped at :data:`MAX_SCENARIO_DEPTH` and nodes at :data:`MAX_SCENARIO_NODES`
    while composing (before anything is built), a key given twice in one mapping is an error
    (YAML would keep the last one silently), and ``1e7`` is a float.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Compose one node, refusing aliases and counting depth and nodes."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _ScenarioYAMLError(
                f"YAML aliases (*{event.anchor}) are not allowed in scenario files; write the value out",
                event.start_mark,
            )
        self._nodes += 1
        if self._nodes > MAX_SCENARIO_NODES:
            raise _ScenarioYAMLError(
                f"more than MAX_SCENARIO_NODES={MAX_SCENARIO_NODES} YAML nodes; a scenario needs a few dozen",
                event.start_mark,
            )
        self._depth += 1
        try:
            if self._depth > MAX_SCENARIO_DEPTH:
                raise _ScenarioYAMLError(
                    f"nested deeper than MAX_SCENARIO_DEPTH={MAX_SCENARIO_DEPTH} levels; scenarios need 4",
                    event.start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        """A mapping whose keys are all distinct (a repeated key is an error naming both lines)."""
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if first is not key_node:
                raise _ScenarioYAMLError(
                    f"duplicate key {_short(key)} (first at line {first.start_mark.line + 1}); "
                    "give each key once",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


_ScenarioLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(f"^{FLOAT_TEXT.pattern}$"), list("-+0123456789.")
)


def parse_yaml(text: str, where: str) -> Any:
    """Parse scenario YAML (a file's text or a ``--set`` value) with the bounded loader.

    Args:
        text: the YAML text (at most :data:`MAX_SCENARIO_BYTES` when encoded).
        where: what the text is, for messages (a path, or ``"override 'trace.scale'"``).

    Raises:
        ConfigError: one line naming ``where``, the line and column, the problem and the bound.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SCENARIO_BYTES:
        raise ConfigError(f"{where}: more than MAX_SCENARIO_BYTES={MAX_SCENARIO_BYTES} bytes of YAML")
    try:
        return yaml.load(text, Loader=_ScenarioLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        valid = "" if isinstance(exc, _ScenarioYAMLError) else "not valid YAML, "
        raise ConfigError(f"{where}: {valid}{at}{problem}") from None
    except RecursionError:  # a safety net: the depth cap stops the composer long before this
        raise ConfigError(
            f"{where}: YAML nested too deeply (MAX_SCENARIO_DEPTH={MAX_SCENARIO_DEPTH})"
        ) from None


def parse_override(key: str, text: str) -> Any:
    """The value of ``--set key=text``: YAML with the scenario loader's bounds, ``1e7`` a float.

    Example:
        >>> parse_override("trace.scale", "1e7"), parse_override("codec.name", "jpeg")
        (10000000.0, 'jpeg')

    Raises:
        ConfigError: the text is not valid YAML; the message names the override and says to quote it.
    """
    try:
        return parse_yaml(text, f"override {key}={_short(text)}")
    except ConfigError as exc:
        raise ConfigError(f"{exc}; quote a string value, e.g. {key}='\"...\"'") from None


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
    receivers: Any = field(default_factory=list)
    """Several receivers, each decoding the streams it hears (:mod:`bwgym.scenarios.receivers`);
    empty: the agent alone, behind ``trace`` and ``link``."""
    links: dict[str, Any] = field(default_factory=dict)
    """With ``receivers``: one link per stream, each with its own trace and link settings."""
    fleet: FleetConfig | None = None
    """N members behind the one link, run in rounds (:mod:`bwgym.scenarios.fleet`); None: one robot."""


def scenario_from_dict(data: dict[str, Any]) -> Scenario:
    """Build a :class:`Scenario` from plain data; raise :class:`ConfigError` on any bad key or type."""
    scenario = _from_dict(Scenario, data, "")
    _check_values(scenario)
    if scenario.receivers or scenario.links:
        parse_receivers(scenario)
    return scenario


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """Plain data that :func:`scenario_from_dict` turns back into the same scenario."""
    return dataclasses.asdict(scenario)


def _check_values(s: Scenario) -> None:
    def check(ok: bool, path: str, value: Any, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{path}: invalid value {value!r}; expected {allowed}")

    check(s.run.episodes >= 1, "run.episodes", s.run.episodes, "an integer >= 1")
    # Before run.seed: its bound depends on run.episodes, and an absurd episode count is the problem.
    check(
        s.run.episodes <= MAX_EPISODES, "run.episodes", s.run.episodes, f"an integer in [1, {MAX_EPISODES:,}]"
    )
    check(
        1 <= s.run.workers <= MAX_WORKERS,
        "run.workers",
        s.run.workers,
        f"an integer in [1, {MAX_WORKERS:,}] (MAX_WORKERS)",
    )
    check(
        1 <= s.run.num_envs <= MAX_NUM_ENVS,
        "run.num_envs",
        s.run.num_envs,
        f"an integer in [1, {MAX_NUM_ENVS}] (MAX_NUM_ENVS)",
    )
    check_trace_and_link(s.trace, s.link)
    if s.run.device not in ("auto", "cpu"):  # those need no torch to check
        try:
            resolve_device(s.run.device)
        except ValueError as exc:
            raise ConfigError(f"run.device: {exc}") from None
    check(
        0 <= s.run.seed < 2**31 - s.run.episodes,
        "run.seed",
        s.run.seed,
        "an integer in [0, 2**31 - run.episodes) (episode i uses seed run.seed + i)",
    )
    check(
        bool(_SAFE_NAME.fullmatch(s.name)),
        "name",
        s.name,
        "a name of letters, digits and _ - . , = +, not starting with '.' (it names the run folder)",
    )
    if s.fleet is not None:
        check_fleet(s)


def check_fleet(scenario: Any) -> None:
    """Refuse a ``fleet:`` section that cannot run (the scenario parser calls this).

    Raises:
        ConfigError: naming the key: members out of range, a link key that is not a member
            index, a bad link value, an unknown allocator or option, a codec of ``none``,
            ``run.num_envs`` above 1, or seeds past ``2**31``.
    """
    from bwgym.common.registry import FLEET_ALLOCATORS, OptionError, UnknownNameError
    from bwgym.envs.fleet import MAX_FLEET_MEMBERS

    fleet: FleetConfig = scenario.fleet
    n = fleet.members
    if not 1 <= n <= MAX_FLEET_MEMBERS:
        raise ConfigError(
            f"fleet.members: invalid value {n!r}; expected an integer in [1, {MAX_FLEET_MEMBERS}] (MAX_FLEET_MEMBERS)"
        )
    for key, extra in fleet.links.items():
        if not (key.isdigit() and int(key) < n):
            raise ConfigError(f"fleet.links.{key}: expected a member index in [0, {n - 1}]")
        if extra.latency_steps is not None and not 0 <= extra.latency_steps <= MAX_LATENCY_STEPS:
            raise ConfigError(
                f"fleet.links.{key}.latency_steps: invalid value {extra.latency_steps!r}; "
                f"expected an integer in [0, {MAX_LATENCY_STEPS:,}]"
            )
        if extra.loss_prob is not None and not 0 <= extra.loss_prob < 1:
            raise ConfigError(
                f"fleet.links.{key}.loss_prob: invalid value {extra.loss_prob!r}; expected a probability in [0, 1)"
            )
    try:
        FLEET_ALLOCATORS.get(fleet.allocator.name).make_options(
            fleet.allocator.kwargs, "fleet.allocator.kwargs"
        )
    except UnknownNameError as exc:
        raise ConfigError(f"fleet.allocator.name: {exc}") from None
    except OptionError as exc:
        raise ConfigError(str(exc)) from None
    if scenario.codec.name == "none":
        raise ConfigError(
            "fleet: a fleet divides its link among its members' codecs; codec.name must not be 'none'"
        )
    if scenario.run.num_envs != 1:
        raise ConfigError(
            f"run.num_envs: invalid value {scenario.run.num_envs!r} for a fleet; its members are stepped "
            "together already: leave it at 1"
        )
    if scenario.run.seed + scenario.run.episodes * n >= 2**31:
        raise ConfigError(
            f"run.seed: invalid value {scenario.run.seed!r}; a fleet's member-episodes use seeds up to "
            f"run.seed + run.episodes * fleet.members, which must stay below 2**31"
        )


def read_scenario_file(path: Path) -> Any:
    """The YAML data of a scenario file, within :data:`MAX_SCENARIO_BYTES`; an empty file is an error."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SCENARIO_BYTES + 1)  # never more, whatever the file claims to be
        if len(raw) > MAX_SCENARIO_BYTES:
            raise ConfigError(
                f"{path}: scenario file larger than MAX_SCENARIO_BYTES={MAX_SCENARIO_BYTES} bytes; "
                "scenarios are a few hundred bytes (is this a trace or data file?)"
            )
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid YAML: the file is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the scenario file ({exc.strerror})") from exc
    data = parse_yaml(text, str(path))
    if data is None:
        raise ConfigError(
            f"{path}: the scenario file is empty (or only comments); write at least `name: ...` and the "
            "sections to change, or run a library scenario by name"
        )
    return data


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
    from bwgym.common.registry import AGENTS, ALLOCATORS, TRACE_FORMATS, TRACE_GENERATORS
    from bwgym.traces import formats

    path = Path(source)
    if not path.suffix and not path.exists():
        library = library_scenarios()
        if str(source) not in library:
            _choose("scenario", str(source), library)
        path = library[str(source)]
    if not path.is_file():
        raise ConfigError(f"scenario file {_short(str(path))} does not exist")
    data = read_scenario_file(path)
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
    if scenario.codec.name == "none" and (scenario.codec.checkpoint is not None or scenario.codec.kwargs):
        # 'none' sends the views raw: a checkpoint or kwargs given with it would be silently unused.
        key = "codec.checkpoint" if scenario.codec.checkpoint is not None else "codec.kwargs"
        raise ConfigError(
            f"{path}: {key}: codec 'none' sends the views raw and takes no {key.split('.')[1]}; "
            "drop it, or set codec.name to the codec it belongs to (e.g. codec.name=ndpca)"
        )
    _choose("agent.name", scenario.agent.name, AGENTS.names())
    _choose("allocator.name", scenario.allocator.name, ALLOCATORS.names())
    if scenario.trace.source is None and scenario.trace.generator is None:
        scenario = dataclasses.replace(
            scenario, trace=dataclasses.replace(scenario.trace, source="lte_drive")
        )
    if scenario.trace.generator is not None:
        _choose("trace.generator", scenario.trace.generator, TRACE_GENERATORS.names())
    elif not Path(scenario.trace.source).suffix or not (path.parent / scenario.trace.source).exists():
        source_path = path.parent / scenario.trace.source
        if not source_path.exists() and scenario.trace.source not in formats.list_library():
            raise ConfigError(
                f"{path}: trace.source: {scenario.trace.source!r} is neither a file nor a library trace; "
                f"library traces: {', '.join(formats.list_library())}"
            )
    if scenario.trace.format is not None:
        _choose("trace.format", scenario.trace.format, TRACE_FORMATS.names())
    for key, checkpoint in (
        ("codec.checkpoint", scenario.codec.checkpoint),
        ("agent.checkpoint", scenario.agent.checkpoint),
        ("allocator.checkpoint", scenario.allocator.checkpoint),
        ("fleet.allocator.checkpoint", scenario.fleet and scenario.fleet.allocator.checkpoint),
    ):
        if checkpoint is not None and not (path.parent / checkpoint).exists():
            raise ConfigError(
                f"{path}: {key}: checkpoint {checkpoint!r} does not exist "
                f"(relative paths are resolved against {path.parent})"
            )
    if scenario.receivers:
        scenario = _resolve_link_paths(scenario, path.parent)
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
        fleet=s.fleet
        and dataclasses.replace(
            s.fleet,
            allocator=dataclasses.replace(
                s.fleet.allocator, checkpoint=resolve(s.fleet.allocator.checkpoint)
            ),
        ),
    )


def _resolve_link_paths(scenario: Scenario, folder: Path) -> Scenario:
    """Each link's trace file relative to the scenario file's ``folder`` made absolute, as checked.

    A link without ``trace.source`` or ``trace.generator`` gets ``lte_drive``, as the scenario's
    ``trace:`` does.
    """
    links = {}
    for name, data in scenario.links.items():
        data = dict(data or {})
        trace = dict(data.get("trace") or {})
        source = trace.get("source")
        if source is None and trace.get("generator") is None:
            trace["source"] = "lte_drive"
        elif isinstance(source, str) and (folder / source).exists():
            trace["source"] = str((folder / source).resolve())
        links[name] = {**data, "trace": trace}
    return dataclasses.replace(scenario, links=links)


def library_scenarios() -> dict[str, Path]:
    """The shipped scenarios: ``{name: path}``."""
    return {p.stem: p for p in sorted(LIBRARY_DIR.glob("*.yaml"))}
