"""The one checkpoint format of bwgym: codecs, agents and allocation policies all save with it.

A checkpoint is a zip file holding ``checkpoint.json`` (format tag, kind, metadata, library
versions) and one ``.npy`` per state entry under ``state/``. Loading runs no code from the file:
JSON is parsed and arrays are read with ``allow_pickle=False`` (a torch ``state_dict`` is stored
as numpy arrays and turned back into tensors by its owner). Saving is atomic.

The metadata conventions every owner follows, so one :func:`check_spec` serves them all:

``env_id``
    the env the weights were trained for (``None`` for env-free models);
``views``
    ``{view name: {"shape": [...], "dtype": "uint8"}}`` of the views the model reads;
``config``
    the training configuration (plain JSON).

Example::

    save_checkpoint("bc.ckpt", "agent/bc", model.state_dict(), {"env_id": "bwgym/LocateLift-v0"})
    ckpt = load_checkpoint("bc.ckpt", kind="agent/bc")
    model.load_state_dict(ckpt.tensors())
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from bwgym.common.files import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "CheckpointError",
    "check_spec",
    "load_checkpoint",
    "save_checkpoint",
    "shipped_file",
]

CHECKPOINT_FORMAT = "bwgym.checkpoint/1"
_HEADER = "checkpoint.json"
_STATE_PREFIX = "state/"
#: A header larger than this is not one bwgym wrote (it guards against a zip bomb in the header).
_MAX_HEADER_BYTES = 4 << 20


class CheckpointError(ValueError):
    """A file that is not a readable bwgym checkpoint, or one of another kind or spec."""


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        versions["bwgym"] = importlib_metadata.version("bwgym")
    except importlib_metadata.PackageNotFoundError:
        versions["bwgym"] = "unknown"
    if "torch" in sys.modules:  # only report torch where the owner already uses it
        versions["torch"] = sys.modules["torch"].__version__
    return versions


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError("checkpoint state must be numeric or string arrays, got an object array")
    return np.array(array, order="C", copy=True)  # ascontiguousarray would turn 0-d into 1-d


def jsonable(value: Any) -> Any:
    """Plain JSON data: tuples become lists, numpy scalars numbers, paths strings."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: its kind, JSON metadata and state arrays."""

    kind: str
    metadata: dict[str, Any]
    state: dict[str, np.ndarray]
    versions: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def env_id(self) -> str | None:
        """The env id the checkpoint was trained for (None when it records none)."""
        return self.metadata.get("env_id")

    def tensors(self, prefix: str = "") -> dict[str, Any]:
        """The state entries under ``prefix`` as torch tensors (prefix stripped), for ``load_state_dict``."""
        import torch

        return {
            k[len(prefix) :]: torch.from_numpy(np.array(v, copy=True))
            for k, v in self.state.items()
            if k.startswith(prefix) and v.dtype.kind not in "US"
        }


def save_checkpoint(
    path: str | os.PathLike[str],
    kind: str,
    state: Mapping[str, Any],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically and return its path.

    Args:
        path: the file to write (its folder must exist).
        kind: what it holds, ``"<family>/<name>"``, e.g. ``"codec/ndpca"`` or ``"agent/bc"``.
        state: named numeric or string arrays (numpy arrays or torch tensors).
        metadata: plain JSON: ``env_id``, ``views``, ``config`` and whatever the owner needs.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; give a file path for the checkpoint")
    header = {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "metadata": jsonable(dict(metadata or {})),
        "versions": _versions(),
        "state": sorted(state),
    }
    arrays = {key: _to_numpy(value) for key, value in state.items()}

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(_HEADER, json.dumps(header, indent=1, sort_keys=True))
            for key in sorted(arrays):
                buf = io.BytesIO()
                np.save(buf, arrays[key], allow_pickle=False)
                zf.writestr(_STATE_PREFIX + key + ".npy", buf.getvalue())

    return atomic_write(path, write)


def _kinds_text(kinds: Sequence[str]) -> str:
    return " or ".join(repr(k) for k in kinds)


def load_checkpoint(path: str | os.PathLike[str], kind: str | Sequence[str] | None = None) -> Checkpoint:
    """Read a checkpoint without running any code from it.

    Args:
        path: the checkpoint file.
        kind: the kind (or kinds) the caller accepts; another kind is a :class:`CheckpointError`
            naming both. A kind ending in ``/`` accepts every kind that starts with it.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: a folder, not a bwgym checkpoint, damaged, or of another kind.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; expected a bwgym checkpoint file")
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(_HEADER)
            if info.file_size > _MAX_HEADER_BYTES:
                raise CheckpointError(
                    f"{path}: checkpoint header of {info.file_size} bytes is not one bwgym wrote"
                )
            header = json.loads(zf.read(_HEADER).decode("utf-8"))
            if not isinstance(header, dict) or header.get("format") != CHECKPOINT_FORMAT:
                got = header.get("format") if isinstance(header, dict) else type(header).__name__
                raise CheckpointError(
                    f"{path}: checkpoint format {got!r}, this bwgym reads {CHECKPOINT_FORMAT!r}"
                )
            state = {}
            for name in zf.namelist():
                if name.startswith(_STATE_PREFIX) and name.endswith(".npy"):
                    with zf.open(name) as f:
                        state[name[len(_STATE_PREFIX) : -4]] = np.load(
                            io.BytesIO(f.read()), allow_pickle=False
                        )
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{path} is not a bwgym checkpoint ({type(err).__name__}: {err}); "
            f"checkpoints are written by bwgym's train commands"
        ) from err
    except (ValueError, OSError, EOFError, zipfile.LargeZipFile) as err:
        raise CheckpointError(f"{path}: damaged checkpoint ({type(err).__name__}: {err})") from err
    got_kind = str(header.get("kind"))
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if not any(got_kind == k or (k.endswith("/") and got_kind.startswith(k)) for k in kinds):
            raise CheckpointError(f"{path} is a checkpoint of {got_kind!r}, expected {_kinds_text(kinds)}")
    missing = set(header.get("state", [])) - set(state)
    if missing:
        raise CheckpointError(f"{path}: damaged checkpoint, state entries {sorted(missing)} are missing")
    return Checkpoint(
        kind=got_kind,
        metadata=dict(header.get("metadata") or {}),
        state=state,
        versions=dict(header.get("versions") or {}),
        path=path,
    )


def _spec_text(spec: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={spec[k]!r}" for k in sorted(spec))


def check_spec(what: str, saved: Mapping[str, Any], requested: Mapping[str, Any], fix: str = "") -> None:
    """Raise :class:`CheckpointError` naming both sides when ``requested`` disagrees with ``saved``.

    Keys whose requested value is None are not compared; values are compared after a JSON round
    trip (so tuples and lists of the same numbers agree).

    Args:
        what: what was saved, for the message (e.g. ``"codec ndpca from x.ckpt"``).
        saved: the spec the checkpoint records (``env_id``, ``views``, ...).
        requested: the spec the caller has.
        fix: what the user can do, appended to the message.
    """
    want = {k: v for k, v in requested.items() if v is not None}
    have = {k: saved.get(k) for k in want}
    if json.loads(json.dumps(jsonable(have))) != json.loads(json.dumps(jsonable(want))):
        message = f"{what} was trained for {_spec_text(have)}, but {_spec_text(want)} was requested"
        raise CheckpointError(message + (f"; {fix}" if fix else ""))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def shipped_file(checkpoint: str, env_id: str | None) -> str:
    """The shipped checkpoint file of ``env_id`` for a codec whose base file is ``checkpoint``.

    A base file named for an env (``<codec>_<env name in snake case>.ckpt``, e.g.
    ``ndpca_locate_lift.ckpt``) serves version 0 of that env; version ``N >= 1`` has its own file
    ``<stem>_vN.ckpt``. Other files, and ``env_id=None``, are returned unchanged.

    Example:
        >>> shipped_file("ndpca_locate_lift.ckpt", "bwgym/LocateLift-v1")
        'ndpca_locate_lift_v1.ckpt'
        >>> shipped_file("ndpca_locate_lift.ckpt", "bwgym/LocateLift-v0")
        'ndpca_locate_lift.ckpt'
    """
    if env_id is None:
        return checkpoint
    match = re.fullmatch(r"(?:.*/)?([A-Za-z0-9_]+)-v(\d+)", env_id)
    stem = checkpoint.removesuffix(".ckpt")
    if match is None or int(match.group(2)) == 0 or not stem.endswith("_" + _snake(match.group(1))):
        return checkpoint
    return f"{stem}_v{int(match.group(2))}.ckpt"
