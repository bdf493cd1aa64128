"""One registry pattern for every extension point: codecs, allocators, agents, trace formats, generators.

Each kind of part has one :class:`Registry`; a module registers what it defines with the registry's
decorator and touches nothing else (CompressAI's ``register_model`` shape)::

    from bwgym.common.registry import register_allocator

    @dataclass(frozen=True)
    class GreedyOptions:
        view: str = "arm"

    @register_allocator("greedy", description="everything to one view", options=GreedyOptions)
    def greedy(context: BuildContext, options: GreedyOptions) -> Allocator: ...

An entry holds its name, a one-line description, its options as a dataclass (validated, with
defaults, listed by ``bwgym allocators`` and its siblings), and kind-specific fields (a codec's wire
id and shipped checkpoints). Lookups of a name that is not registered yet import the kind's
packages once (``discover``), so the tables are complete without a list of modules anywhere.
An unknown name is a one-line error listing the registered names with a "did you mean"; a name
registered twice from two modules is an error at import naming both.

The registries of agents and allocators name the packages that hold them as strings: the lowest
layer holds the table, the modules that fill it sit above (as gymnasium's entry points do).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bwgym.common.plain_data import from_plain, resolved_hints, type_name

__all__ = [
    "AGENTS",
    "ALLOCATORS",
    "FLEET_ALLOCATORS",
    "TRACE_FORMATS",
    "TRACE_GENERATORS",
    "BuildContext",
    "DuplicateNameError",
    "Entry",
    "InputError",
    "OptionError",
    "Registry",
    "UnknownNameError",
    "describe_entries",
    "options_from_signature",
    "parse_options",
    "register_agent",
    "register_allocator",
    "register_fleet_allocator",
    "register_trace_format",
    "register_trace_generator",
]

E = TypeVar("E", bound="Entry")
T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name no entry of the registry has."""


class DuplicateNameError(ValueError):
    """Two modules registered one name."""


class InputError(ValueError):
    """A part cannot be built from what the scenario gives it.

    ``key`` names the scenario key at fault (``"checkpoint"``, ``"weights"``, ``"kwargs"``).
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class OptionError(InputError):
    """An option an entry does not take, or a value of the wrong type."""

    def __init__(self, message: str) -> None:
        super().__init__("kwargs", message)


@dataclass(frozen=True)
class BuildContext:
    """What a scenario hands a builder: the parts built before it.

    Attributes:
        env: the env the part serves (the bare env for an allocator, the linked one for an agent).
        env_id: the scenario's env id (shipped checkpoints are per env).
        codec: the scenario's codec instance, or None.
        checkpoint: the scenario's ``checkpoint`` for this part, or None for the shipped one.
        weights: the scenario's ``weights`` for this part (allocators), possibly empty.
        device: where networks run (``"cpu"``, ``"cuda"``, ``"cuda:N"``; already resolved).
        make_agent: builds a fresh instance of the scenario's agent (for allocators that consult it).
    """

    env: Any = None
    env_id: str = ""
    codec: Any = None
    checkpoint: str | None = None
    weights: Mapping[str, float] = field(default_factory=dict)
    device: str = "cpu"
    make_agent: Callable[[], Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One registered name.

    Attributes:
        kind: what the registry holds (``"codec"``, ``"allocator"``, ...).
        name: what scenarios and the CLI call it.
        target: the registered class or function.
        description: one line for listings and error messages.
        options: the dataclass of its options (None: it takes none).
        module: the module that registered it.
        checkpoints: shipped checkpoint file per env id (``""``: any env), relative to the package.
        uses: the scenario keys besides its options that it reads (``"checkpoint"``, ``"weights"``);
            a scenario giving any other is refused, naming the key.
    """

    kind: str
    name: str
    target: Any
    description: str = ""
    options: type | None = None
    module: str = ""
    checkpoints: Mapping[str, str] = field(default_factory=dict)
    uses: tuple[str, ...] = ()

    def make_options(self, values: Mapping[str, Any] | None = None, where: str = "") -> Any:
        """The options dataclass filled from ``values`` (validated), or None when it takes none.

        Args:
            values: ``{option: value}`` as given (a scenario's ``kwargs``).
            where: the path of ``values`` for messages (``"allocator.kwargs"``); default the
                entry's kind and name.

        Raises:
            OptionError: an option it does not take (with the closest one), a missing required
                one or a value of the wrong type, naming its path (``allocator.kwargs.levels``).
        """
        values = dict(values or {})
        if self.options is None:
            if values:
                label = f"{where}: " if where else ""
                raise OptionError(f"{label}{self.kind} {self.name!r} takes no options, got {sorted(values)}")
            return None
        return parse_options(self.options, values, where or f"{self.kind} {self.name}")

    def option_rows(self) -> list[tuple[str, str, str]]:
        """``(name, type, default)`` of each option, for listings."""
        if self.options is None:
            return []
        hints = resolved_hints(self.options)
        rows = []
        for f in dataclasses.fields(self.options):
            if f.default is not dataclasses.MISSING:
                default = repr(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                default = repr(f.default_factory())
            else:
                default = "required"
            rows.append((f.name, type_name(hints.get(f.name, f.type)), default))
        return rows

    def build(self, context: BuildContext, options: Mapping[str, Any] | None = None, where: str = "") -> Any:
        """Make the part from ``options`` (validated against the entry's options dataclass).

        A builder function is called as ``target(context, options)``; a class through its
        ``from_context(context, options)`` classmethod when it has one, else as ``target(**options)``.
        """
        parsed = self.make_options(options, where)
        target = self.target
        if inspect.isclass(target):
            from_context = getattr(target, "from_context", None)
            if from_context is not None:
                return from_context(context, parsed)
            return target(**(dataclasses.asdict(parsed) if parsed is not None else {}))
        return target(context, parsed)


class Registry(Generic[E]):
    """A table of named entries of one kind, filled by a decorator.

    Args:
        kind: what it holds, for messages (``"allocator"``).
        discover: packages (or modules) whose modules are imported on the first lookup of a name
            not registered yet, or the first listing.
        entry_type: the :class:`Entry` subclass its entries are (kind-specific fields).
        skip: module leaf names discovery never imports (trainers, mains).
    """

    def __init__(
        self,
        kind: str,
        discover: Sequence[str] = (),
        entry_type: type[E] = Entry,  # type: ignore[assignment]
        skip: Sequence[str] = (),
    ) -> None:
        self.kind = kind
        self._discover_from = tuple(discover)
        self._entry_type = entry_type
        self._skip = frozenset(skip)
        self._entries: dict[str, E] = {}
        self._discovered = False

    def register(self, name: str, **fields: Any) -> Callable[[T], T]:
        """Decorator: register the decorated class or function under ``name``.

        Keyword arguments are the entry's fields (``description``, ``options``, ``checkpoints``,
        and those of the registry's entry type). A description defaults to the docstring's first line.
        """

        def decorate(target: T) -> T:
            self.add(name, target, **fields)
            return target

        return decorate

    def add(self, name: str, target: Any, **fields: Any) -> E:
        """Register ``target`` under ``name`` and return its entry.

        Raises:
            DuplicateNameError: another module (or another object of the same module) holds ``name``.
            ValueError: a name that is not a non-empty string without spaces.
        """
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ValueError(f"a {self.kind} name is a non-empty string without spaces, got {name!r}")
        module = getattr(target, "__module__", "") or ""
        previous = self._entries.get(name)
        if previous is not None and not _same_definition(previous.target, target):
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by {previous.module or '?'} "
                f"({_qualname(previous.target)}) and by {module or '?'} ({_qualname(target)}); rename one"
            )
        fields.setdefault("description", _first_line(getattr(target, "__doc__", None)))
        options = fields.get("options")
        if options is not None and not dataclasses.is_dataclass(options):
            raise TypeError(f"{self.kind} {name!r}: options must be a dataclass type, got {options!r}")
        entry = self._entry_type(kind=self.kind, name=name, target=target, module=module, **fields)
        self._entries[name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests that register a toy entry clean up with this)."""
        self._entries.pop(name, None)

    def discover(self) -> None:
        """Import every module of the registry's packages once, so their decorators have run."""
        if self._discovered:
            return
        self._discovered = True
        for root in self._discover_from:
            package = importlib.import_module(root)
            if not hasattr(package, "__path__"):
                continue
            for module in pkgutil.walk_packages(package.__path__, prefix=f"{root}."):
                leaf = module.name.rsplit(".", 1)[-1]
                if not module.ispkg and not leaf.startswith("_") and leaf not in self._skip:
                    importlib.import_module(module.name)

    def get(self, name: str) -> E:
        """The entry of ``name``.

        Raises:
            UnknownNameError: no entry of that name: the closest name and every registered one.
        """
        if not isinstance(name, str) or name not in self._entries:
            self.discover()
        if not isinstance(name, str) or name not in self._entries:
            raise UnknownNameError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: Any) -> str:
        """``unknown <kind> 'x' (did you mean 'y'?); expected one of [...]``."""
        names = self.names()
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        return f"unknown {self.kind} {shown}{hint}; expected one of {names}"

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self.discover()
        return sorted(self._entries)

    def entries(self) -> list[E]:
        """Every entry, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name not in self._entries:
            self.discover()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def _same_definition(a: Any, b: Any) -> bool:
    """True for one object, or the same definition imported again (a module reload)."""
    return a is b or (
        getattr(a, "__module__", None) == getattr(b, "__module__", None)
        and getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)
    )


def _qualname(target: Any) -> str:
    return getattr(target, "__qualname__", type(target).__name__)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0].strip()


def parse_options(options: type, values: Mapping[str, Any], where: str) -> Any:
    """Fill the dataclass ``options`` from ``values`` (:func:`~bwgym.common.plain_data.from_plain`).

    Raises:
        OptionError: naming ``where`` and the option: an unknown one (with the closest name and
            every allowed one), a missing required one, a value of the wrong type, or a
            ``ValueError`` of the dataclass's own ``__post_init__``.
    """
    return from_plain(options, values, where, OptionError)


def _resolve_annotation(annotation: Any, namespace: Mapping[str, Any]) -> Any:
    """An annotation as a type, or its string when it names something imported only for type checking."""
    if annotation is inspect.Parameter.empty:
        return Any
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, dict(namespace))  # noqa: S307 (a module's own annotation)
    except Exception:
        return annotation


def options_from_signature(
    func: Callable[..., Any], name: str, skip: Sequence[str] = (), required: bool = False
) -> type | None:
    """A frozen options dataclass made from ``func``'s keyword parameters.

    For parts whose options are their constructor's keywords (codecs, trace generators):
    parameters in ``skip``, positional-only ones and ``*args``/``**kwargs`` are left out, and so
    are those without a default unless ``required`` (then they are required options). Returns
    None when nothing is left.
    """
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    namespace = getattr(inspect.unwrap(func), "__globals__", {})
    specs = []
    for p in signature.parameters.values():
        if p.name in skip or p.name in ("self", "cls"):
            continue
        if p.default is inspect.Parameter.empty and not required:
            continue
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY):
            continue
        tp = _resolve_annotation(p.annotation, namespace)
        default = p.default
        if default is inspect.Parameter.empty:
            specs.append((p.name, tp, field()))
        elif isinstance(default, (list, dict, set)):
            specs.append((p.name, tp, field(default_factory=lambda d=default: type(d)(d))))
        else:
            specs.append((p.name, tp, field(default=default)))
    if not specs:
        return None
    return dataclasses.make_dataclass(name, specs, frozen=True, kw_only=True)


def describe_entries(entries: Sequence[Entry], details: Callable[[Entry], str] | None = None) -> str:
    """A plain-text listing: one line per entry (name, description), then its options indented.

    Args:
        entries: what to list (e.g. ``registry.entries()``).
        details: an extra column per entry (e.g. a codec's wire format and shipped checkpoint).
    """
    width = max((len(e.name) for e in entries), default=4) + 2
    lines = []
    for e in entries:
        extra = f"{details(e)}  " if details is not None else ""
        lines.append(f"{e.name:{width}s}{extra}{e.description}")
        for option, shown_type, default in e.option_rows():
            lines.append(f"{'':{width}s}  {option}: {shown_type} = {default}")
        if e.uses:
            lines.append(f"{'':{width}s}  reads: {', '.join(e.uses)}")
    return "\n".join(lines)


#: Bandwidth allocators: how a step's budget is split over the views (``allocator.name``).
ALLOCATORS: Registry[Entry] = Registry("allocator", discover=("bwgym.envs", "bwgym.agents"), skip=("demos",))
#: Fleet allocators: how a shared link's budget is divided among a fleet's members (``fleet.allocator``).
FLEET_ALLOCATORS: Registry[Entry] = Registry("fleet allocator", discover=("bwgym.envs.fleet",))
#: Agents that act on (decoded) observations (``agent.name``).
AGENTS: Registry[Entry] = Registry("agent", discover=("bwgym.agents",), skip=("demos",))
#: Trace file formats (``trace.format``): readers and writers.
TRACE_FORMATS: Registry[Entry] = Registry("trace format", discover=("bwgym.traces.formats",))
#: Trace generators (``trace.generator``).
TRACE_GENERATORS: Registry[Entry] = Registry("trace generator", discover=("bwgym.traces.generators",))

register_allocator = ALLOCATORS.register
register_fleet_allocator = FLEET_ALLOCATORS.register
register_agent = AGENTS.register
register_trace_format = TRACE_FORMATS.register
register_trace_generator = TRACE_GENERATORS.register
