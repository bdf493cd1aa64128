"""The one codec registry: every codec registers its name, wire id, shipped checkpoint and recipe here.

A codec module registers its class with a decorator and touches nothing else::

    @register_codec("jpeg", wire_id=2, description="JPEG per view at the highest quality that fits")
    class JpegCodec(ImageCodec):
        @classmethod
        def from_views(cls, views, **kwargs): ...

A codec with weights names its shipped checkpoint (a file in ``bwgym/codecs/checkpoints/``) and
implements ``from_checkpoint(ckpt, **kwargs)``; one class may be registered under several names
(variants of one wire format, e.g. ``ndpca`` and ``ndpca_agnostic``), each with its own checkpoint
and training recipe. The CLI, the scenario factory, :func:`make_codec` and training read this table
only. Codec modules of the ``bwgym.codecs`` package are imported on the first lookup of a name that
is not registered yet, so the table is complete without a list of modules anywhere.

Shipped checkpoints are per env: ``ndpca_locate_lift.ckpt`` serves ``bwgym/LocateLift-v0`` (and
callers that name no env), ``ndpca_locate_lift_v1.ckpt`` serves ``bwgym/LocateLift-v1``
(:func:`shipped_file`); ``make_codec(name, views, env_id=...)`` picks the file of that env.

Wire ids are the numbers in the payload header: fixed, never reused, never renumbered. Reserved:
1-9 image and LocateLift codecs, 10-19 vector (sensor network) codecs, 200-254 tests and users.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bwgym.common.checkpoint import shipped_file
from bwgym.common.registry import Entry, Registry, options_from_signature

if TYPE_CHECKING:
    from bwgym.codecs.core.protocol import Codec, ViewSpec

__all__ = [
    "CHECKPOINT_DIR",
    "CODECS",
    "CodecEntry",
    "codec_entry",
    "codec_names",
    "codec_wire_id",
    "codec_wire_name",
    "load_codec",
    "make_codec",
    "register_codec",
    "shipped_file",
]

#: Where shipped codec checkpoints live.
CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"

C = TypeVar("C", bound=type)

#: Keywords the scenario factory fills from the env and the run, never options a user sets.
_FILLED_BY_FACTORY = ("system", "device")


@dataclass(frozen=True, kw_only=True)
class CodecEntry(Entry):
    """One registered codec name (a :class:`~bwgym.common.registry.Entry` with the wire format).

    Attributes:
        wire_name: the payload's codec name (``name`` unless a variant shares a wire format).
        checkpoint: the shipped checkpoint file name in :data:`CHECKPOINT_DIR`, or None.
        needs_checkpoint: True when the codec cannot be built without weights.
        recipe: training recipe: keyword defaults for the codec's ``train`` classmethod.
    """

    wire_name: str
    checkpoint: str | None = None
    needs_checkpoint: bool = False
    recipe: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cls(self) -> type:
        """The codec class."""
        return self.target

    @property
    def checkpoint_kind(self) -> str:
        """The checkpoint kind this name writes and accepts (``"codec/<name>"``)."""
        return f"codec/{self.name}"

    @property
    def shipped_path(self) -> Path | None:
        """The shipped checkpoint's path (which may be missing from a broken install), or None."""
        return CHECKPOINT_DIR / self.checkpoint if self.checkpoint else None

    def shipped_path_for(self, env_id: str | None) -> Path | None:
        """The shipped checkpoint of this codec for ``env_id`` (see :func:`shipped_file`), or None."""
        return CHECKPOINT_DIR / shipped_file(self.checkpoint, env_id) if self.checkpoint else None

    @property
    def trainable(self) -> bool:
        """True when the class can train or fit this name (it has a ``train`` classmethod)."""
        return callable(getattr(self.cls, "train", None))


#: Every codec name. Codec modules of ``bwgym.codecs`` (sub-packages included, ``train`` not) are
#: imported on the first lookup of a name that is not registered yet.
CODECS: Registry[CodecEntry] = Registry(
    "codec", discover=("bwgym.codecs",), entry_type=CodecEntry, skip=("train",)
)
_WIRE_IDS: dict[str, int] = {}
_WIRE_NAMES: dict[int, str] = {}


def _default_options(cls: type, checkpoint: str | None) -> type | None:
    """The options of a codec that declares none: the keywords its constructors take with defaults.

    A codec with weights takes those of ``from_checkpoint`` (the rest comes from the checkpoint);
    one without, those of ``from_views`` and ``__init__``.
    """
    if checkpoint:
        return options_from_signature(cls.from_checkpoint, f"{cls.__name__}Options", skip=_FILLED_BY_FACTORY)
    specs: dict[str, tuple[str, Any, Any]] = {}
    for func in (cls.from_views, cls.__init__):
        made = options_from_signature(func, "_", skip=(*_FILLED_BY_FACTORY, "views"))
        for f in dataclasses.fields(made) if made is not None else ():
            specs.setdefault(f.name, (f.name, f.type, dataclasses.field(default=f.default)))
    return (
        dataclasses.make_dataclass(f"{cls.__name__}Options", list(specs.values()), frozen=True)
        if specs
        else None
    )


def register_codec(
    name: str,
    *,
    wire_id: int | None = None,
    wire_name: str | None = None,
    checkpoint: str | None = None,
    needs_checkpoint: bool | None = None,
    recipe: Mapping[str, Any] | None = None,
    description: str = "",
    options: type | None = None,
) -> Callable[[C], C]:
    """Class decorator: register a codec class under ``name``.

    Args:
        name: the name scenarios and the CLI use.
        wire_id: the payload id of a new wire format called ``name`` (1-254).
        wire_name: instead of ``wire_id``, the existing wire format this variant writes.
        checkpoint: shipped checkpoint file in :data:`CHECKPOINT_DIR`.
        needs_checkpoint: the codec cannot be built from views alone (default: ``checkpoint`` given).
        recipe: keyword defaults passed to ``cls.train`` for this name.
        description: one line for listings.
        options: the dataclass of ``codec.kwargs``; default: the keywords its constructors take
            with defaults (``system`` and ``device`` are filled by the scenario).

    Raises:
        ValueError: ``wire_id`` is taken by another codec, or neither/both wire arguments are given.
        DuplicateNameError: ``name`` is taken by a class of another module.
    """
    if (wire_id is None) == (wire_name is None):
        raise ValueError(f"register_codec({name!r}): give exactly one of wire_id (new format) or wire_name")

    def decorate(cls: C) -> C:
        wire = name if wire_id is not None else str(wire_name)
        if wire_id is not None:
            if not 1 <= wire_id <= 254:
                raise ValueError(f"register_codec({name!r}): wire_id must be in 1..254, got {wire_id}")
            owner = _WIRE_NAMES.get(wire_id)
            if owner is not None and owner != name:
                raise ValueError(
                    f"register_codec({name!r}): wire id {wire_id} already belongs to codec {owner!r}"
                )
        elif wire not in _WIRE_IDS:
            raise ValueError(
                f"register_codec({name!r}): wire format {wire!r} is not registered (register it first)"
            )
        CODECS.add(
            name,
            cls,
            wire_name=wire,
            checkpoint=checkpoint,
            checkpoints={"": checkpoint} if checkpoint else {},
            needs_checkpoint=bool(checkpoint) if needs_checkpoint is None else needs_checkpoint,
            recipe=dict(recipe or {}),
            options=options if options is not None else _default_options(cls, checkpoint),
            **({"description": description} if description else {}),
        )
        if wire_id is not None:
            _WIRE_IDS[name] = wire_id
            _WIRE_NAMES[wire_id] = name
        return cls

    return decorate


def codec_names() -> list[str]:
    """Every registered codec name, sorted."""
    return CODECS.names()


def codec_entry(name: str) -> CodecEntry:
    """The entry of ``name``.

    Raises:
        UnknownNameError: (a ``ValueError``) no codec of that name, with the closest name and the list.
    """
    return CODECS.get(name)


def codec_wire_id(wire_name: str) -> int:
    """The payload id of a wire format; ``ValueError`` for an unknown one."""
    if wire_name not in _WIRE_IDS:
        CODECS.discover()
    if wire_name not in _WIRE_IDS:
        raise ValueError(f"unknown codec {wire_name!r}; expected one of {sorted(_WIRE_IDS)}")
    return _WIRE_IDS[wire_name]


def codec_wire_name(wire_id: int) -> str | None:
    """The wire format of a payload id, or None when no codec has it."""
    if wire_id not in _WIRE_NAMES:
        CODECS.discover()
    return _WIRE_NAMES.get(wire_id)


def make_codec(
    name: str,
    views: Sequence[ViewSpec],
    *,
    env_id: str | None = None,
    checkpoint: str | Path | None = None,
    **kwargs: Any,
) -> Codec:
    """Build the codec ``name`` for ``views`` (the env's link views), from its checkpoint if it has one.

    Args:
        name: a registered codec name.
        views: the views the env sends over the link.
        env_id: the env they come from; a checkpoint for another env is refused.
        checkpoint: a checkpoint file; default the shipped one of ``name`` for ``env_id``
            (:func:`shipped_file`).
        **kwargs: codec options, passed to ``from_views`` / ``from_checkpoint``.

    Raises:
        ValueError: unknown name, missing or wrong-kind checkpoint (the message names both kinds),
            or a checkpoint trained for other views or another env (the message names both specs).
        FileNotFoundError: the checkpoint does not exist.
    """
    from bwgym.common.checkpoint import load_checkpoint

    entry = codec_entry(name)
    path = Path(checkpoint) if checkpoint is not None else entry.shipped_path_for(env_id)
    if path is None:
        if entry.needs_checkpoint:
            raise ValueError(
                f"codec {name!r} needs a checkpoint; train one with `bwgym train codec --codec {name}`"
            )
        return entry.cls.from_views(tuple(views), **kwargs)
    if not path.is_file():
        fix = f"`bwgym train codec --codec {name} --out {path}`" if entry.trainable else "another checkpoint"
        if checkpoint is None and env_id is not None and entry.trainable:
            fix += f" (every shipped codec of this env: `bwgym train --all --kind codec --env {env_id}`)"
        if path.is_dir():
            raise ValueError(f"codec checkpoint {path} is a directory, expected a file; train one with {fix}")
        raise FileNotFoundError(f"codec checkpoint {path} does not exist; train one with {fix}")
    ckpt = load_checkpoint(path, kind=entry.checkpoint_kind)
    codec = entry.cls.from_checkpoint(ckpt, **kwargs)
    codec.check_spec(env_id=env_id, views=views)
    return codec


def load_codec(path: str | Path, **kwargs: Any) -> Codec:
    """Load any codec checkpoint by the kind it records (``codec/<name>``)."""
    from bwgym.common.checkpoint import CheckpointError, load_checkpoint

    ckpt = load_checkpoint(path, kind="codec/")
    name = ckpt.kind.split("/", 1)[1]
    try:
        entry = codec_entry(name)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return entry.cls.from_checkpoint(ckpt, **kwargs)
