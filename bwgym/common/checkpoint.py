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
import math
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
    "MAX_CHECKPOINT_BYTES",
    "MAX_CHECKPOINT_ENTRIES",
    "MAX_CHECKPOINT_ENTRY_BYTES",
    "MAX_COMPRESSION_RATIO",
    "Checkpoint",
    "CheckpointError",
    "check_spec",
    "first_shape_mismatch",
    "is_size_list",
    "load_checkpoint",
    "save_checkpoint",
    "shipped_file",
    "sidecar_path",
]

CHECKPOINT_FORMAT = "bwgym.checkpoint/1"
_HEADER = "checkpoint.json"
_STATE_PREFIX = "state/"
#: A header larger than this is not one bwgym wrote (it guards against a zip bomb in the header).
_MAX_HEADER_BYTES = 4 << 20
#: Largest uncompressed size of all entries of a checkpoint together (the shipped ones hold < 10 MB):
#: every size is read from the zip's directory and each ``.npy`` header before anything is inflated.
MAX_CHECKPOINT_BYTES = 512 << 20
#: Largest uncompressed size of one entry (one array).
MAX_CHECKPOINT_ENTRY_BYTES = 256 << 20
#: Most entries (files) in one checkpoint: its directory is parsed only below this count.
MAX_CHECKPOINT_ENTRIES = 10_000
#: Largest ratio of uncompressed to compressed bytes over all entries; float weights deflate by
#: about 1.1, while a zip bomb reaches ~1000. Checked once the total exceeds
#: :data:`_RATIO_CHECKED_ABOVE_BYTES`, so small files of zeros (fresh biases) stay loadable.
MAX_COMPRESSION_RATIO = 100
_RATIO_CHECKED_ABOVE_BYTES = 16 << 20
#: The end-of-central-directory record of a zip: signature, then counts and sizes (22 bytes + comment).
_EOCD_SIGNATURE = b"PK\x05\x06"
_EOCD_BYTES = 22
_MAX_ZIP_COMMENT_BYTES = 0xFFFF


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

    Raises:
        CheckpointError: ``path`` is a folder, or the state or metadata exceeds what
            :func:`load_checkpoint` reads (:data:`MAX_CHECKPOINT_BYTES` and the other caps).
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
    header_text = json.dumps(header, indent=1, sort_keys=True)
    # The loader's caps, checked here too: a file bwgym writes is one bwgym can read back.
    sizes = {key: a.nbytes + 4096 for key, a in arrays.items()}  # 4096: room for the .npy header
    too_big = [key for key, n in sizes.items() if n > MAX_CHECKPOINT_ENTRY_BYTES]
    if too_big or sum(sizes.values()) > MAX_CHECKPOINT_BYTES or len(arrays) + 1 > MAX_CHECKPOINT_ENTRIES:
        raise CheckpointError(
            f"{path}: state of {len(arrays)} arrays, {sum(sizes.values())} bytes"
            f"{f' ({too_big[0]!r} alone {sizes[too_big[0]]})' if too_big else ''} exceeds what checkpoints "
            f"hold (MAX_CHECKPOINT_ENTRIES={MAX_CHECKPOINT_ENTRIES}, MAX_CHECKPOINT_ENTRY_BYTES="
            f"{MAX_CHECKPOINT_ENTRY_BYTES}, MAX_CHECKPOINT_BYTES={MAX_CHECKPOINT_BYTES})"
        )
    if len(header_text.encode("utf-8")) > _MAX_HEADER_BYTES:
        raise CheckpointError(
            f"{path}: metadata of more than {_MAX_HEADER_BYTES} bytes of JSON; store arrays as state"
        )

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(_HEADER, header_text)
            for key in sorted(arrays):
                buf = io.BytesIO()
                np.save(buf, arrays[key], allow_pickle=False)
                zf.writestr(_STATE_PREFIX + key + ".npy", buf.getvalue())

    return atomic_write(path, write)


def _kinds_text(kinds: Sequence[str]) -> str:
    return " or ".join(repr(k) for k in kinds)


def _directory_entries(path: Path) -> int:
    """The entry count that the zip's end record declares, read before ``zipfile`` parses the directory.

    ``zipfile`` builds one object per entry of the central directory; a crafted file with millions
    of entries would take gigabytes before any other check. A zip too damaged to have an end
    record is left to ``zipfile``, which refuses it.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        tail_bytes = min(size, _EOCD_BYTES + _MAX_ZIP_COMMENT_BYTES)
        f.seek(size - tail_bytes)
        tail = f.read(tail_bytes)
    at = tail.rfind(_EOCD_SIGNATURE)
    if at < 0 or len(tail) - at < _EOCD_BYTES:
        return 0
    # Offsets 8 and 10: entries on this disk and in total; 0xFFFF means "see the ZIP64 record",
    # which only archives of > 65,535 entries or > 4 GiB need: more than any checkpoint may hold.
    total = int.from_bytes(tail[at + 10 : at + 12], "little")
    return MAX_CHECKPOINT_ENTRIES + 1 if total == 0xFFFF else total


def _check_sizes(path: Path, zf: zipfile.ZipFile) -> None:
    """Refuse a checkpoint whose entries declare more bytes than the caps allow (before inflating)."""
    infos = zf.infolist()
    if len(infos) > MAX_CHECKPOINT_ENTRIES:
        raise CheckpointError(
            f"{path}: {len(infos)} entries, more than MAX_CHECKPOINT_ENTRIES={MAX_CHECKPOINT_ENTRIES}; "
            "this is not a checkpoint bwgym wrote"
        )
    total = packed = 0
    for info in infos:
        if info.file_size > MAX_CHECKPOINT_ENTRY_BYTES:
            raise CheckpointError(
                f"{path}: entry {info.filename!r} declares {info.file_size} bytes uncompressed, more "
                f"than MAX_CHECKPOINT_ENTRY_BYTES={MAX_CHECKPOINT_ENTRY_BYTES}; retrain a smaller model "
                "or split its state"
            )
        total += info.file_size
        packed += info.compress_size
    if total > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f"{path}: entries declare {total} bytes uncompressed, more than "
            f"MAX_CHECKPOINT_BYTES={MAX_CHECKPOINT_BYTES}; retrain a smaller model"
        )
    if total > _RATIO_CHECKED_ABOVE_BYTES and total > MAX_COMPRESSION_RATIO * max(packed, 1):
        raise CheckpointError(
            f"{path}: entries inflate {total / max(packed, 1):.0f}-fold ({packed} -> {total} bytes), "
            f"more than MAX_COMPRESSION_RATIO={MAX_COMPRESSION_RATIO}: a zip bomb, not a bwgym checkpoint"
        )


def _read_array(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    """One ``.npy`` entry, its header checked against the entry's declared size before reading the data."""
    where = f"{path}: entry {info.filename!r}"
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:  # pragma: no cover - read_magic accepts only the versions numpy knows
                raise ValueError(f"npy format version {version}")
        except (ValueError, SyntaxError, TypeError, EOFError) as err:
            raise CheckpointError(f"{where} has no valid .npy header ({err})") from err
        header_bytes = f.tell()
        if dtype.hasobject:
            raise CheckpointError(f"{where} holds Python objects; checkpoints hold numeric or string arrays")
        if any(not isinstance(n, int) or n < 0 for n in shape):
            raise CheckpointError(f"{where}: .npy shape {shape} has a negative dimension")
        # Python integers: a product of huge dims cannot overflow and pass as small.
        data_bytes = math.prod(shape) * dtype.itemsize
        if data_bytes > info.file_size - header_bytes or data_bytes > MAX_CHECKPOINT_ENTRY_BYTES:
            raise CheckpointError(
                f"{where}: .npy header claims shape {shape} of {dtype} ({data_bytes} bytes), more than "
                f"the entry holds ({info.file_size - header_bytes} bytes) or "
                f"MAX_CHECKPOINT_ENTRY_BYTES={MAX_CHECKPOINT_ENTRY_BYTES}; the file is damaged"
            )
        data = f.read(data_bytes)
    if len(data) != data_bytes:
        raise CheckpointError(f"{where}: {len(data)} data bytes for shape {shape}, expected {data_bytes}")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array.copy(order="K")  # writable and owning its memory, like np.load


def load_checkpoint(path: str | os.PathLike[str], kind: str | Sequence[str] | None = None) -> Checkpoint:
    """Read a checkpoint without running any code from it, within bounded memory.

    Before anything is inflated, the entry count, each entry's declared size
    (:data:`MAX_CHECKPOINT_ENTRY_BYTES`), their total (:data:`MAX_CHECKPOINT_BYTES`), the
    compression ratio (:data:`MAX_COMPRESSION_RATIO`) and each ``.npy`` header's shape (against
    its entry's size) are checked.

    Args:
        path: the checkpoint file.
        kind: the kind (or kinds) the caller accepts; another kind is a :class:`CheckpointError`
            naming both. A kind ending in ``/`` accepts every kind that starts with it.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: a folder, not a bwgym checkpoint, damaged, over a size cap, or of
            another kind (the message names the file and the entry).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; expected a bwgym checkpoint file")
    try:
        n_entries = _directory_entries(path)
        if n_entries > MAX_CHECKPOINT_ENTRIES:
            raise CheckpointError(
                f"{path}: the zip declares {n_entries} entries, more than "
                f"MAX_CHECKPOINT_ENTRIES={MAX_CHECKPOINT_ENTRIES}; this is not a checkpoint bwgym wrote"
            )
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
            _check_sizes(path, zf)
            state = {}
            for entry in zf.infolist():
                name = entry.filename
                if name.startswith(_STATE_PREFIX) and name.endswith(".npy"):
                    state[name[len(_STATE_PREFIX) : -4]] = _read_array(path, zf, entry)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(
            f"{path} is not a bwgym checkpoint ({type(err).__name__}: {err}); "
            f"checkpoints are written by bwgym's train commands"
        ) from err
    except RecursionError as err:  # JSON nested thousands deep: not a header bwgym wrote
        raise CheckpointError(f"{path}: checkpoint header nested too deeply to be one bwgym wrote") from err
    except (ValueError, OSError, EOFError, zipfile.LargeZipFile, NotImplementedError) as err:
        raise CheckpointError(f"{path}: damaged checkpoint ({type(err).__name__}: {err})") from err
    got_kind = str(header.get("kind"))
    if kind is not None:
        kinds = [kind] if isinstance(kind, str) else list(kind)
        if not any(got_kind == k or (k.endswith("/") and got_kind.startswith(k)) for k in kinds):
            raise CheckpointError(f"{path} is a checkpoint of {got_kind!r}, expected {_kinds_text(kinds)}")
    listed = header.get("state", [])
    if not isinstance(listed, list) or not all(isinstance(k, str) for k in listed):
        raise CheckpointError(f"{path}: damaged checkpoint, its header's state list is not a list of names")
    missing = set(listed) - set(state)
    if missing:
        raise CheckpointError(f"{path}: damaged checkpoint, state entries {sorted(missing)[:10]} are missing")
    metadata = header.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise CheckpointError(f"{path}: damaged checkpoint, its metadata is not a JSON object")
    return Checkpoint(
        kind=got_kind,
        metadata=dict(metadata),
        state=state,
        versions=dict(header["versions"]) if isinstance(header.get("versions"), dict) else {},
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


def sidecar_path(checkpoint: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a checkpoint: ``x.json`` beside ``x.ckpt`` (how it was made, its evaluation).

    The one naming rule of the project's sidecars: every command that writes one and every reader
    of one goes through this function.

    Example:
        >>> sidecar_path("bwgym/agents/checkpoints/bc_locate_lift_v1.ckpt").name
        'bc_locate_lift_v1.json'
    """
    return Path(checkpoint).with_suffix(".json")


# ------------------------------------------------------------------ checking metadata against arrays
# Every loader that builds a network from a checkpoint's metadata first checks that metadata
# against the arrays in the file (sizes, then every shape), so that nothing it builds takes more
# memory than the file holds; these are the two checks they share.


def is_size_list(value: Any, low: int = 1) -> bool:
    """Whether ``value`` is a list of integers ``>= low`` (no booleans): layer or tensor sizes."""
    return isinstance(value, list) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= low for n in value
    )


def first_shape_mismatch(
    expected: Mapping[str, tuple[int, ...]], arrays: Mapping[str, Any]
) -> tuple[str, tuple[int, ...], tuple[int, ...] | None] | None:
    """The first ``(key, expected shape, shape in the file or None)`` that disagrees, else None."""
    for key, shape in expected.items():
        got = arrays.get(key)
        if got is None or tuple(got.shape) != shape:
            return key, shape, None if got is None else tuple(got.shape)
    return None
